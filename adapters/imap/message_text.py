"""The text SEARCH looks in (RFC 9051 §6.4.4 BODY, TEXT, HEADER): header fields unfolded
and RFC 2047-decoded, and every text part decoded from its transfer encoding and
charset, so a word matches whether it was sent as base64, quoted-printable or 8-bit.
Bounded: at most ``MAX_TEXT`` characters per message are searched."""

from __future__ import annotations

import re

from adapters.imap import mime
from adapters.imap.binary import UnknownCte, decode_part
from adapters.imap.charsets import decode_text, decode_words

MAX_TEXT = 4 * 1024 * 1024
_FOLD = re.compile(rb"\r?\n[ \t]")


def header_value(header: bytes, name: str) -> str:
    """Every value of field ``name`` (lower case) in ``header``, unfolded and decoded,
    joined by newlines ("" when absent)."""
    values = []
    for line in re.split(rb"\r?\n(?![ \t])", header):
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower().decode("latin-1") == name:
            values.append(decode_words(_FOLD.sub(b" ", value).strip().decode("utf-8", "replace")))
    return "\n".join(values)


def body_text(raw: bytes, tree: mime.Part) -> str:
    texts: list[str] = []
    size = 0
    pending = [tree]
    while pending and size < MAX_TEXT:
        part = pending.pop(0)
        if part.message is not None:
            pending.insert(0, part.message)
            continue
        if part.children:
            pending[:0] = part.children
            continue
        if part.type != "text":
            continue
        try:
            data = decode_part(raw, part)
        except UnknownCte:
            data = part.body(raw)
        text = decode_text(data, part.params.get("charset", "utf-8"))
        texts.append(text)
        size += len(text)
    return "\n".join(texts)[:MAX_TEXT]
