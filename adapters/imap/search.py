"""SEARCH criteria (RFC 9051 §6.4.4) as a tree, and its evaluation against a message.

The parser takes the tokens after SEARCH (and after an optional ``CHARSET``); the tree
is evaluated against anything that offers the ``Searchable`` properties, so the session
decides what to load (flags and sizes from the view, text only when a text key asks).
String matching is case-insensitive substring matching, as the RFC asks.

Extension keys: OLDER/YOUNGER (RFC 5032 WITHIN), MODSEQ (RFC 7162 CONDSTORE),
SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED (RFC 8514), EMAILID/THREADID (RFC 8474)
and ``$``, the saved result of RFC 5182 (SEARCHRES), in place of a sequence set.
``uses_modseq``, ``needs_body`` and ``needs_headers`` tell the session what a parsed
search will read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
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
    # RFC 3501 §6.4.4: \Recent is never claimed by a session here (RFC 9051 dropped it),
    # so RECENT and NEW match nothing and OLD matches everything.
    "RECENT": ("\\Recent", True), "OLD": ("\\Recent", False),
}
_STRING_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE",
              "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"}  # RFC 8514 §4.3
MAX_KEYS = 1000
#: RFC 7162 §7 mod-sequence-value: a positive 63-bit number.
MAX_MODSEQ = 2**63 - 1
#: RFC 7162 §7 entry-type-req.
_ENTRY_TYPES = {"PRIV", "SHARED", "ALL"}
#: RFC 8474 §7 objectid = 1*255(ALPHA / DIGIT / "_" / "-").
_OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")
_HEADER_KEYS = {"BCC", "CC", "FROM", "SUBJECT", "TO", "HEADER", "TEXT", "SENTBEFORE", "SENTON", "SENTSINCE"}


class Searchable(Protocol):
    uid: int
    seq: int
    flags: frozenset[str]
    internal_date: dt.date
    internal_datetime: dt.datetime  # RFC 5032: OLDER/YOUNGER count seconds
    sent_date: dt.date | None
    size: int
    modseq: int  # RFC 7162
    save_date: dt.date | None  # RFC 8514; None where the mailbox keeps no save dates
    email_id: str  # RFC 8474
    thread_id: str

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
    if name == "NEW":  # RFC 3501 §6.4.4: RECENT UNSEEN
        return Key("AND", (Key("FLAG", ("\\Recent", True)), Key("FLAG", ("\\Seen", False))))
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
    if name in ("OLDER", "YOUNGER"):  # RFC 5032 §3: "OLDER" SP nz-number
        seconds = _number(_take(tokens, position))
        if seconds == 0:
            raise ParseError(f"{name} needs a positive number of seconds")
        return Key(name, seconds)
    if name == "MODSEQ":
        return Key("MODSEQ", _modseq(tokens, position))
    if name == "SAVEDATESUPPORTED":  # RFC 8514 §4.3
        return Key(name)
    if name in ("EMAILID", "THREADID"):  # RFC 8474 §6
        return Key(name, _object_id(_take(tokens, position)))
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


def _modseq(tokens: tuple[Token, ...], position: list[int]) -> int:
    """RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer;
    the entry name (a quoted "/flags/..." string) and type only narrow which flag's
    mod-sequence counts, and this server keeps one per message, so they are skipped."""
    token = _take(tokens, position)
    if isinstance(token, String):
        entry_type = _take(tokens, position)
        if not isinstance(entry_type, Atom) or entry_type.upper() not in _ENTRY_TYPES:
            raise ParseError("MODSEQ entry type must be priv, shared or all")
        token = _take(tokens, position)
    value = _number(token)
    if value > MAX_MODSEQ:
        raise ParseError("mod-sequence too large")
    return value


def _object_id(token: Token) -> str:
    text = _atom(token)
    if not _OBJECT_ID.match(text):
        raise ParseError(f"invalid object id {text[:30]!r}")
    return text


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
    sets are resolved once, not per message. ``now`` is the moment OLDER and YOUNGER
    count back from (one instant for the whole search); ``saved`` the UIDs of the last
    SEARCH ... SAVE, which ``$`` stands for (RFC 5182 §2.1: none saved, ``$`` is empty)."""

    def __init__(self, key: Key, *, largest_seq: int, largest_uid: int, now: dt.datetime | None = None,
                 saved: set[int] | None = None) -> None:
        self.key = key
        self.largest = {"SEQ": largest_seq, "UID": largest_uid}
        self._resolved: dict[int, set[int]] = {}
        self.now = _aware(now if now is not None else dt.datetime.now(dt.UTC))
        self.saved: set[int] = saved if saved is not None else set()

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
            if arg.saved:  # type: ignore[union-attr]
                # RFC 5182 §2.1: "$" names the same messages in SEARCH and UID SEARCH.
                return message.uid in self.saved
            number = message.seq if name == "SEQ" else message.uid
            return number in self._members(name, arg)  # type: ignore[arg-type]
        if name in ("LARGER", "SMALLER"):
            return message.size > arg if name == "LARGER" else message.size < arg  # type: ignore[operator]
        if name in ("BEFORE", "ON", "SINCE"):
            return _compare(name, message.internal_date, arg)  # type: ignore[arg-type]
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            sent = message.sent_date
            return sent is not None and _compare(name.removeprefix("SENT"), sent, arg)  # type: ignore[arg-type]
        return self._match_extension(name, arg, message)

    def _match_extension(self, name: str, arg: object, message: Searchable) -> bool:
        if name in ("OLDER", "YOUNGER"):
            # RFC 5032 §3: by INTERNALDATE, in seconds before now. Both bounds include the
            # boundary second, as Dovecot and mox do.
            age = (self.now - _aware(message.internal_datetime)).total_seconds()
            return age >= arg if name == "OLDER" else age <= arg  # type: ignore[operator]
        if name == "MODSEQ":  # RFC 7162 §3.1.5: equal to or greater than
            return message.modseq >= arg  # type: ignore[operator]
        if name in ("SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"):
            # RFC 8514 §4.3: without a save date the internal date stands in for it.
            saved = message.save_date if message.save_date is not None else message.internal_date
            return _compare(name.removeprefix("SAVED"), saved, arg)  # type: ignore[arg-type]
        if name == "SAVEDATESUPPORTED":
            # RFC 8514 §4.3: all messages of a mailbox that keeps save dates, else none;
            # the session gives every message of such a mailbox a save date.
            return message.save_date is not None
        if name in ("EMAILID", "THREADID"):  # RFC 8474 §6: exact, case-sensitive
            return (message.email_id if name == "EMAILID" else message.thread_id) == arg
        return self._match_text(name, arg, message)

    def _match_text(self, name: str, arg: object, message: Searchable) -> bool:
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


