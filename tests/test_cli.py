"""The ``ledgermail`` command as users run it: real processes, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from adapters.config import Settings
from tests.conftest import PG_DSN

LEDGERMAIL = Path(sys.executable).parent / "ledgermail"
MESSAGE = b"From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Hello\r\n\r\nHi Alice!\r\n"


def command_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERMAIL_")}
    env["LEDGERMAIL_DATA_DIR"] = str(settings.data_dir)
    env["LEDGERMAIL_CRYPTO__PASSWORD_MEMORY_KIB"] = "1024"
    env["LEDGERMAIL_CRYPTO__PASSWORD_TIME_COST"] = "1"
    if settings.is_postgres:
        env["LEDGERMAIL_STORE__URL"] = PG_DSN
        env["LEDGERMAIL_STORE__SCHEMA"] = settings.store.schema_name
    return env


def ledgermail(settings: Settings, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(LEDGERMAIL), *args], input=stdin, capture_output=True,
                            env=env or command_env(settings), timeout=timeout, check=False)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result
    assert result.stderr.startswith("ledgermail: error: "), result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_readme_walk_goes_from_zero_to_an_erasure_receipt(settings: Settings, tmp_path: Path) -> None:
    assert ledgermail(settings, "domain", "add", "example.test").returncode == 0
    added = ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin",
                       stdin=b"a long secret\n")
    assert added.returncode == 0, added.stderr
    delivered = ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE)
    assert delivered.stdout == "delivered to alice@example.test: INBOX uid 1\n"
    listed = ledgermail(settings, "user", "list")
    assert listed.stdout.startswith("alice@example.test quota=")

    archive = tmp_path / "alice.zip"
    exported = ledgermail(settings, "export", "alice@example.test", "--out", str(archive))
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        assert {"README.txt", "account.json", "mailboxes/index.json",
                "processing_history.json", "mailboxes/INBOX.mbox"} <= names
        assert zipped.read("mailboxes/INBOX.mbox").startswith(b"From MAILER-DAEMON ")
        assert b"Hi Alice!\n" in zipped.read("mailboxes/INBOX.mbox")
        assert json.loads(zipped.read("account.json"))["address"] == "alice@example.test"
        history = json.loads(zipped.read("processing_history.json"))["entries"]
        assert any(entry["event_type"] == "MessageCopy.Created" for entry in history)

    erased = ledgermail(settings, "erase", "alice@example.test", "--reason", "request 2026-001")
    assert erased.returncode == 0, erased.stderr
    receipt = json.loads(erased.stdout)
    assert receipt["verification"]["passed"] is True
    assert receipt["reason"] == "request 2026-001"
    again = ledgermail(settings, "erase", "alice@example.test", "--reason", "again")
    assert json.loads(again.stdout) == receipt

    audit = ledgermail(settings, "audit", "alice@example.test")
    assert receipt["subject_pseudonym"] in audit.stdout
    assert "alice@example.test" not in audit.stdout
    verified = ledgermail(settings, "audit", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit trail intact")


def test_deliver_adds_only_a_received_header_in_front_of_the_message(settings: Settings) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin", stdin=b"a long secret\n")
    assert ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE).returncode == 0
    from adapters.bootstrap import build
    from tests.smtp_support import inbox_bodies

    container = build(settings)
    try:
        [stored] = inbox_bodies(container, "alice@example.test")
    finally:
        container.close()
    header, _, rest = stored.partition(b"\r\n\t")
    assert header == b"Received: from local (ledgermail deliver)"
    assert rest.startswith(b"by localhost (ledgermail) with LOCAL id ")
    assert b"\tfor <alice@example.test>; " in stored
    assert stored.endswith(b"\r\n" + MESSAGE)
    assert stored.count(b"Received:") == 1


def test_aliases_are_added_listed_used_and_removed(settings: Settings) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin", stdin=b"a long secret\n")
    added = ledgermail(settings, "alias", "add", "Postmaster@example.test", "alice@example.test")
    assert added.returncode == 0
    assert added.stdout == "alias postmaster@example.test delivers to alice@example.test\n"
    ledgermail(settings, "alias", "add", "abuse@example.test", "alice@example.test")
    listed = ledgermail(settings, "alias", "list")
    assert listed.stdout == ("abuse@example.test -> alice@example.test\n"
                             "postmaster@example.test -> alice@example.test\n")
    assert ledgermail(settings, "alias", "list", "alice@example.test").stdout == listed.stdout
    delivered = ledgermail(settings, "deliver", "postmaster@example.test", stdin=MESSAGE)
    assert delivered.stdout == "delivered to postmaster@example.test: INBOX uid 1\n"

    assert_one_line_error(ledgermail(settings, "alias", "add", "abuse@example.test", "alice@example.test"),
                          2, "abuse@example.test")
    assert_one_line_error(ledgermail(settings, "alias", "add", "x@elsewhere.test", "alice@example.test"),
                          2, "unknown domain 'elsewhere.test'")
    assert_one_line_error(ledgermail(settings, "alias", "add", "x@example.test", "ghost@example.test"),
                          2, "unknown address")
    assert_one_line_error(ledgermail(settings, "alias", "list", "ghost@example.test"), 2, "unknown address")

    removed = ledgermail(settings, "alias", "remove", "postmaster@example.test")
    assert (removed.returncode, removed.stdout) == (0, "alias postmaster@example.test removed\n")
    assert ledgermail(settings, "alias", "list").stdout == "abuse@example.test -> alice@example.test\n"
    assert_one_line_error(ledgermail(settings, "deliver", "postmaster@example.test", stdin=MESSAGE),
                          2, "unknown address")
    assert_one_line_error(ledgermail(settings, "alias", "remove", "postmaster@example.test"),
                          2, "unknown address")


def test_unknown_addresses_and_domains_are_one_line_errors(settings: Settings) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    assert_one_line_error(ledgermail(settings, "deliver", "ghost@example.test", stdin=MESSAGE),
                          2, "unknown address 'ghost@example.test'")
    assert_one_line_error(ledgermail(settings, "user", "add", "x@nowhere.test", "--password-stdin",
                                     stdin=b"a long secret\n"), 2, "unknown domain 'nowhere.test'")
    assert_one_line_error(ledgermail(settings, "erase", "ghost@example.test", "--reason", "r"),
                          2, "unknown address")
    assert_one_line_error(ledgermail(settings, "export", "ghost@example.test", "--out", "/tmp/x.zip"),
                          2, "unknown address")
    assert_one_line_error(ledgermail(settings, "user", "add", "not an address", "--password-stdin",
                                     stdin=b"a long secret\n"), 2, "invalid address")
    assert_one_line_error(ledgermail(settings, "domain", "add", "bad_domain.test"), 2, "invalid domain")
    assert_one_line_error(ledgermail(settings, "user", "frobnicate"), 2, "invalid choice")


def test_a_bad_config_file_is_a_one_line_error(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[listen]\nimap = 'no-port'\n")
    assert_one_line_error(ledgermail(settings, "--config", str(config), "domain", "list"),
                          2, "setting listen.imap")
    assert_one_line_error(ledgermail(settings, "domain", "list", "--config", str(tmp_path / "none.toml")),
                          2, "not found")


def test_the_config_file_and_data_dir_flag_choose_the_store(tmp_path: Path) -> None:
    data = tmp_path / "from-config"
    config = tmp_path / "ledgermail.toml"
    config.write_text(f'data_dir = "{data}"\n[crypto]\npassword_memory_kib = 1024\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERMAIL_")}
    result = subprocess.run([str(LEDGERMAIL), "--config", str(config), "domain", "add", "a.test"],
                            capture_output=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert (data / "events.sqlite").exists()
    flag = tmp_path / "from-flag"
    result = subprocess.run([str(LEDGERMAIL), "domain", "add", "b.test", "--data-dir", str(flag),
                             "--config", str(config)], capture_output=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert (flag / "events.sqlite").exists()


def test_audit_verify_detects_a_row_changed_behind_the_servers_back(settings: Settings, backend: str) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin", stdin=b"a long secret\n")
    assert ledgermail(settings, "audit", "--verify").returncode == 0
    statement = "UPDATE {t} SET actor = 'admin:someone-else' WHERE position = 3"
    if backend == "postgres":
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            table = f'"{settings.store.schema_name}_audit".audit_entries'
            assert conn.execute(statement.format(t=table)).rowcount == 1
    else:
        with sqlite3.connect(settings.data_dir / "audit_trail.sqlite") as conn:
            assert conn.execute(statement.format(t="audit_entries")).rowcount == 1
    broken = ledgermail(settings, "audit", "--verify")
    assert broken.returncode == 1
    assert "BROKEN" in broken.stdout and "position 3" in broken.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def start_server(settings: Settings, port: int, **smtp_ports: int) -> subprocess.Popen[bytes]:
    """``serve`` with HTTP on ``port`` and the SMTP listeners on the given or free ports
    (never the defaults, which a developer's own server may hold)."""
    env = command_env(settings)
    env["LEDGERMAIL_LISTEN__HTTP"] = f"127.0.0.1:{port}"
    for name in ("smtp", "submission", "submissions"):
        env[f"LEDGERMAIL_LISTEN__{name.upper()}"] = f"127.0.0.1:{smtp_ports.get(name) or free_port()}"
    return subprocess.Popen([str(LEDGERMAIL), "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for_health(port: int, server: subprocess.Popen[bytes], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited: {server.communicate()}")
        try:
            return get_json(f"http://127.0.0.1:{port}/health")
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not answer /health")


def test_serve_answers_health_picks_up_commands_and_stops_on_ctrl_c(settings: Settings) -> None:
    port = free_port()
    server = start_server(settings, port)
    try:
        health = wait_for_health(port, server)
        assert health["status"] == "ok"
        assert health["projections_leader"] is True
        # A command beside the running server writes through the same store ...
        ledgermail(settings, "domain", "add", "example.test")
        ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin",
                   stdin=b"a long secret\n")
        delivered = ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE)
        assert delivered.returncode == 0, delivered.stderr
        # ... and the server's projections pick the change up.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            health = get_json(f"http://127.0.0.1:{port}/health")
            if health["events"] > 15 and health["projections"]["mailboxview"]["lag"] == 0:
                break
            time.sleep(0.1)
        assert health["events"] > 15
        assert health["projections"]["mailboxview"]["lag"] == 0
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert b"Traceback" not in err
    assert b"ledgermail stopped" in out


