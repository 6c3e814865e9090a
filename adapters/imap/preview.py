"""FETCH PREVIEW (RFC 8970): a short plain-text taste of a message for a message list.

The text comes from the first text/plain part that is not an attachment, else from the
first text/html part with its markup removed; it is decoded from its transfer encoding
and charset, white space and invisible characters are collapsed, and the result is cut
to 200 characters (RFC 8970 §3.3 SHOULD) and, stricter than its MUST of 256 characters,
to at most 256 octets of UTF-8 (so a fixed-size column can hold any preview). A message
with nothing to show gets "" (RFC 8970 §3.2: a zero-length string).

Only the first ``MAX_SCAN`` bytes of a part are read, and the markup is removed by
linear scans rather than an HTML parser, so a large or hostile body costs little.
"""

from __future__ import annotations

import html
import re

from adapters.imap.binary import UnknownCte, decode_body, transfer_encoding
from adapters.imap.charsets import decode_text
from adapters.imap.envelope import header_fields
from adapters.imap.mime import Part

MAX_CHARS = 200
MAX_OCTETS = 256  # RFC 8970 §3.3 allows 256 characters; 256 octets is stricter
#: Encoded bytes of a text part that are looked at (more than enough for 200 characters).
MAX_SCAN = 64 * 1024
# White space, controls and the invisible characters marketing mail pads previews with.
_INVISIBLE = re.compile("[\\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u180e\u200b-\u200f\u2028-\u202f"
                        "\u205f-\u206f\u3000\ufeff]+")
# Elements whose content is not text, and comments.
_HIDDEN_OPEN = re.compile(r"<(script|style|title|head)\b[^<>]*>|<!--", re.IGNORECASE)
_HIDDEN_CLOSE = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE)
                 for name in ("script", "style", "title", "head")}
_HIDDEN_CLOSE["!--"] = re.compile(r"-->")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)?[^<>]*>")
#: Tags inside a word ("<b>H</b>ello"): removed without leaving a space.
_INLINE = frozenset({"a", "abbr", "b", "big", "code", "em", "font", "i", "s", "small", "span", "strong",
                     "sub", "sup", "u"})


def preview(raw: bytes, tree: Part) -> str:
    """The RFC 8970 preview text of a stored message ("" when it has no text)."""
    part = _first_text(raw, tree, "plain") or _first_text(raw, tree, "html")
    if part is None:
        return ""
    try:
        data = decode_body(part.body(raw)[:MAX_SCAN], transfer_encoding(part.header(raw)))
    except UnknownCte:
        return ""
    text = decode_text(data, part.params.get("charset", ""))
    if part.subtype == "html":
        text = strip_html(text)
    return shorten(_INVISIBLE.sub(" ", text).strip())


def _first_text(raw: bytes, tree: Part, subtype: str) -> Part | None:
    """The first text/``subtype`` part in document order, looking into multiparts only (an
    attached message/rfc822 is not this message's text) and skipping attachments."""
    stack = [tree]
    while stack:
        part = stack.pop()
        if part.type == "multipart":
            stack.extend(reversed(part.children))
        elif part.type == "text" and part.subtype == subtype and not _is_attachment(raw, part):
            return part
    return None


def _is_attachment(raw: bytes, part: Part) -> bool:
    """RFC 2183 §2.2: Content-Disposition: attachment."""
    value = header_fields(part.header(raw), (b"content-disposition",)).get(b"content-disposition", b"")
    return value.split(b";", 1)[0].strip().lower() == b"attachment"


def strip_html(text: str) -> str:
    """The text of an HTML body: script, style, title and head content and comments
    dropped, tags removed (block tags leave a space), character references decoded."""
    return html.unescape(_TAG.sub(_tag_space, _drop_hidden(text)))


def _tag_space(match: re.Match[str]) -> str:
    return "" if (match.group(2) or "").lower() in _INLINE else " "


def _drop_hidden(text: str) -> str:
    """Linear: each closing tag is searched for once per opening tag, forward only; an
    unclosed script, style, title or comment hides the rest, an unclosed head only itself."""
    out: list[str] = []
    position = 0
    head_unclosed = False
    while (opening := _HIDDEN_OPEN.search(text, position)) is not None:
        out.append(text[position:opening.start()])
        name = (opening.group(1) or "!--").lower()
        skip = name == "head" and head_unclosed  # searched to the end once already
        closing = None if skip else _HIDDEN_CLOSE[name].search(text, opening.end())
        if closing is None and name == "head":
            head_unclosed = True
            position = opening.end()
            continue
        if closing is None:
            return " ".join(out)
        out.append(" ")
        position = closing.end()
    out.append(text[position:])
    return "".join(out)


def shorten(text: str) -> str:
    """At most ``MAX_CHARS`` characters and ``MAX_OCTETS`` octets of UTF-8, cut on a
    character boundary; characters that are not printable become spaces."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text[:MAX_CHARS]).split())
    data = text.encode("utf-8")
    if len(data) > MAX_OCTETS:
        text = data[:MAX_OCTETS].decode("utf-8", "ignore").rstrip()
    return text

