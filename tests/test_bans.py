"""Brute-force bans (issue 8): the failed-login throttle's verdicts become events that
every server on the store honours, that ``ledgermail ban list|remove|add`` shows and
lifts, and that the audit trail records -- on SQLite and PostgreSQL.

Two containers on one store stand for two ``serve`` processes: IMAP runs on the first,
POP3 and SMTP on the second, so a refusal on the second can only come from the shared
ban (its own throttle has never seen a failure). Clients connect from 127.0.0.2 (the
guesser) and 127.0.0.3 (someone else): all of 127/8 is loopback on Linux.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import Container, build
from adapters.config import Settings
from domain.application.context import acting
from domain.model.ban import BAN_INDEX_ID
from domain.model.errors import AuthenticationFailed, SubjectErased
from tests.conftest import drop_schemas, make_settings
from tests.imap_support import PASSWORD, add_user, running_imap
from tests.pop3_support import running_pop3
from tests.smtp_support import client_context, running_smtp
from tests.test_cli import ledgermail
from tests.test_crypto import restore_keys, snapshot_keys

ALICE = "alice@example.test"
GUESSER = "127.0.0.2"
OTHER = "127.0.0.3"
#: Failed logins answer at once; servers re-read the bans often.
AUTH: dict[str, Any] = {"failure_delay": 0.0, "ban_refresh_seconds": 0.2}


# -- clients that connect from a chosen loopback address ---------------------------------


class ImapFrom(imaplib.IMAP4):
    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=10)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


class Pop3From(poplib.POP3):
    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=10)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def imap_login(port: int, source: str, password: str = PASSWORD) -> str:
    """``OK`` or the server's NO text."""
    client = ImapFrom(port, source)
    try:
        client.login(ALICE, password)
    except imaplib.IMAP4.error as error:
        return str(error)
    finally:
        client.shutdown()
    return "OK"


def pop3_login(port: int, source: str, password: str = PASSWORD) -> str:
    client = Pop3From(port, source)
    try:
        client.user(ALICE)
        client.pass_(password)
    except poplib.error_proto as error:
        return error.args[0].decode()
    finally:
        client.close()
    return "OK"


def smtp_auth(port: int, source: str, password: str = PASSWORD) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as client:
        client.starttls(context=client_context())
        try:
            code, _ = client.login(ALICE, password)
        except smtplib.SMTPAuthenticationError as error:
            return error.smtp_code
        return code


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# -- two servers on one store ------------------------------------------------------------


@dataclass
class TwoServers:
    settings: Settings
    first: Container
    second: Container
    imap: int
    pop3: int
    submission: int


@pytest.fixture
def servers(tmp_path: Path, backend: str) -> Iterator[Callable[..., TwoServers]]:
    with ExitStack() as stack:
        def start(**auth: Any) -> TwoServers:
            settings = make_settings(tmp_path / "data", backend, auth={**AUTH, **auth})
            stack.callback(drop_schemas, settings)
            first = build(settings)
            stack.callback(first.close)
            with acting("admin:test", protocol="test", purpose="testing"):
                first.app.add_domain("example.test")
            add_user(first, ALICE)
            second = build(settings)
            stack.callback(second.close)
            imap = stack.enter_context(running_imap(first))
            pop3 = stack.enter_context(running_pop3(second))
            smtp = stack.enter_context(running_smtp(second))
            return TwoServers(settings, first, second, imap.imap, pop3.pop3, smtp.submission)

        yield start


def guess_twenty_times(world: TwoServers) -> None:
    for _ in range(20):
        assert imap_login(world.imap, GUESSER, "wrong password") != "OK"


def audit_rows(container: Container, event_type: str) -> list[Any]:
    container.catch_up()
    return [row.entry for row in container.audit_trail.rows(None) if row.entry.event_type == event_type]


# -- the tests ---------------------------------------------------------------------------


def test_twenty_failed_logins_ban_the_address_on_every_server_and_another_address_is_still_served(
        servers: Callable[..., TwoServers]) -> None:
    world = servers()
    guess_twenty_times(world)
    # The 21st attempt, with the right password, is refused.
    assert "too many failed logins" in imap_login(world.imap, GUESSER)
    # The other server never saw a failure: only the shared ban can refuse there.
    assert eventually(lambda: "too many failed logins" in pop3_login(world.pop3, GUESSER))
    assert smtp_auth(world.submission, GUESSER) == 454
    # Someone else, on both servers.
    assert imap_login(world.imap, OTHER) == "OK"
    assert pop3_login(world.pop3, OTHER) == "OK"
    assert smtp_auth(world.submission, OTHER) == 235

    listing = ledgermail(world.settings, "ban", "list")
    assert listing.returncode == 0, listing.stderr
    assert f"ip {GUESSER} until=" in listing.stdout
    assert "failures=20 protocol=imap-imap" in listing.stdout
    assert listing.stdout.endswith("1 active ban(s)\n")
    placed = audit_rows(world.first, "Ban.Placed")
    assert [(row.actor, row.protocol, row.purpose) for row in placed] == [("system", "imap-imap", "security")]


def test_the_ban_index_holds_no_plaintext_address_and_a_lifted_bans_target_is_shredded(
        servers: Callable[..., TwoServers]) -> None:
    world = servers()
    guess_twenty_times(world)
    app = world.second.app
    assert eventually(lambda: len(app.active_bans()) == 1)
    index = app.repository.get(BAN_INDEX_ID)
    assert GUESSER not in repr(index.active)
    ban_id = app.active_bans()[0].ban_id
    assert app.load(ban_id).target == GUESSER  # sealed under the ban's own key
    with acting("admin:test", protocol="test", purpose="testing"):
        app.lift_ban(GUESSER)
    app.evict(ban_id)
    with pytest.raises(SubjectErased):
        app.load(ban_id)
    assert app.active_bans() == []


