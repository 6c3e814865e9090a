"""Rectification (Art. 16), the audit query's paging and recorded history reads, and the
records-of-processing summary (Art. 30), on both backends."""

from __future__ import annotations

from fastapi.testclient import TestClient

from adapters.bootstrap import Container
from adapters.config import Settings
from tests.api_support import bearer
from tests.test_cli import assert_one_line_error, ledgermail

PASSWORD = "correct horse battery"
ALICE = "alice@example.test"
RAW = b"From: bob@sender.test\r\nSubject: hello\r\n\r\nbody\r\n"


def events_of_type(store: Container, event_type: str) -> list[tuple[str, str, str]]:
    store.catch_up()
    return [(row.entry.actor, row.entry.purpose, row.entry.subject or "")
            for row in store.audit_trail.rows() if row.entry.event_type == event_type]


def test_a_patch_corrects_the_profile_and_is_an_event_under_the_token(
        store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    token_id, token = store.app.create_token("dpo", ["subjects:read", "subjects:write"])

    changed = client.patch(f"/api/v1/subjects/{ALICE}/profile", headers=bearer(token),
                           json={"display_name": "Alice Smith", "locale": "en-GB"})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"address": ALICE, "display_name": "Alice Smith", "organization": None,
                              "locale": "en-GB", "time_zone": None}
    # A correction replaces one field and leaves the others; null removes one.
    again = client.patch(f"/api/v1/subjects/{ALICE}/profile", headers=bearer(token),
                         json={"display_name": "Alice Jones", "locale": None})
    assert again.json()["display_name"] == "Alice Jones" and again.json()["locale"] is None
    assert store.app.account_for(ALICE).profile == {"display_name": "Alice Jones"}
    pseudonym = store.app.subject_pseudonym_for(ALICE)
    assert events_of_type(store, "Account.ProfileRectified") == [
        (f"token:{token_id}", "rectification", pseudonym)] * 2
    # Sending the same value again records nothing.
    client.patch(f"/api/v1/subjects/{ALICE}/profile", headers=bearer(token),
                 json={"display_name": "Alice Jones"})
    assert len(events_of_type(store, "Account.ProfileRectified")) == 2

    read = client.get(f"/api/v1/subjects/{ALICE}/profile", headers=bearer(token))
    assert read.status_code == 200 and read.json()["display_name"] == "Alice Jones"
    assert events_of_type(store, "AccessLedger.DataAccessed") == [(f"token:{token_id}", "api", pseudonym)]


