"""Real IMAP clients against the real service: mbsync (isync) and curl.

They send what real clients send, in the order they send it (pipelining, UIDPLUS,
APPEND of local mail, SASL-IR, STARTTLS), and they check what comes back more strictly
than our own byte-level tests would think to. A missing client skips its tests with a
loud reason, except under ``CI=true``, where it fails them (DESIGN §7).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.bootstrap import Container
from domain.application.context import acting
from domain.application.mail import AppendItem
from tests.conftest import IN_CI
from tests.imap_support import PASSWORD, RunningImap, add_user, running_imap
from tests.smtp_support import inbox_bodies

ALICE = "alice@example.test"
INBOX_SIZE = 1000
LOCAL_NEW = 10


def require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is not None:
        return path
    message = f"{program} (Debian package {package}) is not installed"
    if IN_CI:
        pytest.fail(message + " and CI=true makes the real-client tests mandatory")
    pytest.skip(f"SKIPPING {program.upper()} TESTS: {message}")


# -- filling the store -------------------------------------------------------------------


def sample_message(n: int, tag: str = "server") -> bytes:
    """A plain message with its own Message-ID, as a real mailbox holds."""
    date = (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=n)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return (f"From: Sender {n} <sender{n}@far.test>\r\n"
            f"To: {ALICE}\r\n"
            f"Subject: {tag} message {n}\r\n"
            f"Date: {date}\r\n"
            f"Message-ID: <{tag}-{n}-{uuid.uuid4().hex}@example.test>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"\r\n"
            f"Message number {n}.\r\n"
            f"{'Lorem ipsum dolor sit amet. ' * (n % 7)}\r\n").encode()


def fill_inbox(container: Container, account_id: uuid.UUID, messages: list[bytes]) -> None:
    """Append through the use case, in one transaction, and wait for the views."""
    with acting("admin:test", protocol="test", purpose="testing"):
        items = [AppendItem(raw, []) for raw in messages]
        _, position = container.app.append_many(account_id, "INBOX", items)
    container.projections.wait_for(position, 60)


MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


def message_id(raw: bytes) -> bytes:
    header = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = MESSAGE_ID.search(header)
    assert match is not None, f"no Message-ID in {raw[:200]!r}"
    return match.group(1)


def server_message_ids(container: Container) -> list[bytes]:
    return [message_id(raw) for raw in inbox_bodies(container, ALICE)]


# -- mbsync ------------------------------------------------------------------------------


def mbsync_version(program: str) -> tuple[int, ...]:
    out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10, check=True)
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout + out.stderr)
    assert match is not None, out
    return tuple(int(part) for part in match.groups() if part is not None)


def write_mbsyncrc(tmp_path: Path, program: str, port: int) -> Path:
    """One channel: the server's INBOX <-> a local Maildir, everything both ways."""
    # isync 1.5 renamed SSLType to TLSType (the old name still works there, with a warning).
    tls_key = "TLSType" if mbsync_version(program) >= (1, 5) else "SSLType"
    maildir = tmp_path / "Mail"
    maildir.mkdir()  # the store's root; mbsync creates the mailboxes in it
    config = tmp_path / "mbsyncrc"
    config.write_text(f"""\
IMAPAccount test
Host 127.0.0.1
Port {port}
User {ALICE}
Pass "{PASSWORD}"
{tls_key} None
AuthMechs LOGIN
Timeout 60

IMAPStore remote
Account test

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX

Channel sync
Far :remote:
Near :local:
Sync All
Create Both
Expunge Both
SyncState *
""")
    return config


