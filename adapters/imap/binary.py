"""BINARY[section] and BINARY.SIZE (RFC 3516): a part's body with its
Content-Transfer-Encoding undone, so a client gets the bytes of an attachment without
decoding base64 itself.

The stored message is never changed: the decoding works on the slice the MIME tree
(``mime.py``) points at. Decoding is lenient where RFC 2045 asks decoders to be
(characters outside the base64 alphabet, trailing white space in quoted-printable) and
linear in the size of the part. An encoding this module does not know raises
``UnknownCte``, which the session answers with NO [UNKNOWN-CTE] (RFC 3516 §4,
RFC 9051 §7.1).
"""

from __future__ import annotations

import binascii

from adapters.imap.charsets import decode_base64
from adapters.imap.envelope import header_fields
from adapters.imap.mime import Part

#: RFC 2045 §6.1 identity encodings ("" is a part without the field: 7bit, §6.1).
IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


class UnknownCte(ValueError):
    """A Content-Transfer-Encoding other than 7bit, 8bit, binary, base64 and
    quoted-printable (RFC 9051 §7.1: NO [UNKNOWN-CTE])."""

    def __init__(self, cte: str) -> None:
        super().__init__(cte)
        self.cte = cte


def transfer_encoding(header: bytes) -> str:
    """The Content-Transfer-Encoding token of a part's header, lower-cased, comments and
    anything after the token dropped; "" when the field is absent."""
    value = header_fields(header, (b"content-transfer-encoding",)).get(b"content-transfer-encoding", b"")
    token = value.split(b"(", 1)[0].split(b";", 1)[0].strip().split()
    return token[0].decode("ascii", "replace").lower()[:64] if token else ""


def decode_body(data: bytes, cte: str) -> bytes:
    """``data`` with the transfer encoding ``cte`` (lower case) undone."""
    if cte in IDENTITY:
        return data
    if cte == "base64":  # RFC 2045 §6.8
        return decode_base64(data)
    if cte == "quoted-printable":  # RFC 2045 §6.7
        return decode_quoted_printable(data)
    raise UnknownCte(cte)


def decode_quoted_printable(data: bytes) -> bytes:
    """RFC 2045 §6.7: white space at the end of an encoded line is transport padding and
    is removed (rule 3) before ``=XX`` and soft line breaks (rule 5) are decoded; an "="
    not followed by two hex digits is kept as it is."""
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        if line.endswith(b"\r"):
            lines[index] = line[:-1].rstrip(b" \t") + b"\r"
        else:
            lines[index] = line.rstrip(b" \t")
    return binascii.a2b_qp(b"\n".join(lines))


def decode_part(raw: bytes, part: Part) -> bytes:
    """The BINARY content of a numbered section: a leaf part's body decoded; a multipart
    or message part as stored (its body, as BODY[section] gives it: there is nothing to
    decode, RFC 2046 allows only identity encodings for them)."""
    if part.type in ("multipart", "message"):
        return part.body(raw)
    return decode_body(part.body(raw), transfer_encoding(part.header(raw)))


def binary_section(raw: bytes, tree: Part, path: tuple[int, ...]) -> bytes | None:
    """BINARY[path]: ``()`` is the whole message as stored (BINARY[] is a message, not a
    leaf, even when the message has a single part, whose BINARY[1] is decoded); None when
    the part does not exist (the response carries NIL, as for BODY[section])."""
    if not path:
        return raw[tree.start:tree.end]
    try:
        part = tree.section(list(path))
    except KeyError:
        return None
    return decode_part(raw, part)
