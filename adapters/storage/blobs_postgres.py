"""Sealed message bodies in a PostgreSQL table, so a cluster needs only PostgreSQL.

Connections broken under the pool (a server restart, a failover, an administrator's
pg_terminate_backend) are found when used: the statement is tried again on another
connection, the pool replacing each broken one, so a restart costs no failed delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from adapters.crypto.blob_sealing import open_sealed, seal
from adapters.storage.chunking import chunks
from domain.ports import SealedBlob

T = TypeVar("T")


class PostgresBlobStore:
    def __init__(self, dsn: str, schema: str, pool_size: int = 4) -> None:
        self._table = f'"{schema}".blobs'
        self._pool_size = pool_size
        self._pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=True,
                                    kwargs={"autocommit": True})
        with self._pool.connection() as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table}"
                         "(blob_id text PRIMARY KEY, sealed bytea NOT NULL)")

    def _with_connection(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` on a pooled connection; on a broken connection, again on another
        (at most once per pooled connection, plus a fresh one)."""
        for attempt in range(self._pool_size + 1):
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except psycopg.OperationalError:
                if attempt == self._pool_size:
                    raise
        raise AssertionError("unreachable")

    def put(self, body: bytes) -> SealedBlob:
        sealed, data = seal(body)
        # autocommit with synchronous_commit on: durable when execute returns. A retry
        # after a lost reply may store the row twice under the same id: the primary key
        # refuses the second, and the first is the durable one.
        def insert(conn: psycopg.Connection) -> None:
            conn.execute(f"INSERT INTO {self._table} VALUES (%s, %s) ON CONFLICT (blob_id) DO NOTHING",
                         (sealed.blob_id, data))

        self._with_connection(insert)
        return sealed

    def get(self, blob_id: str, data_key: bytes) -> bytes:
        row = self._with_connection(lambda conn: conn.execute(
            f"SELECT sealed FROM {self._table} WHERE blob_id=%s", (blob_id,)).fetchone())
        if row is None:
            raise FileNotFoundError(f"message body {blob_id} is missing")
        return open_sealed(blob_id, data_key, bytes(row[0]))

    def delete_many(self, blob_ids: list[str]) -> list[str]:
        def delete(conn: psycopg.Connection) -> list[str]:
            deleted: list[str] = []
            for chunk in chunks(blob_ids):
                rows = conn.execute(f"DELETE FROM {self._table} WHERE blob_id = ANY(%s) RETURNING blob_id",
                                    (list(chunk),)).fetchall()
                deleted += [row[0] for row in rows]
            return deleted

        return self._with_connection(delete)

    def close(self) -> None:
        self._pool.close()
