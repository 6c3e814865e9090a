"""Only one process runs the projections of a store at a time.

Two runners applying the same event would double-insert rows and fork the audit hash
chain. ``serve`` holds the lock for its lifetime; a command run beside it (``ledgermail
deliver`` ...) finds the lock taken and waits for serve's projections instead; a command
run alone takes the lock and brings the views up to date itself.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from pathlib import Path
from typing import Any


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None  # a flock lives as long as this process

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


#: ``application_name`` of the lock's session, followed by the store's schema
#: (pg_stat_activity shows each installation's leader).
APPLICATION_NAME = "ledgermail-leader"


class PostgresLeaderLock:
    """A session-level advisory lock, held by a dedicated connection."""

    def __init__(self, dsn: str, name: str) -> None:
        self._dsn = dsn
        self._key = zlib.crc32(f"ledgermail-projections:{name}".encode())
        self._application_name = f"{APPLICATION_NAME} {name}"[:63]
        self._conn: Any = None  # a psycopg.Connection (imported on PostgreSQL only)

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        import psycopg

        conn = psycopg.connect(self._dsn, autocommit=True, application_name=self._application_name)
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def still_held(self) -> bool:
        """False once the lock's session is gone (terminated, server restarted): the
        server released the lock with it, and another node may hold it now."""
        if self._conn is None:
            return False
        import psycopg

        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # closing the session releases the lock
            self._conn = None
