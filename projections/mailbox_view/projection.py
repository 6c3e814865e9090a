"""Events -> mailbox view rows."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from domain.model.account import Account
from domain.model.base import Erased, ShreddedEvent
from domain.model.mailbox import Mailbox
from domain.model.message import MessageCopy
from domain.model.outbound import OutboundMessage
from projections.mailbox_view.view import MailboxViewInterface, MessageRow


class MailboxViewProjection(Projection[MailboxViewInterface]):
    name = "mailboxview"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.track(tracking)

    @process_event.register
    def _(self, e: Account.Created, t: Tracking) -> None:
        self.view.add_account(e.originator_id, e.address, e.quota_bytes, e.timestamp.isoformat(), t)

    @process_event.register
    def _(self, e: Account.AliasAdded, t: Tracking) -> None:
        self.view.add_alias(e.originator_id, e.address, t)

    @process_event.register
    def _(self, e: Account.AliasRemoved, t: Tracking) -> None:
        self.view.remove_alias(e.originator_id, e.address, t)

    @process_event.register
    def _(self, e: Account.QuotaChanged, t: Tracking) -> None:
        self.view.set_quota(e.originator_id, e.quota_bytes, t)

    @process_event.register
    def _(self, e: Mailbox.Created, t: Tracking) -> None:
        self.view.add_mailbox(e.originator_id, e.account_id, e.name, e.special_use, e.uidvalidity, t)

    @process_event.register
    def _(self, e: Mailbox.UidsAssigned, t: Tracking) -> None:
        self.view.assign_uids(e.originator_id, e.count, e.modseq, t)

    @process_event.register
    def _(self, e: Mailbox.ModseqAdvanced, t: Tracking) -> None:
        self.view.advance_modseq(e.originator_id, e.modseq, t)

    @process_event.register
    def _(self, e: Mailbox.Renamed, t: Tracking) -> None:
        self.view.rename_mailbox(e.originator_id, e.name, t)

    @process_event.register
    def _(self, e: Mailbox.SubscriptionChanged, t: Tracking) -> None:
        self.view.set_subscribed(e.originator_id, e.subscribed, t)

    @process_event.register
    def _(self, e: Mailbox.Deleted, t: Tracking) -> None:
        self.view.delete_mailbox(e.originator_id, t)

    @process_event.register
    def _(self, e: MessageCopy.Created, t: Tracking) -> None:
        row = MessageRow(copy_id=e.originator_id, mailbox_id=e.mailbox_id, uid=e.uid,
                         modseq=e.modseq, flags=list(e.flags), internal_date=e.internal_date,
                         size=e.size, summary=dict(e.summary), saved_at=e.timestamp.isoformat())
        self.view.add_message(row, e.blob_id, t)

    @process_event.register
    def _(self, e: MessageCopy.FlagsChanged, t: Tracking) -> None:
        self.view.set_flags(e.originator_id, list(e.flags), e.modseq, t)

    @process_event.register
    def _(self, e: MessageCopy.Expunged, t: Tracking) -> None:
        self.view.expunge(e.originator_id, e.modseq, t)

    # -- the outbound queue index ------------------------------------------------------

    @process_event.register
    def _(self, e: OutboundMessage.Queued, t: Tracking) -> None:
        self.view.queue_message(e.originator_id, e.account_id, e.queued_at, t)

    @process_event.register
    def _(self, e: OutboundMessage.Leased, t: Tracking) -> None:
        # Not due again before the lease runs out (then another node may take it over).
        self.view.reschedule(e.originator_id, e.until, t)

    @process_event.register
    def _(self, e: OutboundMessage.Deferred, t: Tracking) -> None:
        self.view.reschedule(e.originator_id, e.next_attempt_at, t)

    @process_event.register(OutboundMessage.Delivered)
    @process_event.register(OutboundMessage.Bounced)
    @process_event.register(OutboundMessage.Expired)
    def _(self, e: OutboundMessage.Event, t: Tracking) -> None:
        self.view.dequeue(e.originator_id, t)

    @process_event.register
    def _(self, e: Erased, t: Tracking) -> None:
        self.view.purge_stream(e.originator_id, e.stream_kind, t)

    @process_event.register
    def _(self, e: ShreddedEvent, t: Tracking) -> None:
        # Rebuilding after an erasure: nothing of the stream is readable, and nothing
        # derived from it may linger.
        self.view.purge_stream(e.originator_id, e.event_type.partition(".")[0], t)
