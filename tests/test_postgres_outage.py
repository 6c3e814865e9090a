"""PostgreSQL connections dropped under a running server (a restart, a failover, an
administrator's pg_terminate_backend) cost no delivery: every pool finds its broken
connections on use and replaces them, and the projections restart and catch up."""

from __future__ import annotations

import smtplib

import psycopg
import pytest

from adapters.bootstrap import Container
from domain.application.context import acting
from tests.conftest import PG_DSN
from tests.smtp_support import add_user, inbox_bodies, running_smtp


def terminate_every_other_connection() -> int:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def message(number: int) -> bytes:
    return f"From: peer@far.test\r\nSubject: outage {number}\r\n\r\nbody {number}\r\n".encode()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_deliveries_right_after_every_connection_was_killed_are_accepted_and_stored_once(
    store: Container,
) -> None:
    add_user(store, "alice@example.test")
    with running_smtp(store) as server:
        for number in range(6):
            if number in (2, 4):
                assert terminate_every_other_connection() > 0
            with smtplib.SMTP("127.0.0.1", server.mx, timeout=30) as client:
                refused = client.sendmail("peer@far.test", ["alice@example.test"], message(number))
            assert refused == {}
    stored = inbox_bodies(store, "alice@example.test")
    assert [body.partition(b"\r\n\r\n")[0].rsplit(b"\r\n", 1)[-1] for body in stored] == [
        f"Subject: outage {n}".encode() for n in range(6)]
    assert all(body.endswith(message(n)) for n, body in enumerate(stored))
    # The projections were cut off too; they restart and catch up with every message.
    store.catch_up(timeout=30)
    with acting("admin:test", protocol="test", purpose="testing"):
        account_id = store.app.account_id_for("alice@example.test")
    inbox = next(m for m in store.mailbox_view.mailboxes(account_id) if m.name == "INBOX")
    assert inbox.messages == 6
