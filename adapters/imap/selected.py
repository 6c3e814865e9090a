"""One session's view of its selected mailbox: sequence numbers, and the untagged
updates that bring the client from what it was told to what the mailbox now holds.

DESIGN §5 keeps this per session, not in a projection: sequence numbers are what this
client was told (RFC 9051 §2.3.1.2), so other sessions' changes reach it only through
EXISTS, EXPUNGE (or VANISHED) and FETCH responses, and EXPUNGE may not be sent while the
client could still be using the old numbers: during FETCH, STORE and SEARCH (RFC 9051
§7.5.1). Pure logic, fed with the changes the view reports (``MessageState``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from adapters.imap.tokens import SequenceSet


class Change(NamedTuple):
    """What the view says about one UID: its flags and MODSEQ, or ``flags`` None when
    it was expunged (at ``modseq``). The view's ``MessageState`` has the same shape."""

    uid: int
    modseq: int
    flags: Sequence[str] | None


#: Flag sets as sessions hold them, one object per distinct set for the whole process:
#: ten thousand sessions on one mailbox hold the same few sets, not a copy per message
#: per session (issue 9). Bounded: past the cap a set is simply not shared.
_FLAG_SETS: dict[frozenset[str], frozenset[str]] = {}
_FLAG_SETS_MAX = 4096
#: ``_gone``, ``_new`` and ``_changed`` while nothing is pending (most of the time): no
#: empty containers per session. The shared list and dict are never changed in place
#: (``_pending`` swaps in a session's own before anything is added).
_NONE_GONE: frozenset[int] = frozenset()
_NONE_NEW: list[int] = []
_NONE_CHANGED: dict[int, tuple[frozenset[str], int]] = {}


def shared_flags(flags: Iterable[str]) -> frozenset[str]:
    """``frozenset(flags)``, as the one shared object for that set where possible."""
    key = flags if isinstance(flags, frozenset) else frozenset(flags)
    if len(_FLAG_SETS) >= _FLAG_SETS_MAX:
        return _FLAG_SETS.get(key, key)
    return _FLAG_SETS.setdefault(key, key)  # atomic under the GIL: sessions run in threads


