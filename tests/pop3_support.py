"""A real ledgermail POP3 service on 127.0.0.1 for protocol tests, and a byte-level client.

Built by ``bootstrap.pop3_service`` as ``ledgermail serve`` builds it, on its own event
loop thread and on ports the OS picks. Tests talk to it with poplib, raw bytes
(``RawPop3``), curl and fetchmail.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from adapters import bootstrap
from adapters.bootstrap import Container
from adapters.pop3.server import Pop3Service
from adapters.tls import server_context
from tests.service_support import bound, on_a_thread
from tests.smtp_support import PASSWORD, add_user, client_context

__all__ = ["PASSWORD", "RawPop3", "RunningPop3", "add_user", "client_context", "running_pop3"]


@dataclass
class RunningPop3:
    container: Container
    service: Pop3Service
    ports: dict[str, int]
    loop: asyncio.AbstractEventLoop

    @property
    def pop3(self) -> int:
        return self.ports["pop3"]

    @property
    def pop3s(self) -> int:
        return self.ports["pop3s"]

    @property
    def app(self) -> Any:
        return self.container.app


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
        self.sock.settimeout(seconds)
        received, self.buffer = self.buffer, b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError):
                return received
            if not chunk:
                return received
            received += chunk
        raise AssertionError(f"server still open after {seconds}s: {received!r}")

    def close(self) -> None:
        self.sock.close()
