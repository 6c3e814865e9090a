"""The MIME tree of a stored message as byte offsets (RFC 2045, RFC 2046), for IMAP's
BODYSTRUCTURE and BODY[section] (RFC 9051 §6.4.5, §7.5.2).

Offsets, not copies: a FETCH of a section slices the stored bytes, so what a client gets
is exactly what arrived. Built without recursion and with limits (Dovecot's
MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS 100 and ..._MAX_TOTAL_MIME_PARTS 10000;
checklist §6.28): a part nested deeper, or past the part count, is kept as an opaque
leaf, so a depth bomb costs linear time and no RecursionError (Python's email package
raises one at depth ~1000, CVE-2020-12100 class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 100
MAX_PARTS = 10_000
#: Header fields longer than this are not read for Content-Type (the bytes stay).
MAX_HEADER_SCAN = 256 * 1024

_PARAM = re.compile(rb';\s*([!#$%&\'*+\-.0-9A-Z^_`a-z|~]+)\s*=\s*("(?:[^"\\\r\n]|\\.)*"|[^;\s"]+)')
_TYPE = re.compile(rb"^\s*([!#$%&'*+\-.0-9A-Z^_`a-z|~]+)\s*/\s*([!#$%&'*+\-.0-9A-Z^_`a-z|~]+)")


@dataclass
class Part:
    """One MIME part: ``[start, header_end)`` is its header (with the empty line), and
    ``[header_end, end)`` its body. ``children`` for multipart, ``message`` for an
    encapsulated message/rfc822 (or message/global)."""

    start: int
    header_end: int
    end: int
    type: str = "text"
    subtype: str = "plain"
    params: dict[str, str] = field(default_factory=dict)
    children: list[Part] = field(default_factory=list)
    message: Part | None = None
    truncated: bool = False  # past a limit: kept as an opaque leaf

    def header(self, raw: bytes) -> bytes:
        return raw[self.start:self.header_end]

    def body(self, raw: bytes) -> bytes:
        return raw[self.header_end:self.end]

    def section(self, path: list[int]) -> Part:
        """RFC 9051 §6.4.5 section numbers: ``[]`` is this part, ``[2, 1]`` the first part
        of the second part. The sub-parts of a message/rfc822 part are those of the message
        it holds; a part that is not multipart has only a part 1, itself. Raises KeyError
        for a part that does not exist."""
        part = self
        for number in path:
            holder = part.message if part.message is not None else part
            if holder.children:
                if not 1 <= number <= len(holder.children):
                    raise KeyError(number)
                part = holder.children[number - 1]
            elif number == 1:
                part = holder
            else:
                raise KeyError(number)
        return part


def parse(raw: bytes, max_depth: int = MAX_DEPTH, max_parts: int = MAX_PARTS) -> Part:
    root = _part(raw, 0, len(raw), "text", "plain")
    count = 1
    pending: list[tuple[Part, int]] = [(root, 0)]
    while pending:
        part, depth = pending.pop()
        if part.type == "multipart" and "boundary" in part.params:
            if depth >= max_depth:
                part.truncated = True
                continue
            for start, end in _split(raw, part.header_end, part.end, part.params["boundary"].encode()):
                if count >= max_parts:
                    part.truncated = True
                    break
                # RFC 2046 §5.1.5: in multipart/digest the default is message/rfc822.
                default = ("message", "rfc822") if part.subtype == "digest" else ("text", "plain")
                child = _part(raw, start, end, *default)
                part.children.append(child)
                count += 1
                pending.append((child, depth + 1))
        elif part.type == "message" and part.subtype in ("rfc822", "global"):
            if depth >= max_depth or count >= max_parts:
                part.truncated = True
                continue
            inner = _part(raw, part.header_end, part.end, "text", "plain")
            part.message = inner
            count += 1
            pending.append((inner, depth + 1))
    return root


def _part(raw: bytes, start: int, end: int, default_type: str, default_subtype: str) -> Part:
    header_end = _header_end(raw, start, end)
    part = Part(start, header_end, end, default_type, default_subtype)
    value = _content_type(raw[start:min(header_end, start + MAX_HEADER_SCAN)])
    if value is not None:
        match = _TYPE.match(value)
        if match:
            part.type = match.group(1).decode("ascii").lower()
            part.subtype = match.group(2).decode("ascii").lower()
            part.params = parameters(value[match.end():])
    return part


def parameters(text: bytes) -> dict[str, str]:
    """``; name=value`` parameters (RFC 2045 §5.1), names lower-cased, quotes removed,
    the first of a repeated name kept."""
    params: dict[str, str] = {}
    for name, value in _PARAM.findall(text):
        if value.startswith(b'"'):
            value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
        params.setdefault(name.decode("ascii").lower(), value.decode("utf-8", "replace"))
    return params


def _header_end(raw: bytes, start: int, end: int) -> int:
    """Where the body starts: after the first empty line (RFC 5322 §2.1), or at
    ``start`` when the part begins with one, or ``end`` when there is none."""
    if raw.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    if raw.startswith(b"\n", start) and start + 1 <= end:
        return start + 1
    ends = [at + len(separator) for separator in (b"\r\n\r\n", b"\n\n")
            if (at := raw.find(separator, start, end)) != -1]
    return min(ends, default=end)


def _content_type(header: bytes) -> bytes | None:
    """The unfolded value of the first Content-Type field."""
    lines = re.split(rb"\r?\n", header)
    for index, line in enumerate(lines):
        if line[:13].lower() == b"content-type:":
            value = line[13:]
            for following in lines[index + 1:]:
                if following[:1] in (b" ", b"\t"):
                    value += b" " + following.strip()
                else:
                    break
            return value
    return None


def _split(raw: bytes, body_start: int, body_end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The body parts between ``--boundary`` lines (RFC 2046 §5.1.1): each part runs from
    after its delimiter line to before the CRLF that precedes the next delimiter. Without
    a closing ``--boundary--`` the last part runs to the end (a truncated message)."""
    if not boundary or len(boundary) > 200:
        return []
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    spans: list[tuple[int, int]] = []
    body = raw[body_start:body_end]
    current: int | None = None
    for match in delimiter.finditer(body):
        if current is not None:
            spans.append((body_start + current, body_start + match.start()))
        if match.group(1):  # the close delimiter
            return spans
        current = match.end()
    if current is not None:
        spans.append((body_start + current, body_end))
    return spans
