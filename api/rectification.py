"""Rectification (GDPR Art. 16) through the compliance API, ``/api/v1/subjects/{address}/profile``.

The profile is the data an account holds about its person besides mail: display name,
organization, locale, time zone. ``PATCH`` corrects it (JSON merge-patch semantics,
RFC 7396 §2: a field sent as ``null`` is removed, a field left out is kept); the change
is an ``Account.ProfileRectified`` event sealed under the person's key, named in the
audit trail with the token as actor. ``GET`` reads it and records the read in the
person's access ledger first. Routes call use cases only (DESIGN §1).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from adapters import bootstrap
from api.v1 import scope_guard
from domain.application.context import acting
from domain.model.account import Account
from domain.model.errors import DomainError, InvalidProfile, SubjectErased, UnknownAddress

AddressPath = Annotated[str, Path(max_length=320, description="an account address or alias")]


class ProfilePublic(BaseModel):
    address: str
    display_name: str | None = None
    organization: str | None = None
    locale: str | None = None
    time_zone: str | None = None


class ProfileUpdate(BaseModel):
    """Only the fields sent change; ``null`` (or an empty string) removes one."""

    display_name: str | None = Field(default=None, max_length=200)
    organization: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=35, examples=["en-GB"])
    time_zone: str | None = Field(default=None, max_length=64, examples=["Europe/Berlin"])


def _public(address: str, profile: dict[str, str]) -> ProfilePublic:
    return ProfilePublic(address=address, **profile)


def build_rectification_router(store: bootstrap.Container) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["subjects"])
    require = scope_guard(store)

    def live_account(address: str) -> Account:
        """The live account behind ``address``; 404 for unknown or erased, so the
        answer is the same whether the address never existed or was erased."""
        try:
            account: Account = store.app.account_for(address)
        except (UnknownAddress, SubjectErased):
            raise HTTPException(status_code=404, detail="no such subject") from None
        except (DomainError, ValueError):
            raise HTTPException(status_code=404, detail="no such subject") from None
        if getattr(account, "erased", False):
            raise HTTPException(status_code=404, detail="no such subject")
        return account

    @router.get("/subjects/{address}/profile", response_model=ProfilePublic,
                responses={404: {"description": "unknown subject"}})
    def profile(address: AddressPath,
                token_id: str = Depends(require("subjects:read"))) -> ProfilePublic:  # noqa: B008
        """The profile held about the owner of ``address``; the read is recorded first."""
        account = live_account(address)
        try:
            with acting(f"token:{token_id}", protocol="http", purpose="api"):
                store.app.record_data_access(account.id, "profile", "api")
        except SubjectErased:
            raise HTTPException(status_code=404, detail="no such subject") from None
        return _public(account.address, dict(account.profile))

    @router.patch("/subjects/{address}/profile", response_model=ProfilePublic,
                  responses={404: {"description": "unknown subject"},
                             422: {"description": "an unknown field or an unfit value"}})
    def rectify(address: AddressPath, body: ProfileUpdate,
                token_id: str = Depends(require("subjects:write"))) -> ProfilePublic:  # noqa: B008
        """Correct the profile (Art. 16); answers with the profile as it now is."""
        account = live_account(address)
        changes = body.model_dump(exclude_unset=True)
        try:
            with acting(f"token:{token_id}", protocol="http", purpose="rectification"):
                updated = store.app.rectify_profile(account.address, changes)
        except (UnknownAddress, SubjectErased):
            raise HTTPException(status_code=404, detail="no such subject") from None
        except (InvalidProfile, DomainError, ValueError) as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return _public(account.address, updated)

    return router
