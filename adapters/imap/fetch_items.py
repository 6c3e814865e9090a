"""FETCH data items (RFC 9051 §6.4.5) and the bytes a BODY[section]<partial> names.

Parsing turns the tokens of a FETCH into ``FetchItem`` values (macros expanded);
``section_bytes`` cuts a section out of the stored message by the MIME tree's offsets,
so what a client fetches is exactly what arrived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapters.imap.mime import Part
from adapters.imap.tokens import Atom, ParseError, Token

#: RFC 9051 §6.4.5 macros.
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE = frozenset({"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "UID", "BODY", "BODYSTRUCTURE",
                    "MODSEQ", "SAVEDATE", "EMAILID", "THREADID", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
                    "PREVIEW"})
_SECTIONED = re.compile(
    r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?\Z",
    re.IGNORECASE)
_SECTION = re.compile(
    r"^((?:[1-9]\d{0,4}\.)*[1-9]\d{0,4})?\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)?"
    r"(?: \(([^()]*)\))?\Z", re.IGNORECASE)
_FIELD_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+\Z")  # RFC 5322 §3.6.8 ftext


@dataclass(frozen=True)
class Section:
    part: tuple[int, ...] = ()
    text: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class FetchItem:
    name: str  # ENVELOPE, FLAGS, ..., BODY[] (as BODY with a section), BINARY, BINARY.SIZE
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None


def parse_fetch_items(token: Token) -> list[FetchItem]:
    """The FETCH argument after the sequence set: a macro, one item, or a list."""
    if isinstance(token, Atom) and token.upper() in MACROS:
        return [FetchItem(name) for name in MACROS[token.upper()]]
    atoms = token if isinstance(token, tuple) else (token,)
    if not atoms:
        raise ParseError("empty FETCH item list")
    items = []
    for index, atom in enumerate(atoms):
        if isinstance(atom, tuple) and index and items and items[-1].name == "PREVIEW":
            # RFC 8970 §3.1: PREVIEW (LAZY); a preview is always made at once here.
            if not all(isinstance(m, Atom) and m.upper() == "LAZY" for m in atom):
                raise ParseError("unknown PREVIEW modifier")
            continue
        items.append(_item(atom))
    return items


def _item(token: Token) -> FetchItem:
    if not isinstance(token, Atom):
        raise ParseError("FETCH items are atoms")
    text = token.value
    upper = text.upper()
    if upper in SIMPLE:
        # RFC 9051 §6.4.5: RFC822 is BODY[], RFC822.HEADER is BODY.PEEK[HEADER],
        # RFC822.TEXT is BODY[TEXT] (their responses keep the RFC822 names).
        return FetchItem(upper)
    match = _SECTIONED.match(text)
    if match is None:
        raise ParseError(f"unknown FETCH item {text[:40]!r}")
    kind = match.group(1).upper()
    section = _section(match.group(2), binary=kind.startswith("BINARY"))
    partial = None
    if match.group(3) is not None:
        if kind == "BINARY.SIZE":
            raise ParseError("BINARY.SIZE takes no partial")
        partial = (int(match.group(3)), int(match.group(4)))
        if partial[1] == 0:
            raise ParseError("a partial of length 0")
    return FetchItem(kind.removesuffix(".PEEK"), section, kind.endswith(".PEEK"), partial)


def _section(text: str, *, binary: bool) -> Section:
    match = _SECTION.match(text)
    if match is None:
        raise ParseError(f"invalid section [{text[:40]}]")
    part = tuple(int(n) for n in match.group(1).split(".")) if match.group(1) else ()
    specifier = (match.group(2) or "").upper()
    names = match.group(3)
    rest = text[len(match.group(1) or ""):]
    dot_rule = rest.startswith(".") if (part and specifier) else not rest.startswith(".")
    if (text and not part and not specifier) or not dot_rule or (part and not specifier and rest):
        raise ParseError(f"invalid section [{text[:40]}]")
    if specifier.startswith("HEADER.FIELDS") != (names is not None):
        raise ParseError("HEADER.FIELDS takes a list of field names, nothing else does")
    if specifier == "MIME" and not part:
        raise ParseError("MIME needs a part number")
    if binary and specifier:
        raise ParseError("BINARY takes part numbers only (RFC 3516)")
    fields = tuple(names.split()) if names else ()
    if names is not None and (not fields or not all(_FIELD_NAME.match(f) for f in fields)):
        raise ParseError("invalid header field names")
    return Section(part, specifier, tuple(f.upper() for f in fields))


def section_bytes(raw: bytes, tree: Part, section: Section) -> bytes | None:
    """The bytes ``section`` names, or None when the message has no such part (the
    response then carries NIL, RFC 9051 §6.4.5)."""
    try:
        part = tree.section(list(section.part)) if section.part else tree
    except KeyError:
        return None
    if section.text == "MIME":
        return part.header(raw)
    if section.part and section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"):
        if part.message is None:
            return None  # only an encapsulated message has a HEADER and TEXT of its own
        part = part.message
    if section.text == "":
        return raw[part.start:part.end] if not section.part else part.body(raw)
    if section.text == "TEXT":
        return part.body(raw)
    header = part.header(raw)
    if section.text == "HEADER":
        return header
    return _header_fields(header, set(section.fields), keep=section.text == "HEADER.FIELDS")


def _header_fields(header: bytes, names: set[str], *, keep: bool) -> bytes:
    """The named fields (or all but them), as they stand, plus the empty line."""
    out: list[bytes] = []
    for field in re.findall(rb"[^\r\n]+(?:\r?\n[ \t][^\r\n]*)*\r?\n", header):
        name = field.split(b":", 1)[0].strip().upper().decode("latin-1")
        if (name in names) == keep and b":" in field:
            out.append(field)
    return b"".join(out) + b"\r\n"
