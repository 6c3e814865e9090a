"""The embedded SQLite event store: durable pragmas, group commit, wake-ups.

Selected with ``PERSISTENCE_MODULE=adapters.storage.sqlite_store:LedgerSQLiteFactory``.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteFactory,
)

from adapters.storage.group_commit import GroupCommitMixin
from adapters.storage.stream_scans import SQLiteStreamScans
from adapters.storage.wakeups import WakesProjections

SYNCHRONOUS_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
POOL_SIZE = 24
POOL_OVERFLOW = 24


class DurableConnectionPool(SQLiteConnectionPool):
    """Sets the per-connection pragmas SQLite forgets: synchronous, secure_delete."""

    def __init__(self, *, synchronous: str, **kwargs: Any) -> None:
        self.synchronous = synchronous
        super().__init__(**kwargs)

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        cursor = connection.cursor()
        cursor.execute(f"PRAGMA synchronous={self.synchronous}")
        # Deleted rows are overwritten with zeros, so an erased person's view rows do
        # not survive in free pages (the build default varies; DESIGN §3).
        cursor.execute("PRAGMA secure_delete=ON")
        return connection


class DurableDatastore(SQLiteDatastore):
    def __init__(self, db_name: str, *, synchronous: str, **kwargs: Any) -> None:
        super().__init__(db_name, **kwargs)
        # Keep connections for every concurrent caller: the library's overflow
        # connections are opened and closed on each use, which costs more than the query.
        self.pool = DurableConnectionPool(synchronous=synchronous, db_name=db_name,
                                          lock_timeout=kwargs.get("lock_timeout"),
                                          pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)

    def synchronous_level(self) -> int:
        with self.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA synchronous")
            return int(cursor.fetchone()[0])


class LedgerSQLiteFactory(SQLiteFactory):
    """SQLite with ``SQLITE_SYNCHRONOUS`` (default FULL) and secure_delete on every connection."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        synchronous = (self.env.get("SQLITE_SYNCHRONOUS") or "FULL").upper()
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise OSError(f"SQLITE_SYNCHRONOUS must be one of {sorted(SYNCHRONOUS_LEVELS)}")
        old = self.datastore
        self.datastore = DurableDatastore(
            old.pool.db_name,
            synchronous=synchronous,
            lock_timeout=old.pool.lock_timeout,
            single_row_tracking=old.single_row_tracking,
            originator_id_type=old.originator_id_type,
        )
        old.close()


class LedgerSQLiteRecorder(WakesProjections, GroupCommitMixin, SQLiteStreamScans,
                           SQLiteApplicationRecorder):
    """The application recorder ledgermail uses on SQLite: group commit, and a wake-up
    for this process's projection runners after each commit (SQLite has no NOTIFY)."""

    @property
    def store_key(self) -> str:
        return f"sqlite:{self.datastore.pool.db_name}"
