"""The states of an IMAP connection (RFC 9051 §3), what a command's outcome asks of the
server, and how a command is refused (NO or BAD, RFC 9051 §7.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset(State) - {State.LOGOUT}
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


@dataclass
class Outcome:
    """What the server must do after a command: write ``lines``, then (after
    ``delay`` seconds, for failed logins) possibly start TLS, compression or IDLE, or
    close."""

    lines: list[bytes] = field(default_factory=list)
    close: bool = False
    delay: float = 0.0
    starttls: bool = False
    compress: bool = False
    idle: bool = False
    #: The next line is a SASL response (RFC 9051 §6.2.2), not a command.
    sasl: bool = False


@dataclass
class Peer:
    ip: str
    listener: str
    #: TLS is on, or the client is on a loopback address (DESIGN §5).
    secure: bool
    tls: bool
    can_starttls: bool


class Refusal(Exception):
    """A command ends with ``status`` [code] text (NO or BAD)."""

    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


def no(text: str, code: str | None = None) -> Refusal:
    return Refusal("NO", text, code)


def bad(text: str) -> Refusal:
    return Refusal("BAD", text)
