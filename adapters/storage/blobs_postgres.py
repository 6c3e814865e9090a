"""Sealed message bodies in a PostgreSQL table, so a cluster needs only PostgreSQL."""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from adapters.crypto.blob_sealing import open_sealed, seal
from adapters.storage.chunking import chunks
from domain.ports import SealedBlob


class PostgresBlobStore:
    def __init__(self, dsn: str, schema: str, pool_size: int = 4) -> None:
        self._table = f'"{schema}".blobs'
        self._pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=True,
                                    kwargs={"autocommit": True})
        with self._pool.connection() as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table}"
                         "(blob_id text PRIMARY KEY, sealed bytea NOT NULL)")

    def put(self, body: bytes) -> SealedBlob:
        sealed, data = seal(body)
        with self._pool.connection() as conn:
            # autocommit with synchronous_commit on: durable when execute returns.
            conn.execute(f"INSERT INTO {self._table} VALUES (%s, %s)", (sealed.blob_id, data))
        return sealed

    def get(self, blob_id: str, data_key: bytes) -> bytes:
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT sealed FROM {self._table} WHERE blob_id=%s", (blob_id,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"message body {blob_id} is missing")
        return open_sealed(blob_id, data_key, bytes(row[0]))

    def delete_many(self, blob_ids: list[str]) -> list[str]:
        deleted: list[str] = []
        with self._pool.connection() as conn:
            for chunk in chunks(blob_ids):
                rows = conn.execute(f"DELETE FROM {self._table} WHERE blob_id = ANY(%s) RETURNING blob_id",
                                    (list(chunk),)).fetchall()
                deleted += [row[0] for row in rows]
        return deleted

    def close(self) -> None:
        self._pool.close()
