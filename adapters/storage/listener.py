"""A PostgreSQL session that LISTENs, for the nodes of one store to tell each other things.

Several ``serve`` processes on one PostgreSQL (docs/scaling.md) learn of each other's
writes through NOTIFY: the event recorder notifies its table's channel in each insert
transaction (delivered at commit), and the key store notifies a channel of its own
when it shreds keys. A notification is not durable: a LISTEN session that drops misses
whatever was sent meanwhile, silently. So ``run`` raises ``ListenLost`` the moment its
session fails (a terminated backend, a restarted server, a dead network noticed by the
heartbeat), and each owner decides what "I may have missed something" means for it:
the projection runner restarts and catches up from its tracking positions; the key
store forgets every cached key until it listens again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

#: How long one wait for notifications lasts before the loop looks at ``stopping``
#: (so how long a LISTEN session outlives its owner's close).
WAIT_SECONDS = 0.25
#: How often an otherwise silent session is asked ``SELECT 1``: a peer that vanished
#: without a FIN (a pulled cable, a failover) is noticed within this, not at the next
#: TCP keepalive hours later.
HEARTBEAT_SECONDS = 5.0
#: ``application_name`` prefix of the LISTEN sessions (pg_stat_activity shows them).
APPLICATION_NAME = "ledgermail-listen"


class ListenLost(RuntimeError):
    """The LISTEN session failed: notifications sent since may have been missed."""


def channel_name(*parts: str) -> str:
    """A channel name PostgreSQL keeps whole (identifiers are cut at 63 bytes)."""
    return "_".join(parts)[:63]


class NotificationListener:
    def __init__(self, dsn: str, channels: Iterable[str], on_notify: Callable[[str, str], None],
                 purpose: str, heartbeat: float = HEARTBEAT_SECONDS,
                 on_ready: Callable[[], None] | None = None) -> None:
        self._dsn = dsn
        self._on_ready = on_ready
        self._channels = list(channels)
        self._on_notify = on_notify
        self._purpose = purpose
        self._heartbeat = heartbeat
        #: Set once LISTEN is in place: anything committed after this is heard.
        self.ready = threading.Event()

    def run(self, stopping: threading.Event) -> None:
        """LISTEN and hand each notification to ``on_notify(channel, payload)`` until
        ``stopping`` is set; raises ``ListenLost`` if the session fails."""
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10,
                                   application_name=f"{APPLICATION_NAME} {self._purpose}"[:63])
        except psycopg.Error as error:
            raise ListenLost(f"cannot connect: {type(error).__name__}") from error
        try:
            for channel in self._channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.ready.set()
            if self._on_ready is not None:
                self._on_ready()
            last_heard = time.monotonic()
            while not stopping.is_set():
                for notify in conn.notifies(timeout=WAIT_SECONDS):
                    last_heard = time.monotonic()
                    self._on_notify(notify.channel, notify.payload)
                    if stopping.is_set():
                        break
                if time.monotonic() - last_heard >= self._heartbeat:
                    conn.execute("SELECT 1")
                    last_heard = time.monotonic()
        except psycopg.Error as error:
            raise ListenLost(f"{type(error).__name__}: {error}".strip()) from error
        finally:
            self.ready.clear()
            conn.close()


def notify(conn: psycopg.Connection, channel: str, payload: str = "") -> None:
    """NOTIFY on ``conn``: inside a transaction it is delivered when that commits."""
    conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
