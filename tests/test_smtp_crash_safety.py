"""An acknowledged message survives SIGKILL: the server is killed mid-traffic, restarted,
killed again, and every message that got 250 is stored byte for byte.

A real ``ledgermail serve`` process, real smtplib clients that retry what was not
acknowledged, as an MTA would (RFC 5321 §4.5.4.1). Duplicates are the accepted price of
a lost 250 (RFC 1047); loss of an acknowledged message is the failure this test exists for.
"""

from __future__ import annotations

import random
import signal
import smtplib
import socket
import subprocess
import threading
import time
from pathlib import Path

from adapters.bootstrap import build
from adapters.config import Settings
from domain.application.context import acting
from tests.smtp_support import add_user, inbox_bodies
from tests.test_cli import LEDGERMAIL, command_env, free_port

MESSAGES = 200
SENDERS = 4
KILLS = 4


def message(number: int) -> bytes:
    filler = b"".join(b"line %d of message %d\r\n" % (i, number) for i in range(20))
    return (b"From: sender%d@far.test\r\nTo: alice@example.test\r\nSubject: crash test %d\r\n"
            b"Message-ID: <crash-%d@far.test>\r\n\r\n" % (number % SENDERS, number, number) + filler)


class Server:
    def __init__(self, settings: Settings, port: int, log: Path) -> None:
        self.env = command_env(settings)
        self.env.update({"LEDGERMAIL_LISTEN__SMTP": f"127.0.0.1:{port}", "LEDGERMAIL_LISTEN__HTTP": "",
                         "LEDGERMAIL_LISTEN__SUBMISSION": "", "LEDGERMAIL_LISTEN__SUBMISSIONS": "",
                         "LEDGERMAIL_LISTEN__IMAP": "", "LEDGERMAIL_LISTEN__IMAPS": "",
                         "LEDGERMAIL_LISTEN__POP3": "", "LEDGERMAIL_LISTEN__POP3S": ""})
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(LEDGERMAIL), "serve"], env=self.env, stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("serve did not start listening")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def send_until_acknowledged(port: int, numbers: list[int], acked: dict[int, int], failures: list[int],
                            lock: threading.Lock, stop: threading.Event) -> None:
    """Send each message until a 250 comes back; count the 250s per message."""
    for number in numbers:
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
                    client.sendmail(f"sender{number % SENDERS}@far.test", ["alice@example.test"],
                                    message(number))
            except (OSError, smtplib.SMTPException):
                with lock:
                    failures.append(number)
                time.sleep(0.05)  # killed, restarting, or 4xx: try again, as an MTA would
                continue
            with lock:
                acked[number] = acked.get(number, 0) + 1
            break


def test_every_acknowledged_message_survives_repeated_sigkill(settings: Settings, tmp_path: Path) -> None:
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
        add_user(container, "alice@example.test")
    finally:
        container.close()
    port = free_port()
    server = Server(settings, port, tmp_path / "serve.log")
    server.start()
    acked: dict[int, int] = {}
    failures: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    senders = [threading.Thread(target=send_until_acknowledged,
                                args=(port, list(range(i, MESSAGES, SENDERS)), acked, failures, lock, stop))
               for i in range(SENDERS)]
    for thread in senders:
        thread.start()
    rng = random.Random(20261127)
    kills = 0
    try:
        for threshold in sorted(rng.sample(range(20, MESSAGES - 20), KILLS)):
            while len(acked) < threshold and any(t.is_alive() for t in senders):
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.03))  # land somewhere inside a transaction
            server.kill()
            kills += 1
            server.start()
        for thread in senders:
            thread.join(180)
    finally:
        stop.set()
        for thread in senders:
            thread.join(30)
        assert server.stop() == 0, server.log.read_text()[-2000:]

    assert kills == KILLS
    assert failures, "the kills interrupted the clients (else this test proves nothing)"
    assert sorted(acked) == list(range(MESSAGES)), "every message was eventually acknowledged"
    container = build(settings)
    try:
        stored = inbox_bodies(container, "alice@example.test")
    finally:
        container.close()
    sent = {number: message(number) for number in range(MESSAGES)}
    # Each stored message is one we sent, whole, behind exactly one Received: header.
    found: dict[int, int] = {}
    for body in stored:
        header, separator, rest = body.partition(b"\r\n\r\n")
        number = int(header.split(b"Subject: crash test ")[1].split(b"\r\n")[0])
        assert body.endswith(sent[number]), f"message {number} is not byte-identical"
        assert body.count(b"Received: ") == 1
        found[number] = found.get(number, 0) + 1
    lost = [n for n in acked if n not in found]
    assert lost == [], f"acknowledged messages lost after SIGKILL: {lost}"
    # Duplicates only where a 250 may have been lost with the connection.
    assert len(stored) >= MESSAGES
    assert len(stored) <= MESSAGES + KILLS * SENDERS
