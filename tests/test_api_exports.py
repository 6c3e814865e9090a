"""Access requests (export) through the compliance API (issue 7), on both backends:
202 with an unguessable id, the zip built in the background, polled, downloaded and
deleted; scopes (401/403); unknown addresses and ids 404; 409 while running."""

from __future__ import annotations

import io
import json
import stat
import time
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import Container
from api.main import create_app
from tests.api_support import bearer

PASSWORD = "correct horse battery"
WAIT_SECONDS = 60.0


@pytest.fixture
def admin(store: Container) -> dict[str, str]:
    _token_id, plaintext = store.app.create_token("dpo", ["export:write"])
    return bearer(plaintext)


def export_path(store: Container, address: str, export_id: str) -> Any:
    """Where the archive waits: ``<data>/exports/<account id>/<export id>.zip``."""
    return store.settings.data_dir / "exports" / str(store.app.account_id_for(address)) / f"{export_id}.zip"


def wait_until_done(client: TestClient, headers: dict[str, str], export_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        response = client.get(f"/api/v1/exports/{export_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "running" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_an_export_is_accepted_built_in_the_background_downloaded_and_deleted(
        store: Container, client: TestClient, admin: dict[str, str]) -> None:
    store.app.create_account("erin@example.test", PASSWORD)
    store.app.deliver(["erin@example.test"], b"Subject: hi\r\n\r\nthe exported text\r\n")
    response = client.post("/api/v1/exports", headers=admin, json={"address": "Erin@example.test"})
    assert response.status_code == 202, response.text
    export_id = response.json()["export_id"]
    assert response.json()["status"] == "running"
    assert len(export_id) >= 32
    assert wait_until_done(client, admin, export_id)["status"] == "done"

    download = client.get(f"/api/v1/exports/{export_id}/download", headers=admin)
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/zip"
    assert download.headers["content-disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert json.loads(archive.read("account.json"))["address"] == "erin@example.test"
        assert b"the exported text" in archive.read("mailboxes/INBOX.mbox")

    path = export_path(store, "erin@example.test", export_id)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700

    # The read is recorded, naming the token.
    store.catch_up()
    pseudonym = store.app.subject_pseudonym_for("erin@example.test")
    actors = {row.entry.actor for row in store.audit_trail.rows(pseudonym)
              if row.entry.purpose == "access-request"}
    assert actors and all(actor.startswith("token:") for actor in actors)

    deleted = client.delete(f"/api/v1/exports/{export_id}", headers=admin)
    assert deleted.status_code == 200, deleted.text
    assert not path.exists()
    assert client.get(f"/api/v1/exports/{export_id}", headers=admin).status_code == 404
    assert client.get(f"/api/v1/exports/{export_id}/download", headers=admin).status_code == 404
    assert client.delete(f"/api/v1/exports/{export_id}", headers=admin).status_code == 404


def test_without_a_token_401_and_without_the_scope_403(store: Container, client: TestClient) -> None:
    store.app.create_account("ann@example.test", PASSWORD)
    body = {"address": "ann@example.test"}
    assert client.post("/api/v1/exports", json=body).status_code == 401
    _id, auditor = store.app.create_token("auditor", ["audit:read", "erasure:write"])
    assert client.post("/api/v1/exports", headers=bearer(auditor), json=body).status_code == 403
    assert client.get("/api/v1/exports/abc", headers=bearer(auditor)).status_code == 403
    assert client.get("/api/v1/exports/abc/download", headers=bearer(auditor)).status_code == 403
    assert client.delete("/api/v1/exports/abc", headers=bearer(auditor)).status_code == 403
    assert not (store.settings.data_dir / "exports").exists()


def test_unknown_addresses_and_ids_are_404_and_bad_input_4xx(
        store: Container, client: TestClient, admin: dict[str, str]) -> None:
    store.app.create_account("bob@example.test", PASSWORD)
    assert client.post("/api/v1/exports", headers=admin,
                       json={"address": "nobody@example.test"}).status_code == 404
    assert client.post("/api/v1/exports", headers=admin,
                       json={"address": "not an address"}).status_code == 404
    assert client.post("/api/v1/exports", headers=admin, json={}).status_code == 422
    assert client.get("/api/v1/exports/unknown-id", headers=admin).status_code == 404
    assert client.get("/api/v1/exports/unknown-id/download", headers=admin).status_code == 404
    assert client.delete("/api/v1/exports/unknown-id", headers=admin).status_code == 404


def test_a_running_export_cannot_be_downloaded_yet(
        store: Container, client: TestClient, admin: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from adapters import bootstrap

    release = threading.Event()
    real = bootstrap.write_subject_export

    def slow(*args: Any) -> dict[str, int]:
        release.wait(WAIT_SECONDS)
        return real(*args)

    monkeypatch.setattr(bootstrap, "write_subject_export", slow)
    store.app.create_account("cy@example.test", PASSWORD)
    export_id = client.post("/api/v1/exports", headers=admin,
                            json={"address": "cy@example.test"}).json()["export_id"]
    assert client.get(f"/api/v1/exports/{export_id}/download", headers=admin).status_code == 409
    assert client.delete(f"/api/v1/exports/{export_id}", headers=admin).status_code == 409
    release.set()
    assert wait_until_done(client, admin, export_id)["status"] == "done"
    assert client.get(f"/api/v1/exports/{export_id}/download", headers=admin).status_code == 200


def test_an_export_zip_is_removed_once_its_subject_is_erased(
        store: Container, client: TestClient, admin: dict[str, str]) -> None:
    """DESIGN §3: no byte of an erased person survives, an export on disk included."""
    store.app.create_account("erin@example.test", PASSWORD)
    response = client.post("/api/v1/exports", headers=admin, json={"address": "erin@example.test"})
    export_id = response.json()["export_id"]
    assert wait_until_done(client, admin, export_id)["status"] == "done"
    path = export_path(store, "erin@example.test", export_id)
    assert path.exists()
    receipt = store.app.erase_subject("erin@example.test", "request 9")
    # The erasure itself deletes it (the CLI erases in another process than the API).
    assert receipt["export_files_deleted"] == 1
    assert not path.exists() and not path.parent.exists()
    assert client.get(f"/api/v1/exports/{export_id}", headers=admin).status_code == 404


def test_zips_left_by_an_earlier_process_are_removed_when_the_api_starts(store: Container) -> None:
    leftover = store.settings.data_dir / "exports" / "0f3c9a2e-0000-4000-8000-000000000000" / "old.zip"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"PK personal data")
    create_app(store)
    assert not leftover.exists() and not leftover.parent.exists()
