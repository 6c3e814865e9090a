"""Modified UTF-7 (RFC 3501 §5.1.3): one spelling per name, and every name round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.imap.utf7 import InvalidModifiedUtf7, decode, encode

EXAMPLES = [
    ("INBOX", "INBOX"),
    ("&", "&-"),
    ("Tom & Jerry", "Tom &- Jerry"),
    ("Entwürfe", "Entw&APw-rfe"),
    # RFC 3501 §5.1.3's own example.
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("😀", "&2D3eAA-"),
    ("a\u00e9b\u00e9", "a&AOk-b&AOk-"),
]


@pytest.mark.parametrize(("name", "wire"), EXAMPLES)
def test_names_encode_to_the_rfc_spelling_and_back(name: str, wire: str) -> None:
    assert encode(name) == wire
    assert decode(wire) == name
    assert decode(wire.encode()) == name


@pytest.mark.parametrize(("wire", "why"), [
    ("&AGE-", "printable ASCII"),             # "a" must be written as "a"
    ("&Jjo", "unterminated"),
    ("&Jjo!-", "invalid modified BASE64"),
    ("&Jjo/-", "invalid modified BASE64"),     # "/" is "," in modified BASE64
    ("&ZeVnLIqe-&U,BTFw-", "back to back"),    # one run, not two
    ("&AOl-", "padding bits"),                 # same unit as &AOk-, other spelling
    ("&2D0-", "UTF-16"),                      # half a surrogate pair
    ("Entwürfe", "must be encoded"),           # raw 8-bit/Unicode in a rev1 name
    ("a\x01b", "must be encoded"),
])
def test_non_canonical_or_broken_spellings_are_refused(wire: str, why: str) -> None:
    with pytest.raises(InvalidModifiedUtf7, match=why):
        decode(wire)


def test_eight_bit_bytes_are_refused() -> None:
    with pytest.raises(InvalidModifiedUtf7, match="8-bit"):
        decode(b"Entw\xfcrfe")


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(names)
def test_every_name_round_trips_and_its_spelling_is_canonical(name: str) -> None:
    wire = encode(name)
    assert wire.isascii() and all(0x20 <= ord(ch) <= 0x7E for ch in wire)
    assert decode(wire) == name
    assert encode(decode(wire)) == wire
