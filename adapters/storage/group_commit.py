"""Group commit: concurrent writers share one transaction, each still waits for its own.

Postfix's promise is "acknowledged means on disk", and an fsync per message caps a
store at a few hundred messages a second. Here the first writer to find no commit in
progress commits everything queued so far in one transaction (one fsync); writers that
arrived meanwhile find their work committed when they get their turn and return at
once. Nobody returns before their own write is durable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from eventsourcing.persistence import IntegrityError, StoredEvent

T = TypeVar("T")


class Pending(Generic[T]):
    """One writer's work in a batch; the batch's committer fills ``result`` or ``error``."""

    __slots__ = ("done", "error", "payload", "result")

    def __init__(self, payload: T) -> None:
        self.payload = payload
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommitter(Generic[T]):
    """Leader/follower batching around ``commit_batch(batch)``, which commits the whole
    batch and sets each item's result (or error). If it raises, every item not yet done
    fails with that error."""

    def __init__(self, commit_batch: Callable[[list[Pending[T]]], None]) -> None:
        self._commit_batch = commit_batch
        self.queue: list[Pending[T]] = []
        self.queue_lock = threading.Lock()
        self.commit_lock = threading.Lock()

    def submit(self, payload: T) -> Any:
        mine = Pending(payload)
        with self.queue_lock:
            self.queue.append(mine)
        with self.commit_lock:
            if not mine.done:
                with self.queue_lock:
                    batch, self.queue = self.queue, []
                try:
                    self._commit_batch(batch)
                except BaseException as error:  # a failed commit fails every writer in it
                    for pending in batch:
                        if not pending.done:
                            pending.error = error
                for pending in batch:
                    pending.done = True
        if mine.error is not None:
            raise mine.error
        return mine.result


class GroupCommitMixin:
    """Mix in before an application recorder class; batches plain ``insert_events`` calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committer: GroupCommitter[Sequence[StoredEvent]] = GroupCommitter(self._commit)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if kwargs.get("tracking") is not None or not stored_events:
            return super().insert_events(stored_events, **kwargs)  # type: ignore[misc]
        return self.committer.submit(stored_events)

    def _commit(self, batch: list[Pending[Sequence[StoredEvent]]]) -> None:
        if len(batch) > 1:
            try:
                ids = super().insert_events([e for p in batch for e in p.payload])  # type: ignore[misc]
            except IntegrityError:
                # Someone in the batch lost a race: commit the others one by one so
                # only the loser sees the conflict (and retries).
                for pending in batch:
                    self._commit_one(pending)
                return
            offset = 0
            for pending in batch:
                count = len(pending.payload)
                pending.result = list(ids[offset:offset + count]) if ids is not None else None
                offset += count
                pending.done = True
        else:
            self._commit_one(batch[0])

    def _commit_one(self, pending: Pending[Sequence[StoredEvent]]) -> None:
        try:
            pending.result = super().insert_events(pending.payload)  # type: ignore[misc]
        except BaseException as error:
            pending.error = error
        pending.done = True
