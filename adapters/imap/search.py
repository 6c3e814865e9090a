"""SEARCH criteria (RFC 9051 §6.4.4) as a tree, and its evaluation against a message.

The parser takes the tokens after SEARCH (and after an optional ``CHARSET``); the tree
is evaluated against anything that offers the ``Searchable`` properties, so the session
decides what to load (flags and sizes from the view, text only when a text key asks).
String matching is case-insensitive substring matching, as the RFC asks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from adapters.imap.tokens import NIL, Atom, ParseError, SequenceSet, String, Token, parse_sequence_set

_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
#: Flag keys: name -> (flag, wanted).
_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}
_STRING_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}
MAX_KEYS = 1000


class Searchable(Protocol):
    uid: int
    seq: int
    flags: frozenset[str]
    internal_date: dt.date
    sent_date: dt.date | None
    size: int

    def header(self, name: str) -> str:
        """The named field's values, joined ("" when absent)."""
        ...

    def header_text(self) -> str: ...

    def body_text(self) -> str: ...


@dataclass(frozen=True)
class Key:
    """One criterion: ``name`` and its argument (a str, int, date, set, or sub-keys)."""

    name: str
    arg: object = None


def parse_search(tokens: tuple[Token, ...]) -> Key:
    """All keys AND-ed (RFC 9051 §6.4.4: several keys all match)."""
    position = [0]
    keys: list[Key] = []
    while position[0] < len(tokens):
        keys.append(_key(tokens, position, depth=0))
        if len(keys) > MAX_KEYS:
            raise ParseError("too many search keys")
    if not keys:
        raise ParseError("SEARCH needs a key")
    return keys[0] if len(keys) == 1 else Key("AND", tuple(keys))


def _key(tokens: tuple[Token, ...], position: list[int], depth: int) -> Key:
    if depth > 32:
        raise ParseError("search keys nested too deeply")
    token = _take(tokens, position)
    if isinstance(token, tuple):
        inner_position, inner = [0], []
        while inner_position[0] < len(token):
            inner.append(_key(token, inner_position, depth + 1))
        if not inner:
            raise ParseError("empty search key list")
        return inner[0] if len(inner) == 1 else Key("AND", tuple(inner))
    if not isinstance(token, Atom):
        raise ParseError("a search key was expected")
    name = token.upper()
    if name == "ALL":
        return Key("ALL")
    if name in _FLAG_KEYS:
        return Key("FLAG", _FLAG_KEYS[name])
    if name in ("KEYWORD", "UNKEYWORD"):
        return Key("FLAG", (_atom(_take(tokens, position)), name == "KEYWORD"))
    if name in _STRING_KEYS:
        return Key(name, _string(_take(tokens, position)))
    if name == "HEADER":
        field = _string(_take(tokens, position))
        return Key("HEADER", (field, _string(_take(tokens, position))))
    if name in _DATE_KEYS:
        return Key(name, _date(_take(tokens, position)))
    if name in ("LARGER", "SMALLER"):
        return Key(name, _number(_take(tokens, position)))
    if name == "NOT":
        return Key("NOT", _key(tokens, position, depth + 1))
    if name == "OR":
        return Key("OR", (_key(tokens, position, depth + 1), _key(tokens, position, depth + 1)))
    if name == "UID":
        return Key("UID", parse_sequence_set(_atom(_take(tokens, position))))
    try:
        return Key("SEQ", parse_sequence_set(token.value))
    except ParseError:
        raise ParseError(f"unknown search key {token.value[:30]!r}") from None


def _take(tokens: tuple[Token, ...], position: list[int]) -> Token:
    if position[0] >= len(tokens):
        raise ParseError("a search key is missing its argument")
    token = tokens[position[0]]
    position[0] += 1
    return token


def _string(token: Token) -> str:
    if isinstance(token, String):
        return token.value.decode("utf-8", "replace")
    if isinstance(token, Atom):
        return token.value
    if token is NIL:
        return "NIL"
    raise ParseError("a string was expected")


def _atom(token: Token) -> str:
    if not isinstance(token, Atom):
        raise ParseError("an atom was expected")
    return token.value


def _number(token: Token) -> int:
    text = _atom(token)
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise ParseError(f"a number was expected, not {text[:20]!r}")
    return int(text)


def _date(token: Token) -> dt.date:
    """RFC 9051 §9 date: d-MMM-yyyy, optionally quoted."""
    text = _string(token)
    day, _, rest = text.partition("-")
    month, _, year = rest.partition("-")
    if not (day.isdigit() and year.isdigit() and len(day) <= 2 and len(year) == 4
            and month.upper() in _MONTHS):
        raise ParseError(f"invalid date {text[:20]!r}")
    try:
        return dt.date(int(year), _MONTHS[month.upper()], int(day))
    except ValueError:
        raise ParseError(f"invalid date {text[:20]!r}") from None


# -- evaluation ---------------------------------------------------------------------------


class Matcher:
    """Evaluates one parsed SEARCH against the messages of one mailbox state; sequence
    sets are resolved once, not per message."""

    def __init__(self, key: Key, *, largest_seq: int, largest_uid: int) -> None:
        self.key = key
        self.largest = {"SEQ": largest_seq, "UID": largest_uid}
        self._resolved: dict[int, set[int]] = {}

    def __call__(self, message: Searchable) -> bool:
        return self._match(self.key, message)

    def _members(self, name: str, sequence_set: SequenceSet) -> set[int]:
        found = self._resolved.get(id(sequence_set))
        if found is None:
            found = self._resolved[id(sequence_set)] = set(sequence_set.resolve(self.largest[name]))
        return found

    def _match(self, key: Key, message: Searchable) -> bool:
        name, arg = key.name, key.arg
        if name == "ALL":
            return True
        if name == "AND":
            return all(self._match(k, message) for k in arg)  # type: ignore[union-attr]
        if name == "OR":
            left, right = arg  # type: ignore[misc]
            return self._match(left, message) or self._match(right, message)
        if name == "NOT":
            return not self._match(arg, message)  # type: ignore[arg-type]
        if name == "FLAG":
            flag, wanted = arg  # type: ignore[misc]
            return (flag.lower() in {f.lower() for f in message.flags}) == wanted
        if name in ("SEQ", "UID"):
            number = message.seq if name == "SEQ" else message.uid
            return number in self._members(name, arg)  # type: ignore[arg-type]
        if name in ("LARGER", "SMALLER"):
            return message.size > arg if name == "LARGER" else message.size < arg  # type: ignore[operator]
        if name in ("BEFORE", "ON", "SINCE"):
            return _compare(name, message.internal_date, arg)  # type: ignore[arg-type]
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            sent = message.sent_date
            return sent is not None and _compare(name.removeprefix("SENT"), sent, arg)  # type: ignore[arg-type]
        if name == "HEADER":
            field, needle = arg  # type: ignore[misc]
            return needle.lower() in message.header(field).lower()
        if name in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
            return arg.lower() in message.header(name).lower()  # type: ignore[union-attr]
        if name == "BODY":
            return arg.lower() in message.body_text().lower()  # type: ignore[union-attr]
        if name == "TEXT":  # RFC 9051 §6.4.4: in the header or the body
            needle = arg.lower()  # type: ignore[union-attr]
            return needle in message.header_text().lower() or needle in message.body_text().lower()
        raise ValueError(name)


def _compare(name: str, value: dt.date, against: dt.date) -> bool:
    """RFC 9051 §6.4.4 date keys compare whole days, disregarding time and timezone."""
    if name == "BEFORE":
        return value < against
    return value == against if name == "ON" else value >= against
