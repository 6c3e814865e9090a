"""Retention rules and legal holds with case ids through the compliance API (issue 7), on
both backends: scopes (401/403 before any lookup), unknown subjects 404, bad input 422,
a run over HTTP deletes what the rules say and nothing a hold covers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import Container
from tests.api_support import bearer

PASSWORD = "correct horse battery"
ALICE = "alice@example.test"
RUN = "/api/v1/retention/run"
RULES = f"/api/v1/subjects/{ALICE}/retention"


@pytest.fixture
def dpo(store: Container) -> dict[str, str]:
    _id, token = store.app.create_token("dpo", ["retention:read", "retention:write", "holds:read",
                                                "holds:write", "subjects:read", "erasure:write"])
    return bearer(token)


def old_message(store: Container, mailbox: str, days: int) -> int:
    account_id = store.app.account_id_for(ALICE)
    ref, _ = store.app.append(account_id, mailbox, b"Subject: old\r\n\r\nold\r\n",
                              internal_date=datetime.now(UTC) - timedelta(days=days))
    return ref.uid


def test_rules_are_set_listed_cleared_and_run_over_http(store: Container, client: TestClient,
                                                         dpo: dict[str, str]) -> None:
    store.app.create_account(ALICE, PASSWORD)
    kept = old_message(store, "Trash", 5)
    old_message(store, "Trash", 40)
    put = client.put(RULES, headers=dpo,
                     json={"mailbox": "Trash", "max_age_days": 30})
    assert put.status_code == 200, put.text
    assert [(r["address"], r["mailbox"], r["max_age_days"]) for r in put.json()] == [(ALICE, "Trash", 30)]
    assert client.put(RULES, headers=dpo,
                      json={"mailbox": None, "max_age_days": 730}).status_code == 200
    mine = client.get(RULES, headers=dpo)
    assert mine.status_code == 200
    assert [(r["mailbox"], r["max_age_days"]) for r in mine.json()] == [(None, 730), ("Trash", 30)]
    assert client.get("/api/v1/retention", headers=dpo).json() == mine.json()

    run = client.post(RUN, headers=dpo)
    assert run.status_code == 200, run.text
    assert run.json() == {"accounts": 1, "deleted": 1, "held": 0}
    store.catch_up()
    trash = store.app.mailbox_id_of(store.app.account_id_for(ALICE), "Trash")
    assert [row.uid for row in store.mailbox_view.messages(trash)] == [kept]
    assert client.post(RUN, headers=dpo).json() == {"accounts": 1, "deleted": 0, "held": 0}

    cleared = client.delete(RULES, headers=dpo, params={"mailbox": "Trash"})
    assert cleared.status_code == 200 and cleared.json() == {"cleared": True}
    again = client.delete(RULES, headers=dpo, params={"mailbox": "Trash"})
    assert again.json() == {"cleared": False}
    assert client.delete(RULES, headers=dpo).json() == {"cleared": True}
    assert client.get("/api/v1/retention", headers=dpo).json() == []
    # The summary shows rules and holds.
    client.put(RULES, headers=dpo, json={"mailbox": "Junk", "max_age_days": 7})
    client.post(f"/api/v1/subjects/{ALICE}/hold", headers=dpo, json={"reason": "case", "case_id": "S-1"})
    summary = client.get(f"/api/v1/subjects/{ALICE}", headers=dpo).json()
    assert [(r["mailbox"], r["max_age_days"]) for r in summary["retention"]] == [("Junk", 7)]
    assert [(h["case_id"], h["scope"]) for h in summary["holds"]] == [("S-1", "all")]
    assert summary["legal_hold"]["placed"] is True and summary["legal_hold"]["reason"] == "case"


def test_holds_with_case_ids_and_scopes_block_the_run_and_erasure(store: Container, client: TestClient,
                                                                  dpo: dict[str, str]) -> None:
    store.app.create_account(ALICE, PASSWORD)
    old_message(store, "Trash", 40)
    old_message(store, "INBOX", 40)
    store.app.set_retention(ALICE, None, 30)
    placed = client.post(f"/api/v1/subjects/{ALICE}/hold", headers=dpo,
                         json={"reason": "litigation 9", "case_id": "LIT-9", "scope": "Trash"})
    assert placed.status_code == 201, placed.text
    assert placed.json() == {"address": ALICE, "hold": "placed", "case_id": "LIT-9", "released": None}
    generated = client.post(f"/api/v1/subjects/{ALICE}/hold", headers=dpo, json={"reason": "audit"})
    assert generated.status_code == 201 and generated.json()["case_id"].startswith("case-")
    duplicate = client.post(f"/api/v1/subjects/{ALICE}/hold", headers=dpo,
                            json={"reason": "again", "case_id": "LIT-9"})
    assert duplicate.status_code == 409 and "LIT-9" in duplicate.json()["detail"]

    listing = client.get("/api/v1/holds", headers=dpo)
    assert listing.status_code == 200
    assert sorted((h["case_id"], h["scope"], h["address"]) for h in listing.json()) == sorted([
        (generated.json()["case_id"], "all", ALICE), ("LIT-9", "Trash", ALICE)])
    assert len(client.get("/api/v1/holds", headers=dpo, params={"address": ALICE}).json()) == 2
    refused = client.post("/api/v1/erasures", headers=dpo, json={"address": ALICE, "reason": "Art. 17"})
    assert refused.status_code == 409

    assert client.post(RUN, headers=dpo).json() == {"accounts": 1, "deleted": 0, "held": 2}
    one = client.delete(f"/api/v1/subjects/{ALICE}/hold/{generated.json()['case_id']}", headers=dpo)
    assert one.status_code == 200 and one.json()["released"] == 1
    assert client.post(RUN, headers=dpo).json() == {"accounts": 1, "deleted": 1, "held": 1}
    gone = client.delete(f"/api/v1/subjects/{ALICE}/hold/NOT-PLACED", headers=dpo)
    assert gone.status_code == 200 and gone.json()["released"] == 0
    every = client.delete(f"/api/v1/subjects/{ALICE}/hold", headers=dpo)
    assert every.status_code == 200 and every.json()["released"] == 1
    assert client.get("/api/v1/holds", headers=dpo).json() == []
    assert client.post(RUN, headers=dpo).json() == {"accounts": 1, "deleted": 1, "held": 0}


def test_scopes_are_checked_before_any_lookup(store: Container, client: TestClient) -> None:
    store.app.create_account(ALICE, PASSWORD)
    _id, other = store.app.create_token("auditor", ["audit:read", "holds:write"])
    _id, reader = store.app.create_token("reader", ["retention:read", "holds:read"])
    rule = {"mailbox": "Trash", "max_age_days": 30}
    for address in (ALICE, "nobody@example.test"):
        assert client.get(f"/api/v1/subjects/{address}/retention").status_code == 401
        assert client.get(f"/api/v1/subjects/{address}/retention", headers=bearer(other)).status_code == 403
        assert client.put(f"/api/v1/subjects/{address}/retention", headers=bearer(reader),
                          json=rule).status_code == 403
        read_only = bearer(reader)
        assert client.delete(f"/api/v1/subjects/{address}/retention", headers=read_only).status_code == 403
        assert client.delete(f"/api/v1/subjects/{address}/hold/X-1", headers=read_only).status_code == 403
    assert client.get("/api/v1/retention", headers=bearer(other)).status_code == 403
    assert client.post("/api/v1/retention/run", headers=bearer(reader)).status_code == 403
    assert client.get("/api/v1/holds", headers=bearer(other)).status_code == 403
    assert client.get("/api/v1/holds").status_code == 401
    assert client.get("/api/v1/holds", headers=bearer(reader)).status_code == 200
    assert client.get("/api/v1/retention", headers=bearer(reader)).status_code == 200
    assert store.app.retention_policies() == []


def test_unknown_subjects_are_404_and_bad_input_422(store: Container, client: TestClient,
                                                    dpo: dict[str, str]) -> None:
    store.app.create_account(ALICE, PASSWORD)
    nobody = "nobody@example.test"
    rule = {"mailbox": None, "max_age_days": 30}
    assert client.get(f"/api/v1/subjects/{nobody}/retention", headers=dpo).status_code == 404
    assert client.put(f"/api/v1/subjects/{nobody}/retention", headers=dpo, json=rule).status_code == 404
    assert client.delete(f"/api/v1/subjects/{nobody}/retention", headers=dpo).status_code == 404
    assert client.delete(f"/api/v1/subjects/{nobody}/hold/X-1", headers=dpo).status_code == 404
    assert client.get("/api/v1/holds", headers=dpo, params={"address": nobody}).status_code == 404
    for bad in ({"mailbox": "Trash", "max_age_days": 0}, {"mailbox": "Trash", "max_age_days": 36501},
                {"mailbox": "Trash", "max_age_days": "30"}, {"mailbox": "Trash", "max_age_days": True},
                {"mailbox": "Trash"}, {"mailbox": "Nowhere", "max_age_days": 30},
                {"mailbox": "", "max_age_days": 30}):
        answer = client.put(RULES, headers=dpo, json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    for bad_hold in ({"reason": "x", "case_id": "has spaces"}, {"reason": "x", "scope": "Nowhere"},
                     {"reason": "x", "case_id": "legacy"}, {"reason": "x", "case_id": ""},
                     {"reason": " "}, {"case_id": "C-1"}):
        answer = client.post(f"/api/v1/subjects/{ALICE}/hold", headers=dpo, json=bad_hold)
        assert answer.status_code == 422, (bad_hold, answer.text)
    assert store.app.retention_policies() == [] and store.app.legal_holds() == []
