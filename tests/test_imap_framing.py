"""The IMAP command framer: the same events however the bytes are split, and every kind
of literal abuse refused in step or ended with BYE, with memory bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.imap.framing import (
    BadCommand,
    Command,
    CommandFramer,
    ContinuationNeeded,
    Event,
    Fatal,
    Literal,
    LiteralRefused,
)

LIMITS = {"max_line": 200, "max_literal": 1000, "max_command": 3000}

TABLE: list[tuple[bytes, list[Event]]] = [
    (b"a1 NOOP\r\n", [Command((b"a1 NOOP",))]),
    (b"a1 NOOP\n", [Command((b"a1 NOOP",))]),  # a bare LF ends a line too (clients send it)
    (b"a1 NOOP\r\na2 CAPABILITY\r\n", [Command((b"a1 NOOP",)), Command((b"a2 CAPABILITY",))]),
    (b"a LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
     [ContinuationNeeded(5), ContinuationNeeded(6),
      Command((b"a LOGIN ", Literal(b"alice"), b" ", Literal(b"secret"), b""))]),
    # LITERAL+ (RFC 7888): no continuation; the data follows at once.
    (b"a APPEND INBOX {3+}\r\n\r\n\x00\r\n",
     [Command((b"a APPEND INBOX ", Literal(b"\r\n\x00"), b""))]),
    # LITERAL- allows at most 4096 octets (RFC 7888 §3) and binary literals (RFC 3516).
    (b"a APPEND INBOX ~{2-}\r\nhi\r\n", [Command((b"a APPEND INBOX ", Literal(b"hi", binary=True), b""))]),
    (b"a SELECT {0}\r\n\r\n", [ContinuationNeeded(0), Command((b"a SELECT ", Literal(b""), b""))]),
    # Literal abuse before login (checklist §6.16): refused before any data, no "+".
    (b"a1 LOGIN {4000000000}\r\na2 NOOP\r\n", [LiteralRefused(b"a1", 4000000000), Command((b"a2 NOOP",))]),
    (b"a1 LOGIN {99999999999999999999}\r\n", [LiteralRefused(b"a1", 99999999999999999999)]),
    (b"a1 LOGIN {-1}\r\na2 NOOP\r\n", [BadCommand(b"a1", "invalid literal"), Command((b"a2 NOOP",))]),
    (b"a1 LOGIN {}\r\n", [BadCommand(b"a1", "invalid literal")]),
    (b"a1 LOGIN {1a}\r\n", [BadCommand(b"a1", "invalid literal")]),
    # A non-synchronizing literal over the limit: its bytes are already on their way and
    # could hold commands (checklist §6.17), so the session ends.
    (b"a APPEND INBOX {50000000+}\r\nb DELETE INBOX\r\n",
     [Fatal("non-synchronizing literal of 50000000 octets over the limit")]),
    (b"a APPEND INBOX {5000-}\r\nb DELETE INBOX\r\n",
     [Fatal("non-synchronizing literal of 5000 octets over the limit")]),
    # Lines over the limit: refused, skipped to their end, the next command is read.
    (b"a1 " + b"X" * 300 + b"\r\na2 NOOP\r\n", [BadCommand(b"a1", "line too long"), Command((b"a2 NOOP",))]),
    # Several literals adding up past the command limit.
    (b"a X {900}\r\n" + b"x" * 900 + b" {900}\r\n" + b"y" * 900 + b" {900}\r\n" + b"z" * 900
     + b" {900}\r\n", [ContinuationNeeded(900), ContinuationNeeded(900), ContinuationNeeded(900),
                        LiteralRefused(b"a", 900)]),
]


def run(data: bytes, chunk: int) -> list[Event]:
    framer = CommandFramer(**LIMITS)
    events: list[Event] = []
    for start in range(0, len(data), chunk):
        framer.receive_data(data[start:start + chunk])
        events += framer.events()
    return events


@pytest.mark.parametrize(("data", "expected"), TABLE)
def test_the_framer_gives_the_same_events_at_every_chunk_size(data: bytes, expected: list[Event]) -> None:
    for chunk in [*range(1, 65), 512]:
        assert run(data, chunk) == expected, f"chunk size {chunk}"


def test_a_line_without_end_is_never_buffered_past_the_limit() -> None:
    framer = CommandFramer(**LIMITS)
    for _ in range(10_000):
        framer.receive_data(b"A" * 100)
        assert len(framer._buffer) <= LIMITS["max_line"] + 100  # noqa: SLF001
    assert framer.events() == [BadCommand(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                          "line too long")]
    framer.receive_data(b"tail\r\nb NOOP\r\n")
    assert framer.events() == [Command((b"b NOOP",))]


def test_after_a_fatal_literal_nothing_more_is_read() -> None:
    framer = CommandFramer(**LIMITS)
    framer.receive_data(b"a APPEND INBOX {5000+}\r\n")
    assert isinstance(framer.next_event(), Fatal)
    framer.receive_data(b"b DELETE INBOX\r\n")
    assert framer.next_event() is None


def test_without_literal_plus_a_plus_literal_waits_for_the_continuation() -> None:
    framer = CommandFramer(**LIMITS, literal_plus=False)
    framer.receive_data(b"a LOGIN {5+}\r\n")
    assert framer.events() == [ContinuationNeeded(5)]


def printable(raw: bytes) -> bytes:
    return bytes(x for x in raw if 0x21 <= x <= 0x7E and x not in b"{}")


atoms = st.binary(min_size=1, max_size=20).map(printable).filter(bool)


@given(st.lists(st.tuples(atoms, st.binary(max_size=50)), min_size=1, max_size=5),
       st.integers(min_value=1, max_value=60))
def test_any_literal_bytes_come_back_exactly(pieces: list[tuple[bytes, bytes]], chunk: int) -> None:
    wire = b"t1 X"
    parts: list[bytes | Literal] = []
    text = b"t1 X"
    for atom, payload in pieces:
        text += b" " + atom + b" "
        wire += b" " + atom + b" " + b"{%d+}\r\n" % len(payload) + payload
        parts += [text, Literal(payload)]
        text = b""
    wire += b"\r\n"
    parts.append(text)
    framer = CommandFramer(max_line=1000, max_literal=1000, max_command=100_000)
    events: list[Event] = []
    for start in range(0, len(wire), chunk):
        framer.receive_data(wire[start:start + chunk])
        events += framer.events()
    assert events == [Command(tuple(parts))]
