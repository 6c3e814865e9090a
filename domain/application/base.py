"""The eventsourcing application every use case runs on, and what they share:
audit envelopes on save, per-aggregate locks, and retry on concurrent writes."""

from __future__ import annotations

import base64
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Transcoding

from domain.application.context import current_actor
from domain.model.account import Account
from domain.model.base import ENVELOPE, LedgerAggregate, PersonalAggregate
from domain.model.errors import ConcurrencyExhausted, SubjectErased
from domain.model.mailbox import Mailbox
from domain.model.spam_filter import SpamFilter
from domain.ports import (
    BlobStore,
    Clock,
    KeyStore,
    PasswordHasher,
    PersonalFiles,
    Pseudonymizer,
    ReadModels,
)

T = TypeVar("T")

#: How often a use case retries after losing a race with another writer.
MAX_CONFLICT_RETRIES = 50


class BytesAsBase64(Transcoding):
    """Data keys are bytes; the stock JSON transcoder knows no bytes."""

    type = bytes
    name = "b64"

    def encode(self, obj: bytes) -> str:
        return base64.b64encode(obj).decode()

    def decode(self, data: str) -> bytes:
        return base64.b64decode(data)


#: How events and views write times: UTC, microseconds, so they compare as strings.
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso_time(moment: datetime) -> str:
    return moment.strftime(ISO_FORMAT)


def parse_iso_time(text: str) -> datetime:
    return datetime.strptime(text, ISO_FORMAT).replace(tzinfo=UTC)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Ports:
    blobs: BlobStore
    keys: KeyStore
    pseudonyms: Pseudonymizer
    passwords: PasswordHasher
    read_models: ReadModels
    clock: Clock
    #: Told to the person in erasure receipts: when backups holding their key expire.
    backup_retention_days: int = 30
    default_quota_bytes: int = 1 << 30
    personal_files: PersonalFiles | None = None


class _StripedLocks:
    """In-process locks per aggregate id, striped; taken in a fixed order (no deadlock).

    They make writers in one process queue instead of colliding; writers in other
    processes are caught by the event store's version check and retried.
    """

    def __init__(self, stripes: int = 1024) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextmanager
    def hold(self, ids: Iterable[UUID]) -> Iterator[None]:
        stripes = sorted({zlib.crc32(i.bytes) % len(self._locks) for i in ids})
        with ExitStack() as stack:
            for stripe in stripes:
                stack.enter_context(self._locks[stripe])
            yield


class LedgerApplication(Application[UUID]):
    """Shared machinery. ``ports`` is None in read-only instances (projection runners)."""

    name = "ledgermail"
    #: SpamFilter: one event per trained message, so a busy filter replays from a snapshot.
    snapshotting_intervals = {Mailbox: 200, Account: 100, SpamFilter: 100}

    def __init__(self, env: Any = None, ports: Ports | None = None) -> None:
        super().__init__(env)
        self._ports = ports
        self.locks = _StripedLocks()

    @property
    def ports(self) -> Ports:
        if self._ports is None:
            raise RuntimeError("this application instance is read-only (no ports)")
        return self._ports

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(BytesAsBase64())

    # -- saving with an audit envelope -------------------------------------------------

    def now_iso(self) -> str:
        return iso_time(self.ports.clock.now())

    def envelope(self, subject_pseudonym: str | None) -> dict[str, Any]:
        actor = current_actor()
        return {
            "at": self.now_iso(),
            "actor": actor.principal,
            "protocol": actor.protocol,
            "session": actor.session,
            "purpose": actor.purpose,
            "subject": subject_pseudonym,
        }

    def pseudonym_of(self, subject_id: str) -> str:
        return self.ports.pseudonyms.subject_pseudonym(subject_id)

    def save_with_envelope(self, *objs: Any, subject: str | None = None) -> int:
        """Save aggregates and loose events in one transaction; return the last position.

        Personal aggregates are stamped with their own subject's pseudonym; system
        aggregates and loose events with ``subject`` (the person the act concerns).
        """
        envelopes: dict[str | None, dict[str, Any]] = {}

        def envelope_for(pseudonym: str | None) -> dict[str, Any]:
            if pseudonym not in envelopes:
                envelopes[pseudonym] = self.envelope(pseudonym)
            return envelopes[pseudonym]

        for obj in objs:
            if isinstance(obj, PersonalAggregate):
                obj.stamp_envelope(envelope_for(self.pseudonym_of(obj.subject_id)))
            elif isinstance(obj, LedgerAggregate):
                obj.stamp_envelope(envelope_for(subject))
            elif obj is not None:
                object.__setattr__(obj, ENVELOPE, envelope_for(subject))
        recordings = self.save(*objs)
        return recordings[-1].notification.id if recordings else self.log_position()

    def _record(self, processing_event: Any) -> Any:
        recordings = super()._record(processing_event)
        for aggregate_id, aggregate in processing_event.aggregates.items():
            if getattr(aggregate, "read_settled", False):
                self.evict(aggregate_id)
        return recordings

    def log_position(self) -> int:
        """The position of the newest event in the log (0 when empty): what a reader
        waits for to see everything committed so far (read-your-writes)."""
        return self.recorder.max_notification_id() or 0

    # -- loading -----------------------------------------------------------------------

    def load(self, aggregate_id: UUID, what: str = "record") -> Any:
        """Get an aggregate; erased people surface as ``SubjectErased``."""
        aggregate = self.repository.get(aggregate_id)
        if getattr(aggregate, "erased", False):
            self.evict(aggregate_id)
            raise SubjectErased(what)
        return aggregate

    def load_or_none(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def peek(self, aggregate_id: UUID) -> Any | None:
        """An aggregate to read, never to change: the cached object itself, not a deep
        copy (the copy is most of the cost of reading a message's key)."""
        try:
            return self.repository.get(aggregate_id, deepcopy_from_cache=False,
                                       fastforward_skipping=True)
        except AggregateNotFoundError:
            return None

    def peek_settled(self, aggregate_id: UUID) -> Any | None:
        """``peek`` for fields that never change once written (a copy's blob and data
        key): the cached object as it is, without the fast-forward query; loaded (and
        cached) when it is not in the cache. Aggregates read this way say so
        (``read_settled``), and ``_record`` drops them from the cache whenever this
        process changes them, so this process never reads its own past."""
        cache = self.repository.cache
        if cache is not None:
            with suppress(KeyError):
                return cache.get(aggregate_id)
        return self.peek(aggregate_id)

    def evict(self, aggregate_id: UUID) -> None:
        # LRUCache.clear() leaves entries behind in eventsourcing 9.5.6; evict per id.
        cache = self.repository.cache
        if cache is not None:
            with suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    # -- concurrency -------------------------------------------------------------------

    def retrying(self, what: str, ids: Callable[[], Iterable[UUID]], body: Callable[[], T]) -> T:
        """Run ``body`` holding the locks of ``ids()``; retry when another process won."""
        for _ in range(MAX_CONFLICT_RETRIES):
            with self.locks.hold(ids()):
                try:
                    return body()
                except IntegrityError:
                    # Another process appended first. The cached aggregates are deep
                    # copies, so nothing is corrupt: drop them and re-read.
                    for aggregate_id in ids():
                        self.evict(aggregate_id)
                    continue
        raise ConcurrencyExhausted(what)
