"""FETCH items and sections: RFC 9051 §6.4.5 names parsed, and each section cut out of
the stored bytes exactly."""

from __future__ import annotations

import pytest

from adapters.imap.fetch_items import FetchItem, Section, parse_fetch_items, section_bytes
from adapters.imap.mime import parse
from adapters.imap.tokens import Atom, ParseError
from tests.test_imap_mime import NESTED


def items(*names: str) -> list[FetchItem]:
    return parse_fetch_items(tuple(Atom(n) for n in names) if len(names) > 1 else Atom(names[0]))


def test_macros_simple_items_and_sections_parse() -> None:
    assert items("FAST") == [FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE")]
    assert items("uid", "FLAGS", "BODYSTRUCTURE") == [FetchItem("UID"), FetchItem("FLAGS"),
                                                      FetchItem("BODYSTRUCTURE")]
    assert items("BODY.PEEK[HEADER.FIELDS (From to)]<0.2048>") == [
        FetchItem("BODY", Section((), "HEADER.FIELDS", ("FROM", "TO")), peek=True, partial=(0, 2048))]
    assert items("BODY[]") == [FetchItem("BODY", Section())]
    assert items("body[2.1.mime]") == [FetchItem("BODY", Section((2, 1), "MIME"))]
    assert items("BINARY.PEEK[1]<10.20>") == [FetchItem("BINARY", Section((1,)), peek=True, partial=(10, 20))]
    assert items("BINARY.SIZE[1]") == [FetchItem("BINARY.SIZE", Section((1,)))]


@pytest.mark.parametrize("item", [
    "BODY[HEADER.FIELDS]", "BODY[HEADER ()]", "BODY[MIME]", "BODY[0]", "BODY[1.]", "BODY[.HEADER]",
    "BODY[1HEADER]", "BODY[TEXT (From)]", "BINARY[HEADER]", "BINARY.SIZE[1]<0.5>", "BODY[]<0.0>",
    "BODY[HEADER.FIELDS (Fr:om)]", "NOSUCHITEM", "BODY[1]<-1.5>",
])
def test_invalid_items_are_refused(item: str) -> None:
    with pytest.raises(ParseError):
        items(item)


def cut(section: str) -> bytes | None:
    [item] = items(f"BODY[{section}]")
    assert item.section is not None
    return section_bytes(NESTED, parse(NESTED), item.section)


def test_sections_are_exact_slices_of_the_stored_message() -> None:
    assert cut("") == NESTED
    assert cut("HEADER") == b'From: a@example.test\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    assert cut("TEXT") == NESTED[NESTED.index(b"preamble"):]
    assert cut("1") == b"hello"
    assert cut("1.MIME") == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    folded_type = b"Content-Type: multipart/alternative;\r\n boundary=inner\r\n"
    assert cut("2.HEADER") == b"Subject: inner\r\n" + folded_type + b"\r\n"
    assert cut("2.HEADER.FIELDS (SUBJECT)") == b"Subject: inner\r\n\r\n"
    assert cut("2.HEADER.FIELDS.NOT (SUBJECT)") == folded_type + b"\r\n"
    assert cut("2.1") == b"plain text"
    assert cut("2.2.MIME") == b"Content-Type: text/html\r\n\r\n"
    assert cut("2").startswith(b"Subject: inner") and cut("2").endswith(b"--inner--\r\n")  # type: ignore[union-attr]
    assert cut("3") is None and cut("1.HEADER") is None  # no part 3; part 1 holds no message
