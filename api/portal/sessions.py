"""Server-side portal sessions, in memory (issue 7).

The cookie carries only a random session id (``secrets.token_urlsafe(32)``, 256 bits):
who is logged in, the CSRF token and the erasure receipts this browser may see stay on
the server, so nothing personal travels in the cookie and a logout or a timeout ends the
session for good. A session ends after ``session_idle_seconds`` without a request and
``session_max_seconds`` after it began, whatever happens (OWASP Session Management:
idle and absolute timeouts). The id changes at login (session fixation). Sessions are
per process, like the login throttle: a restart of ``serve`` logs everybody out.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from adapters.config import Portal

#: Sessions held at most; beyond it the least recently used go first, so a flood of
#: anonymous visits cannot grow memory without bound (checklist A4).
MAX_SESSIONS = 10_000


@dataclass
class PortalSession:
    """One browser's session. ``account_id`` (a person) and ``admin_token_id`` (an
    administrator) are never both set; neither means not logged in."""

    id: str
    csrf_token: str
    started: float
    last_seen: float
    account_id: UUID | None = None
    admin_token_id: str | None = None
    #: Erasure requests this browser made: their receipts stay viewable after the
    #: account is gone (they hold no personal data).
    receipts: list[str] = field(default_factory=list)
    #: Export ids this session started, newest last.
    exports: list[str] = field(default_factory=list)
    #: A one-line outcome of the last form (e.g. "moved to Junk"), shown once on the
    #: next page and then forgotten: kept here, not in the redirect's URL, so that no
    #: outcome about the person's mail travels in an address or a log line.
    notice: str | None = None


class SessionStore:
    def __init__(self, settings: Portal, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._sessions: dict[str, PortalSession] = {}
        # Routes run in a thread pool: two requests of one browser may race.
        self._lock = threading.Lock()

    def new(self) -> PortalSession:
        """A fresh anonymous session (it carries the login form's CSRF token)."""
        now = self.clock()
        session = PortalSession(id=secrets.token_urlsafe(32), csrf_token=secrets.token_urlsafe(32),
                                started=now, last_seen=now)
        with self._lock:
            self._make_room()
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> PortalSession | None:
        """The live session with this id, touched; None when unknown or timed out
        (a timed-out session is dropped at once)."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_seen = now
            # Most recently used last: ``_make_room`` evicts from the front.
            self._sessions[session_id] = self._sessions.pop(session_id)
            return session

    def rotate(self, session: PortalSession) -> PortalSession:
        """The same session under a new id and a new CSRF token, restarted: call at
        login, so an id planted before it (session fixation) is worth nothing."""
        now = self.clock()
        with self._lock:
            self._sessions.pop(session.id, None)
            session.id = secrets.token_urlsafe(32)
            session.csrf_token = secrets.token_urlsafe(32)
            session.started = session.last_seen = now
            self._make_room()
            self._sessions[session.id] = session
        return session

    def drop(self, session: PortalSession) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expired(self, session: PortalSession, now: float) -> bool:
        return (now - session.last_seen > self.settings.session_idle_seconds
                or now - session.started > self.settings.session_max_seconds)

    def _make_room(self) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        now = self.clock()
        for session_id in [i for i, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[session_id]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
