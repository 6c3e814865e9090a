"""Erasure (GDPR Art. 17) and legal holds through the compliance API, ``/api/v1`` (issue 7).

A hold has a case id (given, or ``case-<random>``), a reason and a scope (``all`` or a
mailbox name); ``DELETE .../hold`` releases every hold of the account,
``DELETE .../hold/{case_id}`` one. ``GET /holds`` lists the active holds
(``holds:read``). Placing a case id already placed is a 409: release it to change it.

``POST /erasures`` records the request at once (a legal hold refuses it with 409, and the
refusal is recorded by the use case) and answers 202 with the request id; the workflow
(DESIGN §3) runs in a background thread, acting as the token. ``GET /erasures/{id}``
shows the step reached and, once completed, the receipt. Routes call use cases only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from adapters import bootstrap
from api.v1 import record_reads, scope_guard
from domain.application.context import acting
from domain.model.errors import (
    ConcurrencyExhausted,
    DomainError,
    InvalidAddress,
    InvalidLegalHold,
    InvalidMailboxName,
    LegalHoldActive,
    MailboxNotFound,
    SubjectErased,
    UnknownAddress,
    UnknownErasureRequest,
)

log = logging.getLogger(__name__)

ErasureStatus = Literal["requested", "marked", "purged", "shredded", "completed", "blocked"]
AddressPath = Annotated[str, Path(min_length=3, max_length=320, description="the subject's address")]


class ErasureCreate(BaseModel):
    address: str = Field(min_length=3, max_length=320)
    reason: str = Field(min_length=1, max_length=1000)


class ErasurePublic(BaseModel):
    request_id: str
    status: ErasureStatus
    receipt: dict[str, Any] | None = None


class LegalHoldCreate(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)
    #: The court's or ticket's reference; omitted: one is made (``case-<random>``).
    case_id: str | None = Field(default=None, min_length=1, max_length=128)
    #: ``all`` (the whole account) or the name of one of its mailboxes.
    scope: str = Field(default="all", min_length=1, max_length=1000)


class LegalHoldPublic(BaseModel):
    address: str
    hold: Literal["placed", "released"]
    #: The placed hold's case id (on placing).
    case_id: str | None = None
    #: How many holds were released (on releasing; 0 when none was placed).
    released: int | None = None


class HoldPublic(BaseModel):
    address: str
    case_id: str
    reason: str
    scope: str
    placed_at: str


def _refusal(error: Exception) -> HTTPException:
    """A domain error as a 4xx (or 503 to retry); never a 500."""
    if isinstance(error, UnknownAddress | InvalidAddress | SubjectErased | UnknownErasureRequest):
        return HTTPException(status_code=404, detail="unknown subject or request")
    if isinstance(error, LegalHoldActive):
        return HTTPException(status_code=409, detail=str(error))
    if isinstance(error, ConcurrencyExhausted):
        return HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "5"})
    if isinstance(error, ValueError | InvalidLegalHold | MailboxNotFound | InvalidMailboxName):
        return HTTPException(status_code=422, detail=str(error))
    return HTTPException(status_code=409, detail=str(error))  # LegalHoldExists among others


class ErasureRunner:
    """Runs recorded erasure requests in background threads, one per request: a second
    call while it runs starts nothing, and a run that stops leaves the request open, to
    resume on the next call. Shared by the API and the portal, which differ only in the
    actor the run is recorded under."""

    def __init__(self, store: bootstrap.Container) -> None:
        self.store = store
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def run(self, request_id: str, actor: Callable[[], AbstractContextManager[Any]]) -> None:
        with self._lock:
            if request_id in self._running:
                return
            self._running.add(request_id)

        def work() -> None:
            try:
                with actor():
                    self.store.app.run_erasure(request_id)
            except Exception as error:  # the request stays open; a rerun resumes it
                # The type only: a domain error's message may name the person.
                log.warning("erasure %s stopped (%s); ask again to resume", request_id[:8],
                            type(error).__name__)
            finally:
                with self._lock:
                    self._running.discard(request_id)

        threading.Thread(target=work, name=f"erasure-{request_id[:8]}", daemon=True).start()


def build_erasure_router(store: bootstrap.Container) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["erasure"])
    require = scope_guard(store)
    erasures = ErasureRunner(store)

    @router.post("/erasures", status_code=202, response_model=ErasurePublic,
                 responses={404: {"description": "unknown subject"},
                            409: {"description": "a legal hold blocks the erasure (its reason)"}})
    def create_erasure(body: ErasureCreate,
                       token: str = Depends(require("erasure:write"))) -> ErasurePublic:  # noqa: B008
        """Record an erasure request and run it in the background; poll its status."""
        try:
            with acting(f"token:{token}", protocol="http", purpose="erasure"):
                request_id, _step = store.app.request_erasure(body.address, body.reason)
                status = store.app.erasure_status(request_id)
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None
        if status["status"] not in ("completed", "blocked"):
            erasures.run(request_id, lambda: acting(f"token:{token}", protocol="http", purpose="erasure"))
        return ErasurePublic(**status)

    @router.get("/erasures/{request_id}", response_model=ErasurePublic,
                responses={404: {"description": "unknown request"}})
    def erasure_status(request_id: Annotated[str, Path(max_length=64)],
                       _token: str = Depends(require("erasure:write"))) -> ErasurePublic:  # noqa: B008
        """The step an erasure reached; the receipt once completed."""
        try:
            return ErasurePublic(**store.app.erasure_status(request_id))
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None

    @router.post("/subjects/{address}/hold", status_code=201, response_model=LegalHoldPublic,
                 responses={404: {"description": "unknown subject"}})
    def place_hold(address: AddressPath, body: LegalHoldCreate,
                   token: str = Depends(require("holds:write"))) -> LegalHoldPublic:  # noqa: B008
        """Place a legal hold: it blocks erasure, and retention for what its scope
        covers, until released. Answers with its case id; an already placed case id: 409."""
        try:
            with acting(f"token:{token}", protocol="http", purpose="legal-hold"):
                case_id = store.app.place_legal_hold(address, body.reason, case_id=body.case_id,
                                                     scope=body.scope)
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None
        return LegalHoldPublic(address=address.lower(), hold="placed", case_id=case_id)

    @router.delete("/subjects/{address}/hold", response_model=LegalHoldPublic,
                   responses={404: {"description": "unknown subject"}})
    def release_hold(address: AddressPath,
                     token: str = Depends(require("holds:write"))) -> LegalHoldPublic:  # noqa: B008
        """Release every legal hold of the account (``released: 0`` when there is none)."""
        try:
            with acting(f"token:{token}", protocol="http", purpose="legal-hold"):
                released = store.app.release_legal_hold(address)
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None
        return LegalHoldPublic(address=address.lower(), hold="released", released=released)

    @router.delete("/subjects/{address}/hold/{case_id}", response_model=LegalHoldPublic,
                   responses={404: {"description": "unknown subject"}})
    def release_case(address: AddressPath, case_id: Annotated[str, Path(min_length=1, max_length=128)],
                     token: str = Depends(require("holds:write"))) -> LegalHoldPublic:  # noqa: B008
        """Release one hold by case id (``released: 0`` when it is not placed)."""
        try:
            with acting(f"token:{token}", protocol="http", purpose="legal-hold"):
                released = store.app.release_legal_hold(address, case_id)
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None
        return LegalHoldPublic(address=address.lower(), hold="released", released=released)

    @router.get("/holds", response_model=list[HoldPublic],
                responses={404: {"description": "unknown subject"}})
    def holds(address: Annotated[str | None, Query(min_length=3, max_length=320)] = None,
              token: str = Depends(require("holds:read"))) -> list[HoldPublic]:  # noqa: B008
        """The active legal holds of every account, or of ``?address=``'s owner. A hold's
        reason is the person's data: the read is recorded for each person listed."""
        try:
            rows = store.app.legal_holds(address)
        except (DomainError, ValueError) as error:
            raise _refusal(error) from None
        record_reads(store, token, [row["address"] for row in rows], "legal holds")
        return [HoldPublic(**row) for row in rows]

    return router
