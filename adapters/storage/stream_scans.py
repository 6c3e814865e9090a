"""Bulk stream reads (the ``StreamScanner`` port) for both event recorders."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from adapters.storage.chunking import chunks


class SQLiteStreamScans:
    datastore: Any
    events_table_name: str

    def last_versions(self, stream_ids: list[UUID]) -> dict[UUID, int]:
        found: dict[UUID, int] = {}
        with self.datastore.transaction(commit=False) as cursor:
            for chunk in chunks(stream_ids):
                marks = ",".join("?" * len(chunk))
                cursor.execute(f"SELECT originator_id, max(originator_version) FROM "
                               f"{self.events_table_name} WHERE originator_id IN ({marks}) "
                               "GROUP BY originator_id", [i.hex for i in chunk])
                found.update((UUID(row[0]), row[1]) for row in cursor.fetchall())
        return found

    def first_events(self, stream_ids: list[UUID]) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        with self.datastore.transaction(commit=False) as cursor:
            for chunk in chunks(stream_ids):
                marks = ",".join("?" * len(chunk))
                cursor.execute(f"SELECT * FROM {self.events_table_name} WHERE originator_id "
                               f"IN ({marks}) AND originator_version = 1", [i.hex for i in chunk])
                found += [StoredEvent(UUID(row["originator_id"]), row["originator_version"],
                                      row["topic"], row["state"]) for row in cursor.fetchall()]
        return found


class PostgresStreamScans:
    datastore: Any
    events_table_name: str

    def _table(self) -> str:
        return f'"{self.datastore.schema}"."{self.events_table_name}"'

    def last_versions(self, stream_ids: list[UUID]) -> dict[UUID, int]:
        found: dict[UUID, int] = {}
        with self.datastore.get_connection() as conn:
            for chunk in chunks(stream_ids):
                rows = conn.execute(f"SELECT originator_id, max(originator_version) AS v FROM "
                                    f"{self._table()} WHERE originator_id = ANY(%s) "
                                    "GROUP BY originator_id", (list(chunk),)).fetchall()
                found.update((row["originator_id"], row["v"]) for row in rows)
        return found

    def first_events(self, stream_ids: list[UUID]) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        with self.datastore.get_connection() as conn:
            for chunk in chunks(stream_ids):
                rows = conn.execute(f"SELECT * FROM {self._table()} WHERE originator_id = ANY(%s) "
                                    "AND originator_version = 1", (list(chunk),)).fetchall()
                found += [StoredEvent(row["originator_id"], row["originator_version"], row["topic"],
                                      bytes(row["state"])) for row in rows]
        return found
