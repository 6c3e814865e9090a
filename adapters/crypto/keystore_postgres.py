"""The key store in its own PostgreSQL schema (``<schema>_keys``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from adapters.crypto.keystore import SubjectKeyStore


class PostgresKeyStore(SubjectKeyStore):
    def __init__(self, dsn: str, schema: str, master_key: bytes) -> None:
        self._dsn = dsn
        self._schema = schema
        self._conn_lock = threading.RLock()
        super().__init__(master_key, where=f"{dsn} schema {schema}")

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self._dsn, autocommit=True)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
        conn.execute(f'SET search_path TO "{self._schema}"')
        # A key must be durable before events sealed with it commit.
        conn.execute("SET synchronous_commit TO on")
        return conn

    def _live(self) -> psycopg.Connection:
        """The connection, opened again if the server dropped it (restart, failover)."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _setup(self) -> None:
        self._conn = self._connect()
        with self._conn_lock:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS meta(name text PRIMARY KEY, value bytea NOT NULL)"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS subject_keys(key_id bytea PRIMARY KEY, "
                "subject_id text NOT NULL, wrapped_key bytea, created_at double precision "
                "NOT NULL, shredded_at double precision, erasure_ref text)"
            )
            self._conn.execute(
                "CREATE INDEX IF NOT EXISTS subject_keys_subject ON subject_keys(subject_id)"
            )

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._conn_lock:
            try:
                return self._live().execute(sql, params).fetchone()
            except psycopg.OperationalError:
                return self._live().execute(sql, params).fetchone()  # once more, reconnected

    def _get_meta(self, name: str) -> bytes | None:
        row = self._one("SELECT value FROM meta WHERE name=%s", (name,))
        return bytes(row[0]) if row else None

    def _put_meta(self, name: str, value: bytes) -> None:
        with self._conn_lock:
            self._live().execute(
                "INSERT INTO meta VALUES (%s,%s) ON CONFLICT DO NOTHING", (name, value)
            )

    def _live_key_id(self, subject_id: str) -> bytes | None:
        row = self._one(
            "SELECT key_id FROM subject_keys WHERE subject_id=%s AND shredded_at IS NULL",
            (subject_id,),
        )
        return bytes(row[0]) if row else None

    def _is_tombstoned(self, tombstone: str) -> bool:
        return self._one("SELECT 1 FROM subject_keys WHERE subject_id=%s", (tombstone,)) is not None

    def _insert_key(self, key_id: bytes, subject_id: str, wrapped: bytes) -> None:
        with self._conn_lock:
            self._live().execute(
                "INSERT INTO subject_keys VALUES (%s,%s,%s,%s,NULL,NULL)",
                (key_id, subject_id, wrapped, time.time()),
            )

    def _key_row(self, key_id: bytes) -> tuple[bytes | None, Any] | None:
        row = self._one(
            "SELECT wrapped_key, shredded_at FROM subject_keys WHERE key_id=%s", (key_id,)
        )
        if row is None:
            return None
        return (bytes(row[0]) if row[0] is not None else None, row[1])

    def _shred_rows(self, subject_id: str, tombstone: str, erasure_ref: str) -> list[bytes]:
        with self._conn_lock, self._live().transaction():
            rows = self._live().execute(
                "UPDATE subject_keys SET wrapped_key=NULL, subject_id=%s, shredded_at=%s, "
                "erasure_ref=%s WHERE subject_id=%s AND shredded_at IS NULL RETURNING key_id",
                (tombstone, time.time(), erasure_ref, subject_id),
            ).fetchall()
        with self._conn_lock:
            # Dead tuples hold the old wrapped key until vacuumed.
            self._live().execute("VACUUM subject_keys")
        return [bytes(r[0]) for r in rows]

    def _shred_key_rows(self, key_ids: list[bytes], erasure_ref: str) -> list[bytes]:
        revived = []
        with self._conn_lock, self._live().transaction():
            for key_id in key_ids:
                row = self._live().execute(
                    "SELECT subject_id FROM subject_keys WHERE key_id=%s AND wrapped_key IS NOT NULL",
                    (key_id,)).fetchone()
                if row is None:
                    continue
                subject = row[0] if row[0].startswith("erased:") else self.tombstone_name(row[0])
                self._live().execute(
                    "UPDATE subject_keys SET wrapped_key=NULL, subject_id=%s, shredded_at=%s, "
                    "erasure_ref=%s WHERE key_id=%s", (subject, time.time(), erasure_ref, key_id))
                revived.append(key_id)
        if revived:
            with self._conn_lock:
                self._live().execute("VACUUM subject_keys")
        return revived

    def _keys_shredded_by(self, erasure_ref: str) -> list[bytes]:
        with self._conn_lock:
            rows = self._live().execute(
                "SELECT key_id FROM subject_keys WHERE erasure_ref=%s ORDER BY key_id",
                (erasure_ref,),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def close(self) -> None:
        with self._conn_lock:
            self._conn.close()
