"""A real ledgermail SMTP service on 127.0.0.1 for protocol tests, and small client helpers.

The service runs in this process on its own event loop thread, with the same classes
``ledgermail serve`` uses (bootstrap.smtp_service), on ports the OS picks. Tests talk to
it over real sockets with smtplib, raw sockets or swaks; they read results back
through the use cases and views.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapters import bootstrap
from adapters.bootstrap import Container
from adapters.tls import server_context
from domain.application.context import acting
from tests.service_support import RunningService, bound, on_a_thread, read_until_closed

PASSWORD = "correct horse battery"


class RunningSmtp(RunningService):
    @property
    def mx(self) -> int:
        return self.ports["smtp"]

    @property
    def submission(self) -> int:
        return self.ports["submission"]

    @property
    def submissions(self) -> int:
        return self.ports["submissions"]


@contextmanager
def running_smtp(container: Container) -> Iterator[RunningSmtp]:
    """Serve the three SMTP listeners of ``container``'s settings on free ports."""
    sockets, ports = bound("smtp", "submission", "submissions")
    service = bootstrap.smtp_service(container, server_context(container.settings))
    with on_a_thread(service, sockets, "smtp") as loop:
        yield RunningSmtp(container, service, ports, loop)


def add_user(container: Container, address: str, password: str = PASSWORD) -> Any:
    with acting("admin:test", protocol="test", purpose="testing"):
        return container.app.create_account(address, password)


def inbox_bodies(container: Container, address: str) -> list[bytes]:
    """Every message body in the INBOX of ``address``'s owner, oldest first."""
    app = container.app
    with acting("admin:test", protocol="test", purpose="testing"):
        account = app.account_for(address)
        mailbox = app.repository.get(account.mailbox_id("INBOX"))
        return [app.ports.blobs.get(copy.blob_id, copy.data_key) for copy in app.live_copies(mailbox)]


def client_context() -> ssl.SSLContext:
    """Clients in tests accept the self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RawClient:
    """A byte-level SMTP client, for what smtplib refuses to send."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One whole reply (all its lines); b"" when the server closed."""
        lines = []
        while True:
            line = self._line()
            if not line:
                return b"".join(lines)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def _line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def command(self, line: bytes | str) -> bytes:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def closed_within(self, seconds: float) -> bytes:
        """Read until the server closes; what it said. Fails if still open after ``seconds``."""
        received, self.buffer = read_until_closed(self.sock, self.buffer, seconds), b""
        return received

    def close(self) -> None:
        self.sock.close()
