"""A recipient's copy of a message, the delivery that produced it, and read records.

Bodies never go in events (DESIGN §2): the copy holds the blob id and the body's data
key, sealed under the recipient's own key, so erasing one recipient leaves the others'
copies readable.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import ENVELOPE, PersonalAggregate, SystemAggregate


class MessageCopy(PersonalAggregate):
    #: Its blob and data key never change: bodies are read from the cached object
    #: without asking the log for newer events (LedgerApplication.peek_settled).
    read_settled = True

    @staticmethod
    def create_id(mailbox_id: UUID, uid: int, **_: Any) -> UUID:  # type: ignore[override]
        """Derived from mailbox and UID, so erasure can enumerate every copy a mailbox
        ever held from its UIDNEXT alone."""
        return copy_id_for(mailbox_id, uid)

    @event("Created")
    def __init__(
        self,
        subject_id: str,
        mailbox_id: UUID,
        uid: int,
        modseq: int,
        flags: list[str],
        internal_date: str,
        size: int,
        blob_id: str,
        data_key: bytes,
        summary: dict[str, Any],
        delivery_id: UUID | None,
    ) -> None:
        self.subject_id = subject_id
        self.mailbox_id = mailbox_id
        self.uid = uid
        self.modseq = modseq
        self.flags = flags
        self.internal_date = internal_date
        self.size = size
        self.blob_id = blob_id
        self.data_key = data_key
        self.summary = summary
        self.delivery_id = delivery_id
        self.expunged = False

    @event("FlagsChanged")
    def change_flags(self, flags: list[str], modseq: int) -> None:
        self.flags = flags
        self.modseq = modseq

    @event("Expunged")
    def expunge(self, modseq: int) -> None:
        self.expunged = True
        self.modseq = modseq


def copy_id_for(mailbox_id: UUID, uid: int) -> UUID:
    return uuid5(mailbox_id, f"uid:{uid}")


class Delivery(SystemAggregate):
    """One accepted message: which copies it made from which blob. No personal data."""

    @staticmethod
    def create_id(delivery_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        """Chosen by the caller, so the copies made in the same transaction name it."""
        return delivery_id

    @event("Accepted")
    def __init__(self, delivery_id: UUID, blob_id: str, size: int, copy_ids: list[UUID],
                 channel: str) -> None:
        self.blob_id = blob_id
        self.size = size
        self.copy_ids = copy_ids
        self.channel = channel
        self.scan: dict[str, Any] | None = None

    @event("Scanned")
    def record_scan(self, verdict: dict[str, Any]) -> None:
        """The scanners' verdict on the message (results, score, action, rule names;
        never content, addresses or domains: this event is system-scoped and outlives
        every recipient's erasure)."""
        self.scan = verdict

    def stamp_envelope(self, envelope: dict[str, Any]) -> None:
        """The verdict is processing for security, not for the service: the audit
        trail says so (GDPR Art. 30 record, Recital 49)."""
        super().stamp_envelope(envelope)
        for pending in self._pending_events:
            if isinstance(pending, Delivery.Scanned):
                object.__setattr__(pending, ENVELOPE, {**envelope, "purpose": "security"})


class AccessLedger(PersonalAggregate):
    """Where reads of a person's message content are recorded (DESIGN §2)."""

    @staticmethod
    def create_id(account_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        return access_ledger_id_for(account_id)

    @event("Opened")
    def __init__(self, subject_id: str, account_id: UUID) -> None:
        self.subject_id = subject_id
        self.account_id = account_id

    @event("MessagesAccessed")
    def record(self, copy_ids: list[UUID], purpose: str) -> None:
        """One event per command (IMAP FETCH, POP3 RETR/TOP, export)."""

    @event("DataAccessed")
    def record_data(self, what: str, purpose: str) -> None:
        """A read of the person's data other than message content (an API answer about
        them: what is held, their consents, their history). ``what`` names the kind of
        data, never the data; the audit envelope says who read it."""


def access_ledger_id_for(account_id: UUID) -> UUID:
    return uuid5(account_id, "access-ledger")
