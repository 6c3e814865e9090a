"""Brute-force bans (issue 8): what the failed-login throttle decided, as events.

An IP address or a login name is personal data (GDPR Recital 30; CJEU C-582/14
Breyer), so a ban is split in two:

- ``Ban``, one stream per ban, is a **personal** aggregate under a fresh random subject
  of its own (not the account's: the banned address usually belongs to nobody we know).
  It holds the plaintext target, so ``ledgermail ban list`` can show the operator what is
  banned. When the ban is lifted or runs out its key is shredded: the target becomes
  unreadable, while the envelopes (``Ban.Placed``/``Ban.Lifted``, actor, protocol, time)
  stay in the audit trail, which is what an operator needs to prove later.
- ``BanIndex``, one system-scope stream, holds the active bans by a keyed pseudonym of
  the target (HMAC under a key derived from the master key), the time they end, the
  failure count and the protocol. Servers read only this to decide, so the hot path
  never opens a personal key, and the system scope holds no plaintext.

The index keeps only bans not yet lifted: ``expire_bans`` lifts the ones that ran out
(and shreds their keys), so its state stays small however long the server runs.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate, SystemAggregate
from domain.model.errors import DomainError

#: The one index of active bans.
BAN_INDEX_ID = uuid5(NAMESPACE_URL, "ledgermail:bans")
#: What can be banned: a client address, or a login name as typed.
BAN_KINDS = ("ip", "login")


class Ban(PersonalAggregate):
    """One ban, sealed under its own subject key (shredded when the ban ends)."""

    @event("Placed")
    def __init__(self, subject_id: str, kind: str, target: str, ban_key: str, placed_at: str,
                 until: str, failures: int, protocol: str) -> None:
        self.subject_id = subject_id
        self.kind = kind
        self.target = target
        self.ban_key = ban_key
        self.placed_at = placed_at
        self.until = until
        self.failures = failures
        self.protocol = protocol
        self.lifted_at: str | None = None
        self.lift_reason = ""

    @event("Lifted")
    def lift(self, at: str, reason: str) -> None:
        self.lifted_at = at
        self.lift_reason = reason


class BanIndex(SystemAggregate):
    """The active bans by ban key: ``{ban_key: {ban_id, kind, until, failures, protocol,
    placed_at}}``. No plaintext target: the key is a keyed one-way name."""

    @event("Started")
    def __init__(self) -> None:
        self.active: dict[str, dict[str, Any]] = {}

    @staticmethod
    def create_id(**_: object) -> Any:
        return BAN_INDEX_ID

    @event("Added")
    def add(self, ban_key: str, ban_id: str, kind: str, until: str, failures: int,
            protocol: str, at: str) -> None:
        self.active[ban_key] = {"ban_id": ban_id, "kind": kind, "until": until,
                                "failures": failures, "protocol": protocol, "placed_at": at}

    @event("Removed")
    def remove(self, ban_key: str, ban_id: str, at: str) -> None:
        entry = self.active.get(ban_key)
        if entry is not None and entry["ban_id"] == ban_id:
            del self.active[ban_key]


class InvalidBanTarget(DomainError):
    def __init__(self, kind: str, target: str) -> None:
        what = "an IP address" if kind == "ip" else "a login name"
        super().__init__(f"{target!r} is not {what}")


class NoSuchBan(DomainError):
    def __init__(self, target: str) -> None:
        super().__init__(f"{target!r} is not banned (see: ledgermail ban list)")
