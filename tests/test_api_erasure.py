"""Erasure and legal holds through the compliance API (issue 7), on both backends:
202 with a request id, the workflow in the background, the receipt when polled; a hold
refuses with 409 and its reason, recorded; scopes (401/403); unknown ids and addresses 404."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import Container
from domain.model.compliance import ErasureRequest
from domain.model.errors import LegalHoldActive, UnknownErasureRequest
from tests.api_support import bearer

PASSWORD = "correct horse battery"
WAIT_SECONDS = 60.0


@pytest.fixture
def admin(store: Container) -> dict[str, str]:
    _token_id, plaintext = store.app.create_token("dpo", ["erasure:write", "holds:write"])
    return bearer(plaintext)


def wait_until_done(client: TestClient, headers: dict[str, str], request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        response = client.get(f"/api/v1/erasures/{request_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] == "completed" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_an_erasure_is_accepted_runs_in_the_background_and_gives_a_receipt(
        store: Container, client: TestClient, admin: dict[str, str]) -> None:
    store.app.create_account("erin@example.test", PASSWORD)
    store.app.deliver(["erin@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
    response = client.post("/api/v1/erasures", headers=admin,
                           json={"address": "Erin@example.test", "reason": "Art. 17 request 42"})
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    assert response.json()["status"] in ("requested", "marked", "purged", "shredded", "completed")
    done = wait_until_done(client, admin, request_id)
    assert done["status"] == "completed"
    receipt = done["receipt"]
    assert receipt["erasure_id"] == request_id
    assert receipt["reason"] == "Art. 17 request 42"
    assert receipt["verification"]["passed"] is True
    assert receipt["destroyed_key_ids"]
    assert store.app.index_for("erin@example.test").account_id is None
    # Again: the same request and receipt, nothing new started.
    again = client.post("/api/v1/erasures", headers=admin,
                        json={"address": "erin@example.test", "reason": "again"})
    assert again.status_code == 202
    assert again.json() == {"request_id": request_id, "status": "completed", "receipt": receipt}
    # The events name the token that asked.
    store.catch_up()
    actors = {row.entry.actor for row in store.audit_trail.rows(receipt["subject_pseudonym"])
              if row.entry.purpose == "erasure"}
    assert actors and all(actor.startswith("token:") for actor in actors)


def test_a_legal_hold_refuses_with_409_records_the_refusal_and_erases_nothing(
        store: Container, client: TestClient, admin: dict[str, str]) -> None:
    store.app.create_account("hal@example.test", PASSWORD)
    placed = client.post("/api/v1/subjects/hal@example.test/hold", headers=admin,
                         json={"reason": "litigation 2026-17"})
    assert placed.status_code == 201, placed.text
    refused = client.post("/api/v1/erasures", headers=admin,
                          json={"address": "hal@example.test", "reason": "Art. 17"})
    assert refused.status_code == 409
    assert "litigation 2026-17" in refused.json()["detail"]
    assert store.app.authenticate("hal@example.test", PASSWORD)  # nothing erased
    blocked = [r for r in _requests(store) if r.blocked_by is not None]
    assert len(blocked) == 1  # the refusal is recorded
    assert client.get(f"/api/v1/erasures/{blocked[0].id}", headers=admin).json()["status"] == "blocked"

    released = client.delete("/api/v1/subjects/hal@example.test/hold", headers=admin)
    assert released.status_code == 200, released.text
    accepted = client.post("/api/v1/erasures", headers=admin,
                           json={"address": "hal@example.test", "reason": "Art. 17"})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["request_id"] != str(blocked[0].id)
    assert wait_until_done(client, admin, accepted.json()["request_id"])["status"] == "completed"


def _requests(store: Container) -> list[ErasureRequest]:
    found = []
    for notification in store.app.recorder.select_notifications(start=1, limit=10_000):
        if notification.topic.endswith("ErasureRequest.Requested"):
            found.append(store.app.repository.get(notification.originator_id))
    return found


def test_without_a_token_401_and_without_the_scope_403(store: Container, client: TestClient) -> None:
    store.app.create_account("ann@example.test", PASSWORD)
    body = {"address": "ann@example.test", "reason": "x"}
    assert client.post("/api/v1/erasures", json=body).status_code == 401
    assert client.post("/api/v1/subjects/ann@example.test/hold", json={"reason": "x"}).status_code == 401
    _id, auditor = store.app.create_token("auditor", ["audit:read", "holds:write"])
    assert client.post("/api/v1/erasures", headers=bearer(auditor), json=body).status_code == 403
    assert client.get(f"/api/v1/erasures/{uuid.uuid4()}", headers=bearer(auditor)).status_code == 403
    _id, eraser = store.app.create_token("eraser", ["erasure:write"])
    assert client.post("/api/v1/subjects/ann@example.test/hold", headers=bearer(eraser),
                       json={"reason": "x"}).status_code == 403
    assert client.delete("/api/v1/subjects/ann@example.test/hold",
                         headers=bearer(eraser)).status_code == 403
    assert store.app.authenticate("ann@example.test", PASSWORD)


def test_unknown_addresses_and_request_ids_are_404_and_bad_input_4xx(
        store: Container, client: TestClient, admin: dict[str, str]) -> None:
    store.app.create_account("bob@example.test", PASSWORD)
    assert client.post("/api/v1/erasures", headers=admin,
                       json={"address": "nobody@example.test", "reason": "x"}).status_code == 404
    assert client.post("/api/v1/erasures", headers=admin,
                       json={"address": "not an address", "reason": "x"}).status_code == 404
    assert client.post("/api/v1/erasures", headers=admin,
                       json={"address": "bob@example.test", "reason": " "}).status_code == 422
    assert client.post("/api/v1/erasures", headers=admin, json={"address": "bob@example.test"}
                       ).status_code == 422
    assert client.get(f"/api/v1/erasures/{uuid.uuid4()}", headers=admin).status_code == 404
    assert client.get("/api/v1/erasures/not-a-uuid", headers=admin).status_code == 404
    account_id = store.app.account_id_for("bob@example.test")  # an id, but not a request's
    assert client.get(f"/api/v1/erasures/{account_id}", headers=admin).status_code == 404
    assert client.post("/api/v1/subjects/nobody@example.test/hold", headers=admin,
                       json={"reason": "x"}).status_code == 404
    assert client.delete("/api/v1/subjects/nobody@example.test/hold", headers=admin).status_code == 404
    assert client.post("/api/v1/subjects/bob@example.test/hold", headers=admin,
                       json={"reason": "  "}).status_code == 422
    assert store.app.authenticate("bob@example.test", PASSWORD)


def test_the_use_case_records_first_then_runs(store: Container) -> None:
    """The split the API relies on: ``request_erasure`` records and returns the id at
    once; ``run_erasure`` runs the rest; both are idempotent, like ``erase_subject``."""
    app = store.app
    app.create_account("cy@example.test", PASSWORD)
    request_id, step = app.request_erasure("cy@example.test", "Art. 17")
    assert step == "requested"
    assert app.request_erasure("cy@example.test", "again") == (request_id, "requested")
    assert app.authenticate("cy@example.test", PASSWORD)  # recorded, not yet run
    receipt = app.run_erasure(request_id)
    assert receipt["erasure_id"] == request_id
    assert app.run_erasure(request_id) == receipt
    assert app.erase_subject("cy@example.test", "again") == receipt
    assert app.erasure_status(request_id) == {"request_id": request_id, "status": "completed",
                                              "receipt": receipt}
    with pytest.raises(UnknownErasureRequest):
        app.erasure_status(str(uuid.uuid4()))
    app.create_account("dee@example.test", PASSWORD)
    app.place_legal_hold("dee@example.test", "case 9")
    with pytest.raises(LegalHoldActive, match="case 9"):
        app.request_erasure("dee@example.test", "Art. 17")
