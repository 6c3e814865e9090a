"""Mail use cases on a real store (SQLite and PostgreSQL): delivery, flags, copy, move,
expunge, mailbox management and recorded reads, checked against the mailbox view."""

from __future__ import annotations

import sqlite3
from uuid import UUID

import psycopg
import pytest

from adapters.bootstrap import Container, schemas_for
from domain.model.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotFound,
    MailboxProtected,
    MessageNotFound,
    UnknownAddress,
)
from projections.mailbox_view.view import MailboxRow, MessageRow

PASSWORD = "correct horse battery"


def message(n: int, subject: str = "hello") -> bytes:
    return (f"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject} {n}\r\n"
            f"Message-ID: <{n}@remote.test>\r\n\r\nbody number {n}\r\n").encode()


def blob_count(store: Container) -> int:
    if store.settings.is_postgres:
        schema = schemas_for(store.settings)["events"]
        with psycopg.connect(store.settings.store_url) as conn:
            return conn.execute(f'SELECT count(*) FROM "{schema}".blobs').fetchone()[0]
    with sqlite3.connect(store.settings.data_dir / "blobs.sqlite") as conn:
        return conn.execute("SELECT count(*) FROM blobs").fetchone()[0]


def log_position(store: Container) -> int:
    return store.app.recorder.max_notification_id() or 0


def mailbox(store: Container, account_id: UUID, name: str) -> MailboxRow:
    store.catch_up()
    rows = {row.name: row for row in store.mailbox_view.mailboxes(account_id)}
    return rows[name]


def messages(store: Container, mailbox_id: UUID) -> list[MessageRow]:
    store.catch_up()
    return store.mailbox_view.messages(mailbox_id)


@pytest.fixture
def alice(store: Container) -> UUID:
    return store.app.create_account("alice@example.test", PASSWORD)


@pytest.fixture
def bob(store: Container) -> UUID:
    return store.app.create_account("bob@example.test", PASSWORD)


def inbox_of(store: Container, account_id: UUID) -> UUID:
    return store.app.mailbox_id_of(account_id, "INBOX")


def deliver_many(store: Container, count: int, to: str = "alice@example.test") -> None:
    for n in range(1, count + 1):
        store.app.deliver([to], message(n))


# -- delivery --------------------------------------------------------------------------


def test_delivery_to_two_recipients_stores_one_blob_and_gives_each_uid_one(
    store: Container, alice: UUID, bob: UUID
) -> None:
    raw = message(1, "shared")
    blobs_before = blob_count(store)

    result = store.app.deliver(["alice@example.test", "Bob@Example.Test"], raw)

    assert blob_count(store) == blobs_before + 1
    assert [(ref.account_id, ref.uid) for ref in result.copies] == [(alice, 1), (bob, 1)]
    assert result.copies[0].mailbox_id == inbox_of(store, alice)
    assert result.copies[1].mailbox_id == inbox_of(store, bob)
    assert result.copies[0].copy_id != result.copies[1].copy_id
    assert result.position == log_position(store)
    for account_id in (alice, bob):
        inbox = mailbox(store, account_id, "INBOX")
        assert (inbox.uidnext, inbox.highestmodseq, inbox.messages) == (2, 2, 1)
        [row] = messages(store, inbox.mailbox_id)
        assert (row.uid, row.modseq, row.flags, row.size) == (1, 2, [], len(raw))
        assert row.summary["subject"] == "shared 1"
        assert result.copies[0].uidvalidity > 0
    [alice_copy] = store.app.read_messages(alice, [result.copies[0].copy_id], "test")
    [bob_copy] = store.app.read_messages(bob, [result.copies[1].copy_id], "test")
    assert alice_copy.body == bob_copy.body == raw


def test_consecutive_deliveries_get_ascending_uids_and_one_copy_per_person(
    store: Container, alice: UUID
) -> None:
    uids = [store.app.deliver(["alice@example.test"], message(n)).copies[0].uid for n in range(3)]
    twice = store.app.deliver(["alice@example.test", "ALICE@example.test"], message(3))

    assert uids == [1, 2, 3]
    assert [(ref.account_id, ref.uid) for ref in twice.copies] == [(alice, 4)]
    rows = messages(store, inbox_of(store, alice))
    assert [(m.uid, m.modseq) for m in rows] == [(1, 2), (2, 3), (3, 4), (4, 5)]
    assert mailbox(store, alice, "INBOX").highestmodseq == 5


