"""One session's view of its selected mailbox: sequence numbers, and the untagged
updates that bring the client from what it was told to what the mailbox now holds.

DESIGN §5 keeps this per session, not in a projection: sequence numbers are what this
client was told (RFC 9051 §2.3.1.2), so other sessions' changes reach it only through
EXISTS, EXPUNGE and FETCH responses, and EXPUNGE may not be sent while the client could
still be using the old numbers: during FETCH, STORE and SEARCH (RFC 9051 §7.5.1). Pure
logic, fed with the mailbox as the views show it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping


class SelectedMailbox:
    def __init__(self, uids: list[int], flags: Mapping[int, frozenset[str]]) -> None:
        #: UID of sequence number n is ``uids[n - 1]``; ascending (RFC 9051 §2.3.1.1).
        self.uids = list(uids)
        self.flags = {uid: flags.get(uid, frozenset()) for uid in self.uids}
        self._current: list[int] = list(self.uids)
        self._current_flags: dict[int, frozenset[str]] = dict(self.flags)

    # -- numbers -----------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def uid_of(self, seq: int) -> int:
        if not 1 <= seq <= len(self.uids):
            raise KeyError(seq)
        return self.uids[seq - 1]

    def seq_of(self, uid: int) -> int | None:
        index = bisect_left(self.uids, uid)
        return index + 1 if index < len(self.uids) and self.uids[index] == uid else None

    # -- changes -------------------------------------------------------------------------

    def observe(self, uids: list[int], flags: Mapping[int, frozenset[str]]) -> None:
        """The mailbox as it is now (ascending UIDs and their flags); nothing is told to
        the client until ``updates``."""
        self._current = list(uids)
        self._current_flags = {uid: flags.get(uid, frozenset()) for uid in uids}

    def updates(self, *, expunge_allowed: bool) -> list[bytes]:
        """Untagged responses, in an order the client can apply one by one: EXPUNGEs
        (highest number first, so each number is still right when it arrives), then
        EXISTS for new messages, then FETCH FLAGS for changed ones."""
        out: list[bytes] = []
        current = set(self._current)
        if expunge_allowed:
            gone = [seq for seq, uid in enumerate(self.uids, start=1) if uid not in current]
            for seq in reversed(gone):
                out.append(b"* %d EXPUNGE\r\n" % seq)
                del self.flags[self.uids[seq - 1]]
                del self.uids[seq - 1]
        highest = self.uids[-1] if self.uids else 0
        new = [uid for uid in self._current if uid > highest]
        if new:
            self.uids += new
            for uid in new:
                self.flags[uid] = self._current_flags[uid]
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
        for seq, uid in enumerate(self.uids, start=1):
            if uid in current and uid not in new and self._current_flags[uid] != self.flags[uid]:
                self.flags[uid] = self._current_flags[uid]
                names = " ".join(sorted(self.flags[uid])).encode()
                out.append(b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (seq, uid, names))
        return out