def test_ban_remove_lifts_the_ban_and_the_running_servers_serve_the_address_again(
        servers: Callable[..., TwoServers]) -> None:
    world = servers()
    guess_twenty_times(world)
    assert eventually(lambda: "too many failed logins" in pop3_login(world.pop3, GUESSER))

    removed = ledgermail(world.settings, "ban", "remove", GUESSER)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"ban on ip {GUESSER} lifted\n"
    # Both servers, within a few refreshes; the first forgets its failure count too.
    assert eventually(lambda: pop3_login(world.pop3, GUESSER) == "OK")
    assert eventually(lambda: imap_login(world.imap, GUESSER) == "OK")
    assert ledgermail(world.settings, "ban", "list").stdout == "0 active ban(s)\n"
    lifted = audit_rows(world.first, "Ban.Lifted")
    assert [(row.actor.startswith("admin:cli"), row.protocol) for row in lifted] == [(True, "cli")]

    again = ledgermail(world.settings, "ban", "remove", GUESSER)
    assert again.returncode != 0
    assert again.stderr == f"ledgermail: error: '{GUESSER}' is not banned (see: ledgermail ban list)\n"


def test_a_ban_added_by_the_operator_blocks_every_protocol_and_expires(
        servers: Callable[..., TwoServers]) -> None:
    world = servers()
    added = ledgermail(world.settings, "ban", "add", GUESSER, "--minutes", "0.05")  # 3 s
    assert added.returncode == 0, added.stderr
    assert eventually(lambda: "too many failed logins" in imap_login(world.imap, GUESSER), 3)
    assert "too many failed logins" in pop3_login(world.pop3, GUESSER)
    assert smtp_auth(world.submission, GUESSER) == 454
    assert imap_login(world.imap, OTHER) == "OK"
    # It runs out on its own, on both servers, and its target is shredded.
    assert eventually(lambda: imap_login(world.imap, GUESSER) == "OK", 10)
    assert pop3_login(world.pop3, GUESSER) == "OK"
    assert eventually(lambda: world.second.app.active_bans() == [], 5)
    assert [row.purpose for row in audit_rows(world.first, "Ban.Lifted")] == ["security"]


def test_a_ban_placed_through_pop3_failures_blocks_imap_on_the_other_server(
        servers: Callable[..., TwoServers]) -> None:
    world = servers()
    for _ in range(20):
        assert pop3_login(world.pop3, GUESSER, "wrong password") != "OK"
    assert eventually(lambda: "too many failed logins" in imap_login(world.imap, GUESSER))
    assert imap_login(world.imap, OTHER) == "OK"


def test_ban_commands_refuse_bad_input_with_one_line_errors(servers: Callable[..., TwoServers]) -> None:
    world = servers()
    bad = ledgermail(world.settings, "ban", "add", "not-an-ip", "--minutes", "5")
    assert bad.returncode != 0
    assert bad.stderr == "ledgermail: error: 'not-an-ip' is not an IP address\n"
    zero = ledgermail(world.settings, "ban", "add", GUESSER, "--minutes", "0")
    assert zero.returncode != 0
    assert zero.stderr == "ledgermail: error: --minutes must be more than 0\n"


def test_unknown_users_and_wrong_passwords_take_similar_time(settings: Settings) -> None:
    """Argon2 on a dummy hash for an unknown user (Dovecot CVE-2026-27856)."""
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
        add_user(container, ALICE)

        def timed(user: str) -> float:
            started = time.perf_counter()
            with pytest.raises(AuthenticationFailed):
                container.app.authenticate(user, "not the password")
            return time.perf_counter() - started

        timed("nobody@example.test"), timed(ALICE)  # warm caches (the dummy hash is made once)
        # Interleaved, so a burst of load on a shared machine hits both kinds alike.
        pairs = [(timed("nobody@example.test"), timed(ALICE)) for _ in range(15)]
        unknown = statistics.median(u for u, _ in pairs)
        wrong = statistics.median(w for _, w in pairs)
        assert 0.5 <= unknown / wrong <= 2.0, (unknown, wrong)
    finally:
        container.close()


def test_a_lifted_bans_key_brought_back_by_a_restored_key_store_is_shredded_again(
        store: Container, settings: Settings, backend: str) -> None:
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.place_ban("ip", "192.0.2.77", 600, 20, "imap")
    [ban] = store.app.active_bans()
    backup = snapshot_keys(settings, backend)  # a backup taken while the ban held
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.lift_ban("192.0.2.77")
    store.app.evict(ban.ban_id)
    with pytest.raises(SubjectErased):
        store.app.load(ban.ban_id)
    assert store.app.reshred_lifted_bans() == 0  # nothing to do while the store is whole

    restore_keys(settings, backend, backup)  # ... comes back after the ban ended
    store.app.evict(ban.ban_id)
    assert store.app.load(ban.ban_id).target == "192.0.2.77"
    assert store.app.reshred_lifted_bans() == 1
    store.app.evict(ban.ban_id)
    with pytest.raises(SubjectErased):
        store.app.load(ban.ban_id)
    assert store.app.reshred_lifted_bans() == 0
