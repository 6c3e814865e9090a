"""The views on SQLite: one file per projection under the data dir."""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteTrackingRecorder

from adapters.storage.views_sql import SqlAuditTrail, SqlMailboxView
from projections.audit_trail.view import AuditTrailInterface
from projections.mailbox_view.view import MailboxViewInterface

#: Attempts at a TRUNCATE checkpoint while readers hold old snapshots.
CHECKPOINT_ATTEMPTS = 50


class SQLiteViewMixin:
    placeholder = "?"
    table_prefix = ""

    def create_table(self) -> None:
        super().create_table()  # type: ignore[misc]
        self.create_view_tables()  # type: ignore[attr-defined]

    def compact(self) -> None:
        """Move zeroed pages into the file and truncate the WAL (DESIGN §3): after this no
        deleted row survives in ``*.sqlite`` or ``*.sqlite-wal``."""
        import time

        for _ in range(CHECKPOINT_ATTEMPTS):
            with self.datastore.get_connection(commit=True) as conn:  # type: ignore[attr-defined]
                cursor = conn.cursor()
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                busy = cursor.fetchone()[0]
            if not busy:
                return
            time.sleep(0.02)
        raise RuntimeError("could not checkpoint the view database: readers keep it busy")


class SQLiteMailboxView(SQLiteViewMixin, SqlMailboxView, SQLiteTrackingRecorder, MailboxViewInterface):
    pass


class SQLiteAuditTrail(SQLiteViewMixin, SqlAuditTrail, SQLiteTrackingRecorder, AuditTrailInterface):
    pass
