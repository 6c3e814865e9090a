"""Admin tokens and the audit routes of the compliance API (issue 7), on both backends:
tokens through the use cases and the ``ledgermail token`` command, bearer auth (401 vs
403, RFC 6750 §3.1), the audit query and the chain check through FastAPI's TestClient."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import Container, notifications
from adapters.config import Settings
from domain.model.admin_token import AdminToken, admin_token_id_for, hash_secret
from domain.model.errors import InvalidScope, InvalidToken, ScopeMissing, TokenRevoked, UnknownTokenId
from tests.api_support import bearer
from tests.test_cli import assert_one_line_error, ledgermail


def test_a_token_is_shown_once_checked_by_scope_and_revoked(store: Container) -> None:
    token_id, plaintext = store.app.create_token("auditor", ["audit:read"])
    assert plaintext.startswith(f"lm_{token_id}_")
    assert store.app.check_token(plaintext, "audit:read") == token_id
    with pytest.raises(ScopeMissing):
        store.app.check_token(plaintext, "erasure:write")
    with pytest.raises(InvalidToken):
        store.app.check_token(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"), "audit:read")
    with pytest.raises(InvalidToken):
        store.app.check_token("lm_0000000000000000_nope", "audit:read")
    with pytest.raises(InvalidToken):
        store.app.check_token("garbage", "audit:read")
    [listed] = store.app.list_tokens()
    assert listed["token_id"] == token_id and listed["scopes"] == ["audit:read"]
    assert listed["revoked_at"] is None
    assert store.app.revoke_token(token_id) is True
    assert store.app.revoke_token(token_id) is False
    with pytest.raises(TokenRevoked):
        store.app.check_token(plaintext, "audit:read")
    assert store.app.list_tokens()[0]["revoked_at"] is not None


def test_the_admin_scope_grants_every_scope(store: Container) -> None:
    token_id, plaintext = store.app.create_token("root", ["admin"])
    assert store.app.check_token(plaintext, "erasure:write") == token_id


def test_unknown_scopes_and_token_ids_are_refused(store: Container) -> None:
    with pytest.raises(InvalidScope):
        store.app.create_token("x", ["audit:write"])
    with pytest.raises(InvalidScope):
        store.app.create_token("x", [])
    with pytest.raises(UnknownTokenId):
        store.app.revoke_token("0123456789abcdef")
    with pytest.raises(UnknownTokenId):
        store.app.revoke_token("../etc")


def test_the_stored_token_holds_only_a_hash_of_the_secret(store: Container) -> None:
    token_id, plaintext = store.app.create_token("auditor", ["audit:read"])
    secret = plaintext.split("_", 2)[2]
    token: AdminToken = store.app.repository.get(admin_token_id_for(token_id))
    assert token.secret_hash == hash_secret(secret)
    assert secret not in json.dumps(token.__dict__, default=str)
    mapper = store.app.mapper
    for notification in notifications(store):
        assert secret.encode() not in notification.state
        event = mapper.to_domain_event(notification)
        assert secret not in json.dumps(getattr(event, "__dict__", {}), default=str)


def test_the_token_command_creates_lists_and_revokes(settings: Settings) -> None:
    created = ledgermail(settings, "token", "create", "--scope", "audit:read,erasure:write",
                         "--name", "ops")
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    token_id = plaintext.split("_")[1]
    assert plaintext.startswith(f"lm_{token_id}_")
    listed = ledgermail(settings, "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{token_id} ops audit:read,erasure:write" in listed.stdout
    assert plaintext.split("_", 2)[2] not in listed.stdout
    revoked = ledgermail(settings, "token", "revoke", token_id)
    assert revoked.stdout == f"token {token_id} revoked\n"
    assert "revoked=" in ledgermail(settings, "token", "list").stdout


def test_the_token_command_gives_one_line_errors(settings: Settings) -> None:
    assert_one_line_error(ledgermail(settings, "token", "create", "--scope", "audit:read,root"),
                          2, "unknown token scope 'root'")
    assert_one_line_error(ledgermail(settings, "token", "revoke", "0123456789abcdef"),
                          2, "no admin token with id")
    assert_one_line_error(ledgermail(settings, "token", "create", "--scope", "admin",
                                     "--name", "Alice Example"), 2, "invalid token name")
    assert ledgermail(settings, "token", "list").stdout == ""


def test_the_api_answers_401_without_a_valid_token_and_403_without_the_scope(
        store: Container, client: TestClient) -> None:
    missing = client.get("/api/v1/audit")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    bad = client.get("/api/v1/audit", headers=bearer("lm_0123456789abcdef_wrong"))
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    token_id, revoked = store.app.create_token("old", ["audit:read"])
    store.app.revoke_token(token_id)
    assert client.get("/api/v1/audit", headers=bearer(revoked)).status_code == 401
    _, other = store.app.create_token("eraser", ["erasure:write"])
    denied = client.get("/api/v1/audit/verify", headers=bearer(other))
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["WWW-Authenticate"]
    assert client.get("/api/v1/tokens", headers=bearer(other)).status_code == 403


def test_the_audit_query_filters_by_event_type_and_subject(store: Container, client: TestClient) -> None:
    store.app.create_account("alice@example.test", "a long secret")
    store.app.create_account("bob@example.test", "a long secret")
    _, token = store.app.create_token("auditor", ["audit:read"])
    headers = bearer(token)

    created = client.get("/api/v1/audit", params={"event_type": "AdminToken.Created"}, headers=headers)
    assert created.status_code == 200, created.text
    assert [entry["event_type"] for entry in created.json()] == ["AdminToken.Created"]

    everything = client.get("/api/v1/audit", headers=headers).json()
    alice_rows = client.get("/api/v1/audit", params={"subject": "alice@example.test"}, headers=headers).json()
    assert alice_rows
    pseudonym = store.app.subject_pseudonym_for("alice@example.test")
    assert {entry["subject"] for entry in alice_rows} == {pseudonym}
    assert len(alice_rows) < len(everything)
    assert set(alice_rows[0]) == {"position", "at", "event_type", "stream_id", "subject", "actor",
                                  "protocol", "session", "purpose"}

    by_actor = client.get("/api/v1/audit", params={"actor": "admin:test", "limit": 2}, headers=headers).json()
    assert len(by_actor) == 2 and {entry["actor"] for entry in by_actor} == {"admin:test"}
    later = client.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=headers)
    assert later.json() == []
    assert client.get("/api/v1/audit", params={"limit": 1001}, headers=headers).status_code == 422


def test_an_unknown_subject_gives_an_empty_list_not_a_404(store: Container, client: TestClient) -> None:
    _, token = store.app.create_token("auditor", ["audit:read"])
    for subject in ("nobody@example.test", "not an address"):
        found = client.get("/api/v1/audit", params={"subject": subject}, headers=bearer(token))
        assert found.status_code == 200
        assert found.json() == []


def test_the_verify_route_reports_an_intact_chain(store: Container, client: TestClient) -> None:
    store.app.create_account("alice@example.test", "a long secret")
    _, token = store.app.create_token("auditor", ["audit:read"])
    verdict = client.get("/api/v1/audit/verify", headers=bearer(token))
    assert verdict.status_code == 200, verdict.text
    body = verdict.json()
    assert body["intact"] is True and body["first_bad_position"] is None and body["rows"] > 0


def test_the_tokens_route_lists_tokens_without_secrets(store: Container, client: TestClient) -> None:
    token_id, token = store.app.create_token("root", ["admin"])
    listed = client.get("/api/v1/tokens", headers=bearer(token))
    assert listed.status_code == 200
    assert [row["token_id"] for row in listed.json()] == [token_id]
    assert token.split("_", 2)[2] not in listed.text


def test_the_openapi_schema_and_interactive_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/api/v1/audit" in schema["paths"] and "AuditEntryPublic" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_a_token_revoked_by_the_command_is_refused_by_a_running_store(
        settings: Settings, store: Container, client: TestClient) -> None:
    token_id, token = store.app.create_token("auditor", ["audit:read"])
    assert client.get("/api/v1/audit/verify", headers=bearer(token)).status_code == 200
    assert ledgermail(settings, "token", "revoke", token_id).returncode == 0
    assert client.get("/api/v1/audit/verify", headers=bearer(token)).status_code == 401
