"""Subjects and consent in the compliance API, ``/api/v1/subjects`` (issue 7).

What is held about a person (Art. 15), and their consents per purpose (Art. 7). Auth as
in ``api.v1``: a bearer token with the route's scope; a caller without it gets 403 before
any lookup, so whether an address exists is not revealed to it. Every read of a local
person's data is recorded in their access ledger (a ``DataAccessed`` event) before it is
answered, and every write, under the token as actor (``token:<id>``). Routes call use
cases and read views only (DESIGN §1).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from adapters import bootstrap
from api.v1 import _catch_up, scope_guard
from domain.application.context import Actor, acting
from domain.model.account import Account
from domain.model.errors import (
    DomainError,
    InvalidLegalBasis,
    InvalidPurpose,
    SubjectErased,
    UnknownAddress,
)
from domain.model.values import normalize_address

#: The access ledger's purpose for reads through the API.
ACCESS_PURPOSE = "api"
#: The consent ledger's source for changes made through the API.
CONSENT_SOURCE = "api"

AddressPath = Annotated[str, Path(max_length=320, description="an e-mail address")]


class MailboxPublic(BaseModel):
    name: str
    messages: int
    size_bytes: int


class StoragePublic(BaseModel):
    used_bytes: int
    quota_bytes: int


class ConsentPublic(BaseModel):
    purpose: str
    state: str
    basis: str
    source: str
    at: str


class SubjectHoldPublic(BaseModel):
    placed: bool
    since: str | None
    reason: str | None


class SubjectCasePublic(BaseModel):
    """One active legal hold (issue 7): a case id, its reason and scope."""

    case_id: str
    reason: str
    scope: str
    placed_at: str


class SubjectRetentionPublic(BaseModel):
    """One retention rule (issue 7); ``mailbox`` None is the whole account."""

    mailbox: str | None
    max_age_days: int
    set_at: str


class SubjectPublic(BaseModel):
    address: str
    aliases: list[str]
    subject_pseudonym: str
    mailboxes: list[MailboxPublic]
    storage: StoragePublic
    consents: list[ConsentPublic]
    #: Whether any hold is placed; ``since`` and ``reason`` are the oldest one's.
    legal_hold: SubjectHoldPublic
    holds: list[SubjectCasePublic] = []
    retention: list[SubjectRetentionPublic] = []


class ConsentCreate(BaseModel):
    purpose: str = Field(max_length=64)
    basis: str = Field(default="consent", max_length=64)


class ConsentChangePublic(BaseModel):
    changed: bool


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="no such subject")


def _unprocessable(error: Exception) -> HTTPException:
    return HTTPException(status_code=422, detail=str(error))


def _actor(token_id: str) -> AbstractContextManager[Actor]:
    return acting(f"token:{token_id}", protocol="http", purpose=ACCESS_PURPOSE)


def _consents(rows: list[dict[str, str]]) -> list[ConsentPublic]:
    return [ConsentPublic(**{key: row.get(key, "") for key in ConsentPublic.model_fields})
            for row in rows]


def subject_summary(store: bootstrap.Container, account: Account) -> SubjectPublic:
    """What is held about ``account``'s holder, from the views and the consent ledger.
    Shared by this API and the privacy portal (``api.portal``) so both show the same
    thing; the caller records the read in the access ledger first."""
    view = store.mailbox_view
    mailboxes = []
    for row in sorted(view.mailboxes(account.id), key=lambda row: row.name):
        sizes = view.message_sizes(row.mailbox_id)
        mailboxes.append(MailboxPublic(name=row.name, messages=len(sizes),
                                       size_bytes=sum(size for _uid, size in sizes)))
    used, quota = view.storage_of(account.id) or (0, account.quota_bytes)
    holds = sorted(store.app.legal_holds(account.address), key=lambda row: row["placed_at"])
    return SubjectPublic(
        address=account.address,
        aliases=sorted(account.aliases),
        subject_pseudonym=store.app.pseudonym_of(account.subject_id),
        mailboxes=mailboxes,
        storage=StoragePublic(used_bytes=used, quota_bytes=quota),
        consents=_consents(store.app.consents_of(account.address)),
        legal_hold=SubjectHoldPublic(placed=bool(holds), since=holds[0]["placed_at"] if holds else None,
                                     reason=holds[0]["reason"] if holds else None),
        holds=[SubjectCasePublic.model_validate(row) for row in holds],
        retention=[SubjectRetentionPublic.model_validate(row)
                   for row in store.app.retention_policies(account.address)],
    )


def build_subjects_router(store: bootstrap.Container) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["subjects"])
    require = scope_guard(store)

    def local_account(address: str) -> Account | None:
        """The live local account ``address`` (or an alias, or a sub-address) names."""
        try:
            account_id: UUID = store.app.delivery_account_id(normalize_address(address))
            account: Account = store.app.load(account_id, what="the subject")
        except (UnknownAddress, SubjectErased):
            return None
        except (DomainError, ValueError) as error:
            raise _unprocessable(error) from None
        return None if getattr(account, "erased", False) else account

    def record_read(token_id: str, account: Account, what: str) -> None:
        try:
            with _actor(token_id):
                store.app.record_data_access(account.id, what, ACCESS_PURPOSE)
        except SubjectErased:
            raise _not_found() from None

    @router.get("/subjects/{address}", response_model=SubjectPublic)
    def subject(address: AddressPath,
                token_id: str = Depends(require("subjects:read"))) -> SubjectPublic:  # noqa: B008
        """What is held about the owner of ``address`` (an account address or alias):
        mailboxes with message counts and sizes, storage, consents, legal hold, and the
        pseudonym the audit trail names them by. Unknown or erased: 404. The read is
        recorded in the person's access ledger before it is answered."""
        index = store.app.index_for(address)
        if index is None or index.account_id is None or index.erasure_id is not None:
            raise _not_found()
        try:
            account: Account = store.app.load(index.account_id, what="the subject")
        except SubjectErased:
            raise _not_found() from None
        if getattr(account, "erased", False):
            raise _not_found()
        _catch_up(store)
        record_read(token_id, account, "subject summary")
        return subject_summary(store, account)

    @router.get("/subjects/{address}/consents", response_model=list[ConsentPublic])
    def consents(address: AddressPath,
                 token_id: str = Depends(require("consent:read"))) -> list[ConsentPublic]:  # noqa: B008
        """Every purpose the address ever named, with its state, legal basis, source and
        time. For a local account (an address, alias or sub-address of it) the read is
        recorded in its access ledger first; an external correspondent has no access
        ledger, so reading their consents records nothing. No record: an empty list."""
        account = local_account(address)
        if account is not None:
            record_read(token_id, account, "consents")
        try:
            return _consents(store.app.consents_of(address))
        except (DomainError, ValueError) as error:
            raise _unprocessable(error) from None

    @router.post("/subjects/{address}/consents", response_model=list[ConsentPublic],
                 status_code=201)
    def give(address: AddressPath, body: ConsentCreate,
             token_id: str = Depends(require("consent:write"))) -> list[ConsentPublic]:  # noqa: B008
        """Record consent of the address's holder to ``purpose`` on ``basis`` (source
        ``api``); answers with the consent list. An erased person: 404."""
        try:
            with _actor(token_id):
                store.app.give_consent(address, body.purpose, basis=body.basis,
                                       source=CONSENT_SOURCE)
            return _consents(store.app.consents_of(address))
        except SubjectErased:
            raise _not_found() from None
        except (InvalidPurpose, InvalidLegalBasis, DomainError, ValueError) as error:  # bad input
            raise _unprocessable(error) from None

    @router.delete("/subjects/{address}/consents/{purpose}", response_model=ConsentChangePublic)
    def withdraw(address: AddressPath, purpose: Annotated[str, Path(max_length=64)],
                 token_id: str = Depends(require("consent:write"))) -> ConsentChangePublic:  # noqa: B008
        """Withdraw consent to ``purpose`` (source ``api``). Idempotent: withdrawing
        what is not given changes nothing and answers ``changed: false``."""
        try:
            with _actor(token_id):
                changed = store.app.withdraw_consent(address, purpose, source=CONSENT_SOURCE)
        except SubjectErased:
            raise _not_found() from None
        except (InvalidPurpose, DomainError, ValueError) as error:
            raise _unprocessable(error) from None
        return ConsentChangePublic(changed=changed)

    return router
