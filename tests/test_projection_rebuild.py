"""Views are derived data: thrown away and rebuilt from the event log, they come back the
same mailbox, UID for UID, MODSEQ for MODSEQ, and the same hash-chained audit trail
(DESIGN §2: UIDVALIDITY, UID and MODSEQ are decided in the write model)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg

from adapters.bootstrap import VIEW_DBS, Container, build, schemas_for
from adapters.config import Settings
from domain.application.context import acting
from projections.audit_trail.projection import AuditTrailProjection
from projections.audit_trail.view import check_chain
from projections.mailbox_view.projection import MailboxViewProjection

PASSWORD = "correct horse battery"


def message(n: int) -> bytes:
    return f"From: peer@remote.test\r\nSubject: message {n}\r\n\r\nbody {n}\r\n".encode()


@contextmanager
def opened(settings: Settings) -> Iterator[Container]:
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            yield container
    finally:
        container.close()


def drop_views(settings: Settings) -> None:
    """Throw the views away: the files on SQLite, the schemas on PostgreSQL."""
    if settings.is_postgres:
        schemas = schemas_for(settings)
        with psycopg.connect(settings.store_url, autocommit=True) as conn:
            for name in (MailboxViewProjection.name, AuditTrailProjection.name):
                conn.execute(f'DROP SCHEMA "{schemas[name]}" CASCADE')
        return
    data = settings.data_dir.resolve()
    removed = 0
    for filename in VIEW_DBS.values():
        for path in data.glob(filename + "*"):
            path.unlink()
            removed += 1
    assert removed >= 2, "expected the view databases to exist before dropping them"


def snapshot(store: Container) -> dict[str, Any]:
    """Everything the views answer, in comparable form."""
    view = store.mailbox_view
    accounts = view.accounts()
    mailboxes = {a.address: view.mailboxes(a.account_id) for a in accounts}
    messages = {str(m.mailbox_id): view.messages(m.mailbox_id)
                for rows in mailboxes.values() for m in rows}
    vanished = {str(m.mailbox_id): view.vanished_since(m.mailbox_id, 0)
                for rows in mailboxes.values() for m in rows}
    return {
        "accounts": accounts,
        "mailboxes": mailboxes,
        "messages": messages,
        "vanished": vanished,
        "audit": store.audit_trail.rows(),
        "positions": store.projections.positions(),
    }


def busy_history(store: Container) -> dict[str, UUID]:
    """Deliveries, flags, copies, moves, expunges, mailbox changes and reads."""
    app = store.app
    app.add_domain("example.test")
    alice = app.create_account("alice@example.test", PASSWORD)
    bob = app.create_account("bob@example.test", PASSWORD)
    for n in range(1, 7):
        app.deliver(["alice@example.test", "bob@example.test"] if n % 2 else
                    ["alice@example.test"], message(n))
    inbox = app.mailbox_id_of(alice, "INBOX")
    app.set_flags(alice, inbox, [1, 2, 3], ["\\Seen"], mode="add")
    app.set_flags(alice, inbox, [2], ["$Work", "\\Flagged"], mode="add")
    app.set_flags(alice, inbox, [1], ["\\Seen"], mode="remove")
    app.copy_messages(alice, inbox, [2, 3], "Archive")
    app.copy_messages(alice, inbox, [4, 5], "Trash", move=True)
    app.set_flags(alice, inbox, [3, 6], ["\\Deleted"], mode="add")
    app.expunge(alice, inbox)
    app.create_mailbox(alice, "Projects")
    app.create_mailbox(alice, "Projects/2024")
    app.copy_messages(alice, inbox, [1, 2], "Projects/2024", move=True)
    app.rename_mailbox(alice, "Projects", "Clients")
    app.create_mailbox(alice, "Scratch")
    app.append(alice, "Scratch", message(99), flags=["\\Draft"])
    app.delete_mailbox(alice, "Scratch")
    app.set_subscription(alice, "Junk", False)
    bob_inbox = app.mailbox_id_of(bob, "INBOX")
    app.set_flags(bob, bob_inbox, [1], ["\\Deleted"], mode="replace")
    app.expunge(bob, bob_inbox)
    trash = app.mailbox_id_of(alice, "Trash")
    store.catch_up()
    copy_ids = [m.copy_id for m in store.mailbox_view.messages(trash)]
    app.read_messages(alice, copy_ids, "imap-fetch")
    app.deliver(["alice@example.test"], message(7))
    return {"alice": alice, "bob": bob, "inbox": inbox, "bob_inbox": bob_inbox}


def test_rebuilt_views_are_identical_to_the_live_views(settings: Settings) -> None:
    with opened(settings) as store:
        ids = busy_history(store)
        store.catch_up()
        live = snapshot(store)

    # The history is not trivial: these are what the comparison must preserve.
    inbox = str(ids["inbox"])
    assert [(m.uid, m.flags) for m in live["messages"][inbox]] == [(7, [])]
    assert live["vanished"][inbox] == [1, 2, 3, 4, 5, 6]
    assert live["vanished"][str(ids["bob_inbox"])] == [1]
    names = {m.name: m for m in live["mailboxes"]["alice@example.test"]}
    assert "Clients/2024" in names and "Scratch" not in names and "Projects" not in names
    assert names["Junk"].subscribed is False
    assert [m.uid for m in live["messages"][str(names["Clients/2024"].mailbox_id)]] == [1, 2]
    assert [m.flags for m in live["messages"][str(names["Archive"].mailbox_id)]] == [
        ["$Work", "\\Flagged", "\\Seen"], ["\\Seen"]]
    event_types = {row.entry.event_type for row in live["audit"]}
    assert {"AccessLedger.MessagesAccessed", "MessageCopy.Expunged", "Mailbox.Renamed",
            "Mailbox.Deleted", "MessageCopy.FlagsChanged"} <= event_types
    assert check_chain(live["audit"]).intact

    drop_views(settings)

    with opened(settings) as store:
        store.catch_up()
        rebuilt = snapshot(store)

    assert rebuilt["positions"] == live["positions"]
    assert rebuilt["accounts"] == live["accounts"]
    assert rebuilt["mailboxes"] == live["mailboxes"]
    assert rebuilt["messages"] == live["messages"]
    assert rebuilt["vanished"] == live["vanished"]
    assert rebuilt["audit"] == live["audit"]
    assert rebuilt["audit"][-1].hash == live["audit"][-1].hash
    assert check_chain(rebuilt["audit"]).intact


def test_a_view_rebuilt_while_new_mail_arrives_converges(settings: Settings) -> None:
    with opened(settings) as store:
        store.app.add_domain("example.test")
        alice = store.app.create_account("alice@example.test", PASSWORD)
        for n in range(3):
            store.app.deliver(["alice@example.test"], message(n))
        store.catch_up()

    drop_views(settings)

    with opened(settings) as store:
        # Writes race the rebuild: the runner must apply old and new events once each.
        for n in range(3, 6):
            store.app.deliver(["alice@example.test"], message(n))
        store.catch_up()
        inbox = store.app.mailbox_id_of(alice, "INBOX")
        rows = store.mailbox_view.messages(inbox)
        assert [(m.uid, m.modseq) for m in rows] == [(uid, uid + 1) for uid in range(1, 7)]
        [box] = [m for m in store.mailbox_view.mailboxes(alice) if m.name == "INBOX"]
        assert (box.uidnext, box.highestmodseq, box.messages) == (7, 7, 6)
        audit = store.audit_trail.rows()
        assert [r.entry.position for r in audit] == list(
            range(1, store.app.recorder.max_notification_id() + 1))
        assert check_chain(audit).intact
