"""Text in the charsets mail declares: one decoder for message parts (SEARCH, PREVIEW)
and for RFC 2047 encoded words (SEARCH, SORT, THREAD).

Encoded words are decoded by a small linear scanner rather than
``email.header.decode_header``: that one returns the plain text between encoded words as
raw-unicode-escape bytes and ``make_header`` then refuses 8-bit text, so a subject a
client sees as one string could not be compared as one.
"""

from __future__ import annotations

import binascii
import re

# RFC 2047 §2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
# (RFC 2231 §5 allows "charset*language").
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")
_CHARSET = re.compile(r"^[A-Za-z0-9._:+-]{1,40}\Z")


def decode_text(data: bytes, charset: str) -> str:
    """RFC 2046 §4.1.2 charset; none, US-ASCII or an unknown one decode as UTF-8 (a
    superset of US-ASCII that many unlabelled messages actually use)."""
    if charset and charset.lower() not in ("us-ascii", "ascii") and _CHARSET.match(charset):
        try:
            return data.decode(charset, "replace")
        except LookupError:  # unknown, or not a text encoding (e.g. "zlib")
            pass
    return data.decode("utf-8", "replace")


# -- RFC 2047 encoded words --------------------------------------------------------------


def decode_words(value: str) -> str:
    """``value`` with its RFC 2047 encoded words decoded; white space between two adjacent
    encoded words is dropped (RFC 2047 §6.2), unknown charsets decode as UTF-8."""
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None  # adjacent words of one charset
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position:match.start()]
        adjacent = pending is not None and not between.strip(" \t\r\n")
        if not adjacent:
            if pending is not None:
                out.append(decode_text(bytes(pending[1]), pending[0]))
                pending = None
            out.append(between)
        charset, data = match.group(1).lower(), _word_bytes(match.group(2), match.group(3))
        if pending is not None and pending[0] == charset:
            pending[1].extend(data)  # a character may be split across two words
        else:
            if pending is not None:
                out.append(decode_text(bytes(pending[1]), pending[0]))
            pending = (charset, bytearray(data))
        position = match.end()
    if pending is not None:
        out.append(decode_text(bytes(pending[1]), pending[0]))
    out.append(value[position:])
    return "".join(out)


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "replace")
    if encoding in "Bb":  # RFC 2047 §4.1
        return decode_base64(data)
    return binascii.a2b_qp(data, header=True)  # RFC 2047 §4.2: "_" is a space


def decode_base64(data: bytes) -> bytes:
    """Lenient base64: characters outside the alphabet are skipped, decoding stops at
    the first "=", and a short last group is completed (RFC 2045 §6.8 asks decoders to
    ignore what is not in the alphabet)."""
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data.partition(b"=")[0])
    clean = clean[:len(clean) - 1] if len(clean) % 4 == 1 else clean
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
