"""Concurrent writers: threads in one process queue on in-process locks, writers in other
processes (here: a second container on the same store) lose the version check and retry,
and the group commit hands every caller back its own notification ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError, StoredEvent

from adapters.bootstrap import Container, build
from adapters.config import Settings
from adapters.storage.group_commit import GroupCommitMixin
from domain.application.context import acting
from domain.model.message import Delivery

PASSWORD = "correct horse battery"
WRITERS = 20
T = TypeVar("T")


def message(n: int) -> bytes:
    return f"From: peer@remote.test\r\nSubject: concurrent {n}\r\n\r\nbody {n}\r\n".encode()


def run_together(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` for i in 0..count-1 on ``count`` threads released at once."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        barrier.wait()
        try:
            with acting("admin:test", protocol="test", purpose="testing"):
                results[i] = work(i)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    assert errors == [], errors
    return results


def assert_inbox_holds(store: Container, account_id: UUID, bodies: dict[int, bytes]) -> None:
    store.catch_up()
    inbox_id = store.app.mailbox_id_of(account_id, "INBOX")
    rows = store.mailbox_view.messages(inbox_id)
    assert [m.uid for m in rows] == list(range(1, len(bodies) + 1))
    assert sorted(m.modseq for m in rows) == list(range(2, len(bodies) + 2))
    [inbox] = [b for b in store.mailbox_view.mailboxes(account_id) if b.name == "INBOX"]
    assert (inbox.uidnext, inbox.highestmodseq, inbox.messages) == (
        len(bodies) + 1, len(bodies) + 1, len(bodies))
    read = store.app.read_messages(account_id, [m.copy_id for m in rows], "test")
    assert {m.uid: m.body for m in read} == bodies


def test_twenty_concurrent_deliveries_get_uids_one_to_twenty(store: Container) -> None:
    alice = store.app.create_account("alice@example.test", PASSWORD)

    refs = run_together(WRITERS, lambda i: store.app.deliver(["alice@example.test"], message(i)))

    uids = [result.copies[0].uid for result in refs]
    assert sorted(uids) == list(range(1, WRITERS + 1))
    assert_inbox_holds(store, alice, {uid: message(i) for i, uid in enumerate(uids)})


def test_deliveries_waiting_for_a_busy_inbox_are_stored_in_one_commit_in_arrival_order(
    store: Container,
) -> None:
    alice = store.app.create_account("alice@example.test", PASSWORD)
    inbox_id = store.app.mailbox_id_of(alice, "INBOX")
    waiting = store.app._waiting_deliveries  # noqa: SLF001 - observing the queue
    refs: dict[int, Any] = {}

    def deliver(i: int) -> None:
        with acting("admin:test", protocol="test", purpose="testing"):
            refs[i] = store.app.deliver(["alice@example.test"], message(i))

    threads = []
    with store.app.locks.hold([inbox_id]):  # the inbox is busy
        for i in range(5):
            threads.append(threading.Thread(target=deliver, args=(i,)))
            threads[-1].start()
            deadline = time.monotonic() + 10
            while len(waiting._queues.get((inbox_id,), [])) < i + 1:  # noqa: SLF001
                assert time.monotonic() < deadline, "delivery never queued"
                time.sleep(0.001)
    for thread in threads:
        thread.join(30)

    assert [refs[i].copies[0].uid for i in range(5)] == [1, 2, 3, 4, 5]
    assert len({refs[i].position for i in range(5)}) == 1
    assert waiting._queues == {}  # noqa: SLF001
    assert_inbox_holds(store, alice, {i + 1: message(i) for i in range(5)})


def test_concurrent_deliveries_from_two_processes_get_distinct_consecutive_uids(
    store: Container, settings: Settings
) -> None:
    alice = store.app.create_account("alice@example.test", PASSWORD)
    bob = store.app.create_account("bob@example.test", PASSWORD)
    other = build(settings, run_projections=False)
    try:
        apps = [store.app, other.app]

        refs = run_together(WRITERS, lambda i: apps[i % 2].deliver(
            ["alice@example.test", "bob@example.test"], message(i)))

        for index, account_id in enumerate((alice, bob)):
            uids = [result.copies[index].uid for result in refs]
            assert sorted(uids) == list(range(1, WRITERS + 1))
            assert_inbox_holds(store, account_id, {uid: message(i) for i, uid in enumerate(uids)})
        # The other process sees every message too, whoever wrote it.
        other_inbox = other.app.repository.get(other.app.mailbox_id_of(alice, "INBOX"))
        assert other_inbox.uidnext == WRITERS + 1
    finally:
        other.close()


def test_concurrent_flag_changes_from_two_processes_lose_no_update(
    store: Container, settings: Settings
) -> None:
    alice = store.app.create_account("alice@example.test", PASSWORD)
    store.app.deliver(["alice@example.test"], message(0))
    inbox_id = store.app.mailbox_id_of(alice, "INBOX")
    other = build(settings, run_projections=False)
    try:
        apps = [store.app, other.app]
        keywords = [f"k{i:02d}" for i in range(WRITERS)]

        results = run_together(WRITERS, lambda i: apps[i % 2].set_flags(
            alice, inbox_id, [1], [keywords[i]], mode="add"))

        modseqs = [changes[0].modseq for changes, _ in results]
        assert sorted(modseqs) == list(range(3, WRITERS + 3))
        store.catch_up()
        [row] = store.mailbox_view.messages(inbox_id)
        assert row.flags == sorted(keywords)
        assert row.modseq == WRITERS + 2
    finally:
        other.close()


# -- group commit ----------------------------------------------------------------------


def sealed_events(store: Container, count: int) -> list[StoredEvent]:
    """Real, sealed events of new system-scope aggregates (no personal data)."""
    stored = []
    for _ in range(count):
        delivery = Delivery(delivery_id=uuid4(), blob_id="0" * 32, size=1, copy_ids=[], channel="test")
        delivery.stamp_envelope(store.app.envelope(None))
        stored += [store.app.mapper.to_stored_event(e) for e in delivery.collect_events()]
    return stored


def commit_as_one_batch(store: Container, batches: list[list[StoredEvent]]) -> list[Any]:
    """Queue every caller behind the commit lock, then let one commit them all."""
    recorder: Any = store.app.recorder
    assert isinstance(recorder, GroupCommitMixin)
    outcomes: list[Any] = [None] * len(batches)

    def insert(i: int) -> None:
        try:
            outcomes[i] = recorder.insert_events(batches[i])
        except IntegrityError as error:
            outcomes[i] = error

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(len(batches))]
    committer = recorder.committer
    with committer.commit_lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while True:
            with committer.queue_lock:
                if len(committer.queue) == len(batches):
                    break
            assert time.monotonic() < deadline, "writers did not queue"
            time.sleep(0.001)
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def assert_ids_name_these_events(store: Container, ids: Any, events: list[StoredEvent]) -> None:
    assert len(ids) == len(events)
    for notification_id, event in zip(ids, events, strict=True):
        [found] = store.app.recorder.select_notifications(start=notification_id, limit=1)
        assert found.id == notification_id
        assert (found.originator_id, found.originator_version, found.state) == (
            event.originator_id, event.originator_version, event.state)


def test_group_commit_returns_each_caller_its_own_notification_ids(store: Container) -> None:
    batches = [sealed_events(store, 1 + i % 3) for i in range(12)]
    before = store.app.recorder.max_notification_id() or 0

    outcomes = commit_as_one_batch(store, batches)

    for ids, events in zip(outcomes, batches, strict=True):
        assert isinstance(ids, list), ids
        assert_ids_name_these_events(store, ids, events)
    every_id = sorted(i for ids in outcomes for i in ids)
    total = sum(len(b) for b in batches)
    assert every_id == list(range(before + 1, before + total + 1))
    # The projections read the batch like any other write.
    store.catch_up()
    audit = [r.entry for r in store.audit_trail.rows() if r.entry.position > before]
    assert [r.position for r in audit] == every_id
    assert {r.event_type for r in audit} == {"Delivery.Accepted"}


def test_a_conflicting_writer_in_a_group_commit_fails_alone(store: Container) -> None:
    [taken] = sealed_events(store, 1)
    store.app.recorder.insert_events([taken])
    loser = len(range(6)) // 2
    batches = [sealed_events(store, 2) for _ in range(6)]
    batches[loser] = [*sealed_events(store, 1), taken]  # version 1 of a stream already stored

    outcomes = commit_as_one_batch(store, batches)

    assert isinstance(outcomes[loser], IntegrityError)
    for i, (ids, events) in enumerate(zip(outcomes, batches, strict=True)):
        if i != loser:
            assert isinstance(ids, list), ids
            assert_ids_name_these_events(store, ids, events)
    # The loser's transaction left nothing behind, not even its first, valid event.
    fresh = batches[loser][0]
    assert store.app.recorder.select_events(fresh.originator_id) == []


def test_group_commit_serves_writers_arriving_unbatched(store: Container) -> None:
    writers = 8
    batches = [sealed_events(store, 1) for _ in range(writers)]
    outcomes = run_together(writers, lambda i: store.app.recorder.insert_events(batches[i]))
    for ids, events in zip(outcomes, batches, strict=True):
        assert_ids_name_these_events(store, ids, events)
    assert len({i for ids in outcomes for i in ids}) == writers


# -- projection runners ----------------------------------------------------------------


def test_views_pick_up_events_written_through_another_container(
    store: Container, settings: Settings
) -> None:
    """A second container on the same store writes; this container's runners apply it.
    (Writes from another OS process, found by polling, are covered by the CLI test that
    runs commands beside ``serve``.)"""
    other = build(settings, run_projections=False)
    try:
        with acting("admin:test"):
            other.app.create_account("remote@example.test", PASSWORD)
            position = other.app.deliver(["remote@example.test"], message(1)).position
        store.projections.wait_for(position, timeout=10)
        rows = store.mailbox_view.accounts()
        assert [row.address for row in rows] == ["remote@example.test"]
        assert store.audit_trail.rows()[-1].entry.position == position
    finally:
        other.close()
