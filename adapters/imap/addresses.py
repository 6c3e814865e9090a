"""Address lists (RFC 5322 §3.4) as IMAP ENVELOPE address structures (RFC 9051 §7.5.2).

A linear scanner, not a grammar engine: quoted strings, comments (nested, but only to
``MAX_COMMENT_DEPTH`` and without recursion), angle addresses with an obsolete route,
and groups. Hostile headers cost linear time (checklist §2.11: Python's email parser
recurses on nested comments and is quadratic on some inputs). Display names are kept as
sent (RFC 2047 encoded words are not decoded: IMAP passes them through).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COMMENT_DEPTH = 50
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
MAX_ADDRESSES = 1000


@dataclass(frozen=True)
class Address:
    """``name adl mailbox host``; a group is opened by (None, None, name, None) and
    closed by (None, None, None, None), as RFC 9051 §7.5.2 writes them."""

    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None


GROUP_END = Address(None, None, None, None)


def parse_address_list(value: bytes) -> list[Address]:
    tokens = _tokens(value)
    out: list[Address] = []
    phrase: list[bytes] = []
    in_group = False
    i = 0
    while i < len(tokens) and len(out) < MAX_ADDRESSES:
        kind, text = tokens[i]
        if kind == "<":
            route, addr_spec, i = _angle(tokens, i + 1)
            out.append(_address(_phrase(phrase), route, addr_spec))
            phrase = []
        elif kind == ":" and not in_group and phrase:
            out.append(Address(None, None, _phrase(phrase), None))
            phrase, in_group = [], True
            i += 1
        elif kind == ";" and in_group:
            if phrase:
                out.append(_address(None, None, b"".join(phrase)))
                phrase = []
            out.append(GROUP_END)
            in_group = False
            i += 1
        elif kind == ",":
            if phrase:
                out.append(_address(None, None, b"".join(phrase)))
                phrase = []
            i += 1
        else:
            phrase.append(text)
            i += 1
    if phrase and len(out) < MAX_ADDRESSES:
        out.append(_address(None, None, b"".join(phrase)))
    if in_group:
        out.append(GROUP_END)
    return out


def _phrase(words: list[bytes]) -> bytes | None:
    """A display name as its text: quoted words unquoted (RFC 5322 §3.2.4)."""
    out = []
    for word in words:
        if len(word) >= 2 and word[:1] == b'"' and word[-1:] == b'"':
            word = _QUOTED_PAIR.sub(rb"\1", word[1:-1])
        out.append(word)
    return b" ".join(out) or None


def _angle(tokens: list[tuple[str, bytes]], i: int) -> tuple[bytes | None, bytes, int]:
    parts: list[bytes] = []
    while i < len(tokens) and tokens[i][0] != ">":
        parts.append(tokens[i][1])
        i += 1
    inner = b"".join(parts)
    route = None
    if inner.startswith(b"@") and b":" in inner:  # obs-route (RFC 5322 §4.4)
        route, _, inner = inner.partition(b":")
    return route, inner, i + 1


def _address(name: bytes | None, route: bytes | None, addr_spec: bytes) -> Address:
    mailbox, at, host = addr_spec.rpartition(b"@")
    if not at:
        mailbox, host = addr_spec, b""
    # RFC 9051 §7.5.2: host NIL marks group syntax; a missing domain is "" here.
    return Address(name, route, mailbox or None, host)


def _tokens(value: bytes) -> list[tuple[str, bytes]]:
    """Specials ``< > : ; , @`` as themselves; quoted strings with their quotes; words;
    comments and white space dropped (a comment still separates)."""
    tokens: list[tuple[str, bytes]] = []
    i, n = 0, len(value)
    while i < n:
        byte = value[i]
        if byte in b" \t\r\n":
            i += 1
        elif byte == 0x28:  # ( comment )
            depth = 0
            while i < n:
                if value[i] == 0x5C:
                    i += 2
                    continue
                if value[i] == 0x28:
                    depth += 1
                    if depth > MAX_COMMENT_DEPTH:
                        i = n  # absurd nesting: the rest is comment
                        break
                elif value[i] == 0x29:
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        elif byte == 0x22:  # "quoted"
            j = i + 1
            while j < n and value[j] != 0x22:
                j += 2 if value[j] == 0x5C else 1
            tokens.append(("word", value[i:j + 1]))
            i = j + 1
        elif byte in b"<>:;,":
            tokens.append((chr(byte), value[i:i + 1]))
            i += 1
        else:
            j = i
            while j < n and value[j] not in b' \t\r\n()"<>:;,':
                j += 1
            tokens.append(("word", value[i:j]))
            i = j
    return tokens