def _aware(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _compare(name: str, value: dt.date, against: dt.date) -> bool:
    """RFC 9051 §6.4.4 date keys compare whole days, disregarding time and timezone."""
    if name == "BEFORE":
        return value < against
    return value == against if name == "ON" else value >= against


# -- what a search reads ------------------------------------------------------------------


def _names(key: Key) -> Iterator[str]:
    """Every key name in the tree, without recursion."""
    stack = [key]
    while stack:
        current = stack.pop()
        yield current.name
        if current.name in ("AND", "OR"):
            stack.extend(current.arg)  # type: ignore[arg-type]
        elif current.name == "NOT":
            stack.append(current.arg)  # type: ignore[arg-type]


def uses_modseq(key: Key) -> bool:
    """Whether the search has a MODSEQ key: the response then carries the highest
    mod-sequence of the matches (RFC 7162 §3.1.5)."""
    return any(name == "MODSEQ" for name in _names(key))


def needs_body(key: Key) -> bool:
    """Whether evaluating calls ``body_text`` (BODY, TEXT)."""
    return any(name in ("BODY", "TEXT") for name in _names(key))


def needs_headers(key: Key) -> bool:
    """Whether evaluating reads header fields: ``header``/``header_text`` (BCC, CC, FROM,
    SUBJECT, TO, HEADER, TEXT) or the Date field as ``sent_date`` (SENT*)."""
    return any(name in _HEADER_KEYS for name in _names(key))
