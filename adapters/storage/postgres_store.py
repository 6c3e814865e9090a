"""The PostgreSQL event store: group commit over the library's recorder."""

from __future__ import annotations

from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.storage.group_commit import GroupCommitMixin


class LedgerPostgresRecorder(GroupCommitMixin, PostgresApplicationRecorder):
    """Concurrent saves share one transaction (and one table lock)."""
