"""Cutting the client's byte stream into POP3 command lines, without I/O.

RFC 1939 §3: commands are lines ending in CRLF (a bare LF is accepted). A line longer
than ``max_line`` is refused once and skipped up to its end, so memory stays bounded
whatever the client sends (RFC 2449 §4 limits commands to 255 octets; SASL responses
may be longer, hence a larger default).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TooLong:
    """A line over the limit was dropped: answer -ERR."""


Event = bytes | TooLong


@dataclass
class LineReader:
    max_line: int = 4096
    _buffer: bytearray = field(default_factory=bytearray)
    _skipping: bool = False
    _events: list[Event] = field(default_factory=list)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end == -1:
                if len(self._buffer) > self.max_line + 1:  # +1: the CR of a line at the limit
                    self._buffer.clear()
                    if not self._skipping:
                        self._skipping = True
                        self._events.append(TooLong())
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            line = line[:-1] if line.endswith(b"\r") else line
            self._events.append(TooLong() if len(line) > self.max_line else line)

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def discard(self) -> None:
        """STLS: whatever was sent in the clear after the command is dropped."""
        self._buffer.clear()
        self._events.clear()
        self._skipping = False
