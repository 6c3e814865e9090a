"""The compliance API, ``/api/v1`` (issue 7): admin tokens with scopes, and the audit trail.

Auth is a bearer token (RFC 6750 §2.1, ``Authorization: Bearer lm_<id>_<secret>``, made
with ``ledgermail token create``). No token, or one that is malformed, unknown or
revoked: 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 §3); a valid token without the
route's scope: 403 (RFC 6750 §3.1 insufficient_scope). Routes call use cases and read
views only (DESIGN §1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from adapters import bootstrap
from api.records import RecordsOfProcessingPublic, records_summary
from domain.application.context import acting
from domain.model.errors import DomainError, ScopeMissing, TokenRejected
from projections.audit_trail.view import AuditQuery, check_chain

#: How many audit entries one query returns at most (and by default).
MAX_AUDIT_LIMIT, DEFAULT_AUDIT_LIMIT = 1000, 100
#: How long a read waits for the views to catch up with the log (read-your-writes).
CATCH_UP_SECONDS = 10.0

_bearer = HTTPBearer(auto_error=False, description="an admin token: ledgermail token create --scope ...")


class AuditEntryPublic(BaseModel):
    position: int
    at: str
    event_type: str
    stream_id: str
    subject: str | None
    actor: str
    protocol: str
    session: str
    purpose: str


class AuditVerifyPublic(BaseModel):
    intact: bool
    rows: int
    first_bad_position: int | None
    reason: str


class TokenPublic(BaseModel):
    token_id: str
    name: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None


def _unauthorized(error: str, description: str) -> HTTPException:
    return HTTPException(status_code=401, detail=description, headers={
        "WWW-Authenticate": f'Bearer realm="ledgermail", error="{error}"' if error
        else 'Bearer realm="ledgermail"'})


def _iso(moment: datetime | None) -> str | None:
    """The audit trail's own time format (UTC, microseconds, ``Z``), so times compare as text."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_reads(store: bootstrap.Container, token_id: str, addresses: Iterable[str], what: str) -> None:
    """Record a read of ``what`` in the access ledger of each live person named (once
    each), before the answer goes out: listings that show several people's data
    (holds, retention rules) are reads of each one's data. An erased or external
    subject has no ledger, so nothing is recorded for them."""
    with acting(f"token:{token_id}", protocol="http", purpose="api"):
        for address in dict.fromkeys(addresses):
            try:
                store.app.record_data_access(store.app.account_id_for(address), what, "api")
            except (DomainError, ValueError):
                continue


def _catch_up(store: bootstrap.Container) -> None:
    try:
        store.catch_up(timeout=CATCH_UP_SECONDS)
    except TimeoutError:
        raise HTTPException(status_code=503, detail="the views are still catching up; retry",
                            headers={"Retry-After": "5"}) from None


def scope_guard(store: bootstrap.Container) -> Callable[[str], Callable[..., str]]:
    """``require(scope)``: a dependency that checks the bearer token for ``scope`` and
    gives the token id (401 without a valid token, 403 without the scope). Shared by
    every ``/api/v1`` router."""

    # Routes take the token as ``= Depends(...)`` defaults: an ``Annotated`` hint naming
    # this local function could not be resolved from the module's globals.
    def require(scope: str) -> Callable[..., str]:
        def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                              Depends(_bearer)]) -> str:
            if credentials is None:
                raise _unauthorized("", "an admin token is required (Authorization: Bearer ...)")
            try:
                token_id = store.app.check_token(credentials.credentials, scope)
            except TokenRejected as error:
                raise _unauthorized("invalid_token", str(error)) from None
            except ScopeMissing as error:
                raise HTTPException(status_code=403, detail=str(error), headers={
                    "WWW-Authenticate": f'Bearer realm="ledgermail", error="insufficient_scope", '
                                        f'scope="{scope}"'}) from None
            # A sync dependency runs in its own thread: an ``acting`` block here would not
            # reach the route, so a route that writes must set the actor itself.
            return token_id

        return authorized

    return require


def build_router(store: bootstrap.Container) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["compliance"])

    require = scope_guard(store)

    @router.get("/audit", response_model=list[AuditEntryPublic])
    def audit(
        token_id: str = Depends(require("audit:read")),  # noqa: B008
        subject: Annotated[str | None, Query(max_length=320,
                                             description="an address; its owner's pseudonym")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        event_type: Annotated[str | None, Query(max_length=128)] = None,
        actor: Annotated[str | None, Query(max_length=256)] = None,
        after: Annotated[int, Query(ge=0, le=2**62, description="the last position seen: "
                                    "the next page starts after it")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_LIMIT)] = DEFAULT_AUDIT_LIMIT,
    ) -> list[AuditEntryPublic]:
        """The record of processing (Art. 30), oldest first, filtered, a page at a time
        (pass the last ``position`` as ``after``). An address nobody holds gives an empty
        list, like an address with no history, so a query does not reveal whether it
        ever existed. Querying a live person's history is itself recorded in their
        access ledger, before it is answered."""
        pseudonym: str | None = None
        if subject is not None:
            try:
                pseudonym = store.app.subject_pseudonym_for(subject)
            except (DomainError, ValueError):
                return []
            record_reads(store, token_id, [subject], "processing history")
        _catch_up(store)
        criteria = AuditQuery(subject=pseudonym, since=_iso(since), until=_iso(until),
                              event_type=event_type, actor=actor, after_position=after, limit=limit)
        return [AuditEntryPublic(**entry.__dict__) for entry in store.audit_trail.query(criteria)]

    @router.get("/records-of-processing", response_model=RecordsOfProcessingPublic)
    def records_of_processing(
            _token: str = Depends(require("audit:read"))) -> RecordsOfProcessingPublic:  # noqa: B008
        """A records-of-processing summary (Art. 30(1)): the categories of personal data
        held and where, the purposes with their counts from the audit trail, what every
        kind of event counted, and the retention that applies. Counts only: no person
        is named, so it can be handed to an auditor as it is."""
        _catch_up(store)
        return records_summary(store)

    @router.get("/audit/verify", response_model=AuditVerifyPublic)
    def audit_verify(_token: str = Depends(require("audit:read"))) -> AuditVerifyPublic:  # noqa: B008
        """The hash chain is intact and agrees with the event log (``ledgermail audit --verify``)."""
        _catch_up(store)
        verdict = bootstrap.verify_audit_trail(store)
        chain = check_chain(store.audit_trail.rows())
        return AuditVerifyPublic(intact=verdict.intact, rows=verdict.rows,
                                 first_bad_position=chain.first_bad_position, reason=verdict.reason)

    @router.get("/tokens", response_model=list[TokenPublic])
    def tokens(_token: str = Depends(require("admin"))) -> list[TokenPublic]:  # noqa: B008
        """Every admin token (never a secret); needs the ``admin`` scope."""
        return [TokenPublic(**row) for row in store.app.list_tokens()]

    return router
