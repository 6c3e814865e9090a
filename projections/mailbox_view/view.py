"""The mailbox view interface and its rows. SQL implementations live in adapters/storage.

Every write method takes the ``Tracking`` of the event it applies and records it in the
same transaction (exactly once). Values such as UIDs and MODSEQs are copied from the
events, never minted here, so a rebuilt view is the same mailbox.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder


@dataclass(frozen=True)
class AccountRow:
    account_id: UUID
    address: str
    aliases: list[str]
    quota_bytes: int
    created_at: str


@dataclass(frozen=True)
class MailboxRow:
    mailbox_id: UUID
    account_id: UUID
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool
    messages: int


class MessageState(NamedTuple):
    """A message's UID, MODSEQ and flags, or (``flags`` None) a UID expunged at ``modseq``:
    what an IMAP session needs to keep its own view of a mailbox current. A named tuple,
    not a frozen dataclass: a SELECT makes one per message, and tuples are made ~5x
    faster."""

    uid: int
    modseq: int
    flags: list[str] | None


class MessageRow(NamedTuple):
    """One message as the view holds it (a named tuple, for the same reason)."""

    copy_id: UUID
    mailbox_id: UUID
    uid: int
    modseq: int
    flags: list[str]
    internal_date: str
    size: int
    summary: dict[str, Any]
    #: The stored body (shared by every copy of one message); no personal data.
    blob_id: str = ""
    #: When this copy was saved into its mailbox (RFC 8514 SAVEDATE), ISO 8601; "" for
    #: rows written before the view kept it.
    saved_at: str = ""


class MailboxViewInterface(TrackingRecorder, ABC):
    # -- written by the projection -------------------------------------------------------

    @abstractmethod
    def track(self, tracking: Tracking) -> None: ...

    @abstractmethod
    def add_account(self, account_id: UUID, address: str, quota_bytes: int, created_at: str,
                    tracking: Tracking) -> None: ...

    @abstractmethod
    def add_alias(self, account_id: UUID, address: str, tracking: Tracking) -> None: ...

    @abstractmethod
    def remove_alias(self, account_id: UUID, address: str, tracking: Tracking) -> None: ...

    @abstractmethod
    def set_quota(self, account_id: UUID, quota_bytes: int, tracking: Tracking) -> None: ...

    @abstractmethod
    def add_mailbox(self, mailbox_id: UUID, account_id: UUID, name: str, special_use: str | None,
                    uidvalidity: int, tracking: Tracking) -> None: ...

    @abstractmethod
    def assign_uids(self, mailbox_id: UUID, count: int, modseq: int, tracking: Tracking) -> None: ...

    @abstractmethod
    def advance_modseq(self, mailbox_id: UUID, modseq: int, tracking: Tracking) -> None: ...

    @abstractmethod
    def rename_mailbox(self, mailbox_id: UUID, name: str, tracking: Tracking) -> None: ...

    @abstractmethod
    def set_subscribed(self, mailbox_id: UUID, subscribed: bool, tracking: Tracking) -> None: ...

    @abstractmethod
    def delete_mailbox(self, mailbox_id: UUID, tracking: Tracking) -> None: ...

    @abstractmethod
    def add_message(self, row: MessageRow, blob_id: str, tracking: Tracking) -> None:
        """Ignored when the mailbox is unknown (its owner was erased meanwhile)."""

    @abstractmethod
    def set_flags(self, copy_id: UUID, flags: list[str], modseq: int, tracking: Tracking) -> None: ...

    @abstractmethod
    def expunge(self, copy_id: UUID, modseq: int, tracking: Tracking) -> None: ...

    @abstractmethod
    def purge_stream(self, stream_id: UUID, kind: str, tracking: Tracking) -> None:
        """Delete every row derived from the stream (an erasure marker arrived).
        ``kind`` is the aggregate class name (Account, Mailbox, MessageCopy) or ""."""

    # -- read by adapters ----------------------------------------------------------------

    @abstractmethod
    def accounts(self) -> list[AccountRow]: ...

    @abstractmethod
    def mailboxes(self, account_id: UUID) -> list[MailboxRow]: ...

    @abstractmethod
    def mailbox(self, mailbox_id: UUID) -> MailboxRow | None: ...

    @abstractmethod
    def messages(self, mailbox_id: UUID, uids: list[int] | None = None) -> list[MessageRow]:
        """The mailbox's messages (only those of ``uids`` when given), by UID."""

    @abstractmethod
    def message_sizes(self, mailbox_id: UUID) -> list[tuple[int, int]]:
        """(UID, size) of every message, by UID: a POP3 maildrop listing, cheaply."""

    @abstractmethod
    def message_dates(self, mailbox_id: UUID) -> list[tuple[int, str]]:
        """(UID, internal date) of every message, by UID: what a retention run reads to
        find what is due, without the envelope cache."""

    @abstractmethod
    def message_states(self, mailbox_id: UUID, after_uid: int, since_modseq: int) -> list[MessageState]:
        """In one statement (one snapshot): messages with a UID above ``after_uid`` or
        changed after ``since_modseq``, and UIDs expunged after ``since_modseq``.

        Events apply in log order and a mailbox's MODSEQs rise in log order, so a
        snapshot that holds a change holds every earlier change of the mailbox: a session
        that remembers the highest MODSEQ it saw misses nothing on its next call."""

    @abstractmethod
    def storage_of(self, account_id: UUID) -> tuple[int, int] | None:
        """(octets used, quota in octets) of an account, in one query; None when the
        view has no such account."""

    @abstractmethod
    def mailbox_marks(self, mailbox_ids: list[UUID]) -> dict[UUID, int]:
        """HIGHESTMODSEQ of each mailbox that still exists: one query to tell which of
        many idling sessions have something new."""

    @abstractmethod
    def vanished_since(self, mailbox_id: UUID, modseq: int) -> list[int]: ...

    @abstractmethod
    def rows_for_streams(self, stream_ids: list[str]) -> int: ...

    @abstractmethod
    def referenced_blobs(self, blob_ids: list[str]) -> set[str]: ...

    @abstractmethod
    def blobs_of_copies(self, copy_ids: list[str]) -> dict[str, str]: ...

    @abstractmethod
    def compact(self) -> None: ...

    # -- the outbound queue index: which queued messages are due when (no personal data:
    # -- random ids and times). The messages themselves are the truth; this only finds them.

    @abstractmethod
    def queue_message(self, message_id: UUID, account_id: UUID, due_at: str, tracking: Tracking) -> None: ...

    @abstractmethod
    def reschedule(self, message_id: UUID, due_at: str, tracking: Tracking) -> None: ...

    @abstractmethod
    def dequeue(self, message_id: UUID, tracking: Tracking) -> None: ...

    @abstractmethod
    def due_outbound(self, now: str, limit: int) -> list[UUID]:
        """Queued messages due at ``now`` (ISO time), soonest first."""

    @abstractmethod
    def queue_size(self) -> int: ...
