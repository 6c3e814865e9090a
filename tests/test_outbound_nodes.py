"""Several nodes on one store never deliver the same attempt at once: the lease is an
event, and of two nodes leasing a message together the event store takes one.

Two containers opened on the same store stand for two ``serve`` processes (on
PostgreSQL, two machines): their workers run at the same time against one peer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from uuid import UUID

import pytest

from adapters import bootstrap
from adapters.bootstrap import Container, build
from adapters.config import Settings
from domain.application.context import acting
from domain.application.outbound import RetryPolicy
from domain.application.submission import RemoteRecipient
from tests.outbound_support import FakeResolver, ScriptedPeer
from tests.smtp_support import add_user

ALICE = "alice@example.test"
MESSAGES = 30


@pytest.fixture
def second(settings: Settings, store: Container) -> Iterator[Container]:
    """Another process's view of the same store (``store`` created it first)."""
    other = build(settings)
    try:
        yield other
    finally:
        other.close()


def queue_messages(store: Container, count: int) -> list[UUID]:
    account_id = add_user(store, ALICE)
    ids = []
    with acting("user:alice", protocol="test", purpose="testing"):
        for number in range(count):
            raw = (f"From: {ALICE}\r\nTo: r{number}@far.test\r\nSubject: n{number}\r\n"
                   f"Message-ID: <n{number}@example.test>\r\n\r\nbody\r\n").encode()
            result = store.app.submit(account_id, ALICE, [], [RemoteRecipient(f"r{number}@far.test")], raw)
            ids += result.outbound_ids
    return ids


def test_two_nodes_leasing_the_same_messages_at_once_each_get_a_disjoint_share(
        store: Container, second: Container) -> None:
    ids = queue_messages(store, MESSAGES)
    leased: dict[str, list[UUID]] = {}
    start = threading.Barrier(2)

    def lease(name: str, container: Container) -> None:
        with acting("system:outbound", protocol="smtp-out", purpose="delivery"):
            start.wait()
            leased[name] = [job.message_id for job in container.app.lease_outbound(ids, name, 60.0)]

    threads = [threading.Thread(target=lease, args=("a", store)),
               threading.Thread(target=lease, args=("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert set(leased["a"]).isdisjoint(leased["b"])
    assert sorted(leased["a"] + leased["b"]) == sorted(ids)
    # Leased means not due: a third try gets nothing until the leases run out.
    with acting("system:outbound", protocol="smtp-out", purpose="delivery"):
        assert store.app.lease_outbound(ids, "c", 60.0) == []


def test_two_workers_running_together_deliver_each_message_once(store: Container, second: Container) -> None:
    queue_messages(store, MESSAGES)
    store.catch_up()
    resolver = FakeResolver(mx={"far.test": [(10, "mx.far.test")]}, addresses={"mx.far.test": ["127.0.0.1"]})
    policy = RetryPolicy(min_backoff=60.0, max_backoff=60.0, max_age=3600.0, delay_warning=0.0)
    with ScriptedPeer(data_delay=0.02) as peer:

        async def both() -> None:
            workers = [bootstrap.queue_worker(c, resolver=resolver, mx_port=peer.port, policy=policy,
                                              batch_size=5, max_concurrency=5) for c in (store, second)]
            for _ in range(20):
                await asyncio.gather(*(worker.run_once() for worker in workers))
                store.catch_up()
                if len(peer.log.messages) >= MESSAGES:
                    break

        asyncio.run(both())
        subjects = [data.split(b"Subject: ")[1].split(b"\r\n")[0] for _, _, data in peer.log.messages]
    assert sorted(subjects) == sorted(f"n{n}".encode() for n in range(MESSAGES))
    assert store.mailbox_view.queue_size() == 0
