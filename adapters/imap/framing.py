"""Cutting the client's byte stream into IMAP commands, literals included, without I/O.

DESIGN §5: ``receive_data(bytes)`` in, events out, resumable at any byte. A command is
a line, or lines joined by literals (RFC 9051 §4.3: ``{n}`` CRLF then n octets; RFC 7888
LITERAL+ ``{n+}`` and LITERAL- ``{n-}``; RFC 3516 ``~{n}`` for binary). A synchronizing
literal is only read after the server said ``+``, so the framer asks for that with
``ContinuationNeeded``; a literal the server will not take is refused before a byte of
it is sent (``LiteralRefused``), which keeps the session in step. A non-synchronizing
literal over the limit cannot be refused in step (its bytes are already coming), so it
ends the session (``Fatal``), as mox does, instead of reading its bytes as commands
(Stalwart #2768, net-imap #701). Memory is bounded by the line and literal limits
(greenmail #1038, Stalwart CVE-2025-61600).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: RFC 7888 §3: LITERAL- allows non-synchronizing literals of at most 4096 octets.
LITERAL_MINUS_MAX = 4096

_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})([+-]?)\}\Z")
_BRACE_AT_END = re.compile(rb"~?\{[^{}]*\}\Z")
_TAG = re.compile(rb"^[\x21-\x7e]+")


@dataclass(frozen=True)
class Literal:
    data: bytes
    binary: bool = False


@dataclass(frozen=True)
class Command:
    """One whole command: its text pieces (each line without its CRLF and without the
    literal marker) and the literals between them, in order."""

    parts: tuple[bytes | Literal, ...]

    @property
    def tag(self) -> bytes:
        first = self.parts[0]
        match = _TAG.match(first) if isinstance(first, bytes) else None
        return match.group(0) if match else b"*"


@dataclass(frozen=True)
class ContinuationNeeded:
    """Send ``+ ...`` now: the client waits for it before sending ``size`` octets."""

    size: int


@dataclass(frozen=True)
class LiteralRefused:
    """A synchronizing literal over the limit: answer ``tag`` with NO/BAD; the client
    will not send the data, and the next line is a new command."""

    tag: bytes
    size: int


@dataclass(frozen=True)
class BadCommand:
    """Refuse with BAD (``reason`` says why); the framer has skipped the command."""

    tag: bytes
    reason: str


@dataclass(frozen=True)
class Fatal:
    """The stream cannot be followed any more: send BYE and close."""

    reason: str


Event = Command | ContinuationNeeded | LiteralRefused | BadCommand | Fatal


@dataclass(slots=True)  # one per connection (issue 9: 10,000 idle connections)
class CommandFramer:
    max_line: int = 8192
    max_literal: int = 64 * 1024 * 1024
    max_command: int = 64 * 1024 * 1024 + 65536
    literal_plus: bool = True
    _buffer: bytearray = field(default_factory=bytearray)
    _parts: list[bytes | Literal] = field(default_factory=list)
    _size: int = 0
    _literal: int | None = None
    _literal_binary: bool = False
    _skipping_line: bool = False
    _skip_tail: bytes = b""
    _events: list[Event] = field(default_factory=list)
    _dead: bool = False

    def receive_data(self, data: bytes) -> None:
        if self._dead:
            return
        self._buffer += data
        self._advance()

    def next_event(self) -> Event | None:
        """The next event, or None when more data is needed."""
        return self._events.pop(0) if self._events else None

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # -- the state machine -------------------------------------------------------------

    def _advance(self) -> None:
        while not self._dead:
            if self._literal is not None:
                if not self._take_literal():
                    return
            elif not self._take_line():
                return

    def _take_literal(self) -> bool:
        assert self._literal is not None
        if len(self._buffer) < self._literal:
            return False
        data = bytes(self._buffer[: self._literal])
        del self._buffer[: self._literal]
        self._parts.append(Literal(data, self._literal_binary))
        self._literal = None
        return True

    def _take_line(self) -> bool:
        end = self._buffer.find(b"\n")
        if end == -1:
            if len(self._buffer) > self.max_line + 1:  # +1: the CR of a line at the limit
                # RFC 9051 has no line limit, but a server needs one: refuse the command,
                # then skip to its end before reading the next.
                tag = self._tag_of(self._first_line() if self._parts else bytes(self._buffer[:64]))
                self._skip_tail = bytes(self._buffer[-40:])
                self._buffer.clear()
                if not self._skipping_line:
                    self._skipping_line = True
                    self._reset()
                    self._events.append(BadCommand(tag, "line too long"))
            return False
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self._skipping_line:
            self._skipping_line = False
            tail, self._skip_tail = self._skip_tail + line, b""
            self._die_if_announcing_data(tail)
            return True
        line = line[:-1] if line.endswith(b"\r") else line
        if len(line) > self.max_line:
            self._refuse(line, "line too long")
            self._die_if_announcing_data(line)
            return True
        self._size += len(line)
        literal = _LITERAL_AT_END.search(line)
        if literal is None:
            if _BRACE_AT_END.search(line):
                self._refuse(line, "invalid literal")
                return True
            self._parts.append(line)
            self._emit_command()
            return True
        size, mode = int(literal.group(2)), literal.group(3)
        self._parts.append(line[: literal.start()])
        synchronizing = mode == b""
        too_big = size > self.max_literal or self._size + size > self.max_command
        if mode == b"-" and size > LITERAL_MINUS_MAX:
            too_big = True
        if mode == b"+" and not self.literal_plus:
            mode, synchronizing = b"", True  # not offered: treat as a normal literal
        if too_big:
            if synchronizing:
                tag = self._tag_of(self._first_line())
                self._reset()
                self._events.append(LiteralRefused(tag, size))
            else:
                self._dead = True
                self._buffer.clear()
                self._events.append(Fatal(f"non-synchronizing literal of {size} octets over the limit"))
            return True
        self._size += size
        self._literal = size
        self._literal_binary = literal.group(1) == b"~"
        if synchronizing:
            self._events.append(ContinuationNeeded(size))
        return True

    def _die_if_announcing_data(self, refused_line: bytes) -> None:
        """A refused line that ends in a non-synchronizing literal has its data on the
        way: it cannot be told from commands, so the stream is given up (as for an
        oversized LITERAL+) rather than run as commands."""
        literal = _LITERAL_AT_END.search(refused_line.rstrip(b"\r"))
        if literal is not None and literal.group(3) in (b"+", b"-") and self.literal_plus:
            self._dead = True
            self._buffer.clear()
            self._events.append(Fatal("non-synchronizing literal after a refused line"))

    def _emit_command(self) -> None:
        self._events.append(Command(tuple(self._parts)))
        self._reset()

    def _refuse(self, line: bytes, reason: str) -> None:
        tag = self._tag_of(self._first_line() if self._parts else line)
        self._reset()
        self._events.append(BadCommand(tag, reason))

    def _first_line(self) -> bytes:
        first = self._parts[0] if self._parts else b""
        return first if isinstance(first, bytes) else b""

    def _reset(self) -> None:
        self._parts = []
        self._size = 0

    @staticmethod
    def _tag_of(line: bytes) -> bytes:
        match = _TAG.match(line)
        return match.group(0).split(b" ")[0] if match else b"*"
