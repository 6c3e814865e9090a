"""A real ledgermail IMAP service on 127.0.0.1 for protocol tests, and a byte-level client.

The service runs in this process on its own event loop thread, built by
``bootstrap.imap_service`` as ``ledgermail serve`` builds it, on ports the OS picks.
Tests talk to it over real sockets: imaplib, raw bytes (``RawImap``), mbsync, curl.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from adapters import bootstrap
from adapters.bootstrap import Container
from adapters.tls import server_context
from tests.service_support import RunningService, bound, on_a_thread, read_until_closed
from tests.smtp_support import PASSWORD, add_user, client_context

__all__ = ["PASSWORD", "RawImap", "RunningImap", "add_user", "client_context", "running_imap"]


class RunningImap(RunningService):
    @property
    def imap(self) -> int:
        return self.ports["imap"]

    @property
    def imaps(self) -> int:
        return self.ports["imaps"]


@contextmanager
def running_imap(container: Container) -> Iterator[RunningImap]:
    """Serve ``imap`` and ``imaps`` with ``container``'s settings on free ports."""
    sockets, ports = bound("imap", "imaps")
    service = bootstrap.imap_service(container, server_context(container.settings))
    with on_a_thread(service, sockets, "imap") as loop:
        yield RunningImap(container, service, ports, loop)


_LITERAL = re.compile(rb"~?\{(\d+)\}\r\n$")


class RawImap:
    """Bytes in, bytes out: for transcripts and for what imaplib will not send."""

    def __init__(self, port: int, *, tls: bool = False, timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock: socket.socket | ssl.SSLSocket = (
            client_context().wrap_socket(sock, server_hostname="localhost") if tls else sock)
        self.buffer = b""
        self.greeting = self.line()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> bytes:
        """One response line with any literals it carries; b"" when the server closed."""
        out = b""
        while True:
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    rest, self.buffer = self.buffer, b""
                    return out + rest
                self.buffer += chunk
            piece, _, self.buffer = self.buffer.partition(b"\n")
            out += piece + b"\n"
            match = _LITERAL.search(out)
            if match is None:
                return out
            size = int(match.group(1))
            while len(self.buffer) < size:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk
            out += self.buffer[:size]
            self.buffer = self.buffer[size:]

    def until_tagged(self, tag: str) -> bytes:
        """Every line up to and including the tagged response for ``tag``."""
        out = b""
        prefix = tag.encode() + b" "
        while True:
            line = self.line()
            if not line:
                raise AssertionError(f"server closed before answering {tag}: {out!r}")
            out += line
            if line.startswith(prefix):
                return out

    def command(self, tag: str, text: str | bytes) -> bytes:
        body = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + body + b"\r\n")
        return self.until_tagged(tag)

    def login(self, user: str, password: str = PASSWORD) -> bytes:
        reply = self.command("L1", f'LOGIN "{user}" "{password}"')
        assert b"L1 OK" in reply, reply
        return reply

    def closed_within(self, seconds: float) -> bytes:
        """Read until the server closes; what it said. Fails if still open after ``seconds``."""
        received, self.buffer = read_until_closed(self.sock, self.buffer, seconds), b""
        return received

    def close(self) -> None:
        self.sock.close()
