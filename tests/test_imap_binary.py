"""BINARY (RFC 3516): leaf parts decoded from base64 and quoted-printable to their exact
bytes, identity encodings and containers passed through, unknown encodings refused."""

from __future__ import annotations

import base64
import time

import pytest

from adapters.imap.binary import UnknownCte, binary_section, decode_part, transfer_encoding
from adapters.imap.mime import parse

PAYLOAD = bytes(range(256)) * 3  # NULs, CR, LF, 8-bit: everything BINARY must carry

RAW = (
    b"Subject: parts\r\n"
    b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: Quoted-Printable (this is a comment)\r\n\r\n"
    b"Caf=C3=A9 =3D ok  \r\n"
    b"soft=\r\n"
    b"break=20\r\n"
    b"--outer\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: BASE64\r\n\r\n"
    + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    + b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
    b"--inner\r\n\r\nplain 7bit\r\n--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n"
    b"--outer\r\n"
    b"Content-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
    b"begin 644 a\r\n"
    b"--outer--\r\n"
)
TREE = parse(RAW)


def test_quoted_printable_is_decoded_with_soft_breaks_and_padding_removed() -> None:
    # RFC 2045 §6.7: "=XX", soft line breaks, trailing white space dropped; CRLF kept.
    assert decode_part(RAW, TREE.section([1])) == "Café = ok\r\nsoftbreak ".encode()


def test_base64_is_decoded_to_the_exact_bytes() -> None:
    assert decode_part(RAW, TREE.section([2])) == PAYLOAD


def test_multipart_and_message_parts_are_given_as_stored() -> None:
    assert decode_part(RAW, TREE.section([3])) == b"--inner\r\n\r\nplain 7bit\r\n--inner--"
    assert decode_part(RAW, TREE.section([4])) == (
        b"Subject: inner\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=")
    # ... while a leaf inside them is decoded (the encapsulated message's own body).
    assert binary_section(RAW, TREE, (4, 1)) == b"hi"
    assert binary_section(RAW, TREE, (3, 1)) == b"plain 7bit"


def test_an_unknown_transfer_encoding_is_refused_by_name() -> None:
    with pytest.raises(UnknownCte) as refused:
        decode_part(RAW, TREE.section([5]))
    assert refused.value.cte == "x-uuencode"


def test_binary_of_the_whole_message_is_the_message_as_stored() -> None:
    single = b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
    assert binary_section(single, parse(single), ()) == single
    assert binary_section(single, parse(single), (1,)) == b"hello"  # its part 1 is decoded
    assert binary_section(RAW, TREE, (9,)) is None
    assert binary_section(RAW, TREE, (2, 2)) is None


@pytest.mark.parametrize(("header", "cte"), [
    (b"Content-Type: text/plain\r\n\r\n", ""),
    (b"content-transfer-encoding:   8BIT  \r\n\r\n", "8bit"),
    (b"Content-Transfer-Encoding:\r\n binary\r\n\r\n", "binary"),
    (b"Content-Transfer-Encoding: base64; x=y\r\n\r\n", "base64"),
])
def test_the_transfer_encoding_is_read_from_the_parts_header(header: bytes, cte: str) -> None:
    assert transfer_encoding(header) == cte


@pytest.mark.parametrize(("cte", "body"), [(b"7bit", b"a\r\nb"), (b"8bit", "é\r\n".encode()),
                                            (b"binary", b"\x00\xff\r\n")])
def test_identity_encodings_pass_the_body_through(cte: bytes, body: bytes) -> None:
    raw = b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body
    assert decode_part(raw, parse(raw)) == body


def test_damaged_base64_decodes_what_can_be_decoded() -> None:
    raw = b"Content-Transfer-Encoding: base64\r\n\r\naGVs*bG8g\r\nd29y bGQ\r\n"  # junk, no padding
    assert decode_part(raw, parse(raw)) == b"hello world"
    raw = b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\nIGFnYWlu\r\n"  # data after the padding
    assert decode_part(raw, parse(raw)) == b"hi"
    raw = b"Content-Transfer-Encoding: base64\r\n\r\naGVsbA"  # padding missing
    assert decode_part(raw, parse(raw)) == b"hell"
    raw = b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd"  # a lone 6 bits are dropped
    assert decode_part(raw, parse(raw)) == b"hello "


def test_long_lines_of_padding_cost_linear_time() -> None:
    raw = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + b" " * 2_000_000 + b"x" + b"\t" * 2_000_000
    started = time.monotonic()
    assert decode_part(raw, parse(raw)) == b" " * 2_000_000 + b"x"
    assert time.monotonic() - started < 1.0
