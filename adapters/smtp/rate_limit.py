"""Outbound rate limit per account (issue 8): a stolen password cannot spam the world.

Each account may submit ``outbound.max_messages_per_hour`` recipients in any sliding
hour (a message to ten people counts ten: a spammer would otherwise send one message
to thousands). Over it, DATA gets ``451 4.7.1``: temporary, so a legitimate client
keeps the message and sends it later, as Postfix's anvil rate limits and mox's
per-account limits answer.

The count is per process and in memory, like the login throttle: a restart forgives,
and with several ``serve`` nodes each allows the limit (documented in
docs/anti-abuse.md). Only the submission listeners (authenticated mail) are counted.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from uuid import UUID

#: The sliding window.
HOUR = 3600.0


class OutboundRateLimit:
    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self.clock = clock
        self._sent: dict[UUID, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _used(self, account_id: UUID, now: float) -> int:
        sent = self._sent.get(account_id)
        if not sent:
            return 0
        while sent and sent[0][0] <= now - HOUR:
            sent.popleft()
        if not sent:
            del self._sent[account_id]
            return 0
        return sum(count for _, count in sent)

    def reserve(self, account_id: UUID, recipients: int) -> bool:
        """Take ``recipients`` from the account's hour, or False when they do not fit.
        Reserved before the message is stored, so messages sent at once on many
        connections cannot all slip under the limit; ``release`` gives them back when
        the message was not accepted after all."""
        if self.per_hour <= 0:
            return True
        with self._lock:
            now = self.clock()
            if self._used(account_id, now) + recipients > self.per_hour:
                return False
            self._sent[account_id].append((now, recipients))
            return True

    def release(self, account_id: UUID, recipients: int) -> None:
        if self.per_hour <= 0:
            return
        with self._lock:
            sent = self._sent.get(account_id)
            if not sent:
                return
            for index in range(len(sent) - 1, -1, -1):
                if sent[index][1] == recipients:
                    del sent[index]
                    return
