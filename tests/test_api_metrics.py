"""``GET /metrics`` (issue 7): Prometheus text format 0.0.4, values that match the store,
and no personal data anywhere in the page, on both backends."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from adapters.bootstrap import Container
from api.main import create_app
from domain.application.context import acting
from domain.application.submission import RemoteRecipient
from tests.smtp_support import add_user

SAMPLE = re.compile(r'^([a-z_]+)(\{[a-z_]+="[^"\\\n]*"\})? (-?[0-9]+)$')


def scrape(client: TestClient) -> tuple[str, dict[str, int]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = response.text
    assert body.endswith("\n")
    samples: dict[str, int] = {}
    for line in body.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = int(match.group(3))
    return body, samples


def test_metrics_match_the_store_and_hold_no_personal_data(store: Container) -> None:
    client = TestClient(create_app(store))
    body, samples = scrape(client)
    assert samples["ledgermail_outbound_queue_size"] == 0
    assert samples["ledgermail_accounts"] == 0
    assert samples['ledgermail_build_info{version="0.1.0"}'] == 1

    account_id = add_user(store, "alice@example.test")
    add_user(store, "bob@example.test")
    raw = b"From: alice@example.test\r\nTo: x@far.test\r\nSubject: q\r\n\r\nbody\r\n"
    with acting("user:alice", protocol="test", purpose="testing"):
        store.app.submit(account_id, "alice@example.test", [],
                         [RemoteRecipient("x@far.test"), RemoteRecipient("y@far.test")], raw)
    store.catch_up()

    body, samples = scrape(client)
    log_position = store.app.recorder.max_notification_id()
    assert samples["ledgermail_events_total"] == log_position
    positions = store.projections.positions()
    assert positions
    for name, position in positions.items():
        assert samples[f'ledgermail_projection_position{{projection="{name}"}}'] == position
        assert samples[f'ledgermail_projection_lag{{projection="{name}"}}'] == log_position - position
    assert samples["ledgermail_outbound_queue_size"] == store.mailbox_view.queue_size() == 1
    assert samples["ledgermail_accounts"] == 2
    assert "# TYPE ledgermail_events_total counter" in body
    assert "@" not in body
    assert str(account_id) not in body and "alice" not in body


def test_metrics_need_no_token_and_stay_out_of_the_api_schema(store: Container) -> None:
    client = TestClient(create_app(store))
    assert client.get("/metrics").status_code == 200
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
