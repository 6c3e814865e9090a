"""PREVIEW (RFC 8970): the text of the first plain (else HTML) part, decoded, collapsed
and cut to 200 characters and 256 octets; "" when there is no text."""

from __future__ import annotations

import time

from adapters.imap.mime import parse
from adapters.imap.preview import preview, strip_html


def message(*parts: bytes, header: bytes = b"Subject: s\r\n") -> bytes:
    if len(parts) == 1:
        return header + parts[0]
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts)
    return header + b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n' + body + b"--b--\r\n"


def of(raw: bytes) -> str:
    return preview(raw, parse(raw))


def test_a_plain_message_is_decoded_from_quoted_printable_and_its_charset() -> None:
    raw = message(b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                  b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                  b"Caf=E9 at   noon?=\r\n\r\n\tBring =\r\nthe  list.\r\n")
    assert of(raw) == "Café at noon? Bring the list."


def test_the_plain_part_wins_over_an_earlier_html_part() -> None:
    raw = message(b"Content-Type: text/html\r\n\r\n<p>html</p>",
                  b"Content-Type: text/plain; charset=utf-8\r\n"
                  b"Content-Transfer-Encoding: base64\r\n\r\n" + b"SGVsbG8sIHdvcmxkIOKckw==")
    assert of(raw) == "Hello, world ✓"


def test_html_is_stripped_of_markup_hidden_elements_and_entities() -> None:
    html = (b"<html><head><title>Subject</title><style>p {color: red}</style></head>"
            b"<body><!-- tracking --><p>Dear&nbsp;<b>Ann</b>e,</p><script>alert(1)</script>"
            b"<div>Total:&#32;&euro;5 &amp; more</div>\r\n<br>Bye</body></html>")
    raw = message(b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html)
    assert of(raw) == "Dear Anne, Total: €5 & more Bye"


def test_attachments_and_non_text_parts_give_no_preview() -> None:
    raw = message(b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nfile",
                  b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K")
    assert of(raw) == ""
    assert of(message(b"Content-Type: text/plain\r\n\r\n \r\n\t\r\n")) == ""


def test_an_attached_message_is_not_the_messages_own_text() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: message/rfc822\r\n\r\n"
           b"Subject: inner\r\n\r\ninner text\r\n"
           b"--m\r\nContent-Type: text/html\r\n\r\n<i>outer</i>\r\n--m--\r\n")
    assert of(raw) == "outer"


def test_unknown_charsets_read_as_utf8_and_unknown_encodings_give_nothing() -> None:
    raw = message(b"Content-Type: text/plain; charset=x-martian\r\n\r\nna\xc3\xafve \xff end")
    assert of(raw) == "naïve \ufffd end"
    raw = message(b"Content-Type: text/plain; charset=zlib\r\n\r\nplain")
    assert of(raw) == "plain"
    raw = message(b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a")
    assert of(raw) == ""


def test_white_space_controls_and_invisible_padding_collapse_to_single_spaces() -> None:
    text = "one\r\n\r\ntwo\u200c\u00a0\u034f three\x00four\x1b[0m \ufefffive"
    raw = message(b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode())
    assert of(raw) == "one two three four [0m five"


def test_the_preview_is_at_most_200_characters_and_256_octets() -> None:
    ascii_text = message(b"Content-Type: text/plain\r\n\r\n" + b"x" * 300)
    assert of(ascii_text) == "x" * 200
    euro = message(b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "€".encode() * 300)
    assert of(euro) == "€" * 85  # 255 octets: an 86th would make 258
    emoji = message(b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "😀".encode() * 300)
    assert of(emoji) == "😀" * 64
    assert len(of(emoji).encode()) == 256


def test_hostile_html_costs_linear_time() -> None:
    started = time.monotonic()
    assert strip_html("<script>" * 200_000) == ""  # unclosed: the rest is script
    assert strip_html("<script" * 200_000) == "<script" * 200_000  # never a tag: text
    assert strip_html("<head>" * 100_000 + "text") == "text"
    assert strip_html("<" * 200_000 + "x").endswith("<x")
    assert strip_html("<!--" + "-" * 200_000) == ""
    raw = message(b"Content-Type: text/html\r\n\r\n" + b"<b" * 3_000_000 + b">hi")
    assert of(raw) == "<b" * 100  # only the first 64 kB are read: an unclosed tag stays text
    assert time.monotonic() - started < 2.0
