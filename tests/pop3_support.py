"""A real ledgermail POP3 service on 127.0.0.1 for protocol tests, and a byte-level client.

Built by ``bootstrap.pop3_service`` as ``ledgermail serve`` builds it, on its own event
loop thread and on ports the OS picks. Tests talk to it with poplib, raw bytes
(``RawPop3``), curl and fetchmail.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from adapters import bootstrap
from adapters.bootstrap import Container
from adapters.tls import server_context
from tests.service_support import RunningService, bound, on_a_thread, read_until_closed
from tests.smtp_support import PASSWORD, add_user, client_context

__all__ = ["PASSWORD", "RawPop3", "RunningPop3", "add_user", "client_context", "running_pop3"]


class RunningPop3(RunningService):
    @property
    def pop3(self) -> int:
        return self.ports["pop3"]

    @property
    def pop3s(self) -> int:
        return self.ports["pop3s"]


@contextmanager
def running_pop3(container: Container) -> Iterator[RunningPop3]:
    """Serve ``pop3`` and ``pop3s`` with ``container``'s settings on free ports."""
    sockets, ports = bound("pop3", "pop3s")
    service = bootstrap.pop3_service(container, server_context(container.settings))
    with on_a_thread(service, sockets, "pop3") as loop:
        yield RunningPop3(container, service, ports, loop)


class RawPop3:
    """Bytes in, bytes out: for transcripts and for what poplib will not send."""

    def __init__(self, port: int, *, tls: bool = False, timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock: socket.socket | ssl.SSLSocket = (
            client_context().wrap_socket(sock, server_hostname="localhost") if tls else sock)
        self.buffer = b""
        self.greeting = self.line()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def multiline(self) -> bytes:
        """A +OK line and its lines up to the terminating "." (or just an -ERR line)."""
        first = self.line()
        if not first.startswith(b"+OK"):
            return first
        out = first
        while True:
            line = self.line()
            if not line:
                raise AssertionError(f"server closed inside a multi-line answer: {out!r}")
            out += line
            if line == b".\r\n":
                return out

    def command(self, text: str | bytes, *, multiline: bool = False) -> bytes:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.multiline() if multiline else self.line()

    def login(self, user: str, password: str = PASSWORD) -> bytes:
        assert self.command(f"USER {user}").startswith(b"+OK")
        reply = self.command(f"PASS {password}")
        assert reply.startswith(b"+OK"), reply
        return reply

    def closed_within(self, seconds: float) -> bytes:
        """Read until the server closes; what it said. Fails if still open after ``seconds``."""
        received, self.buffer = read_until_closed(self.sock, self.buffer, seconds), b""
        return received

    def close(self) -> None:
        self.sock.close()
