"""Sealed message bodies in their own SQLite file (``blobs.sqlite``), with group commit.

One file per body was measured first: on this machine's file system each body cost two
opens, a mkdir check and two fsyncs (about 2.5 ms of a 6.9 ms delivery), and deleting
10,000 bodies took 1.2 s of unlinks. Here concurrent writers share one transaction and
one fsync, and an erasure deletes its bodies with a few statements. Freed pages are
zeroed (secure_delete) although they only ever held ciphertext.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from adapters.crypto.blob_sealing import open_sealed, seal
from adapters.storage.chunking import chunks
from adapters.storage.group_commit import GroupCommitter, Pending
from domain.ports import SealedBlob


class SQLiteBlobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._committer: GroupCommitter[tuple[str, bytes]] = GroupCommitter(self._commit)
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._connection().execute(
            "CREATE TABLE IF NOT EXISTS blobs(blob_id TEXT PRIMARY KEY, sealed BLOB NOT NULL)")

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def put(self, body: bytes) -> SealedBlob:
        """Returns once the sealed body is committed (fsync), shared with concurrent puts."""
        sealed, data = seal(body)
        self._committer.submit((sealed.blob_id, data))
        return sealed

    def _commit(self, batch: list[Pending[tuple[str, bytes]]]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO blobs VALUES (?, ?)", [p.payload for p in batch])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get(self, blob_id: str, data_key: bytes) -> bytes:
        row = self._connection().execute("SELECT sealed FROM blobs WHERE blob_id=?", (blob_id,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"message body {blob_id} is missing")
        return open_sealed(blob_id, data_key, row[0])

    def delete_many(self, blob_ids: Sequence[str]) -> list[str]:
        conn = self._connection()
        deleted: list[str] = []
        with self._committer.commit_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for part in chunks(blob_ids):
                    chunk = list(part)
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(f"DELETE FROM blobs WHERE blob_id IN ({marks}) RETURNING blob_id",
                                        chunk).fetchall()
                    deleted += [row[0] for row in rows]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
