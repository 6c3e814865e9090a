"""Failed-login throttling shared by every protocol that authenticates.

After each failure the next answer comes later (a delay doubling from
``auth.failure_delay`` up to ``auth.max_failure_delay``, as Dovecot's
``auth_failure_delay`` and mox's growing delay do); after ``ip_lockout_failures`` from one
address or ``login_lockout_failures`` for one login name within ``lockout_seconds`` the
address or login is refused outright until the window passes. Login names are counted
as given, whether an account exists or not, so the answers never tell which names exist.
State is per process and in memory: a restart forgives, like Postfix's anvil.

Attempts still being verified count towards the lockout (``begin``/``end``): the
password check takes a while in a worker thread, and without that, guesses sent at
once on many connections would all pass ``check`` before the first failure is recorded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from adapters.config import Auth


@dataclass(frozen=True)
class Verdict:
    locked: bool
    delay: float


class LoginThrottle:
    def __init__(self, settings: Auth, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._by_ip: dict[str, deque[float]] = defaultdict(deque)
        self._by_login: dict[str, deque[float]] = defaultdict(deque)
        #: Attempts between ``begin`` and ``end``, per address and per login.
        self._pending_ip: Counter[str] = Counter()
        self._pending_login: Counter[str] = Counter()
        #: IMAP and POP3 sessions run in worker threads; SMTP calls from the event loop.
        self._lock = threading.RLock()

    def _recent(self, table: dict[str, deque[float]], key: str) -> int:
        if key not in table:
            return 0
        failures = table[key]
        horizon = self.clock() - self.settings.lockout_seconds
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del table[key]
            return 0
        return len(failures)

    def _check(self, ip: str, login: str) -> Verdict:
        """Before verifying a password: is this address or login locked out, and how
        long should the answer wait (zero until the first failure)."""
        ip_failures = self._recent(self._by_ip, ip)
        login_failures = self._recent(self._by_login, login.lower())
        # Once an address or login has failed, an attempt in flight may fail too: it
        # uses up the budget now. Before any failure it does not, so many good logins at
        # once from one address (a webmail host, a NAT) are never locked out.
        locked = (_over(ip_failures, self._pending_ip[ip], self.settings.ip_lockout_failures)
                  or _over(login_failures, self._pending_login[login.lower()],
                           self.settings.login_lockout_failures))
        worst = max(ip_failures, login_failures)
        delay = 0.0
        if worst:
            delay = min(self.settings.failure_delay * 2 ** (worst - 1), self.settings.max_failure_delay)
        return Verdict(locked, delay)

    def _begin(self, ip: str, login: str) -> Verdict:
        """``check``, and unless locked count this attempt as in flight until ``end``.
        Call both from one thread (the event loop) with no await between check and use."""
        verdict = self._check(ip, login)
        if not verdict.locked:
            self._pending_ip[ip] += 1
            self._pending_login[login.lower()] += 1
        return verdict

    def _end(self, ip: str, login: str, *, failed: bool) -> None:
        """The attempt ``begin`` admitted is over (call it whatever happened)."""
        for table, key in ((self._pending_ip, ip), (self._pending_login, login.lower())):
            table[key] -= 1
            if table[key] <= 0:
                del table[key]
        if failed:
            self._failed(ip, login)

    def _failed(self, ip: str, login: str) -> None:
        now = self.clock()
        self._by_ip[ip].append(now)
        self._by_login[login.lower()].append(now)

    def _succeeded(self, ip: str, login: str) -> None:
        """A good password clears the login's count (not the address's: one valid
        account must not reset an attacker's budget for guessing the others)."""
        self._by_login.pop(login.lower(), None)

    def check(self, ip: str, login: str) -> Verdict:
        with self._lock:
            return self._check(ip, login)

    def begin(self, ip: str, login: str) -> Verdict:
        with self._lock:
            return self._begin(ip, login)

    def end(self, ip: str, login: str, *, failed: bool) -> None:
        with self._lock:
            self._end(ip, login, failed=failed)

    def failed(self, ip: str, login: str) -> None:
        with self._lock:
            self._failed(ip, login)

    def succeeded(self, ip: str, login: str) -> None:
        with self._lock:
            self._succeeded(ip, login)


def _over(failures: int, pending: int, limit: int) -> bool:
    return failures >= limit or (failures > 0 and failures + pending >= limit)
