"""IMAP response strings: whatever a name or header holds, it comes back as one value and
never as extra response lines (checklist §2.8)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.imap import responses
from adapters.imap.framing import Command, CommandFramer
from adapters.imap.tokens import NIL, Atom, String, parse_command


def parse_back(value: bytes) -> object:
    """Feed ``t X <value>`` through our own framer and tokenizer, as a client would."""
    framer = CommandFramer(max_line=100_000, max_literal=100_000)
    framer.receive_data(b"t X " + value + b"\r\n")
    [command] = [e for e in framer.events() if isinstance(e, Command)]
    [token] = parse_command(command).args
    return token


def test_a_name_with_crlf_becomes_a_literal_not_two_lines() -> None:
    hostile = b"evil\r\n* 1 EXISTS"
    written = responses.string(hostile)
    assert written == b"{16}\r\nevil\r\n* 1 EXISTS"
    assert parse_back(written) == String(hostile, literal=True)


def test_strings_are_quoted_when_they_can_be_and_escaped() -> None:
    assert responses.string(b'say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert responses.string(None) == b"NIL"
    assert responses.string("Entwürfe") == b"{9}\r\nEntw\xc3\xbcrfe"          # rev1: 8-bit is a literal
    assert responses.string("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'    # UTF8=ACCEPT
    assert responses.string(b"a\x00b") == b"~{3}\r\na\x00b"                  # binary literal
    assert responses.string(b"x" * 2000).startswith(b"{2000}\r\n")


def test_astrings_are_atoms_only_when_safe() -> None:
    assert responses.astring("Work") == b"Work"
    assert responses.astring("My Work") == b'"My Work"'
    assert responses.astring("NIL") == b'"NIL"'  # the atom NIL would read as nothing
    assert responses.astring("a]b") == b'"a]b"'
    assert responses.astring("") == b'""'


def test_mailbox_names_follow_the_session_utf8_mode() -> None:
    assert responses.mailbox("inbox", utf8=False) == b"INBOX"
    assert responses.mailbox("Entwürfe", utf8=False) == b"Entw&APw-rfe"
    assert responses.mailbox("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'
    assert responses.mailbox("Tom & Jerry", utf8=False) == b'"Tom &- Jerry"'


def test_tagged_replies_are_one_line_whatever_the_text_and_tag() -> None:
    assert responses.tagged(b"a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert responses.tagged(b"a1", "NO", "x\r\n* BYE", "ALERT") == b"a1 NO [ALERT] x  * BYE\r\n"
    assert responses.tagged(b"+", "BAD", "bad tag") == b"* BAD bad tag\r\n"
    assert responses.tagged(b"a(", "BAD", "bad tag") == b"* BAD bad tag\r\n"


@given(st.one_of(st.none(), st.binary(max_size=300)), st.booleans())
def test_any_string_reads_back_as_exactly_itself(value: bytes | None, utf8: bool) -> None:
    token = parse_back(responses.string(value, utf8=utf8))
    if value is None:
        assert token is NIL
    else:
        assert isinstance(token, String) and token.value == value


@given(st.text(max_size=60), st.booleans())
def test_any_astring_reads_back_as_exactly_itself(value: str, utf8: bool) -> None:
    token = parse_back(responses.astring(value, utf8=utf8))
    data = value.encode("utf-8")
    assert token == Atom(value) or (isinstance(token, String) and token.value == data)
