"""Account use cases on a real store (SQLite and PostgreSQL): creation with the default
mailboxes, refusals, authentication, passwords and legal holds."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.bootstrap import Container
from domain.application.accounts import check_password_policy
from domain.model.errors import (
    AddressTaken,
    AuthenticationFailed,
    DomainExists,
    InvalidAddress,
    LegalHoldActive,
    SubjectErased,
    UnknownAddress,
    UnknownDomain,
    WeakPassword,
)

PASSWORD = "correct horse battery"


def log_position(store: Container) -> int:
    return store.app.recorder.max_notification_id() or 0


def test_a_new_account_has_inbox_and_the_special_use_mailboxes_in_the_view(
    store: Container,
) -> None:
    account_id = store.app.create_account("Alice@Example.TEST", PASSWORD)
    store.catch_up()

    mailboxes = store.mailbox_view.mailboxes(account_id)
    assert {m.name: m.special_use for m in mailboxes} == {
        "INBOX": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
    for mailbox in mailboxes:
        assert mailbox.account_id == account_id
        assert (mailbox.uidnext, mailbox.highestmodseq, mailbox.messages) == (1, 1, 0)
        assert mailbox.subscribed is True
        assert mailbox.uidvalidity > 0
    assert len({m.mailbox_id for m in mailboxes}) == 6

    accounts = store.mailbox_view.accounts()
    assert [(a.account_id, a.address) for a in accounts] == [(account_id, "alice@example.test")]
    assert store.app.account_for("ALICE@example.test").id == account_id


def test_a_duplicate_address_or_domain_is_refused(store: Container) -> None:
    store.app.create_account("alice@example.test", PASSWORD)
    before = log_position(store)

    with pytest.raises(AddressTaken, match="alice@example.test"):
        store.app.create_account("ALICE@Example.Test", "another password")

    assert log_position(store) == before
    store.catch_up()
    assert [a.address for a in store.mailbox_view.accounts()] == ["alice@example.test"]

    with pytest.raises(DomainExists):
        store.app.add_domain("EXAMPLE.test.")
    store.app.add_domain("second.test")
    assert store.app.list_domains() == ["example.test", "second.test"]


def test_an_unknown_domain_or_an_invalid_address_is_refused_before_anything_is_written(
    store: Container,
) -> None:
    before = log_position(store)

    with pytest.raises(UnknownDomain, match="elsewhere.test"):
        store.app.create_account("alice@elsewhere.test", PASSWORD)
    with pytest.raises(InvalidAddress):
        store.app.create_account("alice smith@example.test", PASSWORD)

    assert log_position(store) == before
    with pytest.raises(UnknownAddress):
        store.app.account_id_for("alice@elsewhere.test")


def test_wrong_password_and_unknown_user_fail_identically(store: Container) -> None:
    account_id = store.app.create_account("alice@example.test", PASSWORD)
    assert store.app.authenticate("alice@example.test", PASSWORD) == account_id
    assert store.app.authenticate("Alice@EXAMPLE.test", PASSWORD) == account_id

    with pytest.raises(AuthenticationFailed) as wrong_password:
        store.app.authenticate("alice@example.test", PASSWORD + "!")
    with pytest.raises(AuthenticationFailed) as unknown_user:
        store.app.authenticate("mallory@example.test", PASSWORD)
    with pytest.raises(AuthenticationFailed) as malformed_user:
        store.app.authenticate("not an address", PASSWORD)

    assert str(wrong_password.value) == str(unknown_user.value) == str(malformed_user.value)
    assert str(wrong_password.value) == "authentication failed"
    assert type(wrong_password.value) is type(unknown_user.value) is AuthenticationFailed


def test_a_changed_password_replaces_the_old_one(store: Container) -> None:
    account_id = store.app.create_account("alice@example.test", PASSWORD)

    store.app.change_password("alice@example.test", "a brand new secret")

    assert store.app.authenticate("alice@example.test", "a brand new secret") == account_id
    with pytest.raises(AuthenticationFailed):
        store.app.authenticate("alice@example.test", PASSWORD)

    # A weak new password, or an unknown address, changes nothing.
    before = log_position(store)
    with pytest.raises(WeakPassword):
        store.app.change_password("alice@example.test", "short")
    with pytest.raises(UnknownAddress):
        store.app.change_password("nobody@example.test", "a brand new secret")
    assert log_position(store) == before
    assert store.app.authenticate("alice@example.test", "a brand new secret") == account_id


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("", "shorter than 8"),
        ("short", "shorter than 8"),
        ("1234567", "shorter than 8"),
        ("x" * 1025, "longer than 1024"),
        ("eight\x00chars", "control characters"),
        ("tab\tinside!", "control characters"),
    ],
)
def test_the_password_policy_refuses_weak_passwords(password: str, why: str) -> None:
    with pytest.raises(WeakPassword, match=why):
        check_password_policy(password)


@pytest.mark.parametrize("password", ["12345678", "x" * 1024, "pässwörd ok"])
def test_the_password_policy_accepts_reasonable_passwords(password: str) -> None:
    check_password_policy(password)


def test_an_account_with_a_weak_password_is_refused(store: Container) -> None:
    before = log_position(store)
    with pytest.raises(WeakPassword, match="shorter than 8"):
        store.app.create_account("alice@example.test", "short")
    assert log_position(store) == before
    with pytest.raises(UnknownAddress):
        store.app.account_id_for("alice@example.test")


def test_a_legal_hold_blocks_erasure_until_it_is_released(store: Container) -> None:
    account_id = store.app.create_account("alice@example.test", PASSWORD)
    store.app.deliver(["alice@example.test"], b"Subject: kept\r\n\r\nevidence\r\n")
    with pytest.raises(ValueError, match="reason"):
        store.app.place_legal_hold("alice@example.test", "   ")
    assert store.app.legal_holds("alice@example.test") == []
    case_id = store.app.place_legal_hold("alice@example.test", "  litigation 2024-17  ")

    with pytest.raises(LegalHoldActive, match="litigation 2024-17"):
        store.app.erase_subject("alice@example.test", "user asked")

    # Nothing was erased: the account still logs in and the mail is still there.
    assert store.app.authenticate("alice@example.test", PASSWORD) == account_id
    store.catch_up()
    inbox = store.app.account_for("alice@example.test").mailbox_id("INBOX")
    assert len(store.mailbox_view.messages(inbox)) == 1
    [hold] = store.app.legal_holds("alice@example.test")
    assert (hold["case_id"], hold["reason"], hold["scope"]) == (case_id, "litigation 2024-17", "all")

    assert store.app.release_legal_hold("alice@example.test") == 1
    receipt = store.app.erase_subject("alice@example.test", "user asked")

    assert receipt["verification"]["passed"] is True
    assert receipt["destroyed_key_ids"]
    assert receipt["reason"] == "user asked"
    with pytest.raises(AuthenticationFailed):
        store.app.authenticate("alice@example.test", PASSWORD)
    with pytest.raises(UnknownAddress):
        store.app.account_id_for("alice@example.test")
    with pytest.raises(SubjectErased):
        store.app.load(account_id)
    store.catch_up()
    assert store.mailbox_view.mailboxes(account_id) == []
    assert store.mailbox_view.messages(inbox) == []
    event_types = [row.entry.event_type for row in store.audit_trail.rows()]
    assert "ErasureRequest.Blocked" in event_types
    assert "ErasureRequest.Completed" in event_types


def test_routing_sees_this_processs_changes_at_once_and_another_processs_within_the_cache_time(
    store: Container, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from adapters.bootstrap import build
    from domain.application import accounts
    from domain.application.context import acting

    monkeypatch.setattr(accounts, "ROUTE_CACHE_SECONDS", 2.0)
    alice = store.app.create_account("alice@example.test", "correct horse battery")
    with pytest.raises(UnknownAddress):
        store.app.delivery_account_id("postmaster@example.test")  # remembered as unknown
    store.app.add_alias("alice@example.test", "postmaster@example.test")
    assert store.app.delivery_account_id("postmaster@example.test") == alice  # at once

    other = build(settings, run_projections=False)
    try:
        with pytest.raises(UnknownAddress):
            store.app.delivery_account_id("abuse@example.test")
        assert not store.app.is_local_domain("second.test")
        with acting("admin:test", protocol="test", purpose="testing"):
            other.app.add_alias("alice@example.test", "abuse@example.test")
            other.app.add_domain("second.test")
        # This process still gives its remembered answers ...
        with pytest.raises(UnknownAddress):
            store.app.delivery_account_id("abuse@example.test")
        assert not store.app.is_local_domain("second.test")
    finally:
        other.close()
    # ... until they expire; then the other process's change is seen.
    time.sleep(accounts.ROUTE_CACHE_SECONDS)
    assert store.app.delivery_account_id("abuse@example.test") == alice
    assert store.app.is_local_domain("second.test")
