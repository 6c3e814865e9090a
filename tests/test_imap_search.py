"""SEARCH: the RFC 9051 §6.4.4 keys parsed into a tree and evaluated, and hostile
criteria refused in bounded time."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import pytest

from adapters.imap.framing import Command, CommandFramer
from adapters.imap.search import Key, Matcher, needs_body, needs_headers, parse_search, uses_modseq
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
    internal_datetime: dt.datetime = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    modseq: int = 1
    save_date: dt.date | None = None
    email_id: str = ""
    thread_id: str = ""

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


# -- extension keys ------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
EXTENDED = [
    Message(3, 1, internal_datetime=NOW - dt.timedelta(seconds=30), modseq=5, save_date=dt.date(2026, 11, 20),
            email_id="M1a", thread_id="T1"),
    Message(7, 2, internal_date=dt.date(2026, 11, 1), internal_datetime=NOW - dt.timedelta(hours=2),
            modseq=917162500, save_date=None, email_id="m1a", thread_id="T1"),
    Message(9, 3, internal_datetime=dt.datetime(2026, 11, 27, 11, 59), modseq=1,  # naive: UTC
            save_date=dt.date(2026, 11, 27), email_id="M2", thread_id="T-2"),
]


def found_extended(text: bytes, saved: set[int] | None = None) -> list[int]:
    matcher = Matcher(criteria(text), largest_seq=3, largest_uid=9, now=NOW, saved=saved)
    return [m.uid for m in EXTENDED if matcher(m)]


@pytest.mark.parametrize(("text", "uids"), [
    (b"YOUNGER 60", [3, 9]),                  # RFC 5032: seconds before now, by INTERNALDATE
    (b"YOUNGER 30", [3]),                     # the boundary second is within
    (b"OLDER 30", [3, 7, 9]),                 # ... and older, as Dovecot and mox count
    (b"OLDER 3600", [7]),
    (b"NOT YOUNGER 3600", [7]),
    (b"MODSEQ 5", [3, 7]),                    # RFC 7162 §3.1.5: equal or greater
    (b'MODSEQ "/flags/\\\\draft" all 620162338', [7]),  # the entry name and type are skipped
    (b'MODSEQ "/flags/$work" PRIV 0', [3, 7, 9]),
    (b"SAVEDBEFORE 20-Nov-2026", [7]),        # RFC 8514: no save date, so the internal date
    (b"SAVEDON 20-Nov-2026", [3]),
    (b'SAVEDSINCE "21-Nov-2026"', [9]),
    (b"SAVEDATESUPPORTED", [3, 9]),
    (b"EMAILID M1a", [3]),                    # RFC 8474: exact, case-sensitive
    (b"THREADID T1", [3, 7]),
    (b"OR THREADID T-2 EMAILID m1a", [7, 9]),
])
def test_extension_keys_select_the_rfc_messages(text: bytes, uids: list[int]) -> None:
    assert found_extended(text) == uids


def test_dollar_is_the_saved_result_in_sequence_and_uid_keys() -> None:
    # RFC 5182 §2.1: "$" holds UIDs, and means the same messages in SEARCH and UID SEARCH.
    assert found_extended(b"$", saved={7, 9}) == [7, 9]
    assert found_extended(b"UID $", saved={3}) == [3]
    assert found_extended(b"NOT $ SEEN", saved={3}) == []
    assert found_extended(b"OR $ 1", saved={9}) == [3, 9]
    assert found_extended(b"$") == []  # nothing saved: "$" is empty, not an error
    assert found_extended(b"UID $", saved=set()) == []


def test_the_default_now_is_the_current_time() -> None:
    recent = Message(1, 1, internal_datetime=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))
    assert Matcher(criteria(b"YOUNGER 3600"), largest_seq=1, largest_uid=1)(recent)
    assert not Matcher(criteria(b"OLDER 3600"), largest_seq=1, largest_uid=1)(recent)


@pytest.mark.parametrize("text", [b"OLDER 0", b"YOUNGER x", b"OLDER", b'MODSEQ "/flags/x" mine 5',
                                  b'MODSEQ "/flags/x" 5', b"MODSEQ 9223372036854775808", b"MODSEQ -1",
                                  b"SAVEDON 30-Feb-2026", b"EMAILID bad!id", b'EMAILID "M1"',
                                  b"THREADID " + b"x" * 256])
def test_malformed_extension_keys_are_refused(text: bytes) -> None:
    with pytest.raises(ParseError):
        criteria(text)


def test_the_session_can_ask_what_a_search_reads() -> None:
    modseq = criteria(b"OR SEEN NOT (MODSEQ 4 FLAGGED)")
    assert (uses_modseq(modseq), needs_body(modseq), needs_headers(modseq)) == (True, False, False)
    body = criteria(b"NOT OR LARGER 5 (BODY x)")
    assert (uses_modseq(body), needs_body(body), needs_headers(body)) == (False, True, False)
    text = criteria(b"TEXT x")
    assert (needs_body(text), needs_headers(text)) == (True, True)
    for key in (b"FROM a", b'HEADER X-Y ""', b"SENTON 1-Jan-2026", b"OR ALL SUBJECT a"):
        assert needs_headers(criteria(key)) and not needs_body(criteria(key))
    assert not needs_headers(criteria(b"ALL")) and not uses_modseq(criteria(b"ALL"))


def test_deeply_chained_keys_are_inspected_without_recursion() -> None:
    key = Key("NOT", Key("ALL"))
    for _ in range(10_000):
        key = Key("OR", (Key("ALL"), Key("NOT", key)))
    key = Key("AND", (key, Key("MODSEQ", 1)))
    assert uses_modseq(key) and not needs_body(key)
