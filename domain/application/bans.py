"""Brute-force bans (issue 8): place, lift, expire, list.

The failed-login throttle (adapters/login_throttle.py) decides *when* to ban; these use
cases make the decision an event, so every process on the store honours it (servers
re-read ``active_bans`` every few seconds), the operator sees and lifts it with
``ledgermail ban list|remove``, and the audit trail shows ``Ban.Placed``/``Ban.Lifted``.
Why the target is sealed under a per-ban key and shredded when the ban ends:
domain/model/ban.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.application.base import LedgerApplication, iso_time
from domain.model.ban import BAN_INDEX_ID, BAN_KINDS, Ban, BanIndex, InvalidBanTarget, NoSuchBan
from domain.model.base import new_subject_id
from domain.model.errors import SubjectErased

#: The audit envelope's purpose for bans (GDPR Art. 6(1)(f), security of the service).
BAN_PURPOSE = "security"
#: Login names as typed are capped like other identifiers (RFC 5321 §4.5.3.1.3 path).
MAX_LOGIN = 256


@dataclass(frozen=True)
class ActiveBan:
    """What servers need to decide: no plaintext target."""

    ban_key: str
    ban_id: UUID
    kind: str
    until: str
    failures: int
    protocol: str
    placed_at: str


def normalize_target(kind: str, target: str) -> str:
    """One spelling per target, so ``ban remove ::ffff:10.0.0.1`` finds ``10.0.0.1``."""
    if kind not in BAN_KINDS:
        raise InvalidBanTarget(kind, target)
    if kind == "ip":
        try:
            address = ipaddress.ip_address(target.strip())
        except ValueError:
            raise InvalidBanTarget(kind, target) from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.compressed
    login = target.strip().lower()
    if not login or len(login) > MAX_LOGIN or any(ord(ch) < 0x21 for ch in login):
        raise InvalidBanTarget(kind, target)
    return login


def guess_kind(target: str) -> str:
    """``ban remove X``: an IP address if it parses as one, else a login name."""
    try:
        ipaddress.ip_address(target.strip())
    except ValueError:
        return "login"
    return "ip"


class BanUseCases(LedgerApplication):
    def ban_key(self, kind: str, target: str) -> str:
        """The keyed one-way name of a target: what the system-scope index holds. It
        reuses the subject-pseudonym HMAC key with a ``ban:<kind>:`` prefix, so it can
        never equal a person's pseudonym."""
        pseudonym = self.ports.pseudonyms.subject_pseudonym(f"ban:{kind}:{normalize_target(kind, target)}")
        return "b-" + pseudonym.removeprefix("p-")

    def active_bans(self) -> list[ActiveBan]:
        """Every ban not yet lifted (some may have run out: compare ``until``). Read
        from the cached index, fast-forwarded: one small query when nothing changed."""
        index: BanIndex | None = self.peek(BAN_INDEX_ID)
        if index is None:
            return []
        return [ActiveBan(key, UUID(entry["ban_id"]), entry["kind"], entry["until"],
                          entry["failures"], entry["protocol"], entry["placed_at"])
                for key, entry in index.active.items()]

    def place_ban(self, kind: str, target: str, seconds: float, failures: int, protocol: str) -> bool:
        """Ban ``target`` for ``seconds``; False when it is banned already (a ban
        running is not extended: the throttle stops counting a banned target)."""
        target = normalize_target(kind, target)
        if seconds <= 0:
            raise ValueError("a ban must last a positive number of seconds")
        key = self.ban_key(kind, target)
        ran_out: list[UUID] = []

        def body() -> bool:
            ran_out.clear()
            index: BanIndex | None = self.load_or_none(BAN_INDEX_ID)
            if index is None:
                index = BanIndex()
            at = self.now_iso()
            current = index.active.get(key)
            if current is not None and current["until"] > at:
                return False
            until = iso_time(self.ports.clock.now() + timedelta(seconds=seconds))
            ban = Ban(subject_id=new_subject_id(), kind=kind, target=target, ban_key=key,
                      placed_at=at, until=until, failures=failures, protocol=protocol)
            objs: list[object] = [index, ban]
            if current is not None:
                # The last ban on this target ran out and ``expire_bans`` has not seen
                # it yet: it ends here, in the same commit.
                old_id = UUID(current["ban_id"])
                index.remove(key, current["ban_id"], at)
                old = self._unshredded_ban(old_id)
                if old is not None and old.lifted_at is None:
                    old.lift(at, "expired")
                    objs.append(old)
                ran_out.append(old_id)
            index.add(key, str(ban.id), kind, until, failures, protocol, at)
            self.save_with_envelope(*objs)
            return True

        placed = self.retrying("the ban list", lambda: [BAN_INDEX_ID], body)
        for old_id in ran_out:
            self._shred_ban(old_id)
        return placed

    def lift_ban(self, target: str, kind: str | None = None, reason: str = "removed") -> ActiveBan:
        """Lift the ban on ``target`` now (``ban remove``); ``NoSuchBan`` if there is none."""
        kind = kind or guess_kind(target)
        key = self.ban_key(kind, target)
        index: BanIndex | None = self.load_or_none(BAN_INDEX_ID)
        entry = index.active.get(key) if index is not None else None
        if entry is None:
            raise NoSuchBan(target)
        lifted = self._lift_ban(key, UUID(entry["ban_id"]), reason)
        if lifted is None:
            raise NoSuchBan(target)
        return lifted

    def expire_bans(self) -> int:
        """Lift every ban that ran out and shred its target; returns how many."""
        now = self.now_iso()
        count = 0
        for ban in self.active_bans():
            if ban.until <= now and self._lift_ban(ban.ban_key, ban.ban_id, "expired") is not None:
                count += 1
        return count

    def ban_listing(self) -> list[dict[str, object]]:
        """Active bans with their plaintext target, for the operator, soonest end first."""
        now = self.now_iso()
        rows: list[dict[str, object]] = []
        for ban in sorted(self.active_bans(), key=lambda b: b.until):
            if ban.until <= now:
                continue
            try:
                target = self.load(ban.ban_id, what="the ban").target
            except SubjectErased:
                target = "(shredded)"
            rows.append({"kind": ban.kind, "target": target, "until": ban.until,
                         "failures": ban.failures, "protocol": ban.protocol,
                         "placed_at": ban.placed_at})
        return rows

    def _lift_ban(self, key: str, ban_id: UUID, reason: str) -> ActiveBan | None:
        def body() -> ActiveBan | None:
            index: BanIndex | None = self.load_or_none(BAN_INDEX_ID)
            entry = index.active.get(key) if index is not None else None
            if index is None or entry is None or entry["ban_id"] != str(ban_id):
                return None  # lifted meanwhile, by another process
            at = self.now_iso()
            index.remove(key, str(ban_id), at)
            objs: list[object] = [index]
            ban = self._unshredded_ban(ban_id)
            if ban is not None and ban.lifted_at is None:
                ban.lift(at, reason)
                objs.append(ban)
            self.save_with_envelope(*objs)
            return ActiveBan(key, ban_id, entry["kind"], entry["until"], entry["failures"],
                             entry["protocol"], entry["placed_at"])

        lifted = self.retrying("the ban list", lambda: [BAN_INDEX_ID, ban_id], body)
        if lifted is not None:
            self._shred_ban(ban_id)
        return lifted

    def reshred_lifted_bans(self) -> int:
        """Shred again the key of every lifted ban whose target is readable: a key store
        restored from a backup brought it back, or the process stopped between lifting and
        shredding. The log, not the key store, says which bans ended (``Ban.Lifted``).
        Returns how many were shredded again. One load per lifted ban, so servers run it
        once, in the background (adapters/bans.py), not on every command."""
        topic = get_topic(Ban.Lifted)
        count, start = 0, 1
        while True:
            notifications = self.recorder.select_notifications(start=start, limit=1000, topics=[topic])
            if not notifications:
                return count
            for notification in notifications:
                ban_id = notification.originator_id
                if self._unshredded_ban(ban_id) is not None:
                    self._shred_ban(ban_id)
                    count += 1
            start = notifications[-1].id + 1

    def _unshredded_ban(self, ban_id: UUID) -> Ban | None:
        try:
            return self.load(ban_id, what="the ban")
        except SubjectErased:
            return None

    def _shred_ban(self, ban_id: UUID) -> None:
        """Destroy the lifted ban's key: its target is no longer needed (Art. 5(1)(e))."""
        ban = self._unshredded_ban(ban_id)
        subject_id = ban.subject_id if ban is not None else ""
        if subject_id:
            self.ports.keys.shred_subject(subject_id, f"ban:{ban_id}")
        self.evict(ban_id)
