"""Retention and legal holds from the ``ledgermail`` command, and the retention scheduler
inside a real ``serve`` (issue 7): real processes, on both backends."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.bootstrap import build
from adapters.config import Settings
from domain.application.context import acting
from tests.test_cli import LEDGERMAIL, assert_one_line_error, command_env, free_port, ledgermail

PASSWORD = "correct horse battery"
ALICE = "alice@example.test"
RUN_LINE = ("retention run: 1 account(s) with rules, {deleted} message(s) deleted, "
            "{held} kept under a legal hold\n")
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def prepare(settings: Settings, token_scopes: list[str] | None = None) -> str:
    """Alice with a 40-day-old and a 5-day-old message in Trash and a 30-day Trash rule;
    written before any command runs, as an existing store would be. Returns a token
    with ``token_scopes`` (or "")."""
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
            account_id = container.app.create_account(ALICE, PASSWORD)
            for days in (40, 5):
                container.app.append(account_id, "Trash", f"Subject: {days} days\r\n\r\nx\r\n".encode(),
                                     internal_date=datetime.now(UTC) - timedelta(days=days))
            container.app.set_retention(ALICE, "Trash", 30)
            return container.app.create_token("ops", token_scopes)[1] if token_scopes else ""
    finally:
        container.close()


def test_retention_and_hold_commands_set_list_run_and_refuse_bad_input(settings: Settings) -> None:
    prepare(settings)
    listed = ledgermail(settings, "retention", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{ALICE} Trash 30 days set=")
    added = ledgermail(settings, "retention", "set", ALICE, "--days", "730")
    assert added.returncode == 0 and added.stdout == f"retention of {ALICE} (whole account): 730 days\n"
    assert len(ledgermail(settings, "retention", "list", ALICE).stdout.splitlines()) == 2

    held = ledgermail(settings, "hold", "place", ALICE, "--reason", "court order 4", "--case-id", "C-4",
                      "--scope", "Trash")
    assert held.returncode == 0, held.stderr
    assert held.stdout == f"legal hold C-4 placed on {ALICE} (scope Trash)\n"
    holds = ledgermail(settings, "hold", "list")
    assert holds.returncode == 0
    assert holds.stdout.startswith(f"{ALICE} C-4 scope=Trash placed=")
    assert holds.stdout.rstrip().endswith('reason="court order 4"')
    run = ledgermail(settings, "retention", "run")
    assert run.returncode == 0, run.stderr
    assert run.stdout == RUN_LINE.format(deleted=0, held=1)

    released = ledgermail(settings, "hold", "release", ALICE, "--case-id", "C-4")
    assert released.stdout == f"1 legal hold(s) on {ALICE} released\n"
    run = ledgermail(settings, "retention", "run")
    assert run.stdout == RUN_LINE.format(deleted=1, held=0)
    assert ledgermail(settings, "retention", "run").stdout == RUN_LINE.format(deleted=0, held=0)
    cleared = ledgermail(settings, "retention", "clear", ALICE, "--mailbox", "Trash")
    assert cleared.stdout == f"retention rule of {ALICE} Trash cleared\n"
    assert ledgermail(settings, "retention", "clear", ALICE, "--mailbox", "Trash").stdout == (
        f"{ALICE} has no rule for Trash; nothing recorded\n")

    assert_one_line_error(ledgermail(settings, "retention", "set", ALICE, "--days", "0"), 2, "1 to 36500")
    assert_one_line_error(ledgermail(settings, "retention", "set", ALICE, "--days", "ten"), 2, "--days")
    nowhere = ledgermail(settings, "retention", "set", ALICE, "--days", "3", "--mailbox", "Nowhere")
    assert_one_line_error(nowhere, 2, "Nowhere")
    assert_one_line_error(ledgermail(settings, "retention", "set", "nobody@example.test", "--days", "3"),
                          2, "unknown address")
    assert_one_line_error(ledgermail(settings, "hold", "place", ALICE, "--reason", "x", "--case-id", "a b"),
                          2, "case id")
    ledgermail(settings, "hold", "place", ALICE, "--reason", "x", "--case-id", "D-1")
    assert_one_line_error(ledgermail(settings, "hold", "place", ALICE, "--reason", "y", "--case-id", "D-1"),
                          2, "already placed")
    assert_one_line_error(ledgermail(settings, "hold", "place", ALICE, "--reason", "x", "--scope", "Nowhere"),
                          2, "Nowhere")
    assert_one_line_error(ledgermail(settings, "hold", "list", "nobody@example.test"), 2, "unknown address")
    assert ledgermail(settings, "hold", "release", ALICE).stdout == f"1 legal hold(s) on {ALICE} released\n"


def summary(port: int, token: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/subjects/{ALICE}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def test_the_scheduler_inside_serve_deletes_a_due_message_and_logs_only_counts(settings: Settings) -> None:
    token = prepare(settings, ["subjects:read"])
    port = free_port()
    env = command_env(settings)
    env["LEDGERMAIL_LISTEN__HTTP"] = f"127.0.0.1:{port}"
    for name in LISTENERS:  # only HTTP: nothing else is needed, and no port can clash
        env[f"LEDGERMAIL_LISTEN__{name.upper()}"] = ""
    env["LEDGERMAIL_RETENTION__INTERVAL"] = "0.5"
    env["LEDGERMAIL_LOG_LEVEL"] = "INFO"
    server = subprocess.Popen([str(LEDGERMAIL), "serve"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    trash: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()
            try:
                trash = next(m for m in summary(port, token)["mailboxes"] if m["name"] == "Trash")
            except OSError:
                trash = {}
            if trash.get("messages") == 1:
                break
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert trash.get("messages") == 1, trash  # the 40-day-old message went, the 5-day-old stayed
    assert server.returncode == 0, err
    runs = [line for line in err.decode().splitlines() if "retention run:" in line]
    assert any("1 message(s) deleted" in line for line in runs), err
    assert all("example.test" not in line and "Trash" not in line for line in runs)
    assert b"Traceback" not in err
