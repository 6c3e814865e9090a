"""Ports: what the use cases need from the world, as typing.Protocols.

Implementations live in ``adapters``; the composition root (``adapters/bootstrap.py``)
hands them to the application. Fakes for tests implement the same protocols.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable
from uuid import UUID


class SealedBlob(NamedTuple):
    """Where a body went and the data key that opens it (the key travels in events)."""

    blob_id: str
    data_key: bytes


class BlobStore(Protocol):
    """Message bodies, each encrypted once under its own random data key (DESIGN §3).

    ``put`` returns only after the sealed bytes are durable.
    """

    def put(self, body: bytes) -> SealedBlob: ...

    def get(self, blob_id: str, data_key: bytes) -> bytes: ...

    def delete_many(self, blob_ids: list[str]) -> list[str]:
        """Delete these bodies; return the ids that existed."""
        ...


@runtime_checkable
class StreamScanner(Protocol):
    """Bulk reads of the event log by stream, for work on thousands of streams at once
    (erasure). Implemented by ledgermail's event recorders."""

    def last_versions(self, stream_ids: list[UUID]) -> dict[UUID, int]:
        """The current version of each existing stream."""
        ...

    def first_events(self, stream_ids: list[UUID]) -> list[Any]:
        """The stored first event (version 1) of each existing stream."""
        ...


class KeyStore(Protocol):
    """The subject keys: the erasure use case destroys them."""

    def shred_subject(self, subject_id: str, erasure_ref: str) -> list[str]:
        """Destroy every key of the subject, keep tombstones; return the key ids."""
        ...

    def shredded_key_ids(self, erasure_ref: str) -> list[str]:
        """Key ids destroyed under this erasure reference (for resumed erasures)."""
        ...


class Pseudonymizer(Protocol):
    """Keyed one-way names for personal identifiers."""

    def address_index_id(self, address: str) -> UUID:
        """The address index stream id: reveals nothing about the address."""
        ...

    def subject_pseudonym(self, subject_id: str) -> str:
        """What the audit trail and receipts name a person by."""
        ...


class PersonalFiles(Protocol):
    """Files written outside the stores that hold one person's data (the export archives
    the API builds). Erasure deletes them with the rest (DESIGN §3)."""

    def purge(self, account_id: UUID) -> int:
        """Delete every such file of the account; return how many there were."""
        ...


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class ReadModels(Protocol):
    """The projections, as the erasure workflow needs them."""

    def wait_for(self, position: int, timeout: float) -> dict[str, int]:
        """Block until every projection has processed ``position``; return their positions."""
        ...

    def storage_of(self, account_id: UUID) -> tuple[int, int] | None:
        """(octets used, quota in octets) of an account as the views show it."""
        ...

    def message_dates(self, mailbox_id: UUID) -> list[tuple[int, str]]:
        """(UID, internal date) of every message the view shows in the mailbox: where a
        retention run looks for what is due (the write model then decides)."""
        ...

    def rows_for_streams(self, stream_ids: list[str]) -> int:
        """How many view rows still derive from these streams (0 after a purge)."""
        ...

    def blobs_of_copies(self, copy_ids: list[str]) -> dict[str, str]:
        """copy id -> blob id, for the copies the view still shows."""
        ...

    def referenced_blobs(self, blob_ids: list[str]) -> set[str]:
        """Which of these blobs a live message copy still refers to."""
        ...

    def compact(self) -> None:
        """Make deleted rows unrecoverable from the view files (checkpoint, vacuum)."""
        ...


class ScanContext(NamedTuple):
    """The SMTP transaction a message came in, as the scanners need it (sender
    authentication checks the client IP against the MAIL FROM and HELO domains).

    ``channel`` keeps its intake meaning: ``mx`` (from other servers), ``submission``
    (authenticated users) or ``cli`` (``ledgermail deliver``).
    """

    channel: str
    client_ip: str = ""
    helo: str = ""
    #: The reverse-path without brackets; "" for the null sender ``<>``.
    mail_from: str = ""
    recipients: tuple[str, ...] = ()
    authenticated: bool = False


#: What a verdict can tell the intake to do with a message.
SCAN_ACTIONS = ("accept", "junk", "reject", "tempfail")


class ScanVerdict(NamedTuple):
    """What the scanners decided.

    ``action``: ``accept``; ``junk`` (deliver to the recipient's \\Junk mailbox);
    ``reject`` (5xx at the end of DATA, nothing stored) or ``tempfail`` (4xx, e.g. the
    scanner is down: never a silent accept). ``headers`` are complete header lines
    (no line end) the intake puts on top of the stored message. ``summary`` is what the
    delivery's audit record keeps: result names and numbers only, never an address or
    any other personal data, because it is stored under the system key.
    """

    action: str = "accept"
    reason: str = ""
    score: float = 0.0
    headers: tuple[str, ...] = ()
    summary: dict[str, Any] = {}  # shared default: readers never mutate a summary
    #: Local recipient address -> ``accept`` or ``junk``, replacing ``action`` for that
    #: recipient alone (their own learning filter's opinion, issue 8). Never stored.
    recipient_actions: dict[str, str] = {}  # shared default, never mutated


class Scanner(Protocol):
    """Spam, virus and sender-authentication checks on an incoming message."""

    def scan(self, raw: bytes, context: ScanContext) -> ScanVerdict: ...
