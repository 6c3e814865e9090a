"""A session's view of its mailbox: a client that applies our untagged responses one by
one always holds the same sequence numbers as the session, and ends with the mailbox."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.imap.selected import SelectedMailbox


class Client:
    """What an IMAP client does with EXISTS, EXPUNGE and FETCH (RFC 9051 §7.4, §7.5)."""

    def __init__(self, uids: list[int]) -> None:
        self.uids: list[int | None] = list(uids)
        self.flags: dict[int, str] = {}

    def apply(self, responses: list[bytes]) -> None:
        for line in responses:
            if match := re.fullmatch(rb"\* (\d+) EXPUNGE\r\n", line):
                del self.uids[int(match.group(1)) - 1]
            elif match := re.fullmatch(rb"\* (\d+) EXISTS\r\n", line):
                self.uids += [None] * (int(match.group(1)) - len(self.uids))  # UIDs learned by FETCH
            elif match := re.fullmatch(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)\r\n", line):
                seq, uid = int(match.group(1)), int(match.group(2))
                assert self.uids[seq - 1] in (None, uid)
                self.flags[uid] = match.group(3).decode()
            else:
                raise AssertionError(line)


def test_expunges_wait_while_not_allowed_and_then_arrive_highest_first() -> None:
    view = SelectedMailbox([1, 2, 3, 4], {})
    view.observe([1, 3, 5], {5: frozenset({"\\Seen"})})
    assert view.updates(expunge_allowed=False) == [b"* 5 EXISTS\r\n"]
    assert view.uids == [1, 2, 3, 4, 5] and view.uid_of(5) == 5
    assert view.updates(expunge_allowed=True) == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert view.uids == [1, 3, 5] and view.seq_of(5) == 3 and view.seq_of(2) is None


def test_flag_changes_are_told_once_and_not_for_messages_about_to_be_expunged() -> None:
    view = SelectedMailbox([1, 2], {})
    view.observe([1, 2], {1: frozenset({"\\Seen"}), 2: frozenset({"\\Flagged"})})
    assert view.updates(expunge_allowed=False) == [b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n",
                                                   b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"]
    assert view.updates(expunge_allowed=False) == []
    view.observe([2], {2: frozenset({"\\Flagged", "\\Seen"})})
    assert view.updates(expunge_allowed=False) == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Seen))\r\n"]


operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(min_value=1, max_value=4)),
    st.tuples(st.just("expunge"), st.lists(st.integers(min_value=0, max_value=30), max_size=4)),
    st.tuples(st.just("flag"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("tell"), st.booleans()),
), max_size=40)


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=8), operations)
def test_a_client_following_the_responses_always_agrees_with_the_session(start: int, ops: list) -> None:
    mailbox = list(range(1, start + 1))
    flags: dict[int, frozenset[str]] = {}
    next_uid = start + 1
    view = SelectedMailbox(mailbox, flags)
    client = Client(mailbox)
    for kind, arg in ops:
        if kind == "append":
            mailbox += list(range(next_uid, next_uid + arg))
            next_uid += arg
        elif kind == "expunge" and mailbox:
            doomed = {mailbox[i % len(mailbox)] for i in arg}
            mailbox = [uid for uid in mailbox if uid not in doomed]
        elif kind == "flag" and mailbox:
            uid = mailbox[arg % len(mailbox)]
            flags[uid] = frozenset() if flags.get(uid) else frozenset({"\\Seen"})
        elif kind == "tell":
            view.observe(mailbox, flags)
            client.apply(view.updates(expunge_allowed=arg))
            assert len(client.uids) == view.exists
            assert all(uid in (None, view.uids[i]) for i, uid in enumerate(client.uids))
    view.observe(mailbox, flags)
    client.apply(view.updates(expunge_allowed=True))
    assert view.uids == mailbox
    assert len(client.uids) == len(mailbox)
