"""The HTTPS client for MTA-STS policies (RFC 8461 §3.3), against a real HTTPS server on
127.0.0.1: the certificate is checked, a redirect is reported and never followed, the
body is read up to the policy size limit."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adapters.smtp.https_get import https_get
from adapters.smtp.mta_sts import MAX_POLICY_BYTES, FetchError, fetch
from adapters.tls import write_self_signed

POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        if self.path == "/.well-known/mta-sts.txt":
            self._answer(200, "text/plain", POLICY)
        elif self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/.well-known/mta-sts.txt")
            self.end_headers()
        else:
            self._answer(200, "text/plain", b"x" * (MAX_POLICY_BYTES * 4))

    def _answer(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def https_server(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """A server whose self-signed certificate names localhost, and a client context
    that trusts exactly that certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, "localhost")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        yield server.server_address[1], trusting
    finally:
        server.shutdown()
        server.server_close()


def test_a_policy_is_fetched_over_verified_https(tmp_path: Path) -> None:
    with https_server(tmp_path) as (port, trusting):
        status, kind, body = https_get(f"https://localhost:{port}/.well-known/mta-sts.txt", context=trusting)
    assert (status, kind, body) == (200, "text/plain", POLICY)


def test_a_certificate_the_trust_store_does_not_know_is_refused(tmp_path: Path) -> None:
    with https_server(tmp_path) as (port, _trusting), pytest.raises(ssl.SSLCertVerificationError):
        https_get(f"https://localhost:{port}/.well-known/mta-sts.txt")  # the system's trust store


def test_a_redirect_is_returned_not_followed_and_fetch_refuses_it(tmp_path: Path) -> None:
    with https_server(tmp_path) as (port, trusting):
        status, _kind, body = https_get(f"https://localhost:{port}/moved", context=trusting)
        assert status == 301 and body == b""
        with pytest.raises(FetchError, match="HTTP 301"):
            fetch("example.test", lambda url: https_get(f"https://localhost:{port}/moved", context=trusting))


def test_reading_stops_just_past_the_policy_size_limit(tmp_path: Path) -> None:
    with https_server(tmp_path) as (port, trusting):
        _status, _kind, body = https_get(f"https://localhost:{port}/huge", context=trusting)
    assert len(body) == MAX_POLICY_BYTES + 1


def test_only_https_urls_are_fetched() -> None:
    with pytest.raises(ValueError, match="https"):
        https_get("http://localhost/.well-known/mta-sts.txt")
