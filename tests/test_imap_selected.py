"""A session's view of its selected mailbox (``adapters/imap/selected.py``).

The property: a client that applies our untagged EXPUNGE, VANISHED, EXISTS and FETCH
responses one by one always holds the same UID sequence as the session, learns new UIDs
in ascending order, never gets an EXPUNGE or VANISHED where sequence numbers may be in
use, never sees a message's MODSEQ go back, and ends with the mailbox as it is, even
when the view it is fed from lags behind the session's own writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.imap.selected import Change, SelectedMailbox, compress_uids
from adapters.imap.tokens import parse_sequence_set

SEEN, FLAGGED, LABEL = "\\Seen", "\\Flagged", "$Label"


def opened(states: list[tuple[int, int, tuple[str, ...] | None]], read_only: bool = False) -> SelectedMailbox:
    selected = SelectedMailbox(read_only)
    selected.load(Change(uid, modseq, flags) for uid, modseq, flags in states)
    return selected


# -- exact bytes ---------------------------------------------------------------------------


def test_load_keeps_live_messages_in_uid_order_and_remembers_the_highest_modseq() -> None:
    view = opened([(3, 4, (SEEN,)), (1, 2, ()), (2, 7, None), (5, 3, (FLAGGED, SEEN))], read_only=True)
    assert view.read_only
    assert view.uids == [1, 3, 5] and view.exists == 3
    assert view.flags == {1: frozenset(), 3: {SEEN}, 5: {FLAGGED, SEEN}}
    assert view.modseqs == {1: 2, 3: 4, 5: 3}
    assert view.highest_uid == 5 and view.known_modseq == 7
    assert view.updates(expunge_allowed=True, modseq=True) == []
    assert opened([]).highest_uid == 0 and opened([]).exists == 0


def test_numbers_sequence_sets_and_uid_sets() -> None:
    view = opened([(uid, 1, ()) for uid in (4, 7, 9, 12)])
    assert [view.uid_of(n) for n in (1, 2, 3, 4)] == [4, 7, 9, 12]
    assert [view.seq_of(uid) for uid in (4, 9, 12, 5, 13)] == [1, 3, 4, None, None]
    for bad in (0, 5):
        with pytest.raises(KeyError):
            view.uid_of(bad)
    assert view.by_sequence(parse_sequence_set("2:*")) == [7, 9, 12]
    assert view.by_sequence(parse_sequence_set("3,1,3")) == [4, 9]
    assert view.by_sequence(parse_sequence_set("*:3")) == [9, 12]
    assert view.seq_in_range(parse_sequence_set("1:4,*"))
    assert not view.seq_in_range(parse_sequence_set("2:5"))  # RFC 9051 §6.4.5: above EXISTS
    assert not opened([]).seq_in_range(parse_sequence_set("*"))  # "*" in an empty mailbox
    assert view.by_uid(parse_sequence_set("5:9")) == [7, 9]
    assert view.by_uid(parse_sequence_set("9:5")) == [7, 9]
    assert view.by_uid(parse_sequence_set("*")) == [12]
    assert view.by_uid(parse_sequence_set("100:*")) == [12]  # RFC 9051 §6.4.9
    assert view.by_uid(parse_sequence_set("1:3,13:4294967295")) == []
    assert view.by_uid(parse_sequence_set("1:4294967295")) == [4, 7, 9, 12]
    assert opened([]).by_uid(parse_sequence_set("1:*")) == []


def test_expunges_wait_while_not_allowed_and_then_arrive_highest_first() -> None:
    view = opened([(uid, 1, ()) for uid in (1, 2, 3, 4)])
    view.observe([Change(2, 5, None), Change(4, 5, None), Change(5, 6, (SEEN,))])
    assert view.is_gone(2) and view.is_gone(4) and not view.is_gone(3)
    assert view.updates(expunge_allowed=False) == [b"* 5 EXISTS\r\n"]
    assert view.uids == [1, 2, 3, 4, 5] and view.uid_of(5) == 5 and view.flags[5] == {SEEN}
    assert view.updates(expunge_allowed=True) == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert view.uids == [1, 3, 5] and view.seq_of(5) == 3 and view.seq_of(2) is None
    assert not view.is_gone(2) and 2 not in view.flags and 2 not in view.modseqs
    assert view.known_modseq == 6 and view.highest_uid == 5
    assert view.updates(expunge_allowed=True) == []


def test_once_qresync_is_on_expunges_go_as_one_vanished_response() -> None:
    view = opened([(uid, 1, ()) for uid in range(1, 9)])
    view.observe([Change(uid, 9, None) for uid in (2, 3, 4, 7)])
    assert view.updates(expunge_allowed=False, vanished=True) == []
    assert view.updates(expunge_allowed=True, vanished=True) == [b"* VANISHED 2:4,7\r\n"]
    assert view.uids == [1, 5, 6, 8]


def test_flag_changes_are_told_once_and_not_for_messages_about_to_be_expunged() -> None:
    view = opened([(1, 1, ()), (2, 1, ()), (3, 1, ())])
    view.observe([Change(1, 2, (SEEN,)), Change(2, 3, (FLAGGED,)), Change(3, 4, None)])
    assert view.updates(expunge_allowed=False) == [b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n",
                                                   b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"]
    assert view.updates(expunge_allowed=False) == []
    view.observe([Change(2, 5, (SEEN, FLAGGED))])
    assert view.updates(expunge_allowed=True) == [b"* 3 EXPUNGE\r\n",
                                                  b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Seen))\r\n"]


def test_with_condstore_every_change_carries_its_modseq_even_when_the_flags_came_back() -> None:
    view = opened([(1, 1, (SEEN,)), (2, 1, ())])
    view.observe([Change(1, 4, (SEEN,)), Change(2, 5, (LABEL, SEEN))])
    assert view.updates(expunge_allowed=True, modseq=True) == [
        b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (4))\r\n",
        b"* 2 FETCH (UID 2 FLAGS ($Label \\Seen) MODSEQ (5))\r\n"]
    assert view.modseqs == {1: 4, 2: 5}
    # Without CONDSTORE, a change that left the flags as they were says nothing.
    view.observe([Change(1, 6, (SEEN,))])
    assert view.updates(expunge_allowed=True) == []


def test_what_the_client_was_told_by_its_own_store_is_not_repeated() -> None:
    view = opened([(1, 1, ()), (2, 1, ())])
    view.told(1, frozenset({SEEN}), 3)  # the STORE response carried FLAGS and MODSEQ 3
    view.observe([Change(1, 3, (SEEN,))])  # the view now shows that same change
    assert view.updates(expunge_allowed=False, modseq=True) == []
    # A view that lags (read-your-writes timed out) shows an older state: not sent either.
    view.told(2, frozenset({FLAGGED}), 9)
    view.observe([Change(2, 8, ())])
    assert view.updates(expunge_allowed=False, modseq=True) == []
    assert view.flags[2] == {FLAGGED} and view.modseqs[2] == 9


def test_a_change_newer_than_what_the_client_was_told_survives_told() -> None:
    view = opened([(1, 1, ())])
    view.observe([Change(1, 7, (SEEN, FLAGGED))])  # another session, after our STORE
    view.told(1, frozenset({SEEN}), 6)  # our STORE's own answer
    assert view.updates(expunge_allowed=False, modseq=True) == [
        b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen) MODSEQ (7))\r\n"]
    view.told(1, frozenset({SEEN}), 8)
    view.observe([Change(1, 8, (SEEN,))])
    assert view.updates(expunge_allowed=False, modseq=True) == []


def test_told_about_an_unknown_uid_changes_nothing() -> None:
    view = opened([(1, 1, ())])
    view.observe([Change(2, 2, ())])
    view.told(2, frozenset({SEEN}), 5)
    view.told(9, frozenset({SEEN}), 5)
    assert view.updates(expunge_allowed=True) == [b"* 2 EXISTS\r\n"]
    assert view.flags == {1: frozenset(), 2: frozenset()}


def test_new_messages_arrive_in_uid_order_with_their_latest_flags() -> None:
    view = opened([(1, 1, ())])
    view.observe([Change(4, 5, (FLAGGED,)), Change(3, 4, ())])
    view.observe([Change(3, 6, (SEEN,))])
    assert view.updates(expunge_allowed=False, modseq=True) == [b"* 3 EXISTS\r\n"]
    assert view.uids == [1, 3, 4]
    assert (view.flags[3], view.modseqs[3]) == ({SEEN}, 6)
    assert (view.flags[4], view.modseqs[4]) == ({FLAGGED}, 5)


def test_a_message_that_came_and_went_between_two_updates_is_never_announced() -> None:
    view = opened([(1, 1, ())])
    view.observe([Change(2, 2, ()), Change(3, 3, ())])
    view.observe([Change(2, 4, None)])
    assert view.updates(expunge_allowed=False) == [b"* 2 EXISTS\r\n"]
    assert view.uids == [1, 3]
    # An expunge of a UID the session never knew (expunged before SELECT) is ignored.
    view.observe([Change(2, 5, None)])
    assert view.updates(expunge_allowed=True) == []


def test_compress_uids() -> None:
    assert compress_uids([]) == ""
    assert compress_uids([4]) == "4"
    assert compress_uids([1, 2, 3, 5, 7, 8, 9]) == "1:3,5,7:9"
    assert compress_uids([1, 3, 5]) == "1,3,5"


@given(st.lists(st.integers(min_value=1, max_value=2000), unique=True))
def test_compress_uids_names_exactly_the_numbers(numbers: list[int]) -> None:
    numbers.sort()
    text = compress_uids(numbers)
    assert (parse_sequence_set(text).resolve(numbers[-1]) if numbers else []) == numbers
    assert text.count(",") < len(numbers) or not numbers


@given(st.lists(st.integers(min_value=1, max_value=60), unique=True),
       st.lists(st.tuples(st.one_of(st.none(), st.integers(min_value=1, max_value=70)),
                          st.one_of(st.none(), st.integers(min_value=1, max_value=70))),
                min_size=1, max_size=4))
def test_by_uid_matches_the_rfc_reading_of_a_uid_set(uids: list[int], ranges: list) -> None:
    view = opened([(uid, 1, ()) for uid in uids])
    text = ",".join(f"{'*' if a is None else a}:{'*' if b is None else b}" for a, b in ranges)
    expected: set[int] = set()
    if uids:
        largest = max(uids)
        for a, b in ranges:
            low, high = sorted((largest if a is None else a, largest if b is None else b))
            expected |= {uid for uid in uids if low <= uid <= high}
    assert view.by_uid(parse_sequence_set(text)) == sorted(expected)


# -- the property ---------------------------------------------------------------------------


_EXPUNGE = re.compile(rb"\* (\d+) EXPUNGE\r\n")
_VANISHED = re.compile(rb"\* VANISHED ([0-9:,]+)\r\n")
_EXISTS = re.compile(rb"\* (\d+) EXISTS\r\n")
_FETCH = re.compile(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)(?: MODSEQ \((\d+)\))?\)\r\n")


def _uid_set(text: bytes) -> list[int]:
    out: list[int] = []
    for item in text.decode().split(","):
        first, _, last = item.partition(":")
        out += range(int(first), int(last or first) + 1)
    return out


class Client:
    """What an IMAP client does with the untagged responses (RFC 9051 §7.4, §7.5; RFC
    7162 §3.2.10); after EXISTS it fetches the new messages' UIDs, flags and MODSEQs,
    which the server answers from what the session now holds."""

    def __init__(self, session: SelectedMailbox) -> None:
        self.uids = list(session.uids)
        self.flags = {uid: set(session.flags[uid]) for uid in self.uids}
        self.modseqs = dict(session.modseqs)

    def apply(self, lines: list[bytes], session: SelectedMailbox, *, expunge_allowed: bool,
              condstore: bool) -> None:
        for line in lines:
            if match := _EXPUNGE.fullmatch(line):
                assert expunge_allowed, line
                uid = self.uids.pop(int(match.group(1)) - 1)
                del self.flags[uid]
            elif match := _VANISHED.fullmatch(line):
                assert expunge_allowed, line
                for uid in _uid_set(match.group(1)):
                    assert uid in self.flags, f"VANISHED {uid}, which the client does not have"
                    self.uids.remove(uid)
                    del self.flags[uid]
            elif match := _EXISTS.fullmatch(line):
                count = int(match.group(1))
                assert count > len(self.uids), line
                new = session.uids[len(self.uids):count]  # UID FETCH n:* (UID FLAGS MODSEQ)
                assert new == sorted(new) and len(set(new)) == len(new)
                assert not self.uids or new[0] > max(self.uids), "new UIDs must ascend"
                for uid in new:
                    self.flags[uid] = set(session.flags[uid])
                    self.modseqs[uid] = session.modseqs[uid]
                self.uids += new
            elif match := _FETCH.fullmatch(line):
                seq, uid = int(match.group(1)), int(match.group(2))
                assert self.uids[seq - 1] == uid, f"FETCH {seq} names UID {uid}, the client has {self.uids}"
                self.flags[uid] = set(match.group(3).decode().split())
                assert (match.group(4) is not None) == condstore, line
                if condstore:
                    modseq = int(match.group(4))
                    assert modseq > self.modseqs.get(uid, 0), f"MODSEQ of {uid} went back: {line!r}"
                    self.modseqs[uid] = modseq
            else:
                raise AssertionError(f"unexpected response {line!r}")


@dataclass
class Store:
    """The mailbox as the write model holds it, and every state the view has passed
    through (the view serves one of them: it may lag)."""

    live: dict[int, tuple[frozenset[str], int]] = field(default_factory=dict)
    vanished: dict[int, int] = field(default_factory=dict)
    next_uid: int = 1
    modseq: int = 1
    history: list[tuple[dict[int, tuple[frozenset[str], int]], dict[int, int]]] = field(default_factory=list)
    view_at: int = 0

    def commit(self) -> int:
        self.history.append((dict(self.live), dict(self.vanished)))
        return len(self.history) - 1

    def append(self) -> None:
        self.modseq += 1
        self.live[self.next_uid] = (frozenset(), self.modseq)
        self.next_uid += 1

    def expunge(self, uids: set[int]) -> None:
        if uids:
            self.modseq += 1
            for uid in uids:
                del self.live[uid]
                self.vanished[uid] = self.modseq

    def set_flags(self, uid: int, flags: frozenset[str]) -> tuple[frozenset[str], int]:
        if self.live[uid][0] != flags:
            self.modseq += 1
            self.live[uid] = (flags, self.modseq)
        return self.live[uid]

    def message_states(self, after_uid: int, since_modseq: int) -> list[Change]:
        """What ``MailboxViewInterface.message_states`` answers, from the view's state."""
        live, vanished = self.history[self.view_at]
        out = [Change(uid, modseq, tuple(sorted(flags))) for uid, (flags, modseq) in live.items()
               if uid > after_uid or modseq > since_modseq]
        out += [Change(uid, modseq, None) for uid, modseq in vanished.items()
                if modseq > since_modseq and uid <= after_uid]
        return sorted(out, key=lambda change: change.uid)


