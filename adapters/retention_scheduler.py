"""The retention scheduler inside ``serve`` (issue 7, GDPR Art. 5(1)(e)).

Every ``retention.interval`` seconds it calls the ``apply_retention`` use case, which
expunges what the policies say is too old and nothing a legal hold covers. The run
reads and writes the store, so it runs in a worker thread: the event loop that serves
SMTP, IMAP and POP3 never waits for it. Only the node that leads the projections runs
it, so a cluster of ``serve`` processes applies each policy once per interval, not once
per node (a second node running it too would be safe, only wasteful: the run is
idempotent). The log says how many accounts, deletions and held messages a run had,
never whose: no addresses, mailbox names or reasons (and for a failure, only the
error's type, since a message could name a person).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from domain.application.context import acting

log = logging.getLogger(__name__)


class RetentionScheduler:
    def __init__(self, app: Any, interval: float, is_leading: Callable[[], bool]) -> None:
        self._app = app
        self._interval = interval
        self._is_leading = is_leading
        #: Completed runs, for ``/metrics``-style checks and tests.
        self.runs = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run at start (a server restarted more often than the interval still applies
        its policies), then every interval, until ``stop`` is set."""
        while not stop.is_set():
            if self._is_leading():
                await self.run_once()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            except TimeoutError:
                continue

    async def run_once(self) -> dict[str, int] | None:
        """One run in a worker thread; its counts, or None when it failed (logged; the
        next interval tries again, and what the failed run expunged stays expunged)."""
        try:
            counts: dict[str, int] = await asyncio.to_thread(self._apply)
        except Exception as error:  # noqa: BLE001 - the scheduler outlives a failed run
            log.error("retention run failed (%s); retrying in %.0fs", type(error).__name__, self._interval)
            return None
        self.runs += 1
        log.info("retention run: %d account(s) with rules, %d message(s) deleted, %d kept under a legal hold",
                 counts["accounts"], counts["deleted"], counts["held"])
        return counts

    def _apply(self) -> dict[str, int]:
        with acting("retention", protocol="scheduler", purpose="retention"):
            return self._app.apply_retention()  # type: ignore[no-any-return]