class SelectedMailbox:
    __slots__ = ("read_only", "uids", "flags", "modseqs", "known_modseq", "highest_uid", "_new",
                 "_gone", "_changed")

    def __init__(self, read_only: bool = False) -> None:
        self.read_only = read_only
        #: UID of sequence number n is ``uids[n - 1]``; ascending (RFC 9051 §2.3.1.1).
        self.uids: list[int] = []
        #: Flags and MODSEQ as the client was told them.
        self.flags: dict[int, frozenset[str]] = {}
        self.modseqs: dict[int, int] = {}
        #: The highest MODSEQ seen in the view: the next refresh asks for what is newer.
        self.known_modseq = 0
        #: The highest UID seen: UIDs above it are new messages.
        self.highest_uid = 0
        #: What ``observe`` found and ``updates`` has not told yet (see ``_pending``).
        self._new: list[int] = _NONE_NEW
        self._gone: set[int] | frozenset[int] = _NONE_GONE
        self._changed: dict[int, tuple[frozenset[str], int]] = _NONE_CHANGED

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

    def is_gone(self, uid: int) -> bool:
        """Expunged, though the client has not been told yet."""
        return uid in self._gone

    def by_sequence(self, numbers: SequenceSet) -> list[int]:
        """UIDs of the messages a sequence-number set names (RFC 9051 §9; "*" is the
        last). The caller has checked the numbers exist (``seq_in_range``)."""
        return [self.uids[n - 1] for n in numbers.resolve(len(self.uids))]

    def seq_in_range(self, numbers: SequenceSet) -> bool:
        """RFC 9051 §6.4.5: a sequence number above EXISTS is an error (not so for UIDs)."""
        if not self.uids:
            return False
        return all((a or 0) <= len(self.uids) and (b or 0) <= len(self.uids) for a, b in numbers.ranges)

    def by_uid(self, numbers: SequenceSet) -> list[int]:
        """The UIDs in the mailbox that a UID set names; "*" is the highest UID, and a
        range beyond it still includes it (RFC 9051 §6.4.9). Each range costs two
        binary searches, whatever its width."""
        if not self.uids:
            return []
        largest = self.uids[-1]
        chosen: set[int] = set()
        for first, last in numbers.ranges:
            low = largest if first is None else first
            high = largest if last is None else last
            low, high = min(low, high), max(low, high)
            chosen.update(self.uids[bisect_left(self.uids, low):bisect_right(self.uids, high)])
        return sorted(chosen)

    # -- changes -------------------------------------------------------------------------

    def load(self, changes: Iterable[Change]) -> None:
        """The mailbox as SELECT finds it (told to the client by the SELECT responses)."""
        for change in changes:
            self.known_modseq = max(self.known_modseq, change.modseq)
            if change.flags is None:
                continue
            self.uids.append(change.uid)
            self.flags[change.uid] = shared_flags(change.flags)
            self.modseqs[change.uid] = change.modseq
        self.uids.sort()
        self.highest_uid = self.uids[-1] if self.uids else 0

    def _pending(self) -> None:
        """Own containers for what ``observe`` records, in place of the shared empty ones."""
        if self._new is _NONE_NEW:
            self._new = []
        if self._changed is _NONE_CHANGED:
            self._changed = {}

    def observe(self, changes: Iterable[Change]) -> None:
        """Changes read from the view since ``known_modseq`` / ``highest_uid``; nothing is
        told to the client until ``updates``."""
        changes = sorted(changes, key=lambda c: c.uid)
        if changes:
            self._pending()
        for change in changes:
            self.known_modseq = max(self.known_modseq, change.modseq)
            uid = change.uid
            if change.flags is None:
                if uid in self.flags:
                    if not self._gone:
                        self._gone = set()
                    self._gone.add(uid)  # type: ignore[union-attr]
                    self._changed.pop(uid, None)
                elif uid in self._changed and uid in self._new:
                    self._new.remove(uid)
                    del self._changed[uid]
                continue
            flags = shared_flags(change.flags)
            if uid > self.highest_uid:
                self.highest_uid = uid
                self._new.append(uid)
                self._changed[uid] = (flags, change.modseq)
            elif uid in self._new:
                self._changed[uid] = (flags, change.modseq)
            elif uid in self.flags and uid not in self._gone and change.modseq > self.modseqs.get(uid, 0):
                # Not what the client was already told (its own STORE, say).
                self._changed[uid] = (flags, change.modseq)

    def told(self, uid: int, flags: frozenset[str], modseq: int) -> None:
        """The client just got these flags in a response (its own STORE or FETCH)."""
        if uid in self.flags:
            self.flags[uid] = shared_flags(flags)
            self.modseqs[uid] = modseq
            pending = self._changed.get(uid)
            if pending is not None and pending[1] <= modseq:
                del self._changed[uid]

    def updates(self, *, expunge_allowed: bool, vanished: bool = False, modseq: bool = False) -> list[bytes]:
        """Untagged responses, in an order the client can apply one by one: EXPUNGEs
        (highest number first, so each number is still right when it arrives) or one
        VANISHED (RFC 7162 §3.2.10, once QRESYNC is enabled), then EXISTS for new
        messages, then FETCH for changed flags (with MODSEQ once CONDSTORE is on)."""
        out: list[bytes] = []
        if expunge_allowed and self._gone:
            gone = sorted(self._gone)
            if vanished:
                out.append(b"* VANISHED " + compress_uids(gone).encode() + b"\r\n")
            else:
                for uid in reversed(gone):
                    out.append(b"* %d EXPUNGE\r\n" % self.seq_of(uid))  # type: ignore[str-format]
            gone_set = set(gone)
            self.uids = [uid for uid in self.uids if uid not in gone_set]
            for uid in gone:
                self.flags.pop(uid, None)
                self.modseqs.pop(uid, None)
            self._gone = _NONE_GONE
        if self._new:
            for uid in self._new:
                flags, seen_modseq = self._changed.pop(uid)
                self.uids.append(uid)
                self.flags[uid] = flags
                self.modseqs[uid] = seen_modseq
            self._new = _NONE_NEW
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
        for uid in sorted(self._changed):
            flags, seen_modseq = self._changed[uid]
            if uid in self._gone or uid not in self.flags:
                continue
            changed = flags != self.flags[uid]
            self.flags[uid] = flags
            self.modseqs[uid] = seen_modseq
            if changed or modseq:
                names = " ".join(sorted(flags)).encode()
                extra = b" MODSEQ (%d)" % seen_modseq if modseq else b""
                out.append(b"* %d FETCH (UID %d FLAGS (%s)%s)\r\n"
                           % (self.seq_of(uid), uid, names, extra))  # type: ignore[str-format]
        self._changed = _NONE_CHANGED
        return out


def compress_uids(numbers: list[int]) -> str:
    """Ascending numbers as a sequence set: ``1:3,5,7:9``."""
    out: list[str] = []
    start = previous = None
    for number in numbers:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            out.append(str(start) if start == previous else f"{start}:{previous}")
        start = previous = number
    if start is not None:
        out.append(str(start) if start == previous else f"{start}:{previous}")
    return ",".join(out)
