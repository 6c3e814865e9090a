"""The walkthroughs of docs/gdpr.md, run with curl against a real ``ledgermail serve``
(both backends): an access request with the export, rectification, a withdrawal of
consent by the API and by the one-click link, a legal hold that refuses an erasure until
released, and an erasure with its receipt. The calls are the documented ones."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import time
import zipfile
from typing import Any

import pytest

from adapters.config import Settings
from tests.test_cli import command_env, free_port, ledgermail, start_server, wait_for_health

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

PASSWORD = b"correct horse battery\n"
CANARY = "kumquat-7f3e91"
MESSAGE = (f"From: bob@sender.test\r\nTo: alice@example.test\r\nSubject: {CANARY}\r\n\r\n"
           f"the body holds {CANARY}\r\n").encode()
SCOPES = ("subjects:read,subjects:write,export:write,erasure:write,consent:read,consent:write,"
          "holds:read,holds:write,audit:read")


class Curl:
    """curl with the documented headers; every answer as (status, body bytes)."""

    def __init__(self, api: str, token: str) -> None:
        self.api, self.token = api, token

    def __call__(self, method: str, path: str, body: dict[str, Any] | None = None,
                 url: str | None = None, form: str | None = None) -> tuple[int, bytes]:
        command = ["curl", "-s", "-X", method, "-w", "\n%{http_code}", url or f"{self.api}{path}"]
        if url is None:
            command += ["-H", f"Authorization: Bearer {self.token}"]
        if body is not None:
            command += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        if form is not None:
            command += ["-d", form]
        done = subprocess.run(command, capture_output=True, timeout=60, check=True)
        payload, _, status = done.stdout.rpartition(b"\n")
        return int(status), payload

    def json(self, method: str, path: str, body: dict[str, Any] | None = None,
             expect: int = 200) -> Any:
        status, payload = self(method, path, body)
        assert status == expect, (method, path, status, payload)
        return json.loads(payload)

    def poll(self, path: str, field: str, done: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.json("GET", path)
            if answer[field] == done or time.monotonic() > deadline:
                return answer
            time.sleep(0.2)


def test_the_gdpr_walkthroughs_work_with_curl_against_a_running_server(settings: Settings) -> None:
    for command in (("domain", "add", "example.test"),
                    ("user", "add", "alice@example.test", "--password-stdin"),
                    ("user", "add", "bob@example.test", "--password-stdin")):
        assert ledgermail(settings, *command, stdin=PASSWORD).returncode == 0
    assert ledgermail(settings, "deliver", "alice@example.test", stdin=MESSAGE).returncode == 0
    assert ledgermail(settings, "consent", "give", "carol@example.org",
                      "--purpose", "newsletter").returncode == 0
    created = ledgermail(settings, "token", "create", "--name", "dpo", "--scope", SCOPES)
    assert created.returncode == 0, created.stderr
    port = free_port()
    server = start_server(settings, port)
    try:
        wait_for_health(port, server)
        curl = Curl(f"http://127.0.0.1:{port}/api/v1", created.stdout.strip())

        # A. Access request: what is held, the export, the processing history.
        held = curl.json("GET", "/subjects/alice@example.test")
        assert held["address"] == "alice@example.test"
        assert next(m for m in held["mailboxes"] if m["name"] == "INBOX")["messages"] == 1
        job = curl.json("POST", "/exports", {"address": "alice@example.test"}, expect=202)
        assert curl.poll(f"/exports/{job['export_id']}", "status", "done")["status"] == "done"
        status, archive = curl("GET", f"/exports/{job['export_id']}/download")
        assert status == 200
        with zipfile.ZipFile(io.BytesIO(archive)) as exported:
            assert json.loads(exported.read("account.json"))["address"] == "alice@example.test"
            assert CANARY.encode() in exported.read("mailboxes/INBOX.mbox")
        assert curl.json("DELETE", f"/exports/{job['export_id']}")["deleted"] is True
        history = curl.json("GET", "/audit?subject=alice@example.test&limit=1000")
        assert len({e["subject"] for e in history}) == 1
        assert {"Account.Created", "AccessLedger.DataAccessed"} <= {e["event_type"] for e in history}
        assert {e["purpose"] for e in history} >= {"api", "access-request"}

        # E. Rectification.
        profile = curl.json("PATCH", "/subjects/alice@example.test/profile",
                            {"display_name": "Alice Smith-Jones"})
        assert profile["display_name"] == "Alice Smith-Jones"

        # C. Withdrawal of consent: by the API, idempotently, then by the one-click link.
        [consent] = curl.json("GET", "/subjects/carol@example.org/consents")
        assert consent["state"] == "given" and consent["source"] == "cli"
        assert curl.json("DELETE", "/subjects/carol@example.org/consents/newsletter") == {"changed": True}
        assert curl.json("DELETE", "/subjects/carol@example.org/consents/newsletter") == {"changed": False}
        curl.json("POST", "/subjects/carol@example.org/consents", {"purpose": "newsletter"}, expect=201)
        # The link names the http listener, as the server's own configuration says.
        env = command_env(settings)
        env["LEDGERMAIL_LISTEN__HTTP"] = f"127.0.0.1:{port}"
        link = ledgermail(settings, "consent", "link", "carol@example.org", "--purpose", "newsletter",
                          env=env)
        assert link.returncode == 0, link.stderr
        for _ in range(2):  # idempotent
            status, _page = curl("POST", "", url=link.stdout.strip(), form="List-Unsubscribe=One-Click")
            assert status == 200
        [consent] = curl.json("GET", "/subjects/carol@example.org/consents")
        assert consent["state"] == "withdrawn"
        forged = link.stdout.strip()[:-4] + "AAAA"
        assert curl("POST", "", url=forged, form="List-Unsubscribe=One-Click")[0] in (400, 404)

        # D. A legal hold refuses the erasure (409, the reason), until released.
        curl.json("POST", "/subjects/bob@example.test/hold",
                  {"reason": "litigation", "case_id": "LIT-2026-17"}, expect=201)
        assert [h["case_id"] for h in curl.json("GET", "/holds")] == ["LIT-2026-17"]
        status, refusal = curl("POST", "/erasures", {"address": "bob@example.test", "reason": "Art. 17"})
        assert status == 409 and b"litigation" in refusal
        curl.json("DELETE", "/subjects/bob@example.test/hold/LIT-2026-17")
        assert curl.json("GET", "/holds") == []

        # B. Erasure: 202, then the receipt; the trail stays intact.
        request = curl.json("POST", "/erasures", {"address": "alice@example.test",
                                                  "reason": "Art. 17 request, ticket 2026-42"}, expect=202)
        done = curl.poll(f"/erasures/{request['request_id']}", "status", "completed")
        assert done["status"] == "completed" and done["receipt"]["verification"]["passed"] is True
        assert curl("GET", "/subjects/alice@example.test")[0] == 404
        assert curl.json("GET", "/audit/verify")["intact"] is True
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert b"Traceback" not in err
    assert CANARY.encode() not in out + err
