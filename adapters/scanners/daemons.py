"""What the scanning daemons (clamd, spamd, rspamd) share: their addresses, a socket with
a deadline, and the score a spam daemon adds to the built-in scorer's.

The intake runs the scanners in a worker thread (``adapters/smtp/handler.py`` hands the
whole DATA transaction to an executor), so these clients are small synchronous socket
clients: no event loop of their own, and one deadline per request, so a daemon that
drips its answer cannot hold a worker longer than its ``timeout``.
"""

from __future__ import annotations

import socket
import time
from typing import NamedTuple, Protocol

from adapters.scanners.addresses import parse_address
from domain.ports import ScanContext

#: The most a daemon's reply may hold (spamd's SYMBOLS list, rspamd's JSON); longer is
#: a broken or hostile daemon, treated as unavailable rather than buffered without end.
MAX_REPLY_BYTES = 1024 * 1024
#: Bytes asked of the socket per read.
READ_SIZE = 64 * 1024


class DaemonUnavailable(Exception):
    """The daemon could not be reached, timed out or answered nonsense: the message was
    not scanned. ``daemon`` names which one (``clamd``, ``spamd``, ``rspamd``), for the
    log and the verdict's summary."""

    def __init__(self, daemon: str, reason: str) -> None:
        super().__init__(f"{daemon}: {reason}")
        self.daemon = daemon


class DaemonScore(NamedTuple):
    """A spam daemon's opinion, in points the built-in scorer adds to its own."""

    name: str
    score: float
    #: The daemon's rule names (SpamAssassin's SYMBOLS, rspamd's symbols), for the log.
    symbols: tuple[str, ...] = ()
    #: The daemon was down and ``fail_open`` let the message through with no points.
    unscanned: bool = False

    @property
    def label(self) -> str:
        """How the daemon shows in ``X-Spam-Status`` tests=: ``spamd(1000.0)``."""
        return f"{self.name}(unscanned)" if self.unscanned else f"{self.name}({self.score:.1f})"


class ScoreSource(Protocol):
    """A spam daemon as the built-in scorer sees it. Raises ``DaemonUnavailable`` when the
    daemon is down and the operator did not choose ``fail_open``."""

    def score(self, raw: bytes, context: ScanContext) -> DaemonScore: ...


class Deadline:
    """One request's time budget, spread over the connect, the writes and the reads."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        return remaining


def connect(address: str, connect_timeout: float, deadline: Deadline) -> socket.socket:
    """A connected socket to ``address`` (TCP or unix), its timeout the deadline's rest."""
    target = parse_address(address)
    if isinstance(target, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(connect_timeout, deadline.left()))
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection(target, timeout=min(connect_timeout, deadline.left()))
    sock.settimeout(deadline.left())
    return sock


def send_all(sock: socket.socket, data: bytes, deadline: Deadline) -> None:
    sock.settimeout(deadline.left())
    sock.sendall(data)


def read_until(sock: socket.socket, deadline: Deadline, done: bytes | None = None) -> bytes:
    """Read until the peer closes (or the reply ends with ``done``), within the deadline
    and ``MAX_REPLY_BYTES``."""
    reply = bytearray()
    while True:
        sock.settimeout(deadline.left())
        chunk = sock.recv(READ_SIZE)
        if not chunk:
            return bytes(reply)
        reply += chunk
        if len(reply) > MAX_REPLY_BYTES:
            raise ValueError("reply too long")
        if done is not None and reply.endswith(done):
            return bytes(reply)
