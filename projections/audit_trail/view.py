"""The audit trail interface. Rows hold the event's envelope only: time, type, stream,
subject pseudonym, actor, protocol, session, purpose. Each row's hash covers the
previous row's hash, so a changed, removed or inserted row breaks the chain."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields

from eventsourcing.persistence import Tracking, TrackingRecorder

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    position: int
    at: str
    event_type: str
    stream_id: str
    subject: str | None
    actor: str
    protocol: str
    session: str
    purpose: str


_ENTRY_FIELDS = tuple(f.name for f in dataclass_fields(AuditEntry))


@dataclass(frozen=True)
class AuditQuery:
    """Filters of an audit query; times are the trail's own ISO text, compared as text."""

    subject: str | None = None
    since: str | None = None
    until: str | None = None
    event_type: str | None = None
    actor: str | None = None
    after_position: int = 0
    #: Only entries before this position (a newest-first page's cursor).
    before_position: int | None = None
    newest_first: bool = False
    limit: int = 100


@dataclass(frozen=True)
class ActivityCount:
    event_type: str
    purpose: str
    count: int
    first_at: str
    last_at: str


@dataclass(frozen=True)
class AuditRow:
    entry: AuditEntry
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainCheck:
    intact: bool
    rows: int
    first_bad_position: int | None
    reason: str


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    # The same canonical JSON as dataclasses.asdict() gives, built without its deep copies.
    fields = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def check_chain(rows: list[AuditRow]) -> ChainCheck:
    prev = GENESIS_HASH
    last_position = 0
    for row in rows:
        if row.entry.position <= last_position:
            return ChainCheck(False, len(rows), row.entry.position, "positions out of order")
        if row.prev_hash != prev:
            return ChainCheck(False, len(rows), row.entry.position, "link to previous row broken")
        if chain_hash(prev, row.entry) != row.hash:
            return ChainCheck(False, len(rows), row.entry.position, "row content changed")
        prev, last_position = row.hash, row.entry.position
    return ChainCheck(True, len(rows), None, "intact")


class AuditTrailInterface(TrackingRecorder, ABC):
    @abstractmethod
    def append(self, entry: AuditEntry, tracking: Tracking) -> None:
        """Chain and insert the entry, with its tracking row, in one transaction."""

    @abstractmethod
    def rows(self, subject: str | None = None) -> list[AuditRow]: ...

    @abstractmethod
    def query(self, criteria: AuditQuery) -> list[AuditEntry]:
        """Entries matching every given criterion, oldest first (newest first when asked),
        at most ``limit``."""

    @abstractmethod
    def activity(self) -> list[ActivityCount]:
        """How many entries per (event type, purpose), with the first and last time: the
        counts of a record of processing (Art. 30), computed by the database."""
