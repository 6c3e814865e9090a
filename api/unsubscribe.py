"""One-click unsubscribe (RFC 8058): the endpoint a List-Unsubscribe URI points to.

``GET /unsubscribe/{token}`` shows a page with a button and changes nothing: link
scanners and previews fetch URLs in mail, and must not unsubscribe anybody (RFC 8058
§1). ``POST /unsubscribe/{token}`` with the body ``List-Unsubscribe=One-Click`` withdraws
the consent the token names, at once, and answers 200 (RFC 8058 §3.1: no redirect).
The token (adapters/crypto/unsubscribe_tokens.py) is the only context the POST carries
(RFC 8058 §3.2: no cookies, no authorization).
"""

from __future__ import annotations

import html
import secrets
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from adapters import bootstrap
from domain.application.context import acting
from domain.model.errors import UnknownConsentRecord

#: RFC 8058 §3.2: the body is one short key/value pair; nothing larger is read.
MAX_BODY_BYTES = 4096
#: RFC 8058 §3.1: the key/value pair the List-Unsubscribe-Post header names.
ONE_CLICK_KEY, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
#: Who the audit trail says acted: the recipient, through the one-click link.
ONE_CLICK_ACTOR = "recipient:one-click"

#: The link is a capability: keep it out of caches, referrers, indexes and frames.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
}


def _page(status: int, title: str, body: str) -> HTMLResponse:
    text = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{html.escape(title)}</title></head>\n<body><h1>{html.escape(title)}</h1>\n"
        f"{body}\n</body></html>\n"
    )
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _not_found() -> HTMLResponse:
    return _page(404, "Unknown link", "<p>This unsubscribe link is not valid.</p>")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is (or announces to be) over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def is_one_click(content_type: str, body: bytes) -> bool:
    """Whether the body holds ``List-Unsubscribe=One-Click``: RFC 8058 §3.2 says it
    SHOULD come as multipart/form-data and MAY come as x-www-form-urlencoded (assumed
    when no type is given). Anything unparsable is simply not a one-click request."""
    try:
        return _is_one_click(content_type, body)
    except Exception:  # noqa: BLE001 - hostile input of any shape is a 400, never a 500
        return False


def _is_one_click(content_type: str, body: bytes) -> bool:
    header = EmailMessage()
    header["Content-Type"] = content_type or "application/x-www-form-urlencoded"
    kind = header.get_content_type()
    if kind == "multipart/form-data":
        if not header.get_param("boundary"):
            return False
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        if not isinstance(message, EmailMessage) or not message.is_multipart():
            return False
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == ONE_CLICK_KEY:
                value = part.get_payload(decode=True)
                if isinstance(value, bytes) and value.strip() == ONE_CLICK_VALUE.encode():
                    return True
        return False
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("ascii").strip(), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return False
        return (ONE_CLICK_KEY, ONE_CLICK_VALUE) in pairs
    return False


def add_unsubscribe_routes(app: FastAPI, store: bootstrap.Container) -> None:
    def read_token(token: str) -> tuple[UUID, str] | None:
        return bootstrap.unsubscribe_tokens(store).read(token)

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe_page(token: str) -> HTMLResponse:
        """A confirmation page; only its button (a POST) unsubscribes."""
        found = read_token(token)
        if found is None:
            return _not_found()
        _, purpose = found
        form = (
            f"<p>Stop receiving mail for <strong>{html.escape(purpose)}</strong>?</p>\n"
            # No action attribute: the form posts to this very URL.
            '<form method="post">'
            f'<input type="hidden" name="{ONE_CLICK_KEY}" value="{ONE_CLICK_VALUE}">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return _page(200, "Unsubscribe", form)

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse)
    async def unsubscribe(token: str, request: Request) -> Response:
        """RFC 8058 §3.1: withdraw at once and answer directly, never with a redirect."""
        found = read_token(token)
        if found is None:
            return _not_found()
        body = await _read_body(request, MAX_BODY_BYTES)
        if body is None:
            return _page(413, "Request too large", "<p>The request body is too large.</p>")
        if not is_one_click(request.headers.get("content-type", ""), body):
            return _page(400, "Bad request",
                         f"<p>Expected the body {ONE_CLICK_KEY}={ONE_CLICK_VALUE}.</p>")
        record_id, purpose = found

        def withdraw() -> bool:
            with acting(ONE_CLICK_ACTOR, protocol="http", session=secrets.token_hex(6)):
                return store.app.withdraw_consent_by_record(record_id, purpose, source="one-click")

        try:
            await run_in_threadpool(withdraw)
        except UnknownConsentRecord:
            return _not_found()
        return _page(200, "Unsubscribed",
                     f"<p>You will get no more mail for <strong>{html.escape(purpose)}</strong>.</p>")
