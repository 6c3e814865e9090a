"""ENVELOPE: RFC 9051 §7.5.2 structures from real-world headers, and hostile headers in
linear time with nothing escaping the response."""

from __future__ import annotations

import time

from adapters.imap.addresses import GROUP_END, Address, parse_address_list
from adapters.imap.envelope import envelope
from adapters.imap.framing import Command, CommandFramer
from adapters.imap.tokens import NIL, String, parse_command


def test_display_names_angle_addresses_and_bare_addresses() -> None:
    assert parse_address_list(b'"Smith, Alice" <alice@example.test>, bob@example.test') == [
        Address(b"Smith, Alice", None, b"alice", b"example.test"),
        Address(None, None, b"bob", b"example.test"),
    ]
    assert parse_address_list(b"Alice (the boss) Smith <alice@example.test> (comment)") == [
        Address(b"Alice Smith", None, b"alice", b"example.test")]
    assert parse_address_list(b'"a \\"quoted\\" name" <q@example.test>') == [
        Address(b'a "quoted" name', None, b"q", b"example.test")]
    assert parse_address_list(b"=?utf-8?q?J=C3=B6rg?= <j@example.test>") == [
        Address(b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"example.test")]  # passed through undecoded
    assert parse_address_list(b"<@relay.test:route@example.test>") == [
        Address(None, b"@relay.test", b"route", b"example.test")]


def test_groups_open_and_close_as_the_rfc_writes_them() -> None:
    assert parse_address_list(b"Team: a@example.test, b@example.test;, c@example.test") == [
        Address(None, None, b"Team", None),
        Address(None, None, b"a", b"example.test"),
        Address(None, None, b"b", b"example.test"),
        GROUP_END,
        Address(None, None, b"c", b"example.test"),
    ]
    assert parse_address_list(b"undisclosed-recipients:;") == [
        Address(None, None, b"undisclosed-recipients", None), GROUP_END]


HEADER = (b"Date: Fri, 27 Nov 2026 05:54:04 +0000\r\n"
          b"Subject: Hello\r\n world\r\n"
          b"From: Alice <alice@example.test>\r\n"
          b"To: bob@example.test, Carol <carol@example.test>\r\n"
          b"Message-ID: <m1@example.test>\r\n\r\n")


def read_back(data: bytes) -> tuple:
    framer = CommandFramer(max_line=1_000_000, max_literal=1_000_000)
    framer.receive_data(b"t X " + data + b"\r\n")
    [command] = [e for e in framer.events() if isinstance(e, Command)]
    return parse_command(command).args


def test_the_envelope_of_a_typical_message() -> None:
    written = envelope(HEADER)
    assert written == (
        b'("Fri, 27 Nov 2026 05:54:04 +0000" "Hello world" (("Alice" NIL "alice" "example.test"))'
        b' (("Alice" NIL "alice" "example.test")) (("Alice" NIL "alice" "example.test"))'
        b' ((NIL NIL "bob" "example.test")("Carol" NIL "carol" "example.test")) NIL NIL NIL'
        b' "<m1@example.test>")')
    [parsed] = read_back(written)
    assert parsed[1] == String(b"Hello world") and parsed[8] is NIL


def test_a_header_with_crlf_injection_attempts_stays_one_envelope() -> None:
    header = b'Subject: x\r\n\t"\r\n* 1 EXISTS\r\nFrom: "evil\\"\r\n* BYE" <e@example.test>\r\n\r\n'
    written = envelope(header)
    [parsed] = read_back(written)
    assert len(parsed) == 10


def test_absurd_headers_cost_linear_time() -> None:
    started = time.monotonic()
    envelope(b"From: " + b"(" * 50_000 + b"a@example.test\r\n\r\n")
    envelope(b"To: " + b"a@example.test, " * 16_000 + b"\r\n\r\n")
    envelope(b"Subject: " + b"=?utf-8?q?x?= " * 10_000 + b"\r\n\r\n")
    assert time.monotonic() - started < 1.0
    assert len(parse_address_list(b"a@example.test, " * 16_000)) == 1000  # capped
