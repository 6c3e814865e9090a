"""The key store in its own SQLite file (``keys.sqlite`` in the data dir)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapters.crypto.keystore import SubjectKeyStore

CHECKPOINT_ATTEMPTS = 100


class SQLiteKeyStore(SubjectKeyStore):
    def __init__(self, path: str, master_key: bytes) -> None:
        self._path = path
        super().__init__(master_key, where=path)

    def _setup(self) -> None:
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        # Freed cells are zeroed, WAL frames are checkpointed away after a shred, and a
        # key is on disk before any event sealed with it (DESIGN §3).
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS subject_keys(
              key_id BLOB PRIMARY KEY, subject_id TEXT NOT NULL, wrapped_key BLOB,
              created_at REAL NOT NULL, shredded_at REAL, erasure_ref TEXT);
            CREATE INDEX IF NOT EXISTS subject_keys_subject ON subject_keys(subject_id);
            CREATE INDEX IF NOT EXISTS subject_keys_erasure ON subject_keys(erasure_ref);
            """
        )
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]

    def _changed_elsewhere(self) -> bool:
        # PRAGMA data_version changes only when another connection commits: a cheap,
        # exact signal that a shred may have happened in another process.
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version
        self._data_version = version
        return changed

    def _get_meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def _put_meta(self, name: str, value: bytes) -> None:
        self._db.execute("INSERT OR IGNORE INTO meta VALUES (?,?)", (name, value))

    def _live_key_id(self, subject_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT key_id FROM subject_keys WHERE subject_id=? AND shredded_at IS NULL",
            (subject_id,),
        ).fetchone()
        return row[0] if row else None

    def _is_tombstoned(self, tombstone: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM subject_keys WHERE subject_id=?", (tombstone,)
        ).fetchone() is not None

    def _insert_key(self, key_id: bytes, subject_id: str, wrapped: bytes) -> None:
        self._db.execute(
            "INSERT INTO subject_keys VALUES (?,?,?,?,NULL,NULL)",
            (key_id, subject_id, wrapped, time.time()),
        )
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]

    def _key_row(self, key_id: bytes) -> tuple[bytes | None, Any] | None:
        row = self._db.execute(
            "SELECT wrapped_key, shredded_at FROM subject_keys WHERE key_id=?", (key_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _shred_rows(self, subject_id: str, tombstone: str, erasure_ref: str) -> list[bytes]:
        with self._transaction():
            key_ids = [r[0] for r in self._db.execute(
                "SELECT key_id FROM subject_keys WHERE subject_id=? AND shredded_at IS NULL",
                (subject_id,),
            )]
            self._db.executemany(
                "UPDATE subject_keys SET wrapped_key=NULL, subject_id=?, shredded_at=?, "
                "erasure_ref=? WHERE key_id=?",
                [(tombstone, time.time(), erasure_ref, k) for k in key_ids],
            )
        self._checkpoint()
        return key_ids

    def _checkpoint(self) -> None:
        """secure_delete zeroed the old cells in the page images; the checkpoint moves
        them into the main file and truncates the WAL, so no copy of a key remains.
        Readers in other processes can hold it off for a moment: retry, then fail loudly."""
        for _ in range(CHECKPOINT_ATTEMPTS):
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return
            time.sleep(0.02)
        raise RuntimeError(f"could not checkpoint {self._path}: other readers keep it busy; "
                           "the shredded key may remain in its WAL until the next checkpoint")

    def _shred_key_rows(self, key_ids: list[bytes], erasure_ref: str) -> list[bytes]:
        revived = [k for k in key_ids if self._db.execute(
            "SELECT 1 FROM subject_keys WHERE key_id=? AND wrapped_key IS NOT NULL", (k,)).fetchone()]
        if not revived:
            return []
        with self._transaction():
            for key_id in revived:
                subject = self._db.execute("SELECT subject_id FROM subject_keys WHERE key_id=?",
                                           (key_id,)).fetchone()[0]
                self._db.execute(
                    "UPDATE subject_keys SET wrapped_key=NULL, subject_id=?, shredded_at=?, "
                    "erasure_ref=? WHERE key_id=?",
                    (self.tombstone_name(subject) if not subject.startswith("erased:") else subject,
                     time.time(), erasure_ref, key_id))
        self._checkpoint()
        return revived

    def _keys_shredded_by(self, erasure_ref: str) -> list[bytes]:
        return [r[0] for r in self._db.execute(
            "SELECT key_id FROM subject_keys WHERE erasure_ref=? ORDER BY key_id", (erasure_ref,)
        )]

    def close(self) -> None:
        with self._lock:
            self._db.close()
