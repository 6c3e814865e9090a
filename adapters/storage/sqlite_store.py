"""The embedded SQLite event store: durable pragmas, subscriptions, group commit.

Selected with ``PERSISTENCE_MODULE=adapters.storage.sqlite_store:LedgerSQLiteFactory``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ListenNotifySubscription, StoredEvent, Subscription
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteFactory,
)

from adapters.storage.group_commit import GroupCommitMixin

SYNCHRONOUS_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}


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
        self.pool = DurableConnectionPool(synchronous=synchronous, db_name=db_name,
                                          lock_timeout=kwargs.get("lock_timeout"))

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


# -- subscriptions ----------------------------------------------------------------------

_LOCAL_SUBSCRIPTIONS: dict[str, weakref.WeakSet[PollingSubscription]] = {}
_LOCAL_LOCK = threading.Lock()


class PollingSubscription(ListenNotifySubscription[SQLiteApplicationRecorder]):
    """SQLite has no LISTEN/NOTIFY: poll on a timer for other processes' writes, and get
    poked at once by writers in this process."""

    poll_interval = 0.05

    def __init__(self, recorder: SQLiteApplicationRecorder, gt: int | None = None,
                 topics: Sequence[str] = ()) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        with _LOCAL_LOCK:
            _LOCAL_SUBSCRIPTIONS.setdefault(recorder.datastore.pool.db_name, weakref.WeakSet()).add(self)
        self._ticker = threading.Thread(target=self._tick, name="sqlite-poll", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._has_been_stopped:
            self._has_been_notified.set()
            time.sleep(self.poll_interval)

    def poke(self) -> None:
        self._has_been_notified.set()


class PollingSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[Any]:
        return PollingSubscription(self, gt=gt, topics=topics)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super().insert_events(stored_events, **kwargs)
        with _LOCAL_LOCK:
            subscriptions = list(_LOCAL_SUBSCRIPTIONS.get(self.datastore.pool.db_name, ()))
        for subscription in subscriptions:
            subscription.poke()
        return ids


class LedgerSQLiteRecorder(GroupCommitMixin, PollingSQLiteApplicationRecorder):
    """The application recorder ledgermail uses on SQLite."""
