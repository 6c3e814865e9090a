"""The PostgreSQL event store: group commit over the library's recorder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.storage import wakeups
from adapters.storage.group_commit import GroupCommitMixin
from adapters.storage.stream_scans import PostgresStreamScans


class LedgerPostgresRecorder(GroupCommitMixin, PostgresStreamScans, PostgresApplicationRecorder):
    """Concurrent saves share one transaction (and one table lock); each commit wakes
    this process's projection runners (other processes' runners poll)."""

    @property
    def store_key(self) -> str:
        return f"postgres:{self.datastore.schema}.{self.events_table_name}"

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super().insert_events(stored_events, **kwargs)
        wakeups.notify(self.store_key)
        return ids
