"""Subjects and consent routes of the compliance API (issue 7), on both backends: what is
held about a person, 403 before any lookup, 404 for unknown people, every read recorded
in the access ledger under the token, consent given, listed and withdrawn (idempotently)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from adapters.bootstrap import Container
from tests.api_support import bearer

PASSWORD = "correct horse battery"
ALICE = "alice@example.test"
RAW = b"From: bob@sender.test\r\nSubject: hello\r\n\r\nbody\r\n"


def data_accessed(store: Container) -> list[tuple[str, str]]:
    store.catch_up()
    return [(row.entry.actor, row.entry.protocol) for row in store.audit_trail.rows()
            if row.entry.event_type == "AccessLedger.DataAccessed"]


def test_the_summary_shows_what_is_held_and_records_the_read(store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    store.app.add_alias(ALICE, "al@example.test")
    store.app.deliver([ALICE], RAW)
    store.app.deliver([ALICE], RAW + b"more\r\n")
    store.app.give_consent(ALICE, "newsletter", source="signup-form")
    store.app.place_legal_hold(ALICE, "case 42")
    token_id, token = store.app.create_token("dpo", ["subjects:read"])
    assert data_accessed(store) == []

    answer = client.get(f"/api/v1/subjects/{ALICE}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["address"] == ALICE and summary["aliases"] == ["al@example.test"]
    inbox = next(m for m in summary["mailboxes"] if m["name"] == "INBOX")
    assert inbox["messages"] == 2 and inbox["size_bytes"] == 2 * len(RAW) + len(b"more\r\n")
    assert summary["storage"]["used_bytes"] == sum(m["size_bytes"] for m in summary["mailboxes"])
    assert summary["storage"]["quota_bytes"] >= 0
    [consent] = summary["consents"]
    assert consent["purpose"] == "newsletter" and consent["state"] == "given"
    assert consent["basis"] == "consent" and consent["source"] == "signup-form" and consent["at"]
    assert summary["legal_hold"]["placed"] is True and summary["legal_hold"]["reason"] == "case 42"
    assert summary["legal_hold"]["since"]
    assert summary["subject_pseudonym"] == store.app.subject_pseudonym_for(ALICE)
    assert data_accessed(store) == [(f"token:{token_id}", "http")]

    by_alias = client.get("/api/v1/subjects/al@example.test", headers=bearer(token))
    assert by_alias.status_code == 200 and by_alias.json()["address"] == ALICE


def test_no_scope_is_403_before_any_lookup_and_unknown_is_404(store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    _, other = store.app.create_token("auditor", ["audit:read"])
    for address in (ALICE, "nobody@example.test"):
        assert client.get(f"/api/v1/subjects/{address}", headers=bearer(other)).status_code == 403
    assert client.get(f"/api/v1/subjects/{ALICE}").status_code == 401
    _, token = store.app.create_token("dpo", ["subjects:read"])
    for address in ("nobody@example.test", "someone@elsewhere.test", "not an address"):
        assert client.get(f"/api/v1/subjects/{address}", headers=bearer(token)).status_code == 404
    assert data_accessed(store) == []


def test_consent_is_given_listed_and_withdrawn_through_the_api(store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    token_id, token = store.app.create_token("crm", ["consent:read", "consent:write"])
    headers = bearer(token)
    url = f"/api/v1/subjects/{ALICE}/consents"

    given = client.post(url, json={"purpose": "newsletter"}, headers=headers)
    assert given.status_code == 201, given.text
    [row] = given.json()
    assert (row["purpose"], row["state"], row["basis"], row["source"]) == (
        "newsletter", "given", "consent", "api")
    assert store.app.has_consent(ALICE, "newsletter")

    listed = client.get(url, headers=headers)
    assert listed.status_code == 200 and listed.json() == given.json()
    assert data_accessed(store) == [(f"token:{token_id}", "http")]

    first = client.delete(f"{url}/newsletter", headers=headers)
    assert first.status_code == 200 and first.json() == {"changed": True}
    again = client.delete(f"{url}/newsletter", headers=headers)
    assert again.status_code == 200 and again.json() == {"changed": False}
    assert not store.app.has_consent(ALICE, "newsletter")
    assert client.get(url, headers=headers).json()[0]["state"] == "withdrawn"

    store.catch_up()
    consent_actors = {row.entry.actor for row in store.audit_trail.rows()
                      if row.entry.event_type.startswith("ConsentRecord.")}
    assert consent_actors == {f"token:{token_id}"}


def test_an_external_correspondent_has_consents_but_no_access_ledger(store: Container,
                                                                      client: TestClient) -> None:
    _, token = store.app.create_token("crm", ["consent:read", "consent:write"])
    url = "/api/v1/subjects/carol@elsewhere.test/consents"
    assert client.get(url, headers=bearer(token)).json() == []
    posted = client.post(url, json={"purpose": "offers", "basis": "contract"}, headers=bearer(token))
    assert posted.status_code == 201 and posted.json()[0]["basis"] == "contract"
    assert data_accessed(store) == []


def test_bad_consent_input_is_422_and_a_missing_scope_403(store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    _, token = store.app.create_token("crm", ["consent:write"])
    url = f"/api/v1/subjects/{ALICE}/consents"
    for body in ({"purpose": "Not A Purpose!"}, {"purpose": "news", "basis": "whim"}, {}):
        assert client.post(url, json=body, headers=bearer(token)).status_code == 422
    assert client.delete(f"{url}/BAD%20PURPOSE", headers=bearer(token)).status_code == 422
    assert client.post("/api/v1/subjects/not-an-address/consents", json={"purpose": "news"},
                       headers=bearer(token)).status_code == 422
    assert client.get(url, headers=bearer(token)).status_code == 403
    _, reader = store.app.create_token("reader", ["consent:read"])
    assert client.post(url, json={"purpose": "news"}, headers=bearer(reader)).status_code == 403