def test_delivery_to_an_unknown_address_writes_nothing(store: Container, alice: UUID) -> None:
    blobs_before = blob_count(store)
    position_before = log_position(store)

    with pytest.raises(UnknownAddress, match="nobody@example.test"):
        store.app.deliver(["alice@example.test", "nobody@example.test"], message(1))
    with pytest.raises(UnknownAddress):
        store.app.deliver(["alice@elsewhere.test"], message(2))
    with pytest.raises(UnknownAddress):
        store.app.deliver(["not an address"], message(3))

    assert blob_count(store) == blobs_before
    assert log_position(store) == position_before
    inbox = mailbox(store, alice, "INBOX")
    assert (inbox.uidnext, inbox.highestmodseq, inbox.messages) == (1, 1, 0)


# -- flags -----------------------------------------------------------------------------


def test_set_flags_adds_removes_and_replaces_with_rising_modseq(
    store: Container, alice: UUID
) -> None:
    deliver_many(store, 3)
    inbox_id = inbox_of(store, alice)

    added, _ = store.app.set_flags(alice, inbox_id, [1, 2], ["\\seen"], mode="add")
    assert [(c.uid, c.flags, c.modseq) for c in added] == [(1, ["\\Seen"], 5), (2, ["\\Seen"], 5)]

    removed, _ = store.app.set_flags(alice, inbox_id, [1], ["\\Seen"], mode="remove")
    assert [(c.uid, c.flags, c.modseq) for c in removed] == [(1, [], 6)]

    replaced, position = store.app.set_flags(alice, inbox_id, [2, 3], ["$Work", "\\Flagged"],
                                             mode="replace")
    assert [(c.uid, c.flags, c.modseq) for c in replaced] == [
        (2, ["$Work", "\\Flagged"], 7),
        (3, ["$Work", "\\Flagged"], 7),
    ]
    assert position == log_position(store)

    rows = messages(store, inbox_id)
    assert [(m.uid, m.flags, m.modseq) for m in rows] == [
        (1, [], 6),
        (2, ["$Work", "\\Flagged"], 7),
        (3, ["$Work", "\\Flagged"], 7),
    ]
    inbox = mailbox(store, alice, "INBOX")
    assert inbox.highestmodseq == max(m.modseq for m in rows) == 7


def test_a_flag_change_that_changes_nothing_or_is_invalid_writes_nothing(
    store: Container, alice: UUID
) -> None:
    deliver_many(store, 2)
    inbox_id = inbox_of(store, alice)
    store.app.set_flags(alice, inbox_id, [1], ["\\Seen"], mode="add")
    position = log_position(store)

    again, _ = store.app.set_flags(alice, inbox_id, [1, 99], ["\\Seen"], mode="add")
    with pytest.raises(ValueError, match="unknown system flag"):
        store.app.set_flags(alice, inbox_id, [2], ["\\Recent"], mode="add")

    assert [(c.uid, c.flags, c.modseq) for c in again] == [(1, ["\\Seen"], 4)]
    assert log_position(store) == position
    assert mailbox(store, alice, "INBOX").highestmodseq == 4
    assert [m.flags for m in messages(store, inbox_id)] == [["\\Seen"], []]


def test_flags_cannot_be_set_in_another_persons_mailbox(
    store: Container, alice: UUID, bob: UUID
) -> None:
    deliver_many(store, 1, to="bob@example.test")
    with pytest.raises(MailboxNotFound):
        store.app.set_flags(alice, inbox_of(store, bob), [1], ["\\Seen"], mode="add")
    assert messages(store, inbox_of(store, bob))[0].flags == []


# -- copy and move ---------------------------------------------------------------------


def test_copy_returns_copyuid_pairs_and_keeps_the_source(store: Container, alice: UUID) -> None:
    deliver_many(store, 3)
    inbox_id = inbox_of(store, alice)
    store.app.set_flags(alice, inbox_id, [3], ["\\Seen", "$Work"], mode="add")
    blobs_before = blob_count(store)

    pairs, uidvalidity, position = store.app.copy_messages(alice, inbox_id, [3, 1, 7], "Archive")

    assert pairs == [(1, 1), (3, 2)]
    archive = mailbox(store, alice, "Archive")
    assert uidvalidity == archive.uidvalidity
    assert (archive.uidnext, archive.messages) == (3, 2)
    assert position == log_position(store)
    assert blob_count(store) == blobs_before
    copied = messages(store, archive.mailbox_id)
    source = {m.uid: m for m in messages(store, inbox_id)}
    assert sorted(source) == [1, 2, 3]
    assert [(m.uid, m.flags, m.size) for m in copied] == [
        (1, [], source[1].size),
        (2, ["$Work", "\\Seen"], source[3].size),
    ]
    assert copied[0].modseq < copied[1].modseq == archive.highestmodseq
    bodies = store.app.read_messages(alice, [m.copy_id for m in copied], "test")
    assert [b.body for b in bodies] == [message(1), message(3)]


