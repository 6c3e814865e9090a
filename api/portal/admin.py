"""The administrator's console (issue 7): open erasure requests, legal holds, retention
policies and the audit chain's state, behind an admin token with the ``admin`` scope.

The token is checked once, at login, through the shared failed-login throttle (keyed by
the token's public id, never its secret); the session then holds only the token id, and
each page checks the token has not been revoked since. Erasure requests are listed by
id, status and time, never by address.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request, Response

from adapters import bootstrap
from api.portal.routes import FormText
from api.portal.sessions import PortalSession
from api.portal.web import LoginLocked, Portal
from api.v1 import _catch_up, record_reads
from projections.audit_trail.view import AuditQuery

#: Statuses of a request that is over (the rest are steps of a running one).
CLOSED = ("completed", "blocked")
#: Closed requests shown, newest first.
RECENT_CLOSED = 20
#: Audit rows read per query when listing erasure requests.
PAGE = 500


@dataclass(frozen=True)
class RequestRow:
    request_id: str
    status: str
    requested_at: str


def _login_name(token: str) -> str:
    """The throttle's login key: the token's public id (``lm_<id>_<secret>``), so the
    secret never sits in memory as a key and one token's failures do not lock others."""
    _prefix, _, rest = token.partition("_")
    token_id, _, _secret = rest.partition("_")
    return f"admin-token:{token_id[:32]}"


def build_admin_router(portal: Portal) -> APIRouter:
    router = APIRouter(prefix="/admin")
    store = portal.store

    def admin_session(request: Request) -> PortalSession | None:
        """The session if an administrator is logged in with a token still valid."""
        session = portal.session_of(request)
        if session is None or session.admin_token_id is None:
            return None
        tokens = {row["token_id"]: row for row in store.app.list_tokens()}
        token = tokens.get(session.admin_token_id)
        if token is None or token["revoked_at"] is not None:
            session.admin_token_id = None
            return None
        return session

    def erasure_requests() -> list[RequestRow]:
        """Every erasure request the audit trail knows, with its current step: the
        database finds the ``Requested`` rows, a page at a time."""
        found: list[RequestRow] = []
        after = 0
        while True:
            page = store.audit_trail.query(AuditQuery(event_type="ErasureRequest.Requested",
                                                      after_position=after, limit=PAGE))
            for entry in page:
                status = store.app.erasure_status(entry.stream_id)
                found.append(RequestRow(entry.stream_id, status["status"], entry.at))
            if len(page) < PAGE:
                return sorted(found, key=lambda row: row.requested_at, reverse=True)
            after = page[-1].position

    @router.get("")
    def console(request: Request) -> Response:
        """The console, or the token form when no administrator is logged in."""
        session = admin_session(request)
        if session is None:
            session = portal.session_of(request) or portal.sessions.new()
            response = portal.render(request, "admin_login.html", session)
            portal.set_cookie(response, session)
            return response
        _catch_up(store)
        requests = erasure_requests()
        verdict = bootstrap.verify_audit_trail(store)
        holds, policies = store.app.legal_holds(), store.app.retention_policies()
        # Hold reasons and mailbox names are the people's data: each person listed gets
        # a recorded read, under the admin's token, as through the API.
        record_reads(store, session.admin_token_id or "", [row["address"] for row in holds],
                     "legal holds")
        record_reads(store, session.admin_token_id or "", [row["address"] for row in policies],
                     "retention rules")
        return portal.render(
            request, "admin.html", session,
            open_requests=[r for r in requests if r.status not in CLOSED],
            closed_requests=[r for r in requests if r.status in CLOSED][:RECENT_CLOSED],
            holds=holds, policies=policies, verdict=verdict)

    @router.post("/login")
    def login(request: Request, token: FormText = "", csrf_token: FormText = "") -> Response:
        """Check an admin token (scope ``admin``) through the shared throttle."""
        session = portal.form_session(request, csrf_token)
        failure = "This is not a valid admin token with the admin scope."
        if not token or len(token) > 512:
            return portal.render(request, "admin_login.html", session, 403, error=failure)
        try:
            token_id = portal.attempt(portal.client_ip(request), _login_name(token),
                                      lambda: store.app.check_token(token, "admin"))
        except LoginLocked:
            return portal.render(request, "admin_login.html", session, 429,
                                 error="Too many failed logins. Try again later.")
        if token_id is None:
            return portal.render(request, "admin_login.html", session, 403, error=failure)
        session.account_id = None
        session.admin_token_id = token_id
        portal.sessions.rotate(session)
        response = portal.redirect("/admin")
        portal.set_cookie(response, session)
        return response

    return router
