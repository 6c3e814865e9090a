"""Two ``ledgermail serve`` processes on one PostgreSQL store behave as one server.

Each test starts two real nodes (separate data directories holding the same master key,
different ports, one PostgreSQL schema set), as docs/scaling.md tells operators to run
them, and drives them with real clients: a delivery through one node wakes an IDLE
session on the other within a second (LISTEN/NOTIFY); an erasure finished on one node
is final on the other at once (the key store's shred broadcast); the outbound queue
never sends one attempt from both; a SIGKILL of one node loses nothing it acknowledged;
a dropped LISTEN session restarts the projection runner, which catches up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.bootstrap import build
from adapters.config import Settings
from adapters.crypto.errors import KeyShreddedError
from adapters.crypto.keystore_postgres import PostgresKeyStore
from domain.application.context import acting
from tests.conftest import PG_DSN, drop_schemas, make_settings
from tests.imap_support import RawImap
from tests.outbound_support import ScriptedPeer
from tests.smtp_support import PASSWORD, add_user, client_context
from tests.test_api_served import SCOPES
from tests.test_cli import LEDGERMAIL, command_env, free_port, ledgermail
from tests.test_outbound_crash import stop as stop_server

ALICE = "alice@example.test"
BOB = "bob@example.test"
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")


class Node:
    """One ``serve`` process of the cluster."""

    def __init__(self, settings: Settings, name: str, tmp_path: Path, **env: str) -> None:
        self.name = name
        self.data_dir = tmp_path / name
        self.data_dir.mkdir()
        # Every node needs the master key (docs/scaling.md): copied, as an operator would.
        shutil.copy2(settings.master_key_path, self.data_dir / "master.key")
        self.ports = {listener: free_port() for listener in ("smtp", "submission", "imap", "http")}
        self.env = command_env(settings)
        self.env["LEDGERMAIL_DATA_DIR"] = str(self.data_dir)
        for listener in LISTENERS:
            port = self.ports.get(listener)
            self.env[f"LEDGERMAIL_LISTEN__{listener.upper()}"] = f"127.0.0.1:{port}" if port else ""
        self.env.update(env)
        self.log = tmp_path / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(LEDGERMAIL), "serve"], env=self.env,
                                            stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                self.health()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"node {self.name} did not start: {self.log.read_text()[-3000:]}")

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.ports['http']}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:  # 503 "degraded" still has a body
            return json.loads(error.read())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        stop_server(self)

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """The shared store: PostgreSQL only (SQLite is one machine's files)."""
    current = make_settings(tmp_path / "setup", "postgres")
    container = build(current, run_projections=False)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
        add_user(container, ALICE)
        add_user(container, BOB)
    finally:
        container.close()
    yield current
    drop_schemas(current)


@pytest.fixture
def nodes(settings: Settings, tmp_path: Path) -> Iterator[list[Node]]:
    """Node A, started first, leads the projections; node B stands by."""
    started: list[Node] = []
    try:
        for name in ("a", "b"):
            started.append(Node(settings, name, tmp_path).start())
        wait_until(lambda: started[0].health()["projections_leader"], 30, "node a leads")
        assert started[1].health()["projections_leader"] is False
        yield started
    finally:
        for node in started:
            node.stop()


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def letter(number: int, to: str = ALICE) -> bytes:
    return (f"From: sender@far.test\r\nTo: {to}\r\nSubject: cluster {number}\r\n"
            f"Message-ID: <cluster-{number}@far.test>\r\n\r\nbody of message {number}\r\n").encode()


def mx_send(node: Node, number: int, to: str = ALICE) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        assert client.sendmail("sender@far.test", [to], letter(number, to)) == {}


class Idler:
    """An IMAP session in IDLE on INBOX; ``wait_exists`` times the next EXISTS."""

    def __init__(self, node: Node, user: str = ALICE) -> None:
        self.imap = RawImap(node.ports["imap"], timeout=10)
        self.imap.login(user)
        selected = self.imap.command("S1", "SELECT INBOX")
        self.exists = int(selected.split(b" EXISTS")[0].rsplit(b"* ", 1)[1])
        self.imap.send(b"I1 IDLE\r\n")
        assert self.imap.line().startswith(b"+ "), "IDLE not accepted"

    def wait_exists(self, timeout: float = 10) -> int:
        self.imap.sock.settimeout(timeout)
        while True:
            line = self.imap.line()
            assert line, "server closed the IDLE session"
            if line.endswith(b" EXISTS\r\n"):
                self.exists = int(line.split()[1])
                return self.exists

    def close(self) -> None:
        self.imap.close()


def wake_latencies(sender: Node, idler: Idler, first: int, count: int) -> list[float]:
    latencies = []
    for number in range(first, first + count):
        before = idler.exists
        mx_send(sender, number)
        acknowledged = time.monotonic()
        assert idler.wait_exists() == before + 1
        latencies.append(time.monotonic() - acknowledged)
    return latencies


def test_a_delivery_through_one_node_wakes_idle_on_the_other_within_a_second(nodes: list[Node]) -> None:
    a, b = nodes
    on_b, on_a = Idler(b), Idler(a)
    try:
        # Into the leader, seen on the follower: the follower's IDLE watch reads the view.
        first_on_a = on_a.exists
        a_to_b = wake_latencies(a, on_b, 0, 5)
        while on_a.exists < first_on_a + 5:  # A's own session saw them too: drain its lines
            on_a.wait_exists()
        # Into the follower, seen on the leader: only NOTIFY tells the leader's runner
        # (its safety poll is a second: without LISTEN the median would be ~0.5 s).
        b_to_a = wake_latencies(b, on_a, 5, 5)
    finally:
        on_b.close()
        on_a.close()
    for latencies in (a_to_b, b_to_a):
        assert max(latencies) < 1.0, (a_to_b, b_to_a)
        assert statistics.median(latencies) < 0.4, (a_to_b, b_to_a)


def test_an_erasure_on_one_node_is_final_on_the_other_at_once(nodes: list[Node], settings: Settings) -> None:
    a, b = nodes
    mx_send(a, 1)
    # B reads Alice's mail: her key is in B's cache (trusted for a minute while B listens).
    reader = RawImap(b.ports["imap"])
    reader.login(ALICE)
    reader.command("S1", "SELECT INBOX")
    assert b"body of message 1" in reader.command("F1", "FETCH 1 BODY.PEEK[]")
    token = ledgermail(settings, "token", "create", "--name", "dpo", "--scope", SCOPES,
                       env={**command_env(settings), "LEDGERMAIL_DATA_DIR": str(a.data_dir)})
    assert token.returncode == 0, token.stderr
    request = urllib.request.Request(
        f"http://127.0.0.1:{a.ports['http']}/api/v1/erasures", method="POST",
        data=json.dumps({"address": ALICE, "reason": "Art. 17 request"}).encode(),
        headers={"Authorization": f"Bearer {token.stdout.strip()}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        receipt = json.loads(answer.read())
    url = f"http://127.0.0.1:{a.ports['http']}/api/v1/erasures/{receipt['request_id']}"
    deadline = time.monotonic() + 60
    while receipt.get("status") != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
        with urllib.request.urlopen(urllib.request.Request(
                url, headers={"Authorization": f"Bearer {token.stdout.strip()}"}), timeout=10) as answer:
            receipt = json.loads(answer.read())
    assert receipt["status"] == "completed", receipt
    # At once on B: the open session gets no body, and no new session gets in.
    reader.send(b"F2 FETCH 1 BODY.PEEK[]\r\n")
    answer = b""
    while not answer.endswith(b"\r\n") or not (answer.split(b"\r\n")[-2].startswith(b"F2 ")
                                               or b"* BYE" in answer):
        line = reader.line()
        if not line:
            break
        answer += line
    reader.close()
    assert b"body of message 1" not in answer, answer
    assert b"* BYE this account no longer exists" in answer or b"F2 NO" in answer, answer
    again = RawImap(b.ports["imap"])
    try:
        assert b"L1 NO" in again.command("L1", f'LOGIN "{ALICE}" "{PASSWORD}"')
    finally:
        again.close()


def test_a_shred_on_one_node_evicts_the_key_cached_on_another_at_once(settings: Settings) -> None:
    """The broadcast itself, on the two key stores two nodes would hold: each with its own
    cache and its own LISTEN session. Without it, B would keep serving the key for the
    minute its cache trusts it."""
    master = os.urandom(32)
    schema = settings.store.schema_name + "_kcache"
    first = PostgresKeyStore(PG_DSN, schema, master)
    second = PostgresKeyStore(PG_DSN, schema, master)
    try:
        wait_until(lambda: first.cache_ttl > 2 and second.cache_ttl > 2, 10, "both stores listen")
        key_id, key = first.key_for_subject("subject-1")
        assert second.get_key(key_id) == key  # cached on the second "node"
        first.shred_subject("subject-1", "erasure-1")
        shredded = time.monotonic()
        while True:
            try:
                second.get_key(key_id)
            except KeyShreddedError:
                break
            assert time.monotonic() - shredded < 1.0, "the second store still serves the shredded key"
            time.sleep(0.005)
        # Its LISTEN session dropped: it caches nothing (a shred then would go unheard).
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            terminated = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s", (f"ledgermail-listen keys {schema}",)).fetchall()
        assert len(terminated) == 2
        wait_until(lambda: second.cache_ttl == 0, 5, "the store stops trusting its cache")
        wait_until(lambda: second.cache_ttl > 2, 15, "the store listens again")
    finally:
        first.close()
        second.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_outbound_queue_sends_each_message_once_with_both_nodes_delivering(
        settings: Settings, tmp_path: Path) -> None:
    count = 30
    with ScriptedPeer(data_delay=0.05) as relay:
        outbound = {"LEDGERMAIL_OUTBOUND__SMARTHOST": f"127.0.0.1:{relay.port}",
                    "LEDGERMAIL_OUTBOUND__POLL_INTERVAL": "0.2",
                    "LEDGERMAIL_OUTBOUND__PER_DOMAIN_CONCURRENCY": "4"}
        a = Node(settings, "a", tmp_path, **outbound)
        b = Node(settings, "b", tmp_path, **outbound)
        try:
            a.start()
            b.start()
            for node, numbers in ((a, range(0, count, 2)), (b, range(1, count, 2))):
                with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30) as client:
                    client.starttls(context=client_context())
                    client.login(ALICE, PASSWORD)
                    for number in numbers:
                        raw = letter(number, f"friend{number}@far.test").replace(
                            b"From: sender@far.test", f"From: {ALICE}".encode())
                        assert client.sendmail(ALICE, [f"friend{number}@far.test"], raw) == {}
            wait_until(lambda: len(relay.log.messages) >= count, 90, "every message relayed")
            time.sleep(2.0)  # a second send of any of them would arrive in this time
        finally:
            a.stop()
            b.stop()
    ids = [data.split(b"Message-ID: <cluster-")[1].split(b"@")[0]
           for _sender, _recipients, data in list(relay.log.messages)]
    assert sorted(ids, key=int) == [str(n).encode() for n in range(count)], (a.text(), b.text())


def test_a_sigkill_of_one_node_loses_nothing_it_acknowledged(nodes: list[Node]) -> None:
    a, b = nodes
    acknowledged: dict[int, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def sender(first: int) -> None:
        number = first
        while not stop.is_set():
            for node in (a, b) if number % 2 else (b, a):  # a load balancer's choice, then the other
                try:
                    mx_send(node, number)
                except (OSError, smtplib.SMTPException):
                    continue
                with lock:
                    acknowledged[number] = node.name
                break
            number += 4

    threads = [threading.Thread(target=sender, args=(first,)) for first in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(1 for n in acknowledged.values() if n == "a") >= 30, 60,
                   "node a acknowledged 30 messages")
        a.kill()  # the leader, mid-traffic
        wait_until(lambda: len(acknowledged) >= 150, 120, "150 messages acknowledged")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    # B takes over the projections and shows every acknowledged message.
    wait_until(lambda: b.health()["projections_leader"], 30, "node b leads after a's death")
    wanted = {f"body of message {n}".encode() for n in acknowledged}
    reader = RawImap(b.ports["imap"], timeout=30)
    try:
        reader.login(ALICE)
        deadline = time.monotonic() + 30
        while True:
            reader.command("S1", "SELECT INBOX")
            bodies = reader.command("F1", "FETCH 1:* BODY.PEEK[TEXT]")
            found = {line.strip() for line in bodies.split(b"\r\n") if line.startswith(b"body of message ")}
            if wanted <= found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        reader.close()
    assert sum(1 for n in acknowledged.values() if n == "a") >= 30
    missing = sorted(int(w.rsplit(b" ", 1)[1]) for w in wanted - found)
    assert not missing, (missing, b.text())


def test_a_dropped_listen_session_restarts_the_runner_which_catches_up(nodes: list[Node],
                                                                      settings: Settings) -> None:
    a, b = nodes
    session = f"ledgermail-listen projections {settings.store.schema_name}"
    idler = Idler(a)
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            def listeners() -> list[int]:
                return [row[0] for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    (session,)).fetchall()]

            # Only the leader (A) listens for the projections.
            before = set(listeners())
            assert before, "the leader holds no LISTEN session"
            restarts = a.health()["projection_restarts"]
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = %s", (session,))
            wait_until(lambda: a.health()["projection_restarts"] > restarts, 10,
                       "the runner notices and restarts")
            wait_until(lambda: set(listeners()) - before, 10, "a new LISTEN session")
        # Caught up and listening again: mail into the follower wakes the leader's IDLE.
        latencies = wake_latencies(b, idler, 100, 3)
    finally:
        idler.close()
    assert max(latencies) < 1.0, latencies
    assert "LISTEN session lost" in a.log.read_text()
    assert a.health()["status"] == "ok"



def test_a_lost_leader_lock_session_hands_the_projections_to_exactly_one_node(
        nodes: list[Node], settings: Settings) -> None:
    a, b = nodes
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        terminated = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE application_name = %s",
                                  (f"ledgermail-leader {settings.store.schema_name}",)).fetchall()
    assert terminated == [(True,)]
    # A notices within its check interval and stands by; whichever node wins the lock leads.
    wait_until(lambda: "standing by" in a.log.read_text(), 15, "node a gives up leading")
    wait_until(lambda: [a.health()["projections_leader"], b.health()["projections_leader"]].count(True) == 1,
               15, "exactly one leader")
    on_a, on_b = Idler(a), Idler(b)
    try:
        before = (on_a.exists, on_b.exists)
        mx_send(b, 200)
        assert (on_a.wait_exists(), on_b.wait_exists()) == (before[0] + 1, before[1] + 1)
    finally:
        on_a.close()
        on_b.close()
    for _ in range(10):  # and it stays one
        assert [a.health()["projections_leader"], b.health()["projections_leader"]].count(True) == 1
        time.sleep(0.1)
    # Standing by is healthy: neither node reports itself degraded.
    assert (a.health()["status"], b.health()["status"]) == ("ok", "ok")
