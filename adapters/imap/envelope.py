"""FETCH ENVELOPE (RFC 9051 §7.5.2) from a message's header bytes.

Field values go out as sent (unfolded, RFC 2047 words undecoded), through the response
writer, so nothing a sender puts in a header can break the response. Sender and
Reply-To default to From, as the RFC requires.
"""

from __future__ import annotations

import re

from adapters.imap.addresses import Address, parse_address_list
from adapters.imap.responses import string

_FIELDS = (b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc",
           b"in-reply-to", b"message-id")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
#: A header field longer than this is cut for ENVELOPE (the stored bytes stay whole).
MAX_FIELD = 64 * 1024


def header_fields(header: bytes, names: tuple[bytes, ...] = _FIELDS) -> dict[bytes, bytes]:
    """The first occurrence of each named field (lower case), unfolded (RFC 5322 §2.2.3)."""
    found: dict[bytes, bytes] = {}
    for line in re.split(rb"\r?\n(?![ \t])", header):
        name, colon, value = line.partition(b":")
        key = name.strip().lower()
        if colon and key in names and key not in found:
            found[key] = _FOLD.sub(b"", value).strip()[:MAX_FIELD]
    return found


def envelope(header: bytes, *, utf8: bool = False) -> bytes:
    return envelope_of_fields(header_fields(header), utf8=utf8)


def unfolded(value: bytes) -> bytes:
    """A field value as ``header_fields`` gives it: unfolded, trimmed, bounded."""
    return (_FOLD.sub(b"", value) if b"\n" in value else value).strip()[:MAX_FIELD]


def envelope_of_fields(fields: dict[bytes, bytes], *, utf8: bool = False) -> bytes:
    """ENVELOPE from field values already unfolded (lower-case names): the view's
    summary gives them without a header to re-parse."""
    written: dict[bytes, bytes] = {}

    def addresses(name: bytes) -> bytes:
        # Sender and Reply-To usually stand for From: each field is written once.
        if name not in written:
            value = fields.get(name)
            parsed = parse_address_list(value) if value else []
            written[name] = b"(" + b"".join(_address(a, utf8) for a in parsed) + b")" if parsed else b"NIL"
        return written[name]

    items = [
        string(fields.get(b"date"), utf8=utf8),
        string(fields.get(b"subject"), utf8=utf8),
        addresses(b"from"),
        addresses(b"sender" if fields.get(b"sender") else b"from"),
        addresses(b"reply-to" if fields.get(b"reply-to") else b"from"),
        addresses(b"to"),
        addresses(b"cc"),
        addresses(b"bcc"),
        string(fields.get(b"in-reply-to"), utf8=utf8),
        string(fields.get(b"message-id"), utf8=utf8),
    ]
    return b"(" + b" ".join(items) + b")"


def _address(address: Address, utf8: bool) -> bytes:
    parts = (address.name, address.adl, address.mailbox, address.host)
    return b"(" + b" ".join(string(p, utf8=utf8) for p in parts) + b")"
