"""IMAP command arguments as tokens, and sequence sets (RFC 9051 §4, §9), without I/O.

A framed ``Command`` (``framing.py``) becomes its tag, its name and a tuple of tokens:
``Atom`` (including flags like ``\\Seen``, numbers, sequence sets, and fetch items with
their ``[section]<partial>``), ``String`` (quoted or literal), ``NIL`` and nested tuples
for parenthesized lists. What each command accepts is checked later, per command.

Refused with ``ParseError`` (the session answers BAD): CR, LF or NUL in a quoted string
(RFC 9051 §4.3; Dovecot CVE-2019-11500), NUL in a non-binary literal, unbalanced
parentheses or brackets, lists nested deeper than ``max_depth`` (Dovecot CVE-2026-27857:
100,000 "(" must cost microseconds, not memory), control characters in atoms.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.imap.framing import Command, Literal

#: RFC 9051 §9 atom-specials, less those a generic tokenizer keeps inside atoms:
#: list wildcards (LIST patterns), "]" (fetch sections are read as part of an atom).
_ATOM_END = frozenset(b' ()"{')
MAX_DEPTH = 32


class ParseError(ValueError):
    """A command that does not follow the grammar; the message is for the BAD reply."""


@dataclass(frozen=True)
class Atom:
    value: str

    def upper(self) -> str:
        return self.value.upper()


@dataclass(frozen=True)
class String:
    """A quoted string or a literal: bytes, as IMAP strings are."""

    value: bytes
    literal: bool = False
    binary: bool = False


class _Nil:
    def __repr__(self) -> str:
        return "NIL"


NIL = _Nil()
Token = Atom | String | _Nil | tuple  # a tuple holds Tokens


@dataclass(frozen=True)
class ParsedCommand:
    tag: str
    name: str
    args: tuple[Token, ...]


def parse_command(command: Command, max_depth: int = MAX_DEPTH) -> ParsedCommand:
    tokens = _Tokenizer(command.parts, max_depth).all()
    if len(tokens) < 2 or not isinstance(tokens[0], Atom) or not isinstance(tokens[1], Atom):
        raise ParseError("expected: tag SP command")
    tag = tokens[0].value
    if any(ch in tag for ch in "+*%]") or not tag.isascii():
        raise ParseError("invalid tag")
    return ParsedCommand(tag, tokens[1].value.upper(), tuple(tokens[2:]))


class _Tokenizer:
    def __init__(self, parts: tuple[bytes | Literal, ...], max_depth: int) -> None:
        self.parts = parts
        self.max_depth = max_depth
        self.index = 0
        self.pos = 0

    def all(self) -> list[Token]:
        stack: list[list[Token]] = [[]]
        while True:
            token = self._next()
            if token is None:
                break
            if token == "(":
                if len(stack) > self.max_depth:
                    raise ParseError("lists nested too deeply")
                stack.append([])
            elif token == ")":
                if len(stack) == 1:
                    raise ParseError("unbalanced ')'")
                done = tuple(stack.pop())
                stack[-1].append(done)
            else:
                stack[-1].append(token)
        if len(stack) != 1:
            raise ParseError("unbalanced '('")
        return stack[0]

    # -- one token at a time -----------------------------------------------------------

    def _next(self) -> Token | str | None:
        while self.index < len(self.parts):
            part = self.parts[self.index]
            if isinstance(part, Literal):
                self.index += 1
                self.pos = 0
                if not part.binary and b"\x00" in part.data:
                    raise ParseError("NUL in a literal (use a binary literal ~{n})")
                return String(part.data, literal=True, binary=part.binary)
            if self.pos >= len(part):
                self.index += 1
                self.pos = 0
                continue
            byte = part[self.pos]
            if byte == 0x20:
                self.pos += 1
                continue
            if byte in (0x28, 0x29):  # ( )
                self.pos += 1
                return "(" if byte == 0x28 else ")"
            if byte == 0x22:  # "
                return self._quoted(part)
            return self._atom(part)
        return None

    def _quoted(self, part: bytes) -> String:
        # RFC 9051 §4.3: quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR excludes CR, LF
        # (and NUL, a CHAR8 nobody may send); "\" escapes only "\" and DQUOTE.
        out = bytearray()
        i = self.pos + 1
        while i < len(part):
            byte = part[i]
            if byte == 0x22:
                self.pos = i + 1
                return String(bytes(out))
            if byte == 0x5C:
                if i + 1 >= len(part) or part[i + 1] not in (0x22, 0x5C):
                    raise ParseError("invalid escape in quoted string")
                out.append(part[i + 1])
                i += 2
                continue
            if byte in (0x00, 0x0A, 0x0D):
                raise ParseError("CR, LF or NUL in a quoted string")
            out.append(byte)
            i += 1
        raise ParseError("unterminated quoted string")

    def _atom(self, part: bytes) -> Atom:
        start = i = self.pos
        depth = 0  # inside [ ] (fetch sections) spaces and parentheses belong to the atom
        while i < len(part):
            byte = part[i]
            if byte < 0x20 or byte == 0x7F:
                raise ParseError("control character in an atom")
            if byte > 0x7F:  # RFC 9051 §9: ATOM-CHAR is 7-bit (8-bit text must be quoted)
                raise ParseError("8-bit character in an atom")
            if byte == 0x5B:  # [
                depth += 1
                if depth > self.max_depth:
                    raise ParseError("brackets nested too deeply")
            elif byte == 0x5D:  # ]
                if depth == 0:
                    raise ParseError("unbalanced ']'")
                depth -= 1
            elif depth == 0 and byte in _ATOM_END:
                break
            i += 1
        if depth:
            raise ParseError("unbalanced '['")
        if i == start:
            raise ParseError(f"unexpected {chr(part[i])!r}")
        self.pos = i
        text = part[start:i].decode("ascii")
        if text.upper() == "NIL":
            return NIL  # type: ignore[return-value]
        return Atom(text)


# -- sequence sets (RFC 9051 §9 sequence-set; "$" is RFC 5182 SEARCHRES) ---------------

@dataclass(frozen=True)
class SequenceSet:
    """Ranges of message numbers or UIDs; ``None`` stands for ``*`` (the largest)."""

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False  # "$": the result of the last SEARCH ... SAVE

    def __str__(self) -> str:
        if self.saved:
            return "$"

        def number(value: int | None) -> str:
            return "*" if value is None else str(value)

        return ",".join(number(a) if a == b else f"{number(a)}:{number(b)}" for a, b in self.ranges)

    def resolve(self, largest: int) -> list[int]:
        """The numbers in the set for a mailbox whose largest number is ``largest``,
        ascending, each once (RFC 9051 §9: "*" is the largest; a:b equals b:a)."""
        if largest < 1:
            return []  # an empty mailbox: "*" names nothing (0 is never a number)
        chosen: set[int] = set()
        for first, last in self.ranges:
            low = largest if first is None else first
            high = largest if last is None else last
            low, high = min(low, high), max(low, high)
            chosen.update(range(low, min(high, largest) + 1))
        return sorted(chosen)


MAX_NUMBER = 2**32 - 1  # RFC 9051 §9: nz-number fits in 32 bits


def parse_sequence_set(text: str) -> SequenceSet:
    if text == "$":
        return SequenceSet(saved=True)
    if not text:
        raise ParseError("empty sequence set")
    ranges = []
    for item in text.split(","):
        first, colon, last = item.partition(":")
        if colon and not last:
            raise ParseError(f"invalid sequence range {item!r}")
        start = _seq_number(first)
        ranges.append((start, _seq_number(last) if colon else start))
    return SequenceSet(tuple(ranges))


def _seq_number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isascii() or not text.isdigit() or text[0] == "0" or len(text) > 10:
        raise ParseError(f"invalid message number {text!r}")
    value = int(text)
    if value > MAX_NUMBER:
        raise ParseError(f"message number {text} too large")
    return value
