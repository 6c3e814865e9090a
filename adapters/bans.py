"""The bans every process on the store shares, kept cheap on the login hot path.

The login throttle asks ``banned(key)`` before each password check, from the SMTP event
loop too, so the answer comes from memory: a snapshot of the ``BanIndex`` (system scope,
keyed pseudonyms only, domain/model/ban.py). A daemon thread keeps it fresh: every
``auth.ban_refresh_seconds`` it re-reads the index (a fast-forward of one cached
aggregate: one small query when nothing changed), writes the bans this process decided
(placing one commits an event with an fsync, which must not stall the event loop), and
lifts bans that ran out (shredding their targets). So a ban placed by one ``serve`` and a
``ledgermail ban remove`` from the command line reach every server within a refresh.

A ban that disappears from the index before its end was lifted by an operator: the
throttle is told (``lifts``) and forgets that target's failure count, or its in-memory
lockout would go on refusing an address the operator just let back in.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from domain.application.base import parse_iso_time
from domain.application.context import acting
from domain.application.service import LedgerMail
from domain.model.errors import DomainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Placement:
    kind: str
    target: str
    seconds: float
    failures: int
    protocol: str


class BanRegistry:
    def __init__(self, app: LedgerMail, refresh_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        #: ban key -> end (epoch seconds): the index as last read, plus local placements.
        self._active: dict[str, float] = {}
        #: ban key -> how many times an operator lifted it while this process watched.
        self._lifts: Counter[str] = Counter()
        #: Placed here, not yet in the index: a refresh must not take them for lifted.
        self._unwritten: dict[str, float] = {}
        self._queue: queue.SimpleQueue[_Placement] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.refresh()  # the bans in force before this process started

    # -- the hot path (memory only) ------------------------------------------------------

    def key(self, kind: str, target: str) -> str | None:
        """The target's ban key; None for a target that cannot be banned (a malformed
        peer address: then the in-memory throttle alone answers)."""
        try:
            return self.app.ban_key(kind, target)
        except (DomainError, ValueError):
            return None

    def banned(self, key: str | None) -> bool:
        return key is not None and self._active.get(key, 0.0) > self.clock()

    def lifts(self, key: str | None) -> int:
        return self._lifts.get(key, 0) if key is not None else 0

    def place(self, kind: str, target: str, seconds: float, failures: int, protocol: str) -> None:
        """Ban now in this process; the event is written by the refresh thread."""
        key = self.key(kind, target)
        if key is None or self.banned(key):
            return
        until = self.clock() + seconds
        with self._lock:
            self._active[key] = until
            self._unwritten[key] = until
        # Nothing of the target in the log line: the audit trail has the event.
        log.warning("ban placed: %s after %d failures (%s), %.0f s", kind, failures, protocol, seconds)
        self._queue.put(_Placement(kind, target, seconds, failures, protocol))
        self._start()
        self._wake.set()

    # -- the refresh thread --------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="ban-registry", daemon=True)
                self._thread.start()

    def start(self) -> None:
        """Keep the snapshot fresh from now on (``serve`` and the test servers)."""
        self._start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        try:
            revived = self.app.reshred_lifted_bans()
            if revived:
                log.warning("shredded again the keys of %d lifted ban(s) (a restored key store, "
                            "or a stop between lifting and shredding)", revived)
        except Exception as error:  # noqa: BLE001 - the next start tries again
            log.warning("lifted bans could not be checked: %s", type(error).__name__)
        while not self._stop.is_set():
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._write_placements()
                if any(until <= self.clock() for until in list(self._active.values())):
                    with acting("system", protocol="internal", purpose="security"):
                        self.app.expire_bans()
                self.refresh()
            except Exception as error:  # noqa: BLE001 - the store is down: keep the snapshot
                log.warning("bans could not be refreshed: %s", type(error).__name__)

    def _write_placements(self) -> None:
        while True:
            try:
                placement = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                with acting("system", protocol=placement.protocol, purpose="security"):
                    self.app.place_ban(placement.kind, placement.target, placement.seconds,
                                       placement.failures, placement.protocol)
            except Exception:
                self._queue.put(placement)  # retried on the next round
                raise

    def refresh(self) -> None:
        """Re-read the index (any process may have placed or lifted a ban)."""
        now = self.clock()
        fresh: dict[str, float] = {}
        for ban in self.app.active_bans():
            fresh[ban.ban_key] = parse_iso_time(ban.until).timestamp()
        with self._lock:
            for key in list(self._unwritten):
                if key in fresh or self._unwritten[key] <= now:
                    del self._unwritten[key]
            for key, until in self._active.items():
                if key not in fresh and key not in self._unwritten and until > now + 1:
                    self._lifts[key] += 1  # gone before its end: an operator lifted it
            fresh.update(self._unwritten)
            self._active = fresh
