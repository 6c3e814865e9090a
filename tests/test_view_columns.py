"""A view made by an earlier release gains the columns added since, on start, and keeps
working: rows from before read with the column empty."""

from __future__ import annotations

import sqlite3

import psycopg

from adapters.bootstrap import build, schemas_for
from adapters.config import Settings
from domain.application.context import acting
from tests.conftest import PG_DSN


def drop_saved_at(settings: Settings) -> None:
    """Make the view look as the release before SAVEDATE left it."""
    if settings.is_postgres:
        schema = schemas_for(settings)["mailboxview"]
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{schema}".mv_messages DROP COLUMN saved_at')
        return
    with sqlite3.connect(settings.sqlite_dir / "mailbox_view.sqlite") as conn:
        conn.execute("ALTER TABLE mv_messages DROP COLUMN saved_at")


def test_a_view_without_the_saved_at_column_gets_it_and_old_rows_read_without_a_save_date(
        settings: Settings) -> None:
    container = build(settings)
    with acting("admin:test", protocol="test", purpose="testing"):
        container.app.add_domain("example.test")
        account = container.app.create_account("alice@example.test", "correct horse battery")
        container.app.append(account, "INBOX", b"Subject: before\r\n\r\nold\r\n")
        container.catch_up()
    container.close()
    drop_saved_at(settings)

    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.append(account, "INBOX", b"Subject: after\r\n\r\nnew\r\n")
            container.catch_up()
            inbox = container.app.mailbox_id_of(account, "INBOX")
            rows = container.mailbox_view.messages(inbox)
    finally:
        container.close()
    assert [(row.uid, row.summary["subject"]) for row in rows] == [(1, "before"), (2, "after")]
    assert rows[0].saved_at == ""
    assert rows[1].saved_at.startswith("20")
