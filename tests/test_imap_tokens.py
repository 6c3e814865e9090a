"""IMAP command tokens and sequence sets: the grammar's edges, and hostile input refused fast."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.imap.framing import Command, CommandFramer, Literal
from adapters.imap.tokens import (
    NIL,
    Atom,
    ParseError,
    SequenceSet,
    String,
    parse_command,
    parse_sequence_set,
)


def parse(wire: bytes) -> object:
    framer = CommandFramer(max_line=1_000_000)
    framer.receive_data(wire)
    events = [e for e in framer.events() if isinstance(e, Command)]
    assert len(events) == 1, framer
    return parse_command(events[0])


def test_a_login_with_quoted_strings_and_escapes() -> None:
    parsed = parse(b'a1 login "alice@example.test" "pa\\"ss\\\\word"\r\n')
    assert (parsed.tag, parsed.name) == ("a1", "LOGIN")
    assert parsed.args == (String(b"alice@example.test"), String(b'pa"ss\\word'))


def test_literals_lists_nil_flags_and_fetch_sections() -> None:
    parsed = parse(b"a2 UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.2048> UID)\r\n")
    assert parsed.name == "UID"
    assert parsed.args == (Atom("FETCH"), Atom("1:*,7"), (
        Atom("FLAGS"), Atom("BODY.PEEK[HEADER.FIELDS (From To)]<0.2048>"), Atom("UID")))
    parsed = parse_command(Command((b"a3 APPEND INBOX (\\Seen $Junk) ", Literal(b"x\r\n"), b"")))
    assert parsed.args == (Atom("INBOX"), (Atom("\\Seen"), Atom("$Junk")), String(b"x\r\n", literal=True))
    assert parse(b"a4 X NIL nil \"NIL\"\r\n").args == (NIL, NIL, String(b"NIL"))
    assert parse(b'a5 LIST "" %/*\r\n').args == (String(b""), Atom("%/*"))


@pytest.mark.parametrize(("wire", "why"), [
    (b'a LOGIN "a\x00b" "x"\r\n', "CR, LF or NUL"),           # CVE-2019-11500 class
    (b'a LOGIN "a\rb" "x"\r\n', "CR, LF or NUL"),
    (b'a LOGIN "abc\r\n', "unterminated"),
    (b'a LOGIN "a\\b" "x"\r\n', "invalid escape"),
    (b"a FETCH 1 (FLAGS\r\n", "unbalanced '('"),
    (b"a FETCH 1 FLAGS)\r\n", "unbalanced ')'"),
    (b"a FETCH 1 BODY[HEADER\r\n", "unbalanced '['"),
    (b"a FETCH 1 BODY]\r\n", "unbalanced ']'"),
    (b"a NOOP \x01\r\n", "control character"),
    (b"+ NOOP\r\n", "invalid tag"),
    (b"onlytag\r\n", "tag SP command"),
])
def test_malformed_commands_are_refused(wire: bytes, why: str) -> None:
    with pytest.raises(ParseError, match=re.escape(why)):
        parse(wire)


def test_nul_in_a_text_literal_is_refused_but_allowed_in_a_binary_one() -> None:
    with pytest.raises(ParseError, match="NUL"):
        parse_command(Command((b"a APPEND INBOX ", Literal(b"a\x00b"), b"")))
    parsed = parse_command(Command((b"a APPEND INBOX ", Literal(b"a\x00b", binary=True), b"")))
    assert parsed.args[1] == String(b"a\x00b", literal=True, binary=True)


def test_a_hundred_thousand_open_parentheses_are_refused_in_well_under_a_second() -> None:
    wire = b"a SEARCH " + b"(" * 100_000 + b"\r\n"
    started = time.monotonic()
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(wire)
    assert time.monotonic() - started < 0.5
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(b"a FETCH 1 BODY" + b"[" * 100_000 + b"\r\n")


@pytest.mark.parametrize(("text", "ranges"), [
    ("1", ((1, 1),)),
    ("1:4,7,9:*", ((1, 4), (7, 7), (9, None))),
    ("*", ((None, None),)),
    ("5:2", ((5, 2),)),
    ("4294967295", ((4294967295, 4294967295),)),
])
def test_sequence_sets_parse(text: str, ranges: tuple) -> None:
    assert parse_sequence_set(text) == SequenceSet(ranges)
    assert str(parse_sequence_set(text)) == text


@pytest.mark.parametrize("text", ["", "0", "1,", ":5", "1:", "01", "-1", "1.5", "4294967296", "1::2", "a"])
def test_invalid_sequence_sets_are_refused(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sequence_set(text)


def test_sequence_sets_resolve_against_the_mailbox() -> None:
    assert parse_sequence_set("1:3,2,*").resolve(10) == [1, 2, 3, 10]
    assert parse_sequence_set("5:2").resolve(10) == [2, 3, 4, 5]
    assert parse_sequence_set("8:*").resolve(5) == [5]  # RFC 9051 §9: 8:* on 5 messages is 5:8
    assert parse_sequence_set("20:30").resolve(5) == []
    assert parse_sequence_set("$") == SequenceSet(saved=True)


numbers = st.one_of(st.none(), st.integers(min_value=1, max_value=2**32 - 1))


@given(st.lists(st.tuples(numbers, numbers), min_size=1, max_size=8))
def test_any_sequence_set_round_trips(ranges: list[tuple[int | None, int | None]]) -> None:
    sequence_set = SequenceSet(tuple(ranges))
    assert parse_sequence_set(str(sequence_set)) == sequence_set


@given(st.binary(max_size=200))
def test_quoted_strings_round_trip_any_text_without_cr_lf_nul(value: bytes) -> None:
    value = value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
    quoted = b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    assert parse(b"t X " + quoted + b"\r\n").args == (String(value),)
