"""The HTTPS client MTA-STS policies are fetched with (RFC 8461 §3.3): the certificate
is checked against the system trust store for the policy host, redirects are never
followed, the read stops past the size limit, and everything times out."""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from adapters.smtp.mta_sts import MAX_POLICY_BYTES

TIMEOUT_SECONDS = 60.0


def https_get(url: str, *, context: ssl.SSLContext | None = None,
              timeout: float = TIMEOUT_SECONDS) -> tuple[int, str, bytes]:
    """(status, Content-Type, at most MAX_POLICY_BYTES + 1 octets of body)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("only https:// URLs")
    connection = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                             context=context or ssl.create_default_context())
    try:
        connection.request("GET", parts.path or "/", headers={"User-Agent": "ledgermail"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read(MAX_POLICY_BYTES + 1)
    finally:
        connection.close()
