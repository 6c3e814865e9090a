"""The portal as a sub-application mounted at ``/portal`` (``api.main``).

A sub-application so that its security headers, its HTML error pages and its absence
from the API's OpenAPI schema apply to the portal only. Headers (OWASP Secure Headers):
a CSP with no inline script or style (``default-src 'self'``), no framing, no referrer
(page ids must not leak to other sites), ``no-store`` (pages hold personal data).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters import bootstrap
from api.portal.admin import build_admin_router
from api.portal.routes import build_subject_router
from api.portal.sessions import SessionStore
from api.portal.web import Portal

HERE = Path(__file__).parent

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'; object-src 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_portal(store: bootstrap.Container, *, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> FastAPI:
    """The portal over ``store``. ``clock`` (session timeouts) and ``sleep`` (the
    throttle's delay) are the test seams."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    portal = Portal(store=store, sessions=SessionStore(store.settings.portal, clock),
                    templates=Jinja2Templates(directory=HERE / "templates"),
                    throttle=bootstrap.login_throttle(store), sleep=sleep)
    app.state.portal = portal

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def error_page(request: Request, error: StarletteHTTPException) -> Response:
        """Errors as pages, saying what to do; never a trace or an input echoed back."""
        return portal.render(request, "error.html", portal.session_of(request),
                             error.status_code, message=error.detail)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(build_subject_router(portal))
    app.include_router(build_admin_router(portal))
    return app