def test_serve_refuses_to_start_on_a_tampered_event_log(settings: Settings, backend: str) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    statement = ("UPDATE {t} SET state = {expr} WHERE originator_version = 1")
    if backend == "postgres":
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            table = f'"{settings.store.schema_name}".ledgermail_events'
            expr = "set_byte(state, 19, 255 - get_byte(state, 19))"  # always a change
            conn.execute(statement.format(t=table, expr=expr))
    else:
        with sqlite3.connect(settings.data_dir / "events.sqlite") as conn:
            conn.execute(statement.format(
                t="stored_events", expr="CAST(substr(state, 1, 19) || CASE WHEN substr(state, 20, 1) "
                "= x'00' THEN x'01' ELSE x'00' END || substr(state, 21) AS BLOB)"))
    server = start_server(settings, free_port())
    out, err = server.communicate(timeout=60)
    assert server.returncode == 1
    assert b"failed authentication" in err
    assert b"Traceback" not in err


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_wrong_master_key_stops_every_command(settings: Settings) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    env = command_env(settings)
    env["LEDGERMAIL_MASTER_KEY"] = "A" * 43 + "="
    assert_one_line_error(ledgermail(settings, "domain", "list", env=env), 1,
                          "master key does not open the key store")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("tampering", [
    ("audit_trail.sqlite",
     "DELETE FROM audit_entries WHERE position = (SELECT max(position) FROM audit_entries)",
     "last row"),
    ("events.sqlite", "DELETE FROM stored_events WHERE rowid = 5", "has no event"),
    ("audit_trail.sqlite", "UPDATE audit_entries SET purpose = 'marketing' WHERE position = 4", "position 4"),
])
def test_audit_verify_detects_removed_rows_and_removed_events(
    settings: Settings, tampering: tuple[str, str, str]
) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin", stdin=b"a long secret\n")
    assert ledgermail(settings, "audit", "--verify").returncode == 0
    file_name, statement, reason = tampering
    with sqlite3.connect(settings.data_dir / file_name) as conn:
        assert conn.execute(statement).rowcount == 1
    broken = ledgermail(settings, "audit", "--verify")
    assert broken.returncode == 1, broken.stdout
    assert reason in broken.stdout


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_serve_on_a_taken_port_is_a_one_line_error(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        server = start_server(settings, taken.getsockname()[1])
        out, err = server.communicate(timeout=60)
    assert server.returncode == 1
    assert err.decode().startswith("ledgermail: error: cannot listen on 127.0.0.1:")
    assert b"Traceback" not in err


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_files_holding_personal_data_are_private_to_the_owner(settings: Settings) -> None:
    ledgermail(settings, "domain", "add", "example.test")
    ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin", stdin=b"a long secret\n")
    ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE)
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "mailbox_view.sqlite" for p in files)
    assert [str(p) for p in files if p.stat().st_mode & 0o077] == []


def test_a_store_url_of_another_kind_is_refused(settings: Settings) -> None:
    env = command_env(settings)
    env["LEDGERMAIL_STORE__URL"] = "mysql://root@localhost/db"
    assert_one_line_error(ledgermail(settings, "domain", "list", env=env), 2, "setting store.url")


def test_deliver_refuses_a_mailbox_over_its_quota_with_a_one_line_error(settings: Settings) -> None:
    """The quota is soft, as at SMTP RCPT: the message that crosses the line is taken,
    the next one is refused and nothing is stored."""
    env = {**command_env(settings), "LEDGERMAIL_DEFAULT_QUOTA_BYTES": "100"}
    assert ledgermail(settings, "domain", "add", "example.test", env=env).returncode == 0
    added = ledgermail(settings, "user", "add", "alice@example.test", "--password-stdin",
                       stdin=b"a long secret\n", env=env)
    assert added.returncode == 0, added.stderr
    first = ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE, env=env)
    assert first.stdout == "delivered to alice@example.test: INBOX uid 1\n"
    second = ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE, env=env)
    assert_one_line_error(second, 2, "the mailbox of alice@example.test is over its quota; "
                                      "nothing was delivered")
    third = ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE, env=env)
    assert third.returncode == 2
