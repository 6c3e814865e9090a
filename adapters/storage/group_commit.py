"""Group commit: concurrent writers share one transaction, each still waits for its own.

Postfix's promise is "acknowledged means on disk", and an fsync per message caps a
store at a few hundred messages a second. Here the first writer to find no commit in
progress commits everything queued so far in one transaction (one fsync); writers that
arrived meanwhile find their events committed when they get their turn and return at
once. Nobody returns before their own events are durable.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent


class _Pending:
    __slots__ = ("error", "events", "ids", "done")

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self.events = events
        self.ids: Sequence[int] | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommitMixin:
    """Mix in before an application recorder class; batches plain ``insert_events`` calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if kwargs.get("tracking") is not None or not stored_events:
            return super().insert_events(stored_events, **kwargs)  # type: ignore[misc]
        mine = _Pending(stored_events)
        with self._queue_lock:
            self._queue.append(mine)
        with self._commit_lock:
            if not mine.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if mine.error is not None:
            raise mine.error
        return mine.ids

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) > 1:
                try:
                    ids = super().insert_events([e for p in batch for e in p.events])  # type: ignore[misc]
                except IntegrityError:
                    # Someone in the batch lost a race: commit the others one by one so
                    # only the loser sees the conflict (and retries).
                    for pending in batch:
                        self._commit_one(pending)
                    return
                offset = 0
                for pending in batch:
                    count = len(pending.events)
                    pending.ids = list(ids[offset:offset + count]) if ids is not None else None
                    offset += count
                    pending.done = True
            else:
                self._commit_one(batch[0])
        except BaseException as error:  # a failed commit fails every writer in it
            for pending in batch:
                if not pending.done:
                    pending.error = error
                    pending.done = True

    def _commit_one(self, pending: _Pending) -> None:
        try:
            pending.ids = super().insert_events(pending.events)  # type: ignore[misc]
        except BaseException as error:
            pending.error = error
        pending.done = True