def test_bad_profile_input_is_422_and_unknown_or_unscoped_callers_learn_nothing(
        store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    _, writer = store.app.create_token("dpo", ["subjects:write"])
    _, reader = store.app.create_token("auditor", ["subjects:read"])
    for body in ({"display_name": "A\r\nBcc: x@y"}, {"locale": "not a tag!"}, {"time_zone": "../etc"},
                 {"display_name": "x" * 201}, {}):
        answer = client.patch(f"/api/v1/subjects/{ALICE}/profile", headers=bearer(writer), json=body)
        assert answer.status_code == 422, (body, answer.text)
    assert store.app.account_for(ALICE).profile == {}
    assert client.patch(f"/api/v1/subjects/{ALICE}/profile", headers=bearer(reader),
                        json={"display_name": "Eve"}).status_code == 403
    assert client.patch(f"/api/v1/subjects/{ALICE}/profile",
                        json={"display_name": "Eve"}).status_code == 401
    for address in ("nobody@example.test", "not an address"):
        assert client.patch(f"/api/v1/subjects/{address}/profile", headers=bearer(writer),
                            json={"display_name": "Eve"}).status_code == 404
        assert client.get(f"/api/v1/subjects/{address}/profile",
                          headers=bearer(reader)).status_code == 404
    assert store.app.account_for(ALICE).profile == {}


def test_an_erased_person_has_no_profile_and_the_export_carried_it(
        store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    store.app.rectify_profile(ALICE, {"display_name": "Alice Smith", "organization": "ACME"})
    assert store.app.export_subject(ALICE).account["profile"] == {"display_name": "Alice Smith",
                                                                  "organization": "ACME"}
    store.app.erase_subject(ALICE, "Art. 17 request")
    _, token = store.app.create_token("dpo", ["subjects:read"])
    assert client.get(f"/api/v1/subjects/{ALICE}/profile", headers=bearer(token)).status_code == 404


def test_the_profile_command_shows_and_corrects_with_one_line_errors(settings: Settings) -> None:
    assert ledgermail(settings, "domain", "add", "example.test").returncode == 0
    assert ledgermail(settings, "user", "add", ALICE, "--password-stdin",
                      stdin=PASSWORD.encode()).returncode == 0
    changed = ledgermail(settings, "user", "profile", ALICE, "--display-name", "Alice Smith",
                         "--time-zone", "Europe/Berlin")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.splitlines() == ["display_name: Alice Smith", "organization: ",
                                           "locale: ", "time_zone: Europe/Berlin"]
    assert ledgermail(settings, "user", "profile", ALICE).stdout == changed.stdout
    assert_one_line_error(ledgermail(settings, "user", "profile", ALICE, "--locale", "no such tag!"),
                          2, "locale")
    assert_one_line_error(ledgermail(settings, "user", "profile", "nobody@example.test",
                                     "--display-name", "X"), 2, "unknown address")


def test_the_audit_query_pages_with_after_and_records_history_reads(
        store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    for _ in range(3):
        store.app.deliver([ALICE], RAW)
    token_id, token = store.app.create_token("auditor", ["audit:read"])
    headers = bearer(token)
    everything = client.get("/api/v1/audit", params={"limit": 1000}, headers=headers).json()
    first = client.get("/api/v1/audit", params={"limit": 2}, headers=headers).json()
    second = client.get("/api/v1/audit", params={"limit": 2, "after": first[-1]["position"]},
                        headers=headers).json()
    assert [e["position"] for e in first + second] == [e["position"] for e in everything[:4]]
    assert events_of_type(store, "AccessLedger.DataAccessed") == []

    history = client.get("/api/v1/audit", params={"subject": ALICE}, headers=headers)
    assert history.status_code == 200 and history.json()
    pseudonym = store.app.subject_pseudonym_for(ALICE)
    # The query of Alice's history is itself in Alice's history, under the token.
    assert events_of_type(store, "AccessLedger.DataAccessed") == [(f"token:{token_id}", "api", pseudonym)]
    # An unknown address records nothing and answers like an address without history.
    assert client.get("/api/v1/audit", params={"subject": "nobody@example.test"},
                      headers=headers).json() == []
    assert len(events_of_type(store, "AccessLedger.DataAccessed")) == 1
    assert client.get("/api/v1/audit", params={"after": -1}, headers=headers).status_code == 422


def test_the_records_of_processing_count_purposes_and_events_without_naming_anyone(
        store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    store.app.create_account("bob@example.test", PASSWORD)
    store.app.deliver([ALICE, "bob@example.test"], RAW)
    store.app.give_consent(ALICE, "newsletter", source="signup-form")
    store.app.erase_subject("bob@example.test", "Art. 17 request")
    _, token = store.app.create_token("auditor", ["audit:read"])
    assert client.get("/api/v1/records-of-processing",
                      headers=bearer(store.app.create_token("x", ["subjects:read"])[1])).status_code == 403

    answer = client.get("/api/v1/records-of-processing", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["data_subjects"]["accounts"] == 1
    assert summary["data_subjects"]["erasures_completed"] == 1
    assert summary["data_subjects"]["stored_bytes"] == len(RAW)
    store.catch_up()
    rows = [row.entry for row in store.audit_trail.rows()]
    activity = {(a["event_type"], a["purpose"]): a["count"] for a in summary["activity"]}
    for key in {(e.event_type, e.purpose) for e in rows}:
        assert activity[key] == sum(1 for e in rows if (e.event_type, e.purpose) == key)
    purposes = {p["purpose"]: p["events"] for p in summary["purposes"]}
    assert purposes["testing"] == sum(1 for e in rows if e.purpose == "testing")
    assert sum(purposes.values()) == len(rows)
    assert {c["category"] for c in summary["categories"]} >= {"account", "message content", "consent"}
    assert any(r["applies_to"] == "backups" for r in summary["retention"])
    text = answer.text
    for personal in (ALICE, "bob@example.test", "alice", "newsletter-form", "signup-form"):
        assert personal not in text


def test_listing_holds_and_retention_rules_records_a_read_for_each_person_listed(
        store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    store.app.create_account("bob@example.test", PASSWORD)
    store.app.place_legal_hold(ALICE, "litigation", case_id="LIT-1")
    store.app.place_legal_hold(ALICE, "audit", case_id="AUD-2")
    store.app.set_retention("bob@example.test", "Trash", 30)
    token_id, token = store.app.create_token("dpo", ["holds:read", "retention:read"])
    holds = client.get("/api/v1/holds", headers=bearer(token))
    assert holds.status_code == 200 and len(holds.json()) == 2
    alice = store.app.subject_pseudonym_for(ALICE)
    # Two holds of one person: one recorded read.
    assert events_of_type(store, "AccessLedger.DataAccessed") == [(f"token:{token_id}", "api", alice)]
    rules = client.get("/api/v1/retention", headers=bearer(token))
    assert [rule["mailbox"] for rule in rules.json()] == ["Trash"]
    bob = store.app.subject_pseudonym_for("bob@example.test")
    assert events_of_type(store, "AccessLedger.DataAccessed") == [
        (f"token:{token_id}", "api", alice), (f"token:{token_id}", "api", bob)]
