"""Failed-login throttling shared by every protocol that authenticates.

After each failure the next answer comes later (a delay doubling from
``auth.failure_delay`` up to ``auth.max_failure_delay``, as Dovecot's
``auth_failure_delay`` and mox's growing delay do); after ``ip_lockout_failures`` from one
address or ``login_lockout_failures`` for one login name within ``lockout_seconds`` the
address or login is refused outright until the window passes. Login names are counted
as given, whether an account exists or not, so the answers never tell which names exist.
Counts are per process and in memory: a restart forgives, like Postfix's anvil.

Bans (issue 8) are what outlives that: ``auth.ip_ban_failures`` failures from one address
within the window -- attempts refused while it is locked out count too, so an attacker who
keeps hammering is escalated -- ban the address for ``auth.ban_seconds``, and a login
name locked out is banned for ``lockout_seconds``. A ban is an event (adapters/bans.py,
domain/model/ban.py), so every process on the store refuses the target, across SMTP AUTH,
IMAP, POP3 and the portal, and ``ledgermail ban list|remove`` shows and lifts it.

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

from adapters.bans import BanRegistry
from adapters.config import Auth


@dataclass(frozen=True)
class Verdict:
    locked: bool
    delay: float


class LoginThrottle:
    def __init__(self, settings: Auth, clock: Callable[[], float] = time.monotonic,
                 bans: BanRegistry | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.bans = bans
        #: Per address: failures and attempts refused while locked out, towards a ban.
        self._strikes: dict[str, deque[float]] = defaultdict(deque)
        #: ban key -> the registry's lift count already acted on (see ``_forgive``).
        self._lifts_seen: dict[str, int] = {}
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
        banned = False
        if self.bans is not None:
            ip_key, login_key = self.bans.key("ip", ip), self.bans.key("login", login)
            self._forgive(ip_key, self._by_ip, self._strikes, ip)
            self._forgive(login_key, self._by_login, None, login.lower())
            banned = self.bans.banned(ip_key) or self.bans.banned(login_key)
        ip_failures = self._recent(self._by_ip, ip)
        login_failures = self._recent(self._by_login, login.lower())
        # Once an address or login has failed, an attempt in flight may fail too: it
        # uses up the budget now. Before any failure it does not, so many good logins at
        # once from one address (a webmail host, a NAT) are never locked out.
        locked = banned or (_over(ip_failures, self._pending_ip[ip], self.settings.ip_lockout_failures)
                  or _over(login_failures, self._pending_login[login.lower()],
                           self.settings.login_lockout_failures))
        worst = max(ip_failures, login_failures)
        delay = 0.0
        if worst:
            delay = min(self.settings.failure_delay * 2 ** (worst - 1), self.settings.max_failure_delay)
        elif banned:
            delay = self.settings.failure_delay
        return Verdict(locked, delay)

    def _forgive(self, key: str | None, table: dict[str, deque[float]],
                 strikes: dict[str, deque[float]] | None, name: str) -> None:
        """An operator lifted this target's ban since we last looked: forget its
        failures, or the in-memory lockout would refuse it for the rest of the window."""
        assert self.bans is not None
        lifts = self.bans.lifts(key)
        if key is None or not lifts or self._lifts_seen.get(key) == lifts:
            return
        self._lifts_seen[key] = lifts
        table.pop(name, None)
        if strikes is not None:
            strikes.pop(name, None)

    def _strike(self, ip: str, login: str, protocol: str) -> None:
        """A failure, or an attempt refused while locked out: ban when over the limits."""
        if self.bans is None:
            return
        self._strikes[ip].append(self.clock())
        strikes = self._recent(self._strikes, ip)
        if strikes >= self.settings.ip_ban_failures:
            self.bans.place("ip", ip, self.settings.ban_seconds, strikes, protocol)
        failures = self._recent(self._by_login, login.lower())
        if failures >= self.settings.login_lockout_failures:
            self.bans.place("login", login, self.settings.lockout_seconds, failures, protocol)

    def _begin(self, ip: str, login: str, protocol: str = "unknown") -> Verdict:
        """``check``, and unless locked count this attempt as in flight until ``end``.
        Call both from one thread (the event loop) with no await between check and use."""
        verdict = self._check(ip, login)
        if not verdict.locked:
            self._pending_ip[ip] += 1
            self._pending_login[login.lower()] += 1
        elif not self._is_banned(ip, login):
            self._strike(ip, login, protocol)
        return verdict

    def _is_banned(self, ip: str, login: str) -> bool:
        return self.bans is not None and (self.bans.banned(self.bans.key("ip", ip))
                                          or self.bans.banned(self.bans.key("login", login)))

    def _end(self, ip: str, login: str, *, failed: bool, protocol: str = "unknown") -> None:
        """The attempt ``begin`` admitted is over (call it whatever happened)."""
        for table, key in ((self._pending_ip, ip), (self._pending_login, login.lower())):
            table[key] -= 1
            if table[key] <= 0:
                del table[key]
        if failed:
            self._failed(ip, login, protocol)

    def _failed(self, ip: str, login: str, protocol: str = "unknown") -> None:
        now = self.clock()
        self._by_ip[ip].append(now)
        self._by_login[login.lower()].append(now)
        self._strike(ip, login, protocol)

    def _succeeded(self, ip: str, login: str) -> None:
        """A good password clears the login's count (not the address's: one valid
        account must not reset an attacker's budget for guessing the others)."""
        self._by_login.pop(login.lower(), None)

    def check(self, ip: str, login: str) -> Verdict:
        with self._lock:
            return self._check(ip, login)

    def begin(self, ip: str, login: str, protocol: str = "unknown") -> Verdict:
        """``protocol`` names where the attempt came from, in a ban it leads to."""
        with self._lock:
            return self._begin(ip, login, protocol)

    def end(self, ip: str, login: str, *, failed: bool, protocol: str = "unknown") -> None:
        with self._lock:
            self._end(ip, login, failed=failed, protocol=protocol)

    def failed(self, ip: str, login: str, protocol: str = "unknown") -> None:
        with self._lock:
            self._failed(ip, login, protocol)

    def succeeded(self, ip: str, login: str) -> None:
        with self._lock:
            self._succeeded(ip, login)


def _over(failures: int, pending: int, limit: int) -> bool:
    return failures >= limit or (failures > 0 and failures + pending >= limit)
