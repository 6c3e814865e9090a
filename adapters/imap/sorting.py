"""SORT (RFC 5256 §3) with the DISPLAYFROM and DISPLAYTO keys of RFC 5957: the sort
criteria parsed, and the messages a search selected put in order.

The session hands over one ``SortInput`` per message (dates, size, and the raw Subject,
From, To and Cc values) and gets back the numbers in order. Keys are computed once per
message; several criteria are applied as successive stable sorts, last criterion first,
over an input already in sequence order, so equal keys keep mailbox order even under
REVERSE (RFC 5256 §3: REVERSE does not reverse that implicit last criterion).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from adapters.imap.addresses import parse_address_list
from adapters.imap.charsets import decode_words
from adapters.imap.threads import MAX_HEADER, base_subject, sent_key
from adapters.imap.tokens import Atom, ParseError, Token

#: RFC 5256 §3 sort-key, plus RFC 5957 §3 DISPLAYFROM / DISPLAYTO.
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})


@dataclass(frozen=True)
class SortInput:
    """One message: ``number`` is what the response prints (sequence number or UID) and
    also the final tie-breaker; header values are raw ("" when absent)."""

    number: int
    arrival: dt.datetime  # INTERNALDATE
    sent: dt.datetime | None  # the Date field, None when missing or unparseable
    size: int  # RFC822.SIZE
    subject: str
    from_: str
    to: str
    cc: str


def parse_sort_criteria(token: Token) -> list[tuple[str, bool]]:
    """The parenthesized sort criteria as (key, reverse) pairs (RFC 5256 §5:
    sort-criteria = "(" sort-criterion *(SP sort-criterion) ")";
    sort-criterion = ["REVERSE" SP] sort-key)."""
    if not isinstance(token, tuple) or not token:
        raise ParseError("SORT needs a parenthesized list of sort criteria")
    criteria: list[tuple[str, bool]] = []
    reverse = False
    for item in token:
        if not isinstance(item, Atom):
            raise ParseError("a sort key was expected")
        name = item.upper()
        if name == "REVERSE":
            if reverse:
                raise ParseError("REVERSE must precede a sort key")
            reverse = True
        elif name in SORT_KEYS:
            criteria.append((name, reverse))
            reverse = False
        else:
            raise ParseError(f"unknown sort key {item.value[:30]!r}")
    if reverse:
        raise ParseError("REVERSE must precede a sort key")
    return criteria


def sort_messages(items: Iterable[SortInput], criteria: list[tuple[str, bool]]) -> list[int]:
    """The numbers of ``items`` in SORT order."""
    ordered = sorted(items, key=lambda item: item.number)  # RFC 5256 §3: ties by sequence
    for name, reverse in reversed(criteria):
        ordered.sort(key=_KEYS[name], reverse=reverse)  # stable, also when reversed
    return [item.number for item in ordered]


def _date(item: SortInput) -> dt.datetime:
    # RFC 5256 §2.2: the sent date; the INTERNALDATE when the Date cannot be used.
    return sent_key(item.sent if item.sent is not None else item.arrival)


def first_mailbox(value: str) -> str:
    """RFC 5256 §3 FROM/TO/CC: the addr-mailbox (local part) of the first address, as
    ENVELOPE would give it (a group's first entry carries the group name), casefolded;
    "" when there is none (the empty string sorts first)."""
    addresses = parse_address_list(value[:MAX_HEADER].encode("utf-8", "surrogateescape"))
    if not addresses or addresses[0].mailbox is None:
        return ""
    return addresses[0].mailbox.decode("utf-8", "replace").casefold()


def display_name(value: str) -> str:
    """RFC 5957 §3 DISPLAYFROM/DISPLAYTO: the display name of the first address, RFC 2047
    decoded; without one, the address itself (mailbox@host); casefolded."""
    addresses = parse_address_list(value[:MAX_HEADER].encode("utf-8", "surrogateescape"))
    if not addresses:
        return ""
    first = addresses[0]
    if first.name:
        name = " ".join(decode_words(first.name.decode("utf-8", "replace")).split())
        if name:
            return name.casefold()
    mailbox = (first.mailbox or b"").decode("utf-8", "replace")
    host = (first.host or b"").decode("utf-8", "replace")
    return (f"{mailbox}@{host}" if mailbox and host else mailbox).casefold()


_KEYS: dict[str, Callable[[SortInput], Any]] = {
    "ARRIVAL": lambda item: sent_key(item.arrival),
    "DATE": _date,
    "SIZE": lambda item: item.size,
    "SUBJECT": lambda item: base_subject(item.subject),  # RFC 5256 §2.1
    "FROM": lambda item: first_mailbox(item.from_),
    "TO": lambda item: first_mailbox(item.to),
    "CC": lambda item: first_mailbox(item.cc),
    "DISPLAYFROM": lambda item: display_name(item.from_),
    "DISPLAYTO": lambda item: display_name(item.to),
}
