"""What every portal page shares: the session cookie, CSRF checks on forms, rendering,
and logins through the mail protocols' failed-login throttle.

Nothing personal goes into a URL (forms POST, pages are named by random ids), into a log
line, or into the cookie (a random id; the session lives on the server).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from fastapi import HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates

from adapters import bootstrap
from api.portal import csrf
from api.portal.sessions import PortalSession, SessionStore
from domain.application.context import acting
from domain.model.account import Account
from domain.model.errors import DomainError, SubjectErased

log = logging.getLogger(__name__)

#: Where the portal is mounted; pages link and redirect within it.
PREFIX = "/portal"
#: The session cookie: a random id only.
COOKIE = "lm_portal"
#: The access ledger's purpose for reads through the portal, and the consent source.
PORTAL_PURPOSE = "portal"

T = TypeVar("T")


class LoginLocked(Exception):
    """Too many failed logins from this address or for this login name."""


@dataclass
class Portal:
    store: bootstrap.Container
    sessions: SessionStore
    templates: Jinja2Templates
    #: ``bootstrap.login_throttle(store)``: the one the mail protocols use.
    throttle: bootstrap.LoginThrottle
    #: ``time.sleep``: the throttle's growing delay before a failure is answered.
    sleep: Callable[[float], None]

    # -- sessions -------------------------------------------------------------------------

    def session_of(self, request: Request) -> PortalSession | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def person(self, request: Request) -> PortalSession | None:
        """The session, if a person is logged in on it."""
        session = self.session_of(request)
        return session if session is not None and session.account_id is not None else None

    def form_session(self, request: Request, token: str) -> PortalSession:
        """The session a POST belongs to, once its CSRF token and Origin check out;
        else 403 before anything is changed."""
        session = self.session_of(request)
        if not csrf.origin_allowed(request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(status_code=403, detail="This form was sent from another site.")
        if not csrf.token_matches(session, token):
            raise HTTPException(status_code=403, detail=(
                "This form has expired or did not come from this page. Reload the page and try again."))
        assert session is not None
        return session

    def account_of(self, session: PortalSession) -> Account | None:
        """The logged-in person's account, or None once it is erased (which logs out)."""
        if session.account_id is None:
            return None
        try:
            account: Account = self.store.app.load(session.account_id, what="this person")
        except (SubjectErased, DomainError):
            account = None
        if account is None or getattr(account, "erased", False):
            session.account_id = None
            return None
        return account

    @staticmethod
    def set_cookie(response: Response, session: PortalSession) -> None:
        """``Secure``, ``HttpOnly``, ``SameSite=Strict``, only for the portal's paths; no
        ``Max-Age``: the browser forgets it on close, the server ends it on timeout."""
        response.set_cookie(COOKIE, session.id, path=PREFIX, secure=True, httponly=True,
                            samesite="strict")

    @staticmethod
    def clear_cookie(response: Response) -> None:
        response.delete_cookie(COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")

    # -- pages ----------------------------------------------------------------------------

    def render(self, request: Request, template: str, session: PortalSession | None,
               status_code: int = 200, **context: Any) -> Response:
        context.update(session=session, csrf_token=session.csrf_token if session else "",
                       csrf_field=csrf.FIELD, prefix=PREFIX)
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    @staticmethod
    def redirect(path: str) -> RedirectResponse:
        """303 See Other: after a POST the browser GETs the result (no re-POST on reload)."""
        return RedirectResponse(PREFIX + path, status_code=303)

    # -- logins ---------------------------------------------------------------------------

    @staticmethod
    def client_ip(request: Request) -> str:
        """The throttle's key. Behind a reverse proxy this is the proxy's address: run
        uvicorn with ``--proxy-headers`` there (docs/gdpr.md)."""
        return request.client.host if request.client else "unknown"

    def attempt(self, ip: str, login: str, check: Callable[[], T]) -> T | None:
        """Run a credential ``check`` through the throttle the SMTP, IMAP and POP3
        servers share (``bootstrap.login_throttle``): a guesser locked out there is
        locked out here and the other way round. None after a failure (answered after
        the throttle's delay); ``LoginLocked`` while locked out."""
        verdict = self.throttle.begin(ip, login, "http")
        if verdict.locked:
            self.sleep(verdict.delay)
            raise LoginLocked()
        failed = False
        result: T | None = None
        try:
            with acting("portal", protocol="http", purpose="authentication"):
                result = check()
        except (DomainError, ValueError):
            failed = True
        finally:
            self.throttle.end(ip, login, failed=failed, protocol="http")
        if failed:
            self.sleep(self.throttle.check(ip, login).delay)
            return None
        self.throttle.succeeded(ip, login)
        return result


def as_person(account_id: UUID, purpose: str = PORTAL_PURPOSE) -> Any:
    """The actor for what a person does through the portal: their account id, never
    their address (the audit trail holds no plaintext personal data, DESIGN §4)."""
    return acting(f"portal:{account_id}", protocol="http", purpose=purpose)


def as_admin(token_id: str, purpose: str) -> Any:
    return acting(f"token:{token_id}", protocol="http", purpose=purpose)

