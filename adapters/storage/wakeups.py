"""In-process wake-ups: a writer that commits events wakes the projection runners of
the same store at once; runners also poll, for writes from other processes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

_LOCK = threading.Lock()
_WAITERS: dict[str, set[threading.Event]] = {}


def register(store_key: str) -> threading.Event:
    event = threading.Event()
    with _LOCK:
        _WAITERS.setdefault(store_key, set()).add(event)
    return event


def unregister(store_key: str, event: threading.Event) -> None:
    with _LOCK:
        _WAITERS.get(store_key, set()).discard(event)


def notify(store_key: str) -> None:
    with _LOCK:
        waiters = list(_WAITERS.get(store_key, ()))
    for event in waiters:
        event.set()


class WakesProjections:
    """Mix into an event recorder (before the library's class): after each commit,
    wake this process's projection runners. Subclasses name their store in ``store_key``."""

    @property
    def store_key(self) -> str:
        raise NotImplementedError

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        ids = super().insert_events(stored_events, **kwargs)  # type: ignore[misc]
        notify(self.store_key)
        return ids
