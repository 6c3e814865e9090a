"""The key store in its own PostgreSQL schema (``<schema>_keys``).

Several nodes share it (docs/scaling.md). A node that shreds keys NOTIFYs their ids in
the shredding transaction; every node LISTENs and drops them from its cache the moment
that commits, so an erasure finished on one node leaves the person's data unreadable on
all of them at once, and a cached key can be trusted for a minute instead of two
seconds. While the LISTEN session is down nothing is cached at all: a shred announced
then would go unheard.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from adapters.crypto.keystore import SubjectKeyStore
from adapters.storage.listener import ListenLost, NotificationListener, channel_name, notify

log = logging.getLogger(__name__)

#: How long a cached key is trusted while this node hears other nodes' shreds.
LISTENING_CACHE_SECONDS = 60.0
#: Payload meaning "forget every cached key" (a shred too large for one NOTIFY).
EVICT_ALL = "*"
#: NOTIFY payloads must stay under 8,000 bytes.
MAX_PAYLOAD = 7000


class PostgresKeyStore(SubjectKeyStore):
    cache_ttl = 0.0  # until the LISTEN session is in place

    def __init__(self, dsn: str, schema: str, master_key: bytes) -> None:
        self._dsn = dsn
        self._schema = schema
        self._conn_lock = threading.RLock()
        self.channel = channel_name("ledgermail_keys", schema)
        self._closing = threading.Event()
        super().__init__(master_key, where=f"{dsn} schema {schema}")
        self._listening = threading.Thread(target=self._hear_shreds, name="keystore-listen",
                                           daemon=True)
        self._listening.start()

    # -- the shred broadcast -------------------------------------------------------------

    def _hear_shreds(self) -> None:
        backoff = 0.5
        while not self._closing.is_set():
            listener = NotificationListener(self._dsn, [self.channel], self._heard,
                                            f"keys {self._schema}", on_ready=self._trust_cache)
            try:
                listener.run(self._closing)
            except ListenLost as error:
                self._distrust_cache()
                if not self._closing.is_set():
                    log.warning("key store: LISTEN session lost (%s); caching no keys until "
                                "it is back", error)
                self._closing.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.5

    def _trust_cache(self) -> None:
        self.evict(None)  # whatever was cached before LISTEN may have been shredded since
        self.cache_ttl = LISTENING_CACHE_SECONDS

    def _distrust_cache(self) -> None:
        self.cache_ttl = 0.0
        self.evict(None)

    def _heard(self, _channel: str, payload: str) -> None:
        if payload == EVICT_ALL or not payload:
            self.evict(None)
            return
        try:
            self.evict([bytes.fromhex(key_id) for key_id in payload.split(",")])
        except ValueError:
            self.evict(None)

    def _announce(self, conn: psycopg.Connection, key_ids: list[bytes]) -> None:
        payload = ",".join(key_id.hex() for key_id in key_ids)
        notify(conn, self.channel, payload if len(payload) <= MAX_PAYLOAD else EVICT_ALL)

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
            if rows:
                self._announce(self._live(), [bytes(r[0]) for r in rows])
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
                self._announce(self._live(), revived)
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
        # The LISTEN thread sees this within one wait (listener.WAIT_SECONDS) and closes
        # its session; joining it would hold up every command's exit by that much.
        self._closing.set()
        with self._conn_lock:
            self._conn.close()
