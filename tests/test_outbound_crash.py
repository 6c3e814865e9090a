"""A SIGKILL of ``ledgermail serve`` while its queue worker is delivering loses nothing:
after a restart every queued message reaches the relay at least once.

A real ``serve`` process relays through ``outbound.smarthost`` to a scripted peer that
holds each final reply back, so deliveries are in flight when the process dies. Leased
messages come back once their (short, for the test) lease runs out. Duplicates are the
accepted price (RFC 5321 §4.5.4.1: a lost 250 means sending again); loss is the failure.
"""

from __future__ import annotations

import re
import signal
import smtplib
import subprocess
import time
from pathlib import Path

from adapters.bootstrap import build
from adapters.config import Settings
from domain.application.context import acting
from tests.outbound_support import ScriptedPeer
from tests.smtp_support import PASSWORD, add_user, client_context
from tests.test_cli import free_port
from tests.test_smtp_crash_safety import Server

MESSAGES = 40
ALICE = "alice@example.test"


def letter(number: int) -> bytes:
    return (f"From: {ALICE}\r\nTo: friend{number}@far.test\r\nSubject: queued {number}\r\n"
            f"Message-ID: <queued-{number}@example.test>\r\n\r\nBody {number}\r\n").encode()


def seen_ids(peer: ScriptedPeer) -> list[str]:
    found = []
    for _sender, _recipients, data in list(peer.log.messages):
        match = re.search(rb"Message-ID: <queued-(\d+)@example.test>", data)
        assert match is not None
        found.append(match.group(1).decode())
    return found


def with_alice(settings: Settings) -> None:
    """The store ``serve`` will open: example.test and Alice, who submits."""
    container = build(settings, run_projections=False)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
        add_user(container, ALICE)
    finally:
        container.close()


def kill_mid_delivery(server: Server, submission: int, relay: ScriptedPeer, tmp_path: Path) -> set[str]:
    """Queue every message, then SIGKILL ``serve`` once some are delivered and more
    are in flight; return the ids the relay got before the kill."""
    with smtplib.SMTP("127.0.0.1", submission, timeout=30) as client:
        client.starttls(context=client_context())
        client.login(ALICE, PASSWORD)
        for number in range(MESSAGES):
            assert client.sendmail(ALICE, [f"friend{number}@far.test"], letter(number)) == {}
    deadline = time.monotonic() + 60
    while len(relay.log.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.log.messages, (tmp_path / "serve.log").read_text()
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    return set(seen_ids(relay))


def stop(server: Server) -> None:
    """SIGTERM (then SIGKILL) whatever is still running: no test leaves a server behind."""
    process = server.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def test_a_sigkill_during_delivery_loses_no_queued_message(settings: Settings, tmp_path: Path) -> None:
    with_alice(settings)
    submission = free_port()
    with ScriptedPeer(data_delay=0.3) as relay:
        server = Server(settings, free_port(), tmp_path / "serve.log")
        server.env.update({
            "LEDGERMAIL_LISTEN__SUBMISSION": f"127.0.0.1:{submission}",
            "LEDGERMAIL_OUTBOUND__SMARTHOST": f"127.0.0.1:{relay.port}",
            "LEDGERMAIL_OUTBOUND__LEASE_SECONDS": "3",
            "LEDGERMAIL_OUTBOUND__MIN_BACKOFF": "0.5",
            "LEDGERMAIL_OUTBOUND__POLL_INTERVAL": "0.2",
            "LEDGERMAIL_OUTBOUND__PER_DOMAIN_CONCURRENCY": "4",
        })
        try:
            server.start()
            before = kill_mid_delivery(server, submission, relay, tmp_path)
            assert len(before) < MESSAGES
            server.start()
            deadline = time.monotonic() + 90
            while len(set(seen_ids(relay))) < MESSAGES and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop(server)
    log = (tmp_path / "serve.log").read_text()[-3000:]
    assert set(seen_ids(relay)) == {str(n) for n in range(MESSAGES)}, log


def test_serve_sends_a_submitted_message_at_once_not_at_the_next_poll(settings: Settings,
                                                                     tmp_path: Path) -> None:
    with_alice(settings)
    submission = free_port()
    with ScriptedPeer() as relay:
        server = Server(settings, free_port(), tmp_path / "serve.log")
        server.env.update({"LEDGERMAIL_LISTEN__SUBMISSION": f"127.0.0.1:{submission}",
                           "LEDGERMAIL_OUTBOUND__SMARTHOST": f"127.0.0.1:{relay.port}",
                           "LEDGERMAIL_OUTBOUND__POLL_INTERVAL": "60"})
        try:
            server.start()
            time.sleep(1.0)  # the worker's first look at the (empty) queue is over
            with smtplib.SMTP("127.0.0.1", submission, timeout=30) as client:
                client.starttls(context=client_context())
                client.login(ALICE, PASSWORD)
                sent = time.monotonic()
                assert client.sendmail(ALICE, ["friend@far.test"], letter(7)) == {}
            while not relay.log.messages and time.monotonic() - sent < 20:
                time.sleep(0.02)
            waited = time.monotonic() - sent
        finally:
            stop(server)
    assert seen_ids(relay) == ["7"], (tmp_path / "serve.log").read_text()[-2000:]
    assert waited < 10  # woken by the submission, not by the 60 s poll
