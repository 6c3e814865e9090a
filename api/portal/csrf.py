"""Cross-site request forgery defences for the portal's forms (issue 7).

Two layers (OWASP CSRF Prevention Cheat Sheet): the synchronizer token — each session
has a random token that every POST form carries in a hidden field, compared in constant
time — and, when the browser names the posting site in ``Origin``, a check that it is
this one. ``SameSite=Strict`` on the session cookie is a third. A POST failing either
check changes nothing and is answered 403.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from api.portal.sessions import PortalSession

#: The hidden form field that carries the token.
FIELD = "csrf_token"


def token_matches(session: PortalSession | None, submitted: str) -> bool:
    """The form's token is this session's (``hmac.compare_digest``: no timing oracle)."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), submitted.encode())


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """A site's own origin: its host and port must be the one this request was sent to
    (``Host``). No ``Origin`` (older browsers) or ``null``: allowed, the token decides —
    the portal's own pages say ``Referrer-Policy: no-referrer``, and under that policy
    browsers send ``Origin: null`` with every form POST (Fetch §3.1, "serializing a
    request origin"), so ``null`` cannot tell a forgery from our own form. The scheme is
    not compared: behind a TLS-terminating proxy the app sees http for an https page."""
    if origin is None or origin == "null":
        return True
    if not host:
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return netloc.lower() == host.lower()
