"""The PostgreSQL event store: group commit over the library's recorder."""

from __future__ import annotations

from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.storage.group_commit import GroupCommitMixin
from adapters.storage.stream_scans import PostgresStreamScans
from adapters.storage.wakeups import WakesProjections


class LedgerPostgresRecorder(WakesProjections, GroupCommitMixin, PostgresStreamScans,
                             PostgresApplicationRecorder):
    """Concurrent saves share one transaction (and one table lock); each commit wakes
    this process's projection runners (other processes' runners poll)."""

    @property
    def store_key(self) -> str:
        return f"postgres:{self.datastore.schema}.{self.events_table_name}"
