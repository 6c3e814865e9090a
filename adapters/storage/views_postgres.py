"""The views on PostgreSQL: one schema per projection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder

from adapters.storage.views_sql import SqlAuditTrail, SqlMailboxView
from projections.audit_trail.view import AuditTrailInterface
from projections.mailbox_view.view import MailboxViewInterface


class PostgresViewMixin:
    placeholder = "%s"
    array_parameters = True
    datastore: Any

    @property
    def table_prefix(self) -> str:  # type: ignore[override]
        return f'"{self.datastore.schema}".'

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Pipeline a batch's statements: they go to the server without waiting for
        each result, which otherwise costs a round trip per statement."""
        with super().batch(), self._batch.cursor.connection.pipeline():  # type: ignore[misc]
            yield

    def create_table(self) -> None:
        super().create_table()  # type: ignore[misc]
        self.create_view_tables()  # type: ignore[attr-defined]

    def compact(self) -> None:
        """VACUUM the view tables: dead tuples of purged rows are reclaimed now."""
        with self.datastore.get_connection() as conn:
            for table in getattr(self, "view_tables", ()):
                conn.execute(f"VACUUM {self.table_prefix}{table}")


class PostgresMailboxView(PostgresViewMixin, SqlMailboxView, PostgresTrackingRecorder,
                          MailboxViewInterface):
    pass


class PostgresAuditTrail(PostgresViewMixin, SqlAuditTrail, PostgresTrackingRecorder,
                         AuditTrailInterface):
    view_tables = ("audit_entries",)
