"""Open connections per client address and in total, for the IMAP and POP3 listeners
(one table per service): a client over its share is refused before the greeting."""

from __future__ import annotations

import collections
from typing import Any


class ConnectionTable:
    def __init__(self, per_ip: int, total: int) -> None:
        self.per_ip = per_ip
        self.total = total
        self.by_ip: collections.Counter[str] = collections.Counter()
        self.open: set[Any] = set()

    def admit(self, ip: str) -> str | None:
        """None when admitted (``release`` later), else why not."""
        if len(self.open) >= self.total:
            return "server busy, try again later"
        if self.by_ip[ip] >= self.per_ip:
            return "too many connections from your address"
        self.by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]
