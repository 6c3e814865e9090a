"""SEARCH: the RFC 9051 §6.4.4 keys parsed into a tree and evaluated, and hostile
criteria refused in bounded time."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import pytest

from adapters.imap.framing import Command, CommandFramer
from adapters.imap.search import Key, Matcher, parse_search
from adapters.imap.tokens import ParseError, parse_command, parse_sequence_set


@dataclass
class Message:
    uid: int
    seq: int
    flags: frozenset[str] = frozenset()
    internal_date: dt.date = dt.date(2026, 11, 27)
    sent_date: dt.date | None = dt.date(2026, 11, 26)
    size: int = 1000
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name.upper(), "")

    def header_text(self) -> str:
        return "\r\n".join(f"{k}: {v}" for k, v in self.headers.items())

    def body_text(self) -> str:
        return self.body


def criteria(text: bytes) -> Key:
    framer = CommandFramer(max_line=1_000_000)
    framer.receive_data(b"t SEARCH " + text + b"\r\n")
    [command] = [e for e in framer.events() if isinstance(e, Command)]
    return parse_search(parse_command(command, max_depth=100).args)


MESSAGES = [
    Message(3, 1, frozenset({"\\Seen"}), size=500, headers={"FROM": "Alice <alice@example.test>",
                                                            "SUBJECT": "Quarterly Report"}, body="numbers"),
    Message(7, 2, frozenset({"\\Flagged", "$Work"}), dt.date(2026, 11, 1), size=5000,
            headers={"FROM": "bob@example.test", "TO": "alice@example.test"}, body="hello WORLD"),
    Message(9, 3, frozenset(), dt.date(2026, 10, 1), sent_date=None, size=20_000,
            headers={"SUBJECT": "hello"}, body=""),
]


def found(text: bytes) -> list[int]:
    matcher = Matcher(criteria(text), largest_seq=3, largest_uid=9)
    return [m.uid for m in MESSAGES if matcher(m)]


@pytest.mark.parametrize(("text", "uids"), [
    (b"ALL", [3, 7, 9]),
    (b"SEEN", [3]),
    (b"UNSEEN", [7, 9]),
    (b"FLAGGED KEYWORD $Work", [7]),
    (b"UNKEYWORD $work", [3, 9]),          # keywords compare case-insensitively
    (b"FROM alice", [3]),
    (b'SUBJECT "hello"', [9]),
    (b"BODY world", [7]),                    # substring, case-insensitive
    (b"TEXT alice", [3, 7]),                 # header or body
    (b'HEADER To "alice@example"', [7]),
    (b"LARGER 1000 SMALLER 10000", [7]),
    (b"BEFORE 2-Nov-2026", [7, 9]),
    (b"ON 27-Nov-2026", [3]),
    (b"SINCE 1-nov-2026", [3, 7]),
    (b"SENTON 26-Nov-2026", [3, 7]),
    (b"NOT SEEN", [7, 9]),
    (b"OR SEEN LARGER 10000", [3, 9]),
    (b"(SEEN) (FROM alice)", [3]),
    (b"2:*", [7, 9]),
    (b"UID 7:8,1", [7]),
    (b"UID *", [9]),
    (b"OR (SEEN FROM bob) NOT (UNSEEN)", [3]),
])
def test_keys_select_the_rfc_messages(text: bytes, uids: list[int]) -> None:
    assert found(text) == uids


@pytest.mark.parametrize("text", [b"", b"FROM", b"BEFORE 31-Feb-2026", b"BEFORE 1-Foo-2026", b"LARGER x",
                                  b"NOSUCHKEY", b"OR SEEN", b"()", b"UID 0"])
def test_malformed_criteria_are_refused(text: bytes) -> None:
    with pytest.raises(ParseError):
        criteria(text)


def test_deep_or_chains_and_nesting_are_bounded() -> None:
    started = time.monotonic()
    with pytest.raises(ParseError):
        criteria(b"NOT " * 100 + b"ALL")
    with pytest.raises(ParseError):
        criteria(b"(" * 50 + b"ALL" + b")" * 50)
    with pytest.raises(ParseError, match="too many"):
        criteria(b"SEEN " * 2000)
    assert time.monotonic() - started < 1.0
    assert criteria(b"OR SEEN OR DRAFT OR FLAGGED DELETED").name == "OR"


def test_sequence_sets_are_resolved_once_per_search() -> None:
    key = Key("SEQ", parse_sequence_set("1:*"))
    matcher = Matcher(key, largest_seq=100_000, largest_uid=100_000)
    started = time.monotonic()
    assert all(matcher(Message(uid=n, seq=n)) for n in range(1, 20_001))
    assert time.monotonic() - started < 2.0
