"""FETCH BODY and BODYSTRUCTURE (RFC 9051 §7.5.2) from the MIME tree (``mime.py``).

Sizes and line counts are of the stored bytes; parameter and header values pass through
the response writer. A part kept opaque by the parser's limits, or a multipart without
any body part, is written as a single part of its declared type (the grammar requires
at least one body part in a multipart).
"""

from __future__ import annotations

from adapters.imap.envelope import envelope, header_fields
from adapters.imap.mime import Part, parameters
from adapters.imap.responses import paren_list, string

_PART_FIELDS = (b"content-id", b"content-description", b"content-transfer-encoding", b"content-md5",
                b"content-disposition", b"content-language", b"content-location")


def body_structure(raw: bytes, part: Part, *, extensible: bool = True, utf8: bool = False) -> bytes:
    """``BODYSTRUCTURE`` (extensible) or ``BODY`` (not) of ``part`` of ``raw``."""
    fields = header_fields(part.header(raw), _PART_FIELDS)
    if part.type == "multipart" and part.children:
        items = b"".join(body_structure(raw, child, extensible=extensible, utf8=utf8)
                         for child in part.children)
        items += b" " + string(part.subtype.upper())
        if extensible:
            items += b" " + b" ".join([_params(part.params, utf8), *_tail(fields, utf8)])
        return b"(" + items + b")"
    body = part.body(raw)
    items = [
        string(part.type.upper()), string(part.subtype.upper()), _params(part.params, utf8),
        string(fields.get(b"content-id"), utf8=utf8),
        string(fields.get(b"content-description"), utf8=utf8),
        string((fields.get(b"content-transfer-encoding") or b"7BIT").upper(), utf8=utf8),
        b"%d" % len(body),
    ]
    if part.message is not None and not part.truncated:
        inner = part.message
        items += [envelope(inner.header(raw), utf8=utf8),
                  body_structure(raw, inner, extensible=extensible, utf8=utf8), b"%d" % _lines(body)]
    elif part.type == "text":
        items.append(b"%d" % _lines(body))
    if extensible:
        items += [string(fields.get(b"content-md5"), utf8=utf8), *_tail(fields, utf8)]
    return b"(" + b" ".join(items) + b")"


def _tail(fields: dict[bytes, bytes], utf8: bool) -> list[bytes]:
    """body-fld-dsp, body-fld-lang, body-fld-loc."""
    disposition = fields.get(b"content-disposition")
    if disposition:
        kind, _, rest = disposition.partition(b";")
        dsp = paren_list([string(kind.strip().upper(), utf8=utf8), _params(parameters(b";" + rest), utf8)])
    else:
        dsp = b"NIL"
    language = fields.get(b"content-language")
    tags = [t.strip() for t in language.split(b",") if t.strip()] if language else []
    lang = paren_list([string(t, utf8=utf8) for t in tags]) if tags else b"NIL"
    return [dsp, lang, string(fields.get(b"content-location"), utf8=utf8)]


def _params(params: dict[str, str], utf8: bool) -> bytes:
    if not params:
        return b"NIL"
    return paren_list([item for name, value in params.items()
                       for item in (string(name.upper(), utf8=utf8), string(value, utf8=utf8))])


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