def test_move_expunges_the_source_in_the_same_transaction(store: Container, alice: UUID) -> None:
    deliver_many(store, 3)
    inbox_id = inbox_of(store, alice)
    before = log_position(store)

    pairs, _, position = store.app.copy_messages(alice, inbox_id, [1, 3], "Trash", move=True)

    assert pairs == [(1, 1), (3, 2)]
    assert [m.uid for m in messages(store, inbox_id)] == [2]
    trash = mailbox(store, alice, "Trash")
    assert [m.uid for m in messages(store, trash.mailbox_id)] == [1, 2]
    inbox = mailbox(store, alice, "INBOX")
    assert store.mailbox_view.vanished_since(inbox_id, 0) == [1, 3]
    assert inbox.highestmodseq == 5
    # One save: every event of the move sits in one contiguous run of the log and
    # carries the one audit envelope that save stamped.
    rows = [r.entry for r in store.audit_trail.rows() if before < r.entry.position <= position]
    assert [r.position for r in rows] == list(range(before + 1, position + 1))
    types = sorted(r.event_type for r in rows)
    assert types.count("MessageCopy.Created") == 2
    assert types.count("MessageCopy.Expunged") == 2
    assert len({r.at for r in rows}) == 1


def test_a_copy_or_move_that_cannot_apply_writes_nothing(store: Container, alice: UUID) -> None:
    deliver_many(store, 1)
    inbox_id = inbox_of(store, alice)
    position = log_position(store)

    pairs, uidvalidity, _ = store.app.copy_messages(alice, inbox_id, [5], "Trash")
    assert pairs == []
    assert uidvalidity == mailbox(store, alice, "Trash").uidvalidity
    with pytest.raises(MailboxProtected):
        store.app.copy_messages(alice, inbox_id, [1], "inbox", move=True)
    with pytest.raises(MailboxNotFound):
        store.app.copy_messages(alice, inbox_id, [1], "Nowhere")

    assert log_position(store) == position
    assert [m.uid for m in messages(store, inbox_id)] == [1]


# -- expunge ---------------------------------------------------------------------------


def test_expunge_removes_only_deleted_messages_and_records_them_as_vanished(
    store: Container, alice: UUID
) -> None:
    deliver_many(store, 4)
    inbox_id = inbox_of(store, alice)
    store.app.set_flags(alice, inbox_id, [2, 4], ["\\Deleted"], mode="add")
    store.app.set_flags(alice, inbox_id, [3], ["\\Seen"], mode="add")
    modseq_before = mailbox(store, alice, "INBOX").highestmodseq

    expunged, _ = store.app.expunge(alice, inbox_id)

    assert expunged == [2, 4]
    assert [(m.uid, m.flags) for m in messages(store, inbox_id)] == [(1, []), (3, ["\\Seen"])]
    inbox = mailbox(store, alice, "INBOX")
    assert inbox.highestmodseq == modseq_before + 1
    assert store.mailbox_view.vanished_since(inbox_id, 0) == [2, 4]
    assert store.mailbox_view.vanished_since(inbox_id, modseq_before) == [2, 4]
    assert store.mailbox_view.vanished_since(inbox_id, inbox.highestmodseq) == []

    position = log_position(store)
    assert store.app.expunge(alice, inbox_id)[0] == []
    assert log_position(store) == position

    # RFC 9051 §2.3.1.1: expunged UIDs are never reused.
    assert store.app.deliver(["alice@example.test"], message(5)).copies[0].uid == 5


def test_uid_expunge_removes_only_the_named_deleted_messages(store: Container, alice: UUID) -> None:
    deliver_many(store, 3)
    inbox_id = inbox_of(store, alice)
    store.app.set_flags(alice, inbox_id, [1, 3], ["\\Deleted"], mode="add")

    expunged, _ = store.app.expunge(alice, inbox_id, uids=[2, 3])

    assert expunged == [3]
    assert [m.uid for m in messages(store, inbox_id)] == [1, 2]
    assert store.mailbox_view.vanished_since(inbox_id, 0) == [3]


# -- mailboxes -------------------------------------------------------------------------