def run_mbsync(program: str, config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([program, "-c", str(config), "-V", *flags, "-a"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"mbsync failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if re.search(r"error|unexpected|bad|fail", line, re.IGNORECASE)
                and "Password is being sent in the clear" not in line]
    assert not problems, "mbsync reported:\n" + "\n".join(problems)
    return done


def as_maildir_keeps(raw: bytes) -> bytes:
    """mbsync stores LF line ends and adds its own X-TUID header line; all else is kept."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", raw.replace(b"\r\n", b"\n"), count=1)


def commands_sent(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The IMAP commands in mbsync's ``-Dn`` trace (``>>> tag COMMAND ...``), without tags."""
    return re.findall(r">>> \S+ ((?:UID )?[A-Z]+[^\n]*)", done.stdout)


CHANGES = re.compile(r"^(APPEND|(UID )?(STORE|EXPUNGE|MOVE|COPY)|CREATE|DELETE|RENAME)\b|BODY")


def maildir_files(maildir: Path) -> dict[str, bytes]:
    """Every message file of the local INBOX, by its name relative to the Maildir."""
    return {str(path.relative_to(maildir)): path.read_bytes()
            for sub in ("new", "cur") for path in sorted((maildir / sub).iterdir()) if path.is_file()}


def test_mbsync_pulls_1000_messages_pushes_10_back_and_then_has_nothing_to_do(
        store: Container, tmp_path: Path) -> None:
    """mbsync (isync): a 1,000-message INBOX to a Maildir, 10 local messages back up,
    then a sync that changes nothing, on both backends (the issue asks for both)."""
    program = require("mbsync", "isync")
    account_id = add_user(store, ALICE)
    originals = [sample_message(n) for n in range(INBOX_SIZE)]
    fill_inbox(store, account_id, originals)
    expected_ids = {message_id(raw) for raw in originals}
    assert len(expected_ids) == INBOX_SIZE
    local = tmp_path / "Mail" / "INBOX"
    with running_imap(store) as imap:
        config = write_mbsyncrc(tmp_path, program, imap.imap)

        # 1. Down: every message once, its content intact (mbsync's own changes aside).
        run_mbsync(program, config)
        files = maildir_files(local)
        assert len(files) == INBOX_SIZE
        ids = Counter(message_id(raw) for raw in files.values())
        assert set(ids) == expected_ids and max(ids.values()) == 1
        assert sorted(map(as_maildir_keeps, files.values())) == sorted(map(as_maildir_keeps, originals))

        # 2. Up: ten messages written into the local Maildir as a mail client would.
        added = [sample_message(n, tag="local") for n in range(LOCAL_NEW)]
        for n, raw in enumerate(added):
            (local / "new" / f"{int(time.time())}.local{n}.test").write_bytes(raw)
        pushed = commands_sent(run_mbsync(program, config, "-Dn"))
        changes = [c.partition(" {")[0] for c in pushed if CHANGES.search(c)]
        assert changes == ['APPEND "INBOX"'] * LOCAL_NEW, pushed
        on_server = server_message_ids(store)
        assert len(on_server) == INBOX_SIZE + LOCAL_NEW
        assert Counter(on_server).most_common(1)[0][1] == 1, "a message is on the server twice"
        assert set(on_server) == expected_ids | {message_id(raw) for raw in added}
        after_push = maildir_files(local)
        assert len(after_push) == INBOX_SIZE + LOCAL_NEW  # not pulled back down as new copies

        # 3. Again: nothing to do on either side.
        again = commands_sent(run_mbsync(program, config, "-Dn"))
        assert again and not [c for c in again if CHANGES.search(c)], again
        assert maildir_files(local) == after_push
        assert server_message_ids(store) == on_server


# -- curl --------------------------------------------------------------------------------

CURL_MESSAGE = (b"From: Bob <bob@far.test>\r\n"
                b"To: alice@example.test\r\n"
                b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
                b"Message-ID: <curl-1@far.test>\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n"
                b"\r\n"
                b"Caf\xc3\xa9 \xe2\x98\x95\r\n"
                b".\r\n"
                b"a line with a dot above and trailing spaces   \r\n"
                b"* 1 EXISTS\r\n"
                b"\r\n")


@pytest.fixture
def curl_imap(store: Container) -> Iterator[RunningImap]:
    require("curl", "curl")
    account_id = add_user(store, ALICE)
    fill_inbox(store, account_id, [CURL_MESSAGE, sample_message(2)])
    with running_imap(store) as imap:
        yield imap


@pytest.mark.parametrize("how", ["imap", "imap with STARTTLS", "imaps"])
def test_curl_fetches_a_message_as_the_exact_stored_bytes(curl_imap: RunningImap, how: str) -> None:
    scheme, port = ("imaps", curl_imap.imaps) if how == "imaps" else ("imap", curl_imap.imap)
    extra = {"imap": [], "imap with STARTTLS": ["--ssl-reqd", "-k"], "imaps": ["-k"]}[how]
    done = subprocess.run(
        ["curl", "-s", "-S", "--max-time", "20", *extra, "--url", f"{scheme}://127.0.0.1:{port}/INBOX;UID=1",
         "--user", f"{ALICE}:{PASSWORD}"], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    stored = inbox_bodies(curl_imap.container, ALICE)[0]
    assert stored == CURL_MESSAGE
    assert done.stdout == stored


def test_curl_with_a_wrong_password_fails_cleanly(curl_imap: RunningImap) -> None:
    done = subprocess.run(
        ["curl", "-s", "-S", "--max-time", "20", "--url", f"imap://127.0.0.1:{curl_imap.imap}/INBOX;UID=1",
         "--user", f"{ALICE}:not the password"], capture_output=True, timeout=30)
    assert done.returncode == 67, (done.returncode, done.stderr)  # CURLE_LOGIN_DENIED
    assert done.stdout == b""
