"""Retention policies through the compliance API, ``/api/v1`` (issue 7, GDPR Art. 5(1)(e)).

``/subjects/{address}/retention`` reads (``retention:read``), sets and clears
(``retention:write``) one account's rules; ``/retention`` lists every account's rules and
``/retention/run`` applies them now, as the scheduler inside ``serve`` does on its
interval. Auth as in ``api.v1``: 401 without a token, 403 without the scope, before any
lookup. Reading one person's rules is recorded in their access ledger first, like every
read of their data through this API; writes are recorded under the token as actor.
Routes call use cases only (DESIGN §1).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from adapters import bootstrap
from api.v1 import record_reads, scope_guard
from domain.application.context import acting
from domain.model.errors import (
    ConcurrencyExhausted,
    DomainError,
    InvalidAddress,
    SubjectErased,
    UnknownAddress,
)
from domain.model.retention import MAX_AGE_DAYS

AddressPath = Annotated[str, Path(min_length=3, max_length=320, description="the subject's address")]
#: A mailbox name as IMAP allows it (``values.MAX_MAILBOX_NAME`` bytes is checked by the use case).
MailboxName = Annotated[str, Field(min_length=1, max_length=1000)]


class RetentionRuleCreate(BaseModel):
    #: The mailbox the rule is for; null: the whole account (a mailbox rule wins).
    mailbox: MailboxName | None = None
    #: Strict: ``"30"`` or ``true`` is a client bug, not 30 days.
    max_age_days: int = Field(ge=1, le=MAX_AGE_DAYS, strict=True)


class RetentionRulePublic(BaseModel):
    address: str
    mailbox: str | None
    max_age_days: int
    set_at: str


class RetentionClearedPublic(BaseModel):
    cleared: bool


class RetentionRunPublic(BaseModel):
    accounts: int
    deleted: int
    held: int


def _refusal(error: Exception) -> HTTPException:
    """A domain error as a 4xx (or 503 to retry); never a 500."""
    if isinstance(error, UnknownAddress | InvalidAddress | SubjectErased):
        return HTTPException(status_code=404, detail="no such subject")
    if isinstance(error, ConcurrencyExhausted):
        return HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "5"})
    return HTTPException(status_code=422, detail=str(error))  # a bad rule, an unknown mailbox


def _rules(rows: list[dict[str, object]]) -> list[RetentionRulePublic]:
    return [RetentionRulePublic.model_validate(row) for row in rows]


def build_retention_router(store: bootstrap.Container) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["retention"])
    require = scope_guard(store)

    @router.get("/subjects/{address}/retention", response_model=list[RetentionRulePublic],
                responses={404: {"description": "unknown subject"}})
    def subject_rules(address: AddressPath,
                      token: str = Depends(require("retention:read"))) -> list[RetentionRulePublic]:  # noqa: B008
        """The retention rules of the owner of ``address``; the read is recorded in
        their access ledger first."""
        try:
            with acting(f"token:{token}", protocol="http", purpose="api"):
                account_id = store.app.account_id_for(address)
                store.app.record_data_access(account_id, "retention rules", "api")
            return _rules(store.app.retention_policies(address))
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None

    @router.put("/subjects/{address}/retention", response_model=list[RetentionRulePublic],
                responses={404: {"description": "unknown subject"},
                           422: {"description": "a bad rule or an unknown mailbox"}})
    def set_rule(address: AddressPath, body: RetentionRuleCreate,
                 token: str = Depends(require("retention:write"))) -> list[RetentionRulePublic]:  # noqa: B008
        """Set the rule for ``mailbox`` (null: the whole account); answers with the
        account's rules. Setting the same rule again records nothing."""
        try:
            with acting(f"token:{token}", protocol="http", purpose="retention"):
                store.app.set_retention(address, body.mailbox, body.max_age_days)
            return _rules(store.app.retention_policies(address))
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None

    @router.delete("/subjects/{address}/retention", response_model=RetentionClearedPublic,
                   responses={404: {"description": "unknown subject"}})
    def clear_rule(address: AddressPath,
                   mailbox: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
                   token: str = Depends(require("retention:write"))) -> RetentionClearedPublic:  # noqa: B008
        """Remove the rule for ``?mailbox=`` (absent: the account rule). Idempotent:
        ``cleared: false`` when there was none."""
        try:
            with acting(f"token:{token}", protocol="http", purpose="retention"):
                return RetentionClearedPublic(cleared=store.app.clear_retention(address, mailbox))
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None

    @router.get("/retention", response_model=list[RetentionRulePublic])
    def all_rules(token: str = Depends(require("retention:read"))) -> list[RetentionRulePublic]:  # noqa: B008
        """Every account's retention rules (mailbox names are the person's data: the
        read is recorded for each person listed)."""
        rows = store.app.retention_policies()
        record_reads(store, token, [row["address"] for row in rows], "retention rules")
        return _rules(rows)

    @router.post("/retention/run", response_model=RetentionRunPublic)
    def run(token: str = Depends(require("retention:write"))) -> RetentionRunPublic:  # noqa: B008
        """Apply every policy now (what the scheduler in ``serve`` does on its interval);
        answers with how many accounts have rules, messages were deleted, and due
        messages were kept because of a legal hold."""
        try:
            with acting(f"token:{token}", protocol="http"):
                return RetentionRunPublic(**store.app.apply_retention())
        except ConcurrencyExhausted as error:
            raise _refusal(error) from None

    return router