FLAG_SETS = st.sampled_from([frozenset(), frozenset({SEEN}), frozenset({SEEN, FLAGGED}),
                             frozenset({LABEL})])
operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(min_value=1, max_value=3)),
    st.tuples(st.just("expunge"), st.lists(st.integers(min_value=0, max_value=40), max_size=3),
              st.booleans()),
    st.tuples(st.just("flag"), st.integers(min_value=0, max_value=40), FLAG_SETS),
    st.tuples(st.just("store"), st.integers(min_value=0, max_value=40), FLAG_SETS, st.booleans()),
    st.tuples(st.just("view"), st.sampled_from([1, 2, None])),  # None: the view catches up
    st.tuples(st.just("tell"), st.booleans()),
    st.tuples(st.just("observe")),
), max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=8), st.lists(st.integers(min_value=0, max_value=8), max_size=3),
       st.booleans(), st.booleans(), operations)
def test_a_client_following_the_responses_always_agrees_with_the_session(
        start: int, gone_before: list[int], condstore: bool, qresync: bool, ops: list) -> None:
    condstore = condstore or qresync  # RFC 7162 §3.2.3: QRESYNC turns CONDSTORE on
    store = Store()
    for _ in range(start):
        store.append()
    if store.live:
        store.expunge({sorted(store.live)[i % len(store.live)] for i in gone_before})
    store.view_at = store.commit()  # SELECT waits for the views (catch_up)
    session = SelectedMailbox()
    session.load(store.message_states(0, 0))
    client = Client(session)

    def observe() -> None:
        session.observe(store.message_states(session.highest_uid, session.known_modseq))

    def tell(expunge_allowed: bool) -> None:
        observe()
        lines = session.updates(expunge_allowed=expunge_allowed, vanished=qresync, modseq=condstore)
        client.apply(lines, session, expunge_allowed=expunge_allowed, condstore=condstore)
        assert client.uids == session.uids and len(client.uids) == session.exists
        assert session.uids == sorted(set(session.uids))

    for op in ops:
        kind = op[0]
        if kind == "append":
            for _ in range(op[1]):
                store.append()
            store.commit()
        elif kind == "expunge" and store.live:
            live = sorted(store.live)
            store.expunge({live[i % len(live)] for i in op[1]})
            position = store.commit()
            if op[2]:  # our own EXPUNGE: wait for the view, then report with expunges allowed
                store.view_at = position
                tell(True)
        elif kind == "flag" and store.live:
            live = sorted(store.live)
            store.set_flags(live[op[1] % len(live)], op[2])
            store.commit()
        elif kind == "store":
            # Our own STORE on a message the client can name; the response carries the
            # new flags (and MODSEQ with CONDSTORE). A message someone else expunged is
            # skipped, as the use case skips it.
            named = [uid for uid in session.uids if not session.is_gone(uid)]
            if not named:
                continue
            uid = named[op[1] % len(named)]
            if uid not in store.live:
                continue
            flags, modseq = store.set_flags(uid, op[2])
            position = store.commit()
            if op[3]:
                store.view_at = max(store.view_at, position)  # settled; False: the wait timed out
            session.told(uid, flags, modseq)
            client.flags[uid] = set(flags)
            if condstore:
                assert modseq >= client.modseqs.get(uid, 0)
                client.modseqs[uid] = modseq
        elif kind == "view":
            latest = len(store.history) - 1
            store.view_at = latest if op[1] is None else min(store.view_at + op[1], latest)
        elif kind == "tell":
            tell(op[1])
        elif kind == "observe":  # changes read, nothing told yet: they accumulate
            observe()

    store.view_at = store.commit()
    tell(True)
    truth = {uid: set(flags) for uid, (flags, _) in store.live.items()}
    assert session.uids == client.uids == sorted(truth)
    assert client.flags == truth
    assert {uid: set(flags) for uid, flags in session.flags.items()} == truth
    if condstore:
        assert {uid: client.modseqs[uid] for uid in client.uids} == {
            uid: modseq for uid, (_, modseq) in store.live.items()}
    tell(True)
    assert session.updates(expunge_allowed=True, vanished=qresync, modseq=condstore) == []
