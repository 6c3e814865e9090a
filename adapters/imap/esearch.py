"""Extended SEARCH results: the RETURN options of RFC 4731 (ESEARCH) and RFC 5182 (SAVE,
SEARCHRES), and the responses they ask for, with the MODSEQ item of RFC 7162 §3.1.5.

The session splits ``RETURN (...)`` off the SEARCH arguments with
``parse_return_options``, runs the search (``search.py``), and writes what comes back
with ``esearch_response`` (or ``search_response`` for a plain IMAP4rev1 SEARCH);
``saved_result`` says which messages ``$`` refers to afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.imap.responses import string
from adapters.imap.tokens import Atom, ParseError, Token

#: RFC 4731 §3.1 search-return-opt, plus SAVE (RFC 5182 §2.1).
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_REPORTED = ("MIN", "MAX", "ALL", "COUNT")


def parse_return_options(tokens: tuple[Token, ...]) -> tuple[set[str] | None, tuple[Token, ...]]:
    """``RETURN (options)`` at the start of the SEARCH arguments (before any CHARSET,
    RFC 4466 §2.6 search-return-opts): the options and the tokens after them. An empty
    list means ALL (RFC 4731 §3.1). Without RETURN: (None, tokens), a plain SEARCH."""
    tokens = tuple(tokens)
    if not tokens or not isinstance(tokens[0], Atom) or tokens[0].upper() != "RETURN":
        return None, tokens
    if len(tokens) < 2 or not isinstance(tokens[1], tuple):
        raise ParseError("RETURN takes a parenthesized list of options")
    options: set[str] = set()
    for token in tokens[1]:
        if not isinstance(token, Atom) or token.upper() not in RETURN_OPTIONS:
            raise ParseError("unknown RETURN option")  # RFC 4466 §2.6: BAD
        options.add(token.upper())
    return options or {"ALL"}, tokens[2:]


def compress(numbers: Iterable[int]) -> str:
    """A sequence set for the numbers, runs as ranges: ``1:3,5,7:9`` (RFC 9051 §9
    sequence-set; RFC 4731 §3.1 ALL). Unsorted or repeated input is tolerated."""
    ranges: list[str] = []
    ordered = sorted(set(numbers))
    start = 0
    for index in range(1, len(ordered) + 1):
        if index == len(ordered) or ordered[index] != ordered[index - 1] + 1:
            first, last = ordered[start], ordered[index - 1]
            ranges.append(str(first) if first == last else f"{first}:{last}")
            start = index
    return ",".join(ranges)


def compress_in_order(numbers: list[int]) -> str:
    """Numbers whose order matters (ESORT ALL, COPYUID pairs, RFC 4315 §3): ranges only
    when the whole list ascends, else each number as it stands."""
    return ",".join(str(n) for n in numbers) if numbers != sorted(numbers) else compress(numbers)


def esearch_response(tag: str, numbers: list[int], options: set[str], uid: bool,
                     modseq: int | None = None, *, sort_order: bool = False) -> bytes:
    """``* ESEARCH (TAG "A1") UID MIN 2 MAX 9 COUNT 4 ALL 2:4,9 MODSEQ 917`` CRLF.

    Items in the order of the RFC 4731 §3.1 examples (MIN, MAX, COUNT, ALL); MIN, MAX and
    ALL are left out when nothing matched, COUNT is then 0 (RFC 4731 §3.1). ``modseq`` is
    the highest mod-sequence of the matching messages, for a search with a MODSEQ key
    (RFC 7162 §3.1.5), left out when nothing matched. SAVE alone asks for no response at
    all (RFC 5182 §2.1, RFC 9051 §6.4.4): then b"" is returned."""
    if not options & set(_REPORTED):
        return b""
    # RFC 5267 §3.2 (ESORT): MIN and MAX are the first and last in sort order, and ALL
    # lists the numbers in that order.
    ordered = list(numbers) if sort_order else sorted(set(numbers))
    out = [b"* ESEARCH (TAG " + string(tag) + b")"]
    if uid:
        out.append(b"UID")
    if ordered and "MIN" in options:
        out.append(b"MIN %d" % ordered[0])
    if ordered and "MAX" in options:
        out.append(b"MAX %d" % ordered[-1])
    if "COUNT" in options:
        out.append(b"COUNT %d" % len(ordered))
    if ordered and "ALL" in options:
        out.append(b"ALL " + (compress_in_order(ordered) if sort_order else compress(ordered)).encode())
    if ordered and modseq is not None:
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out) + b"\r\n"


def search_response(numbers: list[int], modseq: int | None = None) -> bytes:
    """The IMAP4rev1 ``* SEARCH 2 5 6 (MODSEQ 917162500)`` CRLF (RFC 3501 §7.2.5 for the
    list; RFC 7162 §3.1.5 for the MODSEQ, given only when something matched)."""
    out = [b"* SEARCH"] + [b"%d" % number for number in numbers]
    if numbers and modseq is not None:
        out.append(b"(MODSEQ %d)" % modseq)
    return b" ".join(out) + b"\r\n"


def saved_result(numbers: list[int], options: set[str]) -> list[int]:
    """What ``$`` holds after SEARCH RETURN (SAVE ...) (RFC 5182 §2.4): only the MIN
    and/or MAX message when those are the only other options, else every match."""
    ordered = sorted(set(numbers))
    if not ordered or options & {"ALL", "COUNT"} or not options & {"MIN", "MAX"}:
        return ordered
    chosen = set()
    if "MIN" in options:
        chosen.add(ordered[0])
    if "MAX" in options:
        chosen.add(ordered[-1])
    return sorted(chosen)
