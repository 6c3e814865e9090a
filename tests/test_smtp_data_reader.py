"""The DATA reader as a sans-I/O parser: the same answers however the bytes are split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.smtp.data_reader import DataReader

# (wire bytes after the 354, size limit, expected (problem, message), expected leftover)
TABLE = [
    (b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", 1000, (None, b"Subject: x\r\n\r\nhello\r\n"), b"QUIT\r\n"),
    (b".\r\n", 1000, (None, b""), b""),
    (b".\r\nNOOP\r\n", 1000, (None, b""), b"NOOP\r\n"),
    (b"..leading dot\r\n.x\r\n...\r\n.\r\n", 1000, (None, b".leading dot\r\nx\r\n..\r\n"), b""),
    (b"8-bit \xc3\xa9\xff\r\n.\r\n", 1000, (None, b"8-bit \xc3\xa9\xff\r\n"), b""),
    (b"a\nb\rc\r\n.\r\n", 1000, (None, b"a\nb\rc\r\n"), b""),  # bare LF/CR inside a line: kept
    (b"x" * 998 + b"\r\n.\r\n", 2000, (None, b"x" * 998 + b"\r\n"), b""),
    (b"x" * 999 + b"\r\n.\r\n", 2000, ("line too long", b""), b""),
    (b"x" * 100 + b"\r\n.\r\nQUIT\r\n", 50, ("too big", b""), b"QUIT\r\n"),
    # smtpsmug vectors (hannob/smtpsmug): a dot framed by a bare CR or LF never ends
    # the data, and the message carrying it is refused.
    (b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\r.\rMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\r.\nMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\n.\rMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b".\nMAIL FROM:<x@y>\r\n.\r\n", 1000, ("bare line end", b""), b""),
    (b"a\r\n\x00.\r\nMAIL FROM:<x@y>\r\n.\r\n", 1000, ("nul", b""), b""),
    # A dot after an over-long line's cut is still inside that line.
    (b"A" * 2000 + b".\r\nMAIL FROM:<x@y>\r\n.\r\n", 5000, ("line too long", b""), b""),
]


def read(wire: bytes, limit: int, chunk: int) -> tuple[tuple[str | None, bytes], bytes]:
    reader = DataReader(limit)
    for start in range(0, len(wire), chunk):
        if reader.feed(wire[start:start + chunk]):
            rest = wire[start + chunk:]
            return reader.result(), reader.leftover + rest
    raise AssertionError("no end of data found")


@pytest.mark.parametrize(("wire", "limit", "expected", "leftover"), TABLE)
def test_the_reader_gives_the_same_answer_at_every_chunk_size(
    wire: bytes, limit: int, expected: tuple[str | None, bytes], leftover: bytes
) -> None:
    for chunk in [*range(1, 65), 127, 512, len(wire)]:
        assert read(wire, limit, chunk) == (expected, leftover), f"chunk size {chunk}"


def test_without_the_end_marker_the_reader_keeps_waiting_and_memory_stays_bounded() -> None:
    reader = DataReader(1000)
    for _ in range(1000):
        assert reader.feed(b"x" * 1000 + b"\r\n") is False
    assert len(reader._buffer) <= 4  # noqa: SLF001 - only a possible start of the end marker
    assert reader.feed(b".\r\n") is True
    assert reader.result() == ("too big", b"")


lines = st.lists(st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
                                             .replace(b"\x00", b"")), max_size=30)


@given(lines, st.integers(min_value=1, max_value=97))
def test_any_dot_stuffed_message_comes_back_exactly(message_lines: list[bytes], chunk: int) -> None:
    message = b"".join(line + b"\r\n" for line in message_lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in message_lines)
    assert read(stuffed + b".\r\nQUIT\r\n", 10_000, chunk) == ((None, message), b"QUIT\r\n")
