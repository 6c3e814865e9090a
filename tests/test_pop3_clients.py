"""Real POP3 clients against the real service: fetchmail and curl.

They send what real clients send (fetchmail: USER/PASS, STAT, LIST n, RETR, DELE, UIDL,
STLS; curl: CAPA, AUTH PLAIN with and without an initial response, STLS, custom
commands) and read the answers with their own parsers, dot-unstuffing included. A missing
client skips its tests with a loud reason, except under ``CI=true``, where it fails them
(DESIGN §7).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.bootstrap import Container
from domain.application.context import acting
from domain.application.mail import AppendItem
from tests.conftest import IN_CI
from tests.imap_support import RawImap, running_imap
from tests.pop3_support import PASSWORD, RunningPop3, add_user, running_pop3
from tests.smtp_support import inbox_bodies

ALICE = "alice@example.test"
FETCHMAIL_COUNT = 500


def require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is not None:
        return path
    message = f"{program} (Debian package {package}) is not installed"
    if IN_CI:
        pytest.fail(message + " and CI=true makes the real-client tests mandatory")
    pytest.skip(f"SKIPPING {program.upper()} TESTS: {message}")


def sample_message(n: int, tag: str = "pop3") -> bytes:
    """A message with its own Message-ID and lines a POP3 server must dot-stuff."""
    return (f"From: Sender {n} <sender{n}@far.test>\r\n"
            f"To: {ALICE}\r\n"
            f"Subject: {tag} message {n}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            f"Message-ID: <{tag}-{n}-{uuid.uuid4().hex}@example.test>\r\n"
            f"\r\n"
            f"Message number {n}.\r\n"
            f".a line that starts with a dot\r\n"
            f".\r\n"
            f"{'Lorem ipsum dolor sit amet. ' * (n % 5)}\r\n").encode()


def fill_inbox(container: Container, account_id: uuid.UUID, raws: list[bytes]) -> None:
    with acting("admin:test", protocol="test", purpose="testing"):
        _, position = container.app.append_many(account_id, "INBOX", [AppendItem(raw, []) for raw in raws])
    container.projections.wait_for(position, 60)


MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


def message_id(raw: bytes) -> bytes:
    header = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    match = MESSAGE_ID.search(header)
    assert match is not None, f"no Message-ID in {raw[:200]!r}"
    return match.group(1)


# -- fetchmail ---------------------------------------------------------------------------


class Fetchmail:
    """fetchmail with its own home, id file and rc file (0600, as it insists), handing
    each message to an MDA that writes it to a file of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.program = require("fetchmail", "fetchmail")
        self.home = tmp_path / "fetchmail"
        self.home.mkdir()
        self.received = tmp_path / "received"
        self.received.mkdir()
        self.mda = self.home / "mda.sh"
        self.mda.write_text(f'#!/bin/sh\nf=$(mktemp "{self.received}/msg.XXXXXXXXXX") && exec cat > "$f"\n')
        self.mda.chmod(0o755)

    def run(self, port: int, options: str, *, count: int, server_options: str = "") -> str:
        """Poll once; ``count`` messages should arrive (fetchmail exits 1 for none)."""
        rc = self.home / "fetchmailrc"
        rc.write_text(
            "set no syslog\nset no bouncemail\n"
            f"poll 127.0.0.1 service {port} protocol POP3 auth password timeout 60 {server_options}:\n"
            f'  user "{ALICE}" there with password "{PASSWORD}" is root here\n'
            f"  options {options}\n"
            f'  mda "{self.mda}"\n')
        rc.chmod(0o600)
        env = {**os.environ, "HOME": str(self.home), "FETCHMAILHOME": str(self.home), "LC_ALL": "C"}
        result = subprocess.run(
            [self.program, "-v", "-f", str(rc), "-i", str(self.home / "fetchids"),
             "--pidfile", str(self.home / "fetchmail.pid")],
            capture_output=True, text=True, env=env, timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode == (0 if count else 1), output[-3000:]
        if count:
            assert f"{count} message" in output, output[-3000:]
        return output

    def messages(self) -> list[bytes]:
        """What the MDA got, oldest first, without the Received: line fetchmail adds and
        with CRLF line ends again (fetchmail hands an MDA LF lines)."""
        out = []
        for path in sorted(self.received.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            data = path.read_bytes()
            assert data.startswith(b"Received: from 127.0.0.1"), data[:200]
            lines = data.split(b"\n")
            rest = 1
            while lines[rest].startswith((b"\t", b" ")):
                rest += 1
            out.append(b"\n".join(lines[rest:]).replace(b"\n", b"\r\n"))
        return out


@pytest.fixture
def fetchmail(tmp_path: Path) -> Fetchmail:
    return Fetchmail(tmp_path)


def test_fetchmail_downloads_and_deletes_500_messages(store: Container, fetchmail: Fetchmail) -> None:
    account_id = add_user(store, ALICE)
    raws = [sample_message(n) for n in range(1, FETCHMAIL_COUNT + 1)]
    fill_inbox(store, account_id, raws)
    with running_pop3(store) as server:
        output = fetchmail.run(server.pop3, "fetchall nokeep sslproto ''", count=FETCHMAIL_COUNT)
    assert "POP3> QUIT" in output and f"+OK bye; {FETCHMAIL_COUNT} messages removed" in output
    received = fetchmail.messages()
    assert len(received) == FETCHMAIL_COUNT
    ids = Counter(message_id(raw) for raw in received)
    assert set(ids.values()) == {1}
    assert set(ids) == {message_id(raw) for raw in raws}
    # The exact stored bytes, once fetchmail's line-end change is undone (dot lines too).
    assert sorted(received) == sorted(raws)
    assert inbox_bodies(store, ALICE) == []


def test_fetchmail_over_stls_keeps_messages_and_its_uidl_list_skips_those_it_has(
        store: Container, fetchmail: Fetchmail) -> None:
    account_id = add_user(store, ALICE)
    first = [sample_message(n, "first") for n in range(1, 11)]
    later = [sample_message(n, "later") for n in range(1, 4)]
    fill_inbox(store, account_id, first)
    keep = "keep sslproto TLS1.2+ no sslcertck"
    with running_pop3(store) as server:
        output = fetchmail.run(server.pop3, keep, count=10, server_options="uidl")
        assert "POP3> STLS" in output and "POP3> UIDL" in output, output[-3000:]
        fetchmail.run(server.pop3, keep, count=0, server_options="uidl")  # UIDL ids are stable: nothing new
        fill_inbox(store, account_id, later)
        fetchmail.run(server.pop3, keep, count=3, server_options="uidl")
        assert sorted(fetchmail.messages()) == sorted(first + later)
        assert len(inbox_bodies(store, ALICE)) == 13
        # pop3s, implicit TLS: everything, and deleted this time.
        fetchmail.run(server.pop3s, "ssl no sslcertck fetchall nokeep", count=13)
    assert inbox_bodies(store, ALICE) == []
    assert Counter(fetchmail.messages()) == Counter(first + later + first + later)


# -- curl --------------------------------------------------------------------------------


CURL_MESSAGES = [
    b"From: Bob <bob@far.test>\r\nTo: alice@example.test\r\nSubject: curl one\r\n"
    b"Message-ID: <curl-1@far.test>\r\n\r\n.starts with a dot\r\n.\r\n..\r\nlast line\r\n",
    b"From: Bob <bob@far.test>\r\nSubject: curl two\r\nMessage-ID: <curl-2@far.test>\r\n\r\n"
    b"no final line end",
]


@pytest.fixture
def curl_pop3(store: Container) -> Iterator[RunningPop3]:
    require("curl", "curl")
    account_id = add_user(store, ALICE)
    fill_inbox(store, account_id, CURL_MESSAGES)
    with running_pop3(store) as server:
        yield server


def curl(*args: str, user: str = f"{ALICE}:{PASSWORD}") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-s", "-S", "-v", "--max-time", "20", "--user", user, *args],
                          capture_output=True, timeout=60)


def sent(result: subprocess.CompletedProcess[bytes]) -> list[bytes]:
    """The commands curl sent, from its -v output."""
    return [line[2:] for line in result.stderr.splitlines() if line.startswith(b"> ")]


def test_curl_lists_the_maildrop(curl_pop3: RunningPop3) -> None:
    result = curl(f"pop3://127.0.0.1:{curl_pop3.pop3}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"1 {len(CURL_MESSAGES[0])}\r\n2 {len(CURL_MESSAGES[1])}\r\n".encode()
    # curl reads CAPA and picks SASL PLAIN, answering the empty "+ " challenge.
    assert sent(result)[:2] == [b"CAPA", b"AUTH PLAIN"]
    assert sent(result)[3:] == [b"LIST"]


@pytest.mark.parametrize("how", ["pop3", "pop3 with --sasl-ir", "pop3 with STLS", "pop3s"])
def test_curl_retrieves_a_message_as_the_exact_stored_bytes(curl_pop3: RunningPop3, how: str) -> None:
    extra = {"pop3": [], "pop3 with --sasl-ir": ["--sasl-ir"], "pop3 with STLS": ["-k", "--ssl-reqd"],
             "pop3s": ["-k"]}[how]
    scheme, port = ("pop3s", curl_pop3.pop3s) if how == "pop3s" else ("pop3", curl_pop3.pop3)
    result = curl(*extra, f"{scheme}://127.0.0.1:{port}/1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == CURL_MESSAGES[0]
    commands = sent(result)
    if how == "pop3 with STLS":
        assert commands[:3] == [b"CAPA", b"STLS", b"CAPA"]
    if how == "pop3 with --sasl-ir":
        assert commands[1].startswith(b"AUTH PLAIN ")
    assert commands[-1] == b"RETR 1"


def test_curl_retrieves_a_message_without_a_final_line_end_with_one_added(curl_pop3: RunningPop3) -> None:
    result = curl(f"pop3://127.0.0.1:{curl_pop3.pop3}/2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == CURL_MESSAGES[1] + b"\r\n"


def test_curl_uidl_and_dele_match_what_imap_sees(curl_pop3: RunningPop3) -> None:
    base = f"pop3://127.0.0.1:{curl_pop3.pop3}/"
    with running_imap(curl_pop3.container) as imap:
        client = RawImap(imap.imap)
        client.login(ALICE)
        uidvalidity = int(re.search(rb"\[UIDVALIDITY (\d+)\]", client.command("s", "SELECT INBOX"))[1])  # type: ignore[index]
        listed = curl("-X", "UIDL", base)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == f"1 {1:08x}{uidvalidity:08x}\r\n2 {2:08x}{uidvalidity:08x}\r\n".encode()
        # A custom command with no answer body needs -I (libcurl CURLOPT_NOBODY).
        deleted = curl("-X", "DELE", "-I", base + "1")
        assert deleted.returncode == 0, deleted.stderr
        assert sent(deleted)[-1] == b"DELE 1"  # and QUIT, which commits it:
        said = b""
        deadline = time.monotonic() + 5
        while b"* 1 EXPUNGE\r\n" not in said and time.monotonic() < deadline:
            said += client.command("n", "NOOP")
            time.sleep(0.05)
        assert b"* 1 EXPUNGE\r\n" in said, said
        assert client.command("u", "UID SEARCH ALL") == b"* SEARCH 2\r\nu OK SEARCH completed\r\n"
        client.close()
    assert curl(base).stdout == f"1 {len(CURL_MESSAGES[1])}\r\n".encode()


def test_curl_with_a_wrong_password_fails_cleanly(curl_pop3: RunningPop3) -> None:
    result = curl(f"pop3://127.0.0.1:{curl_pop3.pop3}/", user=f"{ALICE}:wrong")
    assert result.returncode == 67, result  # CURLE_LOGIN_DENIED
    assert result.stdout == b""
