"""The consent ledger (DESIGN §4) and RFC 8058 one-click unsubscribe, on SQLite and
PostgreSQL: use cases, subjects and erasure, tokens, the HTTP endpoint, the command."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bootstrap import Container, unsubscribe_tokens
from adapters.config import Settings
from adapters.crypto.unsubscribe_tokens import MAX_TOKEN_CHARS, UnsubscribeTokens
from api.main import create_app
from domain.model.base import ShreddedEvent
from domain.model.consent import ConsentRecord, consent_record_id_for
from domain.model.errors import (
    InvalidAddress,
    InvalidLegalBasis,
    InvalidPurpose,
    SubjectErased,
    UnknownConsentRecord,
)
from tests.storage_scan import key_store_rows, stored_event_states
from tests.test_cli import assert_one_line_error, ledgermail

PASSWORD = "correct horse battery"
ALICE = "alice@example.test"
CAROL = "carol@elsewhere.test"


def record_of(store: Container, address: str) -> ConsentRecord:
    return store.app.repository.get(store.app.consent_record_id(address))


def version_of(store: Container, address: str) -> int:
    return record_of(store, address).version


# -- the ledger ----------------------------------------------------------------------------


def test_consent_given_is_valid_until_withdrawn(store: Container) -> None:
    app = store.app
    assert app.has_consent(CAROL, "newsletter") is False
    app.give_consent(CAROL, "newsletter", source="api")
    assert app.has_consent(CAROL, "newsletter") is True
    assert app.has_consent(CAROL, "offers") is False
    assert version_of(store, CAROL) == 2  # Opened, ConsentGiven

    assert app.withdraw_consent(CAROL, "newsletter", source="cli") is True
    assert app.has_consent(CAROL, "newsletter") is False
    assert version_of(store, CAROL) == 3
    [row] = app.consents_of(CAROL)
    assert (row["purpose"], row["state"], row["basis"], row["source"]) == (
        "newsletter", "withdrawn", "consent", "cli")
    assert row["at"].endswith("Z")


def test_withdrawing_twice_records_one_event_and_reports_no_change(store: Container) -> None:
    app = store.app
    app.give_consent(CAROL, "newsletter", source="api")
    assert app.withdraw_consent(CAROL, "newsletter", source="cli") is True
    position = app.log_position()
    assert app.withdraw_consent(CAROL, "newsletter", source="cli") is False
    assert app.withdraw_consent(CAROL, "never-given", source="cli") is False
    assert app.withdraw_consent("nobody@elsewhere.test", "newsletter", source="cli") is False
    assert app.log_position() == position
    assert version_of(store, CAROL) == 3


def test_giving_again_renews_consent_and_the_latest_change_decides(store: Container) -> None:
    app = store.app
    app.give_consent(CAROL, "newsletter", source="import")
    app.withdraw_consent(CAROL, "newsletter", source="one-click")
    app.give_consent(CAROL, "newsletter", basis="legitimate-interests", source="cli")
    assert app.has_consent(CAROL, "newsletter") is True
    assert version_of(store, CAROL) == 4
    app.give_consent(CAROL, "list.announce", source="api")
    rows = app.consents_of(CAROL)
    assert [(r["purpose"], r["state"], r["basis"], r["source"]) for r in rows] == [
        ("list.announce", "given", "consent", "api"),
        ("newsletter", "given", "legitimate-interests", "cli"),
    ]


def test_addresses_are_matched_case_insensitively(store: Container) -> None:
    store.app.give_consent("Carol@Elsewhere.TEST", "newsletter", source="api")
    assert store.app.has_consent(CAROL, "newsletter") is True
    assert store.app.consent_record_id("CAROL@elsewhere.test") == store.app.consent_record_id(CAROL)


@pytest.mark.parametrize("purpose", ["", "Newsletter", "-news", ".news", "news letter", "a" * 65,
                                     "news\n", "né", "news/letter"])
def test_a_bad_purpose_is_refused_and_nothing_is_recorded(store: Container, purpose: str) -> None:
    position = store.app.log_position()
    with pytest.raises(InvalidPurpose):
        store.app.give_consent(CAROL, purpose, source="cli")
    with pytest.raises(InvalidPurpose):
        store.app.withdraw_consent(CAROL, purpose, source="cli")
    with pytest.raises(InvalidPurpose):
        store.app.has_consent(CAROL, purpose)
    assert store.app.log_position() == position


def test_a_bad_basis_or_address_is_refused_and_nothing_is_recorded(store: Container) -> None:
    position = store.app.log_position()
    with pytest.raises(InvalidLegalBasis):
        store.app.give_consent(CAROL, "newsletter", basis="because", source="cli")
    with pytest.raises(InvalidAddress):
        store.app.give_consent("not an address", "newsletter", source="cli")
    assert store.app.has_consent("not an address", "newsletter") is False
    assert store.app.log_position() == position
    assert store.app.consents_of(CAROL) == []


# -- subjects --------------------------------------------------------------------------------


def test_a_local_accounts_consent_is_sealed_under_the_accounts_own_subject(store: Container) -> None:
    app = store.app
    app.create_account(ALICE, PASSWORD)
    app.add_alias(ALICE, "ally@example.test")
    subject = app.account_for(ALICE).subject_id
    keys_before = len(key_store_rows(store.settings))
    app.give_consent(ALICE, "newsletter", source="cli")
    app.give_consent("ally@example.test", "newsletter", source="cli")
    # RFC 5233 sub-address: the account's own record, not a record of its own.
    app.give_consent("alice+lists@example.test", "list.announce", source="cli")

    assert record_of(store, ALICE).subject_id == subject
    assert record_of(store, "ally@example.test").subject_id == subject
    assert app.consent_record_id("alice+lists@example.test") == app.consent_record_id(ALICE)
    assert app.has_consent(ALICE, "list.announce") is True
    assert len(key_store_rows(store.settings)) == keys_before  # no new key: the account's
    assert sorted(r.hex for r in app.consent_record_ids_of(app.account_for(ALICE))) == sorted(
        [app.consent_record_id(ALICE).hex, app.consent_record_id("ally@example.test").hex])
    for event in app.events.get(app.consent_record_id(ALICE)):
        assert event.subject_id == subject


def test_an_external_correspondent_gets_a_new_random_subject_and_key(store: Container) -> None:
    app = store.app
    app.create_account(ALICE, PASSWORD)
    keys_before = len(key_store_rows(store.settings))
    app.give_consent(CAROL, "newsletter", source="api")
    app.give_consent("dave@elsewhere.test", "newsletter", source="api")
    carol, dave = record_of(store, CAROL), record_of(store, "dave@elsewhere.test")
    assert len({carol.subject_id, dave.subject_id, app.account_for(ALICE).subject_id}) == 3
    assert len(carol.subject_id) == 32 and int(carol.subject_id, 16) >= 0
    assert len(key_store_rows(store.settings)) == keys_before + 2
    assert app.consent_record_ids_of(app.account_for(ALICE)) == []


def test_the_record_id_and_stored_events_reveal_no_address(store: Container) -> None:
    token = "zq" + uuid.uuid4().hex[:12]
    address = f"{token}@elsewhere.test"
    store.app.give_consent(address, "newsletter", source="api")
    record_id = store.app.consent_record_id(address)
    index_id = store.app.ports.pseudonyms.address_index_id(address)
    assert record_id == consent_record_id_for(index_id)
    assert token not in str(record_id)
    states = stored_event_states(store.settings)
    assert len(states) >= 2
    assert [s for s in states if token.encode() in s] == []


# -- erasure -----------------------------------------------------------------------------------


def test_erasing_the_account_marks_and_shreds_its_consent_records(store: Container) -> None:
    app = store.app
    app.create_account(ALICE, PASSWORD)
    app.add_alias(ALICE, "ally@example.test")
    app.give_consent(ALICE, "newsletter", source="cli")
    app.give_consent("ally@example.test", "offers", source="cli")
    app.give_consent(CAROL, "newsletter", source="api")
    record_ids = [app.consent_record_id(ALICE), app.consent_record_id("ally@example.test")]
    receipt = app.erase_subject(ALICE, "request 7")

    assert receipt["verification"]["passed"] is True
    erased_request = app.repository.get(uuid.UUID(receipt["erasure_id"]))
    assert {str(r) for r in record_ids} <= set(erased_request.stream_ids)
    for record_id in record_ids:
        app.evict(record_id)
        with pytest.raises(SubjectErased):
            app.repository.get(record_id)
        events = list(app.events.get(record_id))
        assert [type(e).__name__ for e in events] == ["ShreddedEvent", "ShreddedEvent", "Erased"]
        assert all(isinstance(e, ShreddedEvent) for e in events[:-1])
        assert app.withdraw_consent_by_record(record_id, "newsletter", source="one-click") is False
    assert app.has_consent(ALICE, "newsletter") is False
    assert app.consents_of(ALICE) == []
    assert app.consents_of("ally@example.test") == []
    # The external correspondent, under a subject of her own, is untouched.
    assert app.has_consent(CAROL, "newsletter") is True


def test_an_erased_address_can_consent_again_with_a_fresh_record(store: Container) -> None:
    app = store.app
    app.create_account(ALICE, PASSWORD)
    app.give_consent(ALICE, "newsletter", source="cli")
    old_record = app.consent_record_id(ALICE)
    app.erase_subject(ALICE, "request 8")
    app.create_account(ALICE, PASSWORD)
    assert app.has_consent(ALICE, "newsletter") is False
    app.give_consent(ALICE, "offers", source="cli")

    index_id = app.ports.pseudonyms.address_index_id(ALICE)
    assert app.consent_record_id(ALICE) == consent_record_id_for(index_id, 2) != old_record
    assert record_of(store, ALICE).subject_id == app.account_for(ALICE).subject_id
    assert [r["purpose"] for r in app.consents_of(ALICE)] == ["offers"]
    receipt = app.erase_subject(ALICE, "request 9")
    assert str(consent_record_id_for(index_id, 2)) in app.repository.get(
        uuid.UUID(receipt["erasure_id"])).stream_ids


def test_withdrawing_by_a_record_id_never_written_is_refused(store: Container) -> None:
    position = store.app.log_position()
    with pytest.raises(UnknownConsentRecord):
        store.app.withdraw_consent_by_record(uuid.uuid4(), "newsletter", source="one-click")
    assert store.app.log_position() == position


# -- tokens (no storage) -----------------------------------------------------------------------

TOKENS = UnsubscribeTokens(os.urandom(32))
RECORD = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")


def test_a_token_reads_back_as_its_record_and_purpose() -> None:
    token = TOKENS.issue(RECORD, "list.announce")
    assert TOKENS.read(token) == (RECORD, "list.announce")
    assert len(token) <= MAX_TOKEN_CHARS
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    longest = TOKENS.issue(RECORD, "a" * 64)
    assert len(longest) <= MAX_TOKEN_CHARS and TOKENS.read(longest) == (RECORD, "a" * 64)


def test_a_token_from_another_master_key_is_refused() -> None:
    forged = UnsubscribeTokens(os.urandom(32)).issue(RECORD, "newsletter")
    assert TOKENS.read(forged) is None


def test_every_changed_character_or_truncation_of_a_token_is_refused() -> None:
    token = TOKENS.issue(RECORD, "newsletter")
    changed = 0
    for at, char in enumerate(token):
        for other in ("A", "B", "-", "_"):
            if other != char:
                assert TOKENS.read(token[:at] + other + token[at + 1:]) is None, (at, other)
                changed += 1
    assert changed > 3 * len(token)
    assert [n for n in range(len(token)) if TOKENS.read(token[:n]) is not None] == []
    assert TOKENS.read(token + "A") is None
    assert TOKENS.read(token + "=") is None


def test_a_token_for_another_purpose_or_record_cannot_be_spliced() -> None:
    one, two = TOKENS.issue(RECORD, "newsletter"), TOKENS.issue(uuid.uuid4(), "offers")
    raw_one = base64.urlsafe_b64decode(one + "=" * (-len(one) % 4))
    raw_two = base64.urlsafe_b64decode(two + "=" * (-len(two) % 4))
    spliced = raw_one[:17] + raw_two[17:]
    assert TOKENS.read(base64.urlsafe_b64encode(spliced).rstrip(b"=").decode()) is None


@pytest.mark.parametrize("junk", ["", "x", "A" * 43, "A" * (MAX_TOKEN_CHARS + 1), "../../etc/passwd",
                                  "AAAA====", "Zm9v\n", "%00", "é" * 10])
def test_malformed_tokens_are_refused_without_an_exception(junk: str) -> None:
    assert TOKENS.read(junk) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9_-]{1,160}", fullmatch=True))
def test_no_string_makes_reading_a_token_raise(junk: str) -> None:
    assert TOKENS.read(junk) is None


def test_a_token_holds_no_address_bytes(store: Container) -> None:
    store.app.give_consent(CAROL, "newsletter", source="api")
    token = unsubscribe_tokens(store).issue(store.app.consent_record_id(CAROL), "newsletter")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for needle in (b"carol", b"elsewhere", CAROL.encode()):
        assert needle not in raw and needle.decode() not in token.lower()
    assert unsubscribe_tokens(store) is unsubscribe_tokens(store)


def test_invalid_purposes_get_no_token() -> None:
    with pytest.raises(ValueError):
        TOKENS.issue(RECORD, "Not A Purpose")


# -- HTTP: RFC 8058 one-click ------------------------------------------------------------------


def one_click_setup(store: Container) -> tuple[TestClient, str]:
    store.app.give_consent(CAROL, "newsletter", source="api")
    token = unsubscribe_tokens(store).issue(store.app.consent_record_id(CAROL), "newsletter")
    return TestClient(create_app(store)), token


ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def test_the_get_page_shows_a_post_form_and_changes_nothing(store: Container) -> None:
    client, token = one_click_setup(store)
    position = store.app.log_position()
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "newsletter" in page.text and "carol" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert store.app.has_consent(CAROL, "newsletter") is True
    assert store.app.log_position() == position


def test_the_one_click_post_withdraws_at_once_and_a_second_post_changes_nothing(store: Container) -> None:
    client, token = one_click_setup(store)
    answer = client.post(f"/unsubscribe/{token}", data=ONE_CLICK, follow_redirects=False)
    assert answer.status_code == 200, answer.text
    assert "Unsubscribed" in answer.text
    assert store.app.has_consent(CAROL, "newsletter") is False
    assert version_of(store, CAROL) == 3
    [row] = store.app.consents_of(CAROL)
    assert (row["state"], row["source"]) == ("withdrawn", "one-click")
    last = list(store.app.events.get(store.app.consent_record_id(CAROL)))[-1]
    assert type(last).__name__ == "ConsentWithdrawn"
    assert (last.envelope["actor"], last.envelope["protocol"], last.envelope["purpose"]) == (
        "recipient:one-click", "http", "consent")

    position = store.app.log_position()
    again = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    assert again.status_code == 200
    assert store.app.log_position() == position
    assert version_of(store, CAROL) == 3


def test_the_one_click_post_is_understood_as_multipart_form_data(store: Container) -> None:
    client, token = one_click_setup(store)
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            b"One-Click\r\n--b0undary--\r\n")
    answer = client.post(f"/unsubscribe/{token}", content=body,
                         headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert answer.status_code == 200, answer.text
    assert store.app.has_consent(CAROL, "newsletter") is False


def test_a_forged_token_is_not_found_and_changes_nothing(store: Container) -> None:
    client, token = one_click_setup(store)
    forged = UnsubscribeTokens(os.urandom(32)).issue(store.app.consent_record_id(CAROL), "newsletter")
    position = store.app.log_position()
    for bad in (forged, token[:-2], token[:-1] + ("A" if token[-1] != "A" else "B"), "nonsense"):
        assert client.post(f"/unsubscribe/{bad}", data=ONE_CLICK).status_code == 404
        assert client.get(f"/unsubscribe/{bad}").status_code == 404
    assert store.app.has_consent(CAROL, "newsletter") is True
    assert store.app.log_position() == position


def test_a_valid_token_for_a_record_never_written_is_not_found(store: Container) -> None:
    client = TestClient(create_app(store))
    token = unsubscribe_tokens(store).issue(store.app.consent_record_id("nobody@elsewhere.test"), "x")
    position = store.app.log_position()
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 404
    assert store.app.log_position() == position


@pytest.mark.parametrize("body,content_type", [
    (b"", "application/x-www-form-urlencoded"),
    (b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded"),
    (b"unsubscribe=One-Click", "application/x-www-form-urlencoded"),
    (b"{\"List-Unsubscribe\": \"One-Click\"}", "application/json"),
    (b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nOne-Click\r\n--x--\r\n",
     "multipart/form-data; boundary=x"),
    (b"List-Unsubscribe=One-Click", "multipart/form-data"),
    (b"\xff\xfe", "application/x-www-form-urlencoded"),
])
def test_a_post_without_the_one_click_pair_is_a_bad_request(
    store: Container, body: bytes, content_type: str
) -> None:
    client, token = one_click_setup(store)
    position = store.app.log_position()
    answer = client.post(f"/unsubscribe/{token}", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 400
    assert store.app.has_consent(CAROL, "newsletter") is True
    assert store.app.log_position() == position


def test_a_post_body_over_the_limit_is_refused_unread(store: Container) -> None:
    client, token = one_click_setup(store)
    big = b"List-Unsubscribe=One-Click&pad=" + b"x" * 8192
    answer = client.post(f"/unsubscribe/{token}", content=big,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413
    assert store.app.has_consent(CAROL, "newsletter") is True


# -- the command -----------------------------------------------------------------------------


def test_consent_commands_give_withdraw_and_list(settings: Settings) -> None:
    assert ledgermail(settings, "domain", "add", "example.test").returncode == 0
    given_ = ledgermail(settings, "consent", "give", "Carol@elsewhere.test", "--purpose", "newsletter")
    assert (given_.returncode, given_.stdout) == (
        0, "consent of carol@elsewhere.test to newsletter recorded (consent)\n"), given_.stderr
    ledgermail(settings, "consent", "give", CAROL, "--purpose", "offers", "--basis", "legitimate-interests")
    listed = ledgermail(settings, "consent", "list", CAROL)
    lines = listed.stdout.splitlines()
    assert [line.split()[:4] for line in lines] == [["newsletter", "given", "consent", "cli"],
                                                    ["offers", "given", "legitimate-interests", "cli"]]
    assert all(line.split()[4].endswith("Z") for line in lines)

    withdrawn = ledgermail(settings, "consent", "withdraw", CAROL, "--purpose", "newsletter")
    assert withdrawn.stdout == "consent of carol@elsewhere.test to newsletter withdrawn\n"
    again = ledgermail(settings, "consent", "withdraw", CAROL, "--purpose", "newsletter")
    assert again.returncode == 0
    assert "nothing recorded" in again.stdout
    assert ledgermail(settings, "consent", "list", CAROL).stdout.splitlines()[0].split()[:2] == [
        "newsletter", "withdrawn"]
    assert ledgermail(settings, "consent", "list", "nobody@elsewhere.test").stdout == ""
    link = ledgermail(settings, "consent", "link", CAROL, "--purpose", "offers")
    assert link.returncode == 0, link.stderr
    base, _, token = link.stdout.strip().rpartition("/")
    assert base == "http://127.0.0.1:8025/unsubscribe" and "carol" not in token.lower()
    assert_one_line_error(ledgermail(settings, "consent", "link", CAROL, "--purpose", "No Way"),
                          2, "invalid consent purpose")

    assert_one_line_error(ledgermail(settings, "consent", "give", CAROL, "--purpose", "Bad Purpose"),
                          2, "invalid consent purpose")
    assert_one_line_error(ledgermail(settings, "consent", "give", CAROL, "--purpose", "x",
                                     "--basis", "whim"), 2, "invalid legal basis")
    assert_one_line_error(ledgermail(settings, "consent", "give", "not an address", "--purpose", "x"),
                          2, "invalid address")
    assert_one_line_error(ledgermail(settings, "consent", "list", "not an address"), 2, "invalid address")
    assert_one_line_error(ledgermail(settings, "consent", "give", CAROL), 2, "--purpose")
    audit = ledgermail(settings, "audit")
    assert "ConsentRecord.ConsentWithdrawn" in audit.stdout
    assert "carol" not in audit.stdout
