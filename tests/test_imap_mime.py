"""The MIME tree as byte offsets: sections slice the stored bytes exactly, and hostile
structures (depth bombs, part floods, missing boundaries) cost linear time, no recursion."""

from __future__ import annotations

import time

import pytest

from adapters.imap.mime import MAX_PARTS, parse

NESTED = (
    b"From: a@example.test\r\n"
    b"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"hello\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\n"
    b"Content-Type: multipart/alternative;\r\n boundary=inner\r\n\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain\r\n\r\n"
    b"plain text\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html\r\n\r\n"
    b"<p>html</p>\r\n"
    b"--inner--\r\n"
    b"\r\n--outer--\r\n"
    b"epilogue\r\n"
)


def test_a_nested_message_has_the_rfc_section_numbers_and_exact_bytes() -> None:
    root = parse(NESTED)
    assert (root.type, root.subtype, root.params["boundary"]) == ("multipart", "mixed", "outer")
    header = root.header(NESTED)
    assert header.startswith(b"From: a@example.test") and header.endswith(b"\r\n\r\n")
    first = root.section([1])
    assert (first.type, first.subtype, first.params) == ("text", "plain", {"charset": "utf-8"})
    assert first.body(NESTED) == b"hello"
    message = root.section([2])
    assert (message.type, message.subtype) == ("message", "rfc822")
    assert message.body(NESTED).startswith(b"Subject: inner\r\n")
    inner = message.message
    assert inner is not None and (inner.type, inner.subtype) == ("multipart", "alternative")
    assert root.section([2, 1]).body(NESTED) == b"plain text"
    assert root.section([2, 2]).body(NESTED) == b"<p>html</p>"
    assert root.section([2, 2]).header(NESTED) == b"Content-Type: text/html\r\n\r\n"
    for missing in ([3], [1, 2], [2, 3], [0]):
        with pytest.raises(KeyError):
            root.section(missing)


def test_a_plain_message_is_its_own_part_one() -> None:
    raw = b"Subject: x\r\n\r\nbody\r\n"
    root = parse(raw)
    assert (root.type, root.subtype, root.children) == ("text", "plain", [])
    assert root.section([1]) is root and root.body(raw) == b"body\r\n"
    with pytest.raises(KeyError):
        root.section([2])


def test_a_message_without_a_header_end_or_closing_boundary_still_parses() -> None:
    headers_only = b"Subject: x\r\nFrom: y"
    assert parse(headers_only).body(headers_only) == b""
    open_ended = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo"
    root = parse(open_ended)
    assert [child.body(open_ended) for child in root.children] == [b"one", b"two"]


def test_a_thousand_nested_multiparts_stop_at_depth_100_in_linear_time() -> None:
    depth = 1000
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                   for i in range(depth)) + b"\r\nleaf\r\n"
    started = time.monotonic()
    root = parse(raw)
    assert time.monotonic() - started < 1.0
    part, levels = root, 0
    while part.children:
        part, levels = part.children[0], levels + 1
    assert levels == 100 and part.truncated


def test_a_hundred_thousand_parts_stop_at_the_part_limit() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\n\r\np\r\n" * 100_000 + b"--x--\r\n"
    started = time.monotonic()
    root = parse(raw)
    assert time.monotonic() - started < 5.0
    assert len(root.children) == MAX_PARTS - 1 and root.truncated


def test_quoted_parameters_and_case_are_normalised() -> None:
    raw = b'Content-Type: Text/HTML; Charset="UTF-8"; name="a \\"b\\".html"\r\n\r\nx'
    part = parse(raw)
    assert (part.type, part.subtype) == ("text", "html")
    assert part.params == {"charset": "UTF-8", "name": 'a "b".html'}
