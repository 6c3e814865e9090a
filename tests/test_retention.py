"""Retention policies and legal holds (issue 7, GDPR Art. 5(1)(e) and 17(3)(e)), on
SQLite and PostgreSQL: a run deletes exactly what the policy says and nothing under a
hold; rules and holds survive a restart and are erased with the person.

Time is an explicit ``now`` handed to the run, and internal dates are set at APPEND, so
no test waits for days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from adapters.bootstrap import Container, build
from adapters.config import Settings
from domain.application.context import acting
from domain.model.errors import (
    InvalidLegalHold,
    InvalidRetentionRule,
    LegalHoldActive,
    LegalHoldExists,
    MailboxNotFound,
    SubjectErased,
    UnknownAddress,
)
from domain.model.legal_hold import legal_hold_id_for
from domain.model.retention import retention_policy_id_for
from tests.conftest import drop_schemas, make_settings
from tests.storage_scan import everything_containing

PASSWORD = "correct horse battery"
ALICE = "alice@example.test"
BOB = "bob@example.test"
#: The run's "now"; every message's internal date is set relative to it.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def message(tag: str) -> bytes:
    """Every test message has the same length, so sizes can be counted."""
    tag = tag.ljust(16, "x")
    return f"Subject: {tag}\r\nMessage-ID: <{tag}@example.test>\r\n\r\nbody of {tag}\r\n".encode()


def put(store: Container, address: str, mailbox: str, age_days: float, tag: str) -> int:
    """Append a message dated ``age_days`` before NOW; return its UID."""
    account_id = store.app.account_id_for(address)
    ref, _position = store.app.append(account_id, mailbox, message(tag),
                                      internal_date=NOW - timedelta(days=age_days))
    return ref.uid


def uids(store: Container, address: str, mailbox: str) -> list[int]:
    store.catch_up()
    account_id = store.app.account_id_for(address)
    return [row.uid for row in store.mailbox_view.messages(store.app.mailbox_id_of(account_id, mailbox))]


def used_bytes(store: Container, address: str) -> int:
    store.catch_up()
    storage = store.mailbox_view.storage_of(store.app.account_id_for(address))
    assert storage is not None
    return storage[0]


def fill(store: Container) -> dict[str, int]:
    """Alice: Trash 40 and 10 days old, INBOX 40 and 800, Archive 800; Bob: INBOX 800."""
    for address in (ALICE, BOB):
        store.app.create_account(address, PASSWORD)
    return {
        "trash_old": put(store, ALICE, "Trash", 40, "trash-old"),
        "trash_new": put(store, ALICE, "Trash", 10, "trash-new"),
        "inbox_recent": put(store, ALICE, "INBOX", 40, "inbox-recent"),
        "inbox_ancient": put(store, ALICE, "INBOX", 800, "inbox-ancient"),
        "archive_ancient": put(store, ALICE, "Archive", 800, "archive-ancient"),
        "bob_ancient": put(store, BOB, "INBOX", 800, "bob-ancient"),
    }


def alice_rules(store: Container) -> None:
    """Trash after 30 days, everything after 2 years, but Archive after 10 years."""
    store.app.set_retention(ALICE, "Trash", 30)
    store.app.set_retention(ALICE, None, 730)
    store.app.set_retention(ALICE, "Archive", 3650)


def test_a_run_deletes_exactly_what_the_policy_says_and_a_second_run_nothing(store: Container) -> None:
    ids = fill(store)
    alice_rules(store)
    size = len(message("trash-old"))  # every test message has the same length
    assert used_bytes(store, ALICE) == 5 * size

    assert store.app.apply_retention(NOW) == {"accounts": 1, "deleted": 2, "held": 0}

    assert uids(store, ALICE, "Trash") == [ids["trash_new"]]  # 40 > 30 days gone, 10 kept
    assert uids(store, ALICE, "INBOX") == [ids["inbox_recent"]]  # 800 > 730 gone, 40 kept
    assert uids(store, ALICE, "Archive") == [ids["archive_ancient"]]  # its own 10-year rule wins
    assert uids(store, BOB, "INBOX") == [ids["bob_ancient"]]  # no policy, nothing deleted
    assert used_bytes(store, ALICE) == 3 * size  # the quota follows
    # The deletions are ordinary expunges, recorded under the retention actor and purpose.
    store.catch_up()
    pseudonym = store.app.subject_pseudonym_for(ALICE)
    expunges = [row.entry for row in store.audit_trail.rows(pseudonym)
                if row.entry.event_type == "MessageCopy.Expunged"]
    assert len(expunges) == 2
    assert {(e.actor, e.purpose) for e in expunges} == {("retention", "retention")}

    # Idempotent: nothing is due any more, so nothing is written.
    before = store.app.log_position()
    assert store.app.apply_retention(NOW) == {"accounts": 1, "deleted": 0, "held": 0}
    assert store.app.log_position() == before
    # A month later the 10-day-old Trash message is due too.
    later = NOW + timedelta(days=25)
    assert store.app.apply_retention(later) == {"accounts": 1, "deleted": 1, "held": 0}
    assert uids(store, ALICE, "Trash") == []


def test_no_policy_no_run_and_no_events(store: Container) -> None:
    fill(store)
    before = store.app.log_position()
    assert store.app.apply_retention(NOW) == {"accounts": 0, "deleted": 0, "held": 0}
    assert store.app.log_position() == before
    assert len(uids(store, ALICE, "INBOX")) == 2


def test_an_account_wide_hold_keeps_everything_until_released(store: Container) -> None:
    ids = fill(store)
    alice_rules(store)
    case_id = store.app.place_legal_hold(ALICE, "litigation 2026-17")
    assert case_id.startswith("case-")
    before = store.app.log_position()

    assert store.app.apply_retention(NOW) == {"accounts": 1, "deleted": 0, "held": 2}
    assert store.app.log_position() == before
    assert uids(store, ALICE, "Trash") == [ids["trash_old"], ids["trash_new"]]
    assert uids(store, ALICE, "INBOX") == [ids["inbox_recent"], ids["inbox_ancient"]]

    assert store.app.release_legal_hold(ALICE, case_id) == 1
    assert store.app.release_legal_hold(ALICE, case_id) == 0  # idempotent
    assert store.app.apply_retention(NOW) == {"accounts": 1, "deleted": 2, "held": 0}
    assert uids(store, ALICE, "Trash") == [ids["trash_new"]]
    assert uids(store, ALICE, "INBOX") == [ids["inbox_recent"]]


def test_a_mailbox_hold_keeps_that_mailbox_only_and_follows_a_rename(store: Container) -> None:
    ids = fill(store)
    account_id = store.app.account_id_for(ALICE)
    store.app.create_mailbox(account_id, "Evidence")
    evidence = put(store, ALICE, "Evidence", 900, "evidence")
    alice_rules(store)
    store.app.place_legal_hold(ALICE, "case on the Trash", case_id="LIT-7", scope="Trash")
    store.app.place_legal_hold(ALICE, "case on Evidence", case_id="LIT-8", scope="Evidence")
    store.app.rename_mailbox(account_id, "Evidence", "Evidence-2026")

    assert store.app.apply_retention(NOW) == {"accounts": 1, "deleted": 1, "held": 2}
    assert uids(store, ALICE, "Trash") == [ids["trash_old"], ids["trash_new"]]  # held
    assert uids(store, ALICE, "Evidence-2026") == [evidence]  # held under its new name
    assert uids(store, ALICE, "INBOX") == [ids["inbox_recent"]]  # not held: deleted
    scopes = {row["case_id"]: row["scope"] for row in store.app.legal_holds(ALICE)}
    assert scopes == {"LIT-7": "Trash", "LIT-8": "Evidence-2026"}

    assert store.app.release_legal_hold(ALICE) == 2
    assert store.app.legal_holds(ALICE) == []
    assert store.app.apply_retention(NOW) == {"accounts": 1, "deleted": 2, "held": 0}
    assert uids(store, ALICE, "Trash") == [ids["trash_new"]]
    assert uids(store, ALICE, "Evidence-2026") == []


def test_a_hold_placed_before_case_ids_still_holds_and_is_released_as_legacy(store: Container) -> None:
    """Old logs hold ``Account.LegalHoldPlaced`` events: they still block retention and
    erasure, list as case ``legacy``, and are released like any other hold."""
    ids = fill(store)
    alice_rules(store)
    account = store.app.account_for(ALICE)
    account.place_legal_hold("old case 3", "2024-01-01T00:00:00.000000Z")
    store.app.save_with_envelope(account)

    assert store.app.legal_holds(ALICE) == [{"address": ALICE, "case_id": "legacy", "reason": "old case 3",
                                            "scope": "all", "placed_at": "2024-01-01T00:00:00.000000Z"}]
    assert store.app.apply_retention(NOW) == {"accounts": 1, "deleted": 0, "held": 2}
    with pytest.raises(LegalHoldActive, match="old case 3"):
        store.app.erase_subject(ALICE, "Art. 17")
    assert store.app.release_legal_hold(ALICE, "legacy") == 1
    assert store.app.apply_retention(NOW)["deleted"] == 2
    assert uids(store, ALICE, "Trash") == [ids["trash_new"]]


def test_holds_are_listed_refused_when_malformed_and_a_case_id_is_placed_once(store: Container) -> None:
    store.app.create_account(ALICE, PASSWORD)
    store.app.create_account(BOB, PASSWORD)
    with pytest.raises(ValueError, match="reason"):
        store.app.place_legal_hold(ALICE, "  ")
    with pytest.raises(InvalidLegalHold):
        store.app.place_legal_hold(ALICE, "x", case_id="has spaces")
    with pytest.raises(InvalidLegalHold):
        store.app.place_legal_hold(ALICE, "x", case_id="legacy")
    with pytest.raises(MailboxNotFound):
        store.app.place_legal_hold(ALICE, "x", scope="Nowhere")
    with pytest.raises(UnknownAddress):
        store.app.place_legal_hold("nobody@example.test", "x")
    assert store.app.legal_holds() == []

    assert store.app.place_legal_hold(ALICE, "court order 1", case_id="C-1") == "C-1"
    with pytest.raises(LegalHoldExists, match="C-1"):
        store.app.place_legal_hold(ALICE, "another reason", case_id="C-1")
    store.app.place_legal_hold(BOB, "court order 2", case_id="C-1", scope="INBOX")  # per account
    rows = store.app.legal_holds()
    assert [(r["address"], r["case_id"], r["reason"], r["scope"]) for r in rows] == [
        (ALICE, "C-1", "court order 1", "all"), (BOB, "C-1", "court order 2", "INBOX")]
    assert all(r["placed_at"] for r in rows)
    assert [r["address"] for r in store.app.legal_holds(BOB)] == [BOB]
    assert store.app.release_legal_hold(ALICE, "C-2") == 0
    assert store.app.release_legal_hold(ALICE) == 1
    assert [r["address"] for r in store.app.legal_holds()] == [BOB]


def test_rules_are_validated_listed_and_cleared(store: Container) -> None:
    store.app.create_account(ALICE, PASSWORD)
    for days in (0, -1, 36501, True, 1.5, "30"):
        with pytest.raises(InvalidRetentionRule):
            store.app.set_retention(ALICE, "Trash", days)  # type: ignore[arg-type]
    with pytest.raises(MailboxNotFound):
        store.app.set_retention(ALICE, "Nowhere", 30)
    with pytest.raises(UnknownAddress):
        store.app.set_retention("nobody@example.test", None, 30)
    assert store.app.retention_policies() == []

    store.app.set_retention(ALICE, "Trash", 30)
    store.app.set_retention(ALICE, None, 730)
    before = store.app.log_position()
    store.app.set_retention(ALICE, "Trash", 30)  # the same rule again: nothing recorded
    assert store.app.log_position() == before
    store.app.set_retention(ALICE, "Trash", 60)
    rules = store.app.retention_policies(ALICE)
    assert [(r["address"], r["mailbox"], r["max_age_days"]) for r in rules] == [
        (ALICE, None, 730), (ALICE, "Trash", 60)]
    assert all(r["set_at"] for r in rules)
    assert store.app.retention_policies() == rules

    assert store.app.clear_retention(ALICE, "Trash") is True
    assert store.app.clear_retention(ALICE, "Trash") is False
    assert [r["mailbox"] for r in store.app.retention_policies()] == [None]
    assert store.app.clear_retention(ALICE, None) is True
    assert store.app.retention_policies() == []
    assert store.app.apply_retention(NOW) == {"accounts": 0, "deleted": 0, "held": 0}


def test_rules_and_holds_survive_a_restart(tmp_path: Any, backend: str) -> None:
    settings: Settings = make_settings(tmp_path / "data", backend)
    try:
        first = build(settings)
        try:
            with acting("admin:test", protocol="test", purpose="testing"):
                first.app.add_domain("example.test")
                fill(first)
                alice_rules(first)
                first.app.place_legal_hold(ALICE, "case 5", case_id="K-5", scope="Trash")
                rules, holds = first.app.retention_policies(), first.app.legal_holds()
        finally:
            first.close()
        second = build(settings)
        try:
            assert second.app.retention_policies() == rules and len(rules) == 3
            assert second.app.legal_holds() == holds and len(holds) == 1
            with acting("admin:test", protocol="test", purpose="testing"):
                assert second.app.apply_retention(NOW) == {"accounts": 1, "deleted": 1, "held": 1}
        finally:
            second.close()
    finally:
        drop_schemas(settings)


def test_erasure_is_blocked_by_any_hold_and_then_shreds_rules_and_holds(store: Container) -> None:
    token = "zq" + UUID(int=0x5EED).hex[-12:] + "retcanary"
    store.app.create_account(ALICE, PASSWORD)
    account_id = store.app.account_id_for(ALICE)
    mailbox = f"Case {token}"
    store.app.create_mailbox(account_id, mailbox)
    store.app.set_retention(ALICE, mailbox, 90)
    store.app.place_legal_hold(ALICE, f"order about {token}", case_id="M-1", scope=mailbox)
    with pytest.raises(LegalHoldActive, match=f"order about {token}"):  # a mailbox hold blocks too
        store.app.erase_subject(ALICE, "Art. 17")
    assert store.app.authenticate(ALICE, PASSWORD) == account_id
    store.catch_up()
    assert any(r.entry.event_type == "ErasureRequest.Blocked" for r in store.audit_trail.rows())
    assert everything_containing(store.settings, token.encode()) != []  # the scan finds it

    assert store.app.release_legal_hold(ALICE) == 1
    receipt = store.app.erase_subject(ALICE, "Art. 17")

    assert receipt["verification"]["passed"] is True
    for stream_id in (retention_policy_id_for(account_id), legal_hold_id_for(account_id)):
        store.app.evict(stream_id)
        with pytest.raises(SubjectErased):
            store.app.repository.get(stream_id)
    assert store.app.retention_policies() == [] and store.app.legal_holds() == []
    assert store.app.apply_retention(NOW) == {"accounts": 0, "deleted": 0, "held": 0}
    store.catch_up()
    assert everything_containing(store.settings, token.encode()) == []
