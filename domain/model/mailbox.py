"""The mailbox: authority for UIDVALIDITY, UIDs and MODSEQ.

RFC 9051 §2.3.1.1: UIDs ascend strictly and are never reused within a UIDVALIDITY.
RFC 7162 §3.1: every change to a message's metadata gets a new, higher mod-sequence.
Both are decided here and written into events, so a rebuilt view is the same mailbox.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate


class Mailbox(PersonalAggregate):
    @event("Created")
    def __init__(
        self,
        subject_id: str,
        account_id: UUID,
        name: str,
        special_use: str | None,
        uidvalidity: int,
    ) -> None:
        self.subject_id = subject_id
        self.account_id = account_id
        self.name = name
        self.special_use = special_use
        self.uidvalidity = uidvalidity
        self.uidnext = 1
        # RFC 7162 §3.1.1: a mod-sequence is a positive integer; 1 means "no changes yet".
        self.highestmodseq = 1
        self.subscribed = True
        self.deleted = False

    def next_modseq(self) -> int:
        return self.highestmodseq + 1

    @event("UidsAssigned")
    def assign_uids(self, count: int, modseq: int) -> None:
        self.uidnext += count
        self.highestmodseq = modseq

    @event("ModseqAdvanced")
    def advance_modseq(self, modseq: int) -> None:
        self.highestmodseq = modseq

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name

    @event("SubscriptionChanged")
    def set_subscribed(self, subscribed: bool) -> None:
        self.subscribed = subscribed

    @event("Deleted")
    def delete(self, modseq: int) -> None:
        self.deleted = True
        self.highestmodseq = modseq
