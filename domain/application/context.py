"""Who is acting, through which protocol and session: stamped on every event.

Adapters set this once per command (``with acting(...)``); the application copies it
into the audit envelope of every event it saves, so the audit trail can say who did
what without the protocol handlers writing audit rows themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Actor:
    """``principal`` is kind:id with a pseudonymous id (``admin:cli``, ``user:<account id>``)."""

    principal: str = "system"
    protocol: str = "internal"
    session: str = ""
    purpose: str = "service"


# Actor is a frozen dataclass: a shared default is safe.
_current: ContextVar[Actor] = ContextVar("ledgermail_actor", default=Actor())  # noqa: B039


def current_actor() -> Actor:
    return _current.get()


@contextmanager
def acting(
    principal: str | None = None,
    *,
    protocol: str | None = None,
    session: str | None = None,
    purpose: str | None = None,
) -> Iterator[Actor]:
    """Set the acting principal (and what else is given) for the block."""
    actor = current_actor()
    changes = {
        key: value
        for key, value in (
            ("principal", principal),
            ("protocol", protocol),
            ("session", session),
            ("purpose", purpose),
        )
        if value is not None
    }
    token = _current.set(replace(actor, **changes))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