def test_mailboxes_are_created_renamed_with_their_children_and_deleted(
    store: Container, alice: UUID
) -> None:
    work = store.app.create_mailbox(alice, "Work")
    projects = store.app.create_mailbox(alice, "Work/Projects")
    store.app.create_mailbox(alice, "Workshop")
    with pytest.raises(MailboxExists):
        store.app.create_mailbox(alice, "Work")
    with pytest.raises(InvalidMailboxName):
        store.app.create_mailbox(alice, "Work/*")
    store.app.append(alice, "Work/Projects", message(1))

    store.app.rename_mailbox(alice, "Work", "Jobs")

    store.catch_up()
    names = {row.name: row.mailbox_id for row in store.mailbox_view.mailboxes(alice)}
    assert names["Jobs"] == work
    assert names["Jobs/Projects"] == projects
    assert names["Workshop"] != work
    assert "Work" not in names and "Work/Projects" not in names
    assert store.app.mailbox_id_of(alice, "Jobs/Projects") == projects
    assert [m.uid for m in messages(store, projects)] == [1]

    with pytest.raises(MailboxExists):
        store.app.rename_mailbox(alice, "Workshop", "Jobs")
    with pytest.raises(MailboxProtected):
        store.app.rename_mailbox(alice, "inbox", "Old")
    with pytest.raises(MailboxNotFound):
        store.app.rename_mailbox(alice, "Work", "Other")

    uidvalidity = mailbox(store, alice, "Jobs/Projects").uidvalidity
    store.app.delete_mailbox(alice, "Jobs/Projects")
    store.catch_up()
    assert "Jobs/Projects" not in {row.name for row in store.mailbox_view.mailboxes(alice)}
    assert messages(store, projects) == []
    with pytest.raises(MailboxNotFound):
        store.app.mailbox_id_of(alice, "Jobs/Projects")
    with pytest.raises(MailboxProtected):
        store.app.delete_mailbox(alice, "INBOX")

    # RFC 9051 §2.3.1.1: a recreated name gets a new UIDVALIDITY.
    again = store.app.create_mailbox(alice, "Jobs/Projects")
    assert again != projects
    assert mailbox(store, alice, "Jobs/Projects").uidvalidity != uidvalidity


def test_subscriptions_are_changed_and_shown_in_the_view(store: Container, alice: UUID) -> None:
    store.app.create_mailbox(alice, "Lists")
    assert mailbox(store, alice, "Lists").subscribed is True

    store.app.set_subscription(alice, "Lists", False)
    assert mailbox(store, alice, "Lists").subscribed is False
    position = log_position(store)
    store.app.set_subscription(alice, "Lists", False)
    assert log_position(store) == position

    store.app.set_subscription(alice, "Lists", True)
    assert mailbox(store, alice, "Lists").subscribed is True


# -- reads -----------------------------------------------------------------------------


def test_read_messages_returns_the_exact_bytes_and_records_the_access(
    store: Container, alice: UUID
) -> None:
    raw = (b"Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           b"8-bit \xc3\xa9 and a lone \xff byte\r\n.\r\nno final newline")
    first = store.app.deliver(["alice@example.test"], raw).copies[0]
    second = store.app.deliver(["alice@example.test"], message(2)).copies[0]
    store.catch_up()
    accessed_before = [r for r in store.audit_trail.rows()
                       if r.entry.event_type == "AccessLedger.MessagesAccessed"]

    read = store.app.read_messages(alice, [first.copy_id, second.copy_id], "imap-fetch")

    assert [m.body for m in read] == [raw, message(2)]
    assert [(m.uid, m.copy_id) for m in read] == [(1, first.copy_id), (2, second.copy_id)]
    store.catch_up()
    accessed = [r for r in store.audit_trail.rows()
                if r.entry.event_type == "AccessLedger.MessagesAccessed"]
    assert len(accessed) == len(accessed_before) + 1
    row = accessed[-1].entry
    account = store.app.load(alice)
    assert row.subject == store.app.pseudonym_of(account.subject_id)
    assert (row.actor, row.protocol) == ("admin:test", "test")
    assert "alice" not in repr(row)


def test_reading_another_persons_or_an_expunged_message_is_refused_and_not_recorded(
    store: Container, alice: UUID, bob: UUID
) -> None:
    bobs = store.app.deliver(["bob@example.test"], message(1)).copies[0]
    gone = store.app.deliver(["alice@example.test"], message(2)).copies[0]
    store.app.set_flags(alice, gone.mailbox_id, [1], ["\\Deleted"], mode="add")
    store.app.expunge(alice, gone.mailbox_id)
    position = log_position(store)

    with pytest.raises(MessageNotFound):
        store.app.read_messages(alice, [bobs.copy_id], "imap-fetch")
    with pytest.raises(MessageNotFound):
        store.app.read_messages(alice, [gone.copy_id], "imap-fetch")

    assert log_position(store) == position
