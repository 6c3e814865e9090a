"""The PostgreSQL event store: group commit over the library's recorder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Subscription
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresSubscription
from psycopg.sql import SQL, Identifier

from adapters.storage.group_commit import GroupCommitMixin


class LedgerPostgresSubscription(PostgresSubscription):
    """The library's subscription pulls once, then starts LISTEN on another thread: an
    event committed between the two never wakes it, and the views stall until the next
    write. Pull once more as soon as LISTEN is in place."""

    def _listen(self) -> None:
        try:
            with self._recorder.datastore.get_connection() as conn:
                conn.execute(SQL("LISTEN {0}").format(Identifier(self._recorder.channel_name)))
                self._has_been_notified.set()  # catch what committed before LISTEN
                while not self._has_been_stopped and not self._thread_error:
                    for _ in conn.notifies(timeout=0.1, stop_after=1):
                        self._has_been_notified.set()
        except BaseException as error:
            if self._thread_error is None:
                self._thread_error = error
            self.stop()


class LedgerPostgresRecorder(GroupCommitMixin, PostgresApplicationRecorder):
    """Concurrent saves share one transaction (and one table lock)."""

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[Any]:
        return LedgerPostgresSubscription(recorder=self, gt=gt, topics=topics)
