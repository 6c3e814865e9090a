"""Erasure by crypto-shredding (DESIGN §3), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from adapters.bootstrap import Container, build
from domain.application.context import acting
from domain.application.submission import RemoteRecipient
from domain.model.errors import LegalHoldActive, SubjectErased, UnknownAddress
from domain.model.outbound import outbound_message_id_for, outbox_id_for
from tests.storage_scan import (
    blob_contents,
    everything_containing,
    key_store_rows,
    stored_event_states,
)

PASSWORD = "correct horse battery"


def canary() -> str:
    return "zq" + uuid.uuid4().hex[:16] + "canary"


def canary_message(token: str, sender: str) -> bytes:
    return (f"From: Canary Sender <{sender}>\r\nTo: {token}@example.test\r\n"
            f"Subject: report {token}\r\nMessage-ID: <{token}@example.test>\r\n\r\n"
            f"The body mentions {token} twice: {token}.\r\n").encode()


def inbox_of(store: Container, address: str) -> Any:
    account_id = store.app.account_id_for(address)
    store.catch_up()
    return next(m for m in store.mailbox_view.mailboxes(account_id) if m.name == "INBOX")


def test_right_after_delivery_no_event_key_row_or_blob_holds_the_canary(store: Container) -> None:
    token = canary()
    address = f"{token}@example.test"
    store.app.create_account(address, PASSWORD)
    store.app.deliver([address], canary_message(token, f"{token}@sender.test"))
    store.catch_up()
    needle = token.encode()
    states = stored_event_states(store.settings)
    assert len(states) > 10
    assert [s for s in states if needle in s] == []
    keys = key_store_rows(store.settings)
    assert len(keys) == 1
    assert [k for k in keys if needle in k] == []
    blobs = blob_contents(store.settings)
    assert len(blobs) == 1
    assert needle not in blobs[0]
    # The envelope cache is plaintext by design until erasure: it is there now.
    summary = store.mailbox_view.messages(inbox_of(store, address).mailbox_id)[0].summary
    assert summary["subject"] == f"report {token}"


def test_after_erasure_the_canary_is_nowhere_in_the_store(store: Container) -> None:
    token = canary()
    address = f"{token}@example.test"
    store.app.create_account(address, PASSWORD)
    store.app.deliver([address], canary_message(token, f"{token}@sender.test"))
    inbox = inbox_of(store, address)
    store.app.set_flags(store.app.account_id_for(address), inbox.mailbox_id, [1], ["\\Seen"], "add")
    store.app.export_subject(address)
    store.catch_up()
    assert everything_containing(store.settings, token.encode()) != []  # the scan finds it

    receipt = store.app.erase_subject(address, "data subject request 1")

    assert receipt["verification"]["passed"] is True
    assert len(receipt["destroyed_key_ids"]) == 1
    assert len(receipt["blobs_deleted"]) == 1
    store.catch_up()
    assert everything_containing(store.settings, token.encode()) == []
    assert everything_containing(store.settings, token.upper().encode()) == []


def test_erased_aggregates_raise_a_clear_error_and_no_view_row_remains(store: Container) -> None:
    app = store.app
    alice_id = app.create_account("alice@example.test", PASSWORD)
    app.deliver(["alice@example.test"], b"Subject: one\r\n\r\nbody\r\n")
    mailbox_ids = [m.mailbox_id for m in inbox_and_all(store, alice_id)]
    receipt = app.erase_subject("alice@example.test", "asked by the person")

    with pytest.raises(SubjectErased, match="erased"):
        app.load(alice_id)
    for mailbox_id in mailbox_ids:
        app.evict(mailbox_id)
        with pytest.raises(SubjectErased):
            app.repository.get(mailbox_id)
    store.catch_up()
    assert store.mailbox_view.mailboxes(alice_id) == []
    assert store.mailbox_view.accounts() == []
    assert store.mailbox_view.rows_for_streams([str(alice_id)] + [str(m) for m in mailbox_ids]) == 0
    with pytest.raises(UnknownAddress):
        app.account_id_for("alice@example.test")
    # The record of processing survives, under the pseudonym only.
    history = store.audit_trail.rows(receipt["subject_pseudonym"])
    kinds = {row.entry.event_type for row in history}
    assert {"Account.Created", "MessageCopy.Created", "Erased"} <= kinds


def inbox_and_all(store: Container, account_id: Any) -> list[Any]:
    store.catch_up()
    return store.mailbox_view.mailboxes(account_id)


def test_another_recipient_of_the_same_message_still_reads_it(store: Container) -> None:
    app = store.app
    app.create_account("alice@example.test", PASSWORD)
    bob = app.create_account("bob@example.test", PASSWORD)
    raw = b"Subject: shared\r\n\r\nfor both of you\r\n"
    result = app.deliver(["alice@example.test", "bob@example.test"], raw)
    receipt = app.erase_subject("alice@example.test", "request")

    assert receipt["blobs_deleted"] == []
    assert receipt["blobs_kept_for_other_recipients"] == 1
    bob_copy = next(ref for ref in result.copies if ref.account_id == bob)
    assert app.read_messages(bob, [bob_copy.copy_id], purpose="test")[0].body == raw

    second = app.erase_subject("bob@example.test", "request")
    assert len(second["blobs_deleted"]) == 1
    assert blob_contents(store.settings) == []


def test_erasing_twice_returns_the_same_receipt(store: Container) -> None:
    store.app.create_account("carol@example.test", PASSWORD)
    first = store.app.erase_subject("carol@example.test", "request")
    again = store.app.erase_subject("Carol@Example.test", "another reason")
    assert again == first


def test_erasing_an_unknown_address_is_refused(store: Container) -> None:
    with pytest.raises(UnknownAddress):
        store.app.erase_subject("nobody@example.test", "request")


def test_an_erased_address_can_belong_to_a_new_person(store: Container) -> None:
    app = store.app
    old = app.create_account("dave@example.test", PASSWORD)
    app.erase_subject("dave@example.test", "request")
    new = app.create_account("dave@example.test", PASSWORD)
    assert new != old
    app.deliver(["dave@example.test"], b"Subject: welcome\r\n\r\nhi\r\n")
    assert app.authenticate("dave@example.test", PASSWORD) == new
    store.catch_up()
    assert [a.address for a in store.mailbox_view.accounts()] == ["dave@example.test"]


def test_a_legal_hold_blocks_erasure_with_a_recorded_reason(store: Container) -> None:
    app = store.app
    app.create_account("erin@example.test", PASSWORD)
    app.place_legal_hold("erin@example.test", "litigation 2026-17")
    with pytest.raises(LegalHoldActive, match="litigation 2026-17"):
        app.erase_subject("erin@example.test", "request")
    store.catch_up()
    assert any(r.entry.event_type == "ErasureRequest.Blocked" for r in store.audit_trail.rows())
    assert app.authenticate("erin@example.test", PASSWORD)
    app.release_legal_hold("erin@example.test")
    assert app.erase_subject("erin@example.test", "request")["verification"]["passed"]


class FailOnceKeys:
    """A key store that fails the first shred, as a crash between steps would."""

    def __init__(self, real: Any) -> None:
        self.real, self.failed = real, False

    def shred_subject(self, subject_id: str, erasure_ref: str) -> list[str]:
        if not self.failed:
            self.failed = True
            raise OSError("simulated crash before shredding")
        return self.real.shred_subject(subject_id, erasure_ref)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_an_interrupted_erasure_resumes_where_it_stopped(store: Container) -> None:
    app = store.app
    app.create_account("frank@example.test", PASSWORD)
    app.deliver(["frank@example.test"], b"Subject: x\r\n\r\ny\r\n")
    real = app.ports.keys
    app.ports.keys = FailOnceKeys(real)
    with pytest.raises(OSError, match="simulated crash"):
        app.erase_subject("frank@example.test", "request")
    app.ports.keys = real
    receipt = app.erase_subject("frank@example.test", "request")
    assert receipt["verification"]["passed"]
    store.catch_up()
    markers = [r for r in store.audit_trail.rows(receipt["subject_pseudonym"])
               if r.entry.event_type == "ErasureRequest.MarkersWritten"]
    assert len(markers) == 1  # resumed, not restarted


def test_a_second_process_sees_the_person_erased(settings: Any) -> None:
    first = build(settings)
    second = build(settings, run_projections=False)
    try:
        with acting("admin:test"):
            first.app.add_domain("example.test")
            first.app.create_account("gina@example.test", PASSWORD)
            assert second.app.authenticate("gina@example.test", PASSWORD)
            first.app.erase_subject("gina@example.test", "request")
            with pytest.raises(Exception, match="authentication failed"):
                second.app.authenticate("gina@example.test", PASSWORD)
            with pytest.raises(UnknownAddress):
                second.app.deliver(["gina@example.test"], b"Subject: late\r\n\r\nx\r\n")
    finally:
        second.close()
        first.close()


def test_messages_arriving_during_an_erasure_are_marked_or_refused(store: Container) -> None:
    """Deliveries race the erasure from another thread: each either lands before the
    markers (and is erased with the rest) or is refused; none survives it."""
    import threading

    app = store.app
    app.create_account("hank@example.test", PASSWORD)
    for n in range(20):
        app.deliver(["hank@example.test"], f"Subject: before {n}\r\n\r\nx\r\n".encode())
    stop = threading.Event()
    outcomes: list[str] = []

    def deliver_until_stopped() -> None:
        with acting("admin:test"):
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    app.deliver(["hank@example.test"], f"Subject: during {n}\r\n\r\nx\r\n".encode())
                    outcomes.append("delivered")
                except (SubjectErased, UnknownAddress):
                    outcomes.append("refused")

    racer = threading.Thread(target=deliver_until_stopped)
    racer.start()
    try:
        receipt = app.erase_subject("hank@example.test", "request")
    finally:
        stop.set()
        racer.join(timeout=30)
    assert receipt["verification"]["passed"]
    assert "refused" in outcomes  # the racer kept going past the markers
    store.catch_up()
    assert store.mailbox_view.accounts() == []
    assert blob_contents(store.settings) == []


def submit_to_local_and_remote(store: Container, sender: str, local: str, token: str) -> Any:
    return store.app.submit(store.app.account_id_for(sender), sender, [local],
                            [RemoteRecipient(f"{token}@far.test", ["FAILURE"], None)],
                            canary_message(token, sender), ret="HDRS", envid=token)


def queued_body(store: Container, sender: str) -> bytes:
    outbox_id = outbox_id_for(store.app.account_id_for(sender))
    message = store.app.repository.get(outbound_message_id_for(outbox_id, 1))
    return store.app.ports.blobs.get(message.blob_id, message.data_key)


def test_erasing_a_local_recipient_leaves_the_senders_queued_message_whole(store: Container) -> None:
    token = canary()
    store.app.create_account("alice@example.test", PASSWORD)
    store.app.create_account("bob@example.test", PASSWORD)
    submit_to_local_and_remote(store, "alice@example.test", "bob@example.test", token)

    receipt = store.app.erase_subject("bob@example.test", "request")

    assert len(receipt["blobs_deleted"]) == 1  # Bob's copy's body, not Alice's queued one
    assert queued_body(store, "alice@example.test") == canary_message(token, "alice@example.test")


def test_erasing_a_sender_shreds_their_queued_messages_and_keeps_the_local_recipients_copy(
    store: Container,
) -> None:
    token = canary()
    store.app.create_account("alice@example.test", PASSWORD)
    store.app.create_account("bob@example.test", PASSWORD)
    submit_to_local_and_remote(store, "alice@example.test", "bob@example.test", token)
    outbox_id = outbox_id_for(store.app.account_id_for("alice@example.test"))

    receipt = store.app.erase_subject("alice@example.test", "request")

    assert receipt["verification"]["passed"] is True
    assert len(receipt["blobs_deleted"]) == 1  # the queued message's own body
    for stream_id in (outbox_id, outbound_message_id_for(outbox_id, 1)):
        store.app.evict(stream_id)
        with pytest.raises(SubjectErased):
            store.app.repository.get(stream_id)
    bob = store.app.account_for("bob@example.test")
    inbox = store.app.repository.get(bob.mailbox_id("INBOX"))
    [copy] = store.app.live_copies(inbox)
    sent = canary_message(token, "alice@example.test")
    assert store.app.ports.blobs.get(copy.blob_id, copy.data_key) == sent
    # The remote recipient's address was the sender's data: only Bob's copy still holds the token.
    store.catch_up()
    holders = everything_containing(store.settings, token.encode())
    assert holders and all("mailbox_view" in where or "blob" in where for where in holders), holders
