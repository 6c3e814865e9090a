"""The privacy portal, ``/portal`` (issue 7), driven over HTTP with TestClient on both
backends: login through the throttle the mail protocols share, CSRF, session timeouts,
no personal data in URLs or logs, consents, export, erasure with its receipt, access
events, and the admin console.

The client's base URL is https so the ``Secure`` session cookie is sent back.
"""

from __future__ import annotations

import imaplib
import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.bootstrap import Container
from api.main import create_app
from api.portal import create_portal
from domain.application.context import acting
from tests.imap_support import running_imap

PASSWORD = "correct horse battery"
ALICE, BOB = "alice@example.test", "bob@example.test"
BASE = "https://testserver"
WAIT_SECONDS = 60.0
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_person(store: Container, address: str, body: bytes | None = None) -> None:
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.create_account(address, PASSWORD)
        if body is not None:
            store.app.deliver([address], body)


class Browser:
    """A TestClient that remembers every URL it asked for and every redirect it got,
    so a test can check that no personal data ever went into one."""

    def __init__(self, app: FastAPI) -> None:
        self.client = TestClient(app, base_url=BASE)
        self.urls: list[str] = []
        self.client.event_hooks = {"request": [self._request], "response": [self._response]}

    def _request(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    def _response(self, response: httpx.Response) -> None:
        if "location" in response.headers:
            self.urls.append(response.headers["location"])

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        return self.client.post(path, data=data, follow_redirects=False, **kwargs)

    def csrf(self, path: str = "/portal/login") -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        match = _CSRF.search(page.text)
        assert match is not None, page.text
        return match.group(1)

    def login(self, address: str = ALICE, password: str = PASSWORD) -> httpx.Response:
        return self.post("/portal/login", {"address": address, "password": password,
                                           "csrf_token": self.csrf()})

    @property
    def cookie(self) -> str | None:
        return self.client.cookies.get("lm_portal")


@pytest.fixture
def app(store: Container) -> FastAPI:
    return create_app(store)


@pytest.fixture
def browser(app: FastAPI) -> Browser:
    return Browser(app)


@pytest.fixture
def fast_throttle(store: Container) -> Iterator[None]:
    """No growing delay (the abuse tests time it), and a lockout after three failures."""
    store.settings.auth.failure_delay = 0.0
    store.settings.auth.login_lockout_failures = 3
    yield


def logged_in(browser: Browser, address: str = ALICE) -> None:
    response = browser.login(address)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/portal/"


def consent_source(store: Container, address: str, purpose: str) -> tuple[str, str]:
    row = next(row for row in store.app.consents_of(address) if row["purpose"] == purpose)
    return row["state"], row["source"]


def portal_rows(store: Container, address: str) -> list[Any]:
    store.catch_up()
    pseudonym = store.app.subject_pseudonym_for(address)
    return [row.entry for row in store.audit_trail.rows(pseudonym)]


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- logging in ----------------------------------------------------------------------------


def test_a_person_logs_in_with_the_mail_password_and_sees_what_is_held(
        store: Container, browser: Browser) -> None:
    add_person(store, ALICE, b"Subject: hi\r\n\r\nthe portal text\r\n")
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.give_consent(ALICE, "newsletter", source="cli")
        store.app.place_legal_hold(ALICE, "litigation 42", case_id="case-42")
        store.app.set_retention(ALICE, "Trash", 30)
    assert browser.get("/portal/", follow_redirects=False).headers["location"] == "/portal/login"
    browser.csrf()
    before = browser.cookie
    logged_in(browser)
    assert browser.cookie and browser.cookie != before  # a new session id at login

    page = browser.get("/portal/")
    assert page.status_code == 200
    assert ALICE in page.text
    assert re.search(r"INBOX</th><td class=\"num\">1</td>", page.text)
    assert "newsletter: given" in page.text
    assert "litigation 42" in page.text
    assert '<li id="retention-1">Mailbox Trash: deleted after 30 days</li>' in page.text
    assert '<html lang="en">' in page.text and '<main id="main"' in page.text


def test_the_session_cookie_is_secure_httponly_strict_and_only_for_the_portal(browser: Browser) -> None:
    page = browser.get("/portal/login")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("lm_portal=")
    assert len(cookie.split(";")[0].split("=", 1)[1]) >= 43  # token_urlsafe(32)
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/portal"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "max-age" not in cookie.lower() and "expires" not in cookie.lower()


def test_every_portal_response_carries_the_security_headers(store: Container, browser: Browser) -> None:
    for response in (browser.get("/portal/login"), browser.get("/portal/static/portal.css"),
                     browser.get("/portal/erasure/no-such-request"),
                     browser.post("/portal/consents", {"purpose": "x", "action": "give"})):
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    # No inline script or handler anywhere, so the strict CSP breaks nothing.
    html = browser.get("/portal/login").text
    assert "<script>" not in html and not re.search(r"\son[a-z]+=", html)


def test_a_wrong_password_and_an_unknown_address_get_the_same_refusal(
        store: Container, browser: Browser, fast_throttle: None) -> None:
    add_person(store, ALICE)
    wrong = browser.login(ALICE, "not the password")
    unknown = browser.login("nobody@example.test", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "The address or password is not right." in wrong.text
    assert wrong.text == unknown.text  # one session, so even the form's token is the same
    assert browser.get("/portal/", follow_redirects=False).status_code == 303


def test_failed_imap_logins_lock_the_portal_out_and_failed_portal_logins_lock_imap_out(
        store: Container, browser: Browser, fast_throttle: None) -> None:
    add_person(store, ALICE)
    add_person(store, BOB)
    with running_imap(store) as server:
        for _ in range(3):
            with imaplib.IMAP4("127.0.0.1", server.imap) as imap, pytest.raises(imaplib.IMAP4.error):
                imap.login(ALICE, "wrong")
        locked = browser.login(ALICE, PASSWORD)  # the right password, but locked out
        assert locked.status_code == 429, locked.text
        assert "Too many failed logins" in locked.text
        assert browser.get("/portal/", follow_redirects=False).status_code == 303

        for _ in range(3):
            assert browser.login(BOB, "wrong").status_code == 401
        assert browser.login(BOB, PASSWORD).status_code == 429
        with (imaplib.IMAP4("127.0.0.1", server.imap) as imap,
              pytest.raises(imaplib.IMAP4.error, match="too many failed logins")):
            imap.login(BOB, PASSWORD)


def test_logout_ends_the_session_on_the_server(store: Container, browser: Browser) -> None:
    add_person(store, ALICE)
    logged_in(browser)
    old = browser.cookie
    token = browser.csrf("/portal/consents")
    assert browser.post("/portal/logout", {"csrf_token": token}).headers["location"] == "/portal/login"
    assert browser.cookie is None
    browser.client.cookies.set("lm_portal", old or "", domain="testserver", path="/portal")
    assert browser.get("/portal/", follow_redirects=False).headers["location"] == "/portal/login"


# -- CSRF and sessions -----------------------------------------------------------------------


def test_a_form_without_or_with_a_wrong_csrf_token_or_from_another_site_is_refused_and_changes_nothing(
        store: Container, browser: Browser) -> None:
    add_person(store, ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.give_consent(ALICE, "newsletter", source="cli")
    # Login CSRF: a login form posted without the page's token.
    assert browser.post("/portal/login", {"address": ALICE, "password": PASSWORD}).status_code == 403
    assert browser.get("/portal/", follow_redirects=False).status_code == 303
    logged_in(browser)
    token = browser.csrf("/portal/consents")
    for data, headers in (({}, {}), ({"csrf_token": "forged"}, {}), ({"csrf_token": token[:-1]}, {}),
                          ({"csrf_token": token}, {"Origin": "https://evil.example"}),
                          ({"csrf_token": token}, {"Origin": "https://testserver.evil.example"}),
                          ({"csrf_token": "forged"}, {"Origin": "null"})):
        response = browser.post("/portal/consents", {"purpose": "newsletter", "action": "withdraw", **data},
                                headers=headers)
        assert response.status_code == 403, (data, headers)
        assert consent_source(store, ALICE, "newsletter") == ("given", "cli")
    for path in ("/portal/export", "/portal/erase", "/portal/logout"):
        assert browser.post(path, {"csrf_token": "forged", "password": PASSWORD,
                                   "confirm_address": ALICE}).status_code == 403
    exports = store.settings.data_dir / "exports" / str(store.app.account_id_for(ALICE))
    assert not exports.exists() or not any(exports.iterdir())
    assert store.app.index_for(ALICE).erasure_id is None
    assert browser.get("/portal/").status_code == 200  # logout was refused too
    # The same form from this site goes through (also with ``Origin: null``, which is what
    # browsers send under the portal's ``Referrer-Policy: no-referrer``).
    response = browser.post("/portal/consents", {"purpose": "newsletter", "action": "withdraw",
                                                 "csrf_token": token}, headers={"Origin": BASE})
    assert response.status_code == 303
    response = browser.post("/portal/consents", {"purpose": "newsletter", "action": "give",
                                                 "csrf_token": token}, headers={"Origin": "null"})
    assert response.status_code == 303
    response = browser.post("/portal/consents", {"purpose": "newsletter", "action": "withdraw",
                                                 "csrf_token": token})
    assert response.status_code == 303
    assert consent_source(store, ALICE, "newsletter") == ("withdrawn", "portal")


def test_a_session_ends_after_the_idle_timeout_and_after_its_absolute_lifetime(store: Container) -> None:
    add_person(store, ALICE)
    now = [1000.0]
    app = FastAPI()
    app.mount("/portal", create_portal(store, clock=lambda: now[0]))
    browser = Browser(app)
    idle, lifetime = store.settings.portal.session_idle_seconds, store.settings.portal.session_max_seconds
    assert (idle, lifetime) == (900, 28800)

    logged_in(browser)
    now[0] += idle - 1
    assert browser.get("/portal/consents").status_code == 200  # activity keeps it alive
    now[0] += idle + 1
    assert browser.get("/portal/consents", follow_redirects=False).headers["location"] == "/portal/login"

    logged_in(browser)
    started = now[0]
    while now[0] + idle - 10 < started + lifetime:
        now[0] += idle - 10
        assert browser.get("/portal/consents").status_code == 200
    now[0] = started + lifetime + 1
    assert browser.get("/portal/consents", follow_redirects=False).headers["location"] == "/portal/login"


# -- consents, export, erasure ---------------------------------------------------------------


def test_toggling_a_consent_changes_the_consent_ledger(store: Container, browser: Browser) -> None:
    add_person(store, ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.give_consent(ALICE, "newsletter", source="cli")
    logged_in(browser)
    page = browser.get("/portal/consents")
    assert "Withdraw consent" in page.text
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    assert browser.post("/portal/consents", {"purpose": "newsletter", "action": "withdraw",
                                             "csrf_token": token}).status_code == 303
    assert not store.app.has_consent(ALICE, "newsletter")
    assert consent_source(store, ALICE, "newsletter") == ("withdrawn", "portal")
    assert "Give consent" in browser.get("/portal/consents").text
    assert browser.post("/portal/consents", {"purpose": "newsletter", "action": "give",
                                             "csrf_token": token}).status_code == 303
    assert store.app.has_consent(ALICE, "newsletter")
    row = next(r for r in store.app.consents_of(ALICE) if r["purpose"] == "newsletter")
    assert (row["state"], row["basis"], row["source"]) == ("given", "consent", "portal")
    # The ledger names the account id as actor, never the address.
    actors = {e.actor for e in portal_rows(store, ALICE) if e.event_type.startswith("ConsentRecord.")}
    assert f"portal:{store.app.account_id_for(ALICE)}" in actors
    assert not any(ALICE in actor for actor in actors)


def start_export(browser: Browser) -> str:
    token = browser.csrf("/portal/export")
    assert browser.post("/portal/export", {"csrf_token": token}).headers["location"] == "/portal/export"
    found: list[str] = []

    def done() -> bool:
        found[:] = re.findall(r'href="(/portal/export/[^"]+/download)"', browser.get("/portal/export").text)
        return bool(found)

    wait_for(done, "the export")
    return found[0]


def test_the_export_download_is_a_zip_with_the_persons_message_and_only_for_them(
        store: Container, app: FastAPI) -> None:
    add_person(store, ALICE, b"Subject: hi\r\n\r\nthe exported portal text\r\n")
    add_person(store, BOB)
    alice, bob = Browser(app), Browser(app)
    logged_in(alice)
    link = start_export(alice)
    download = alice.get(link)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert download.headers["content-disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert json.loads(archive.read("account.json"))["address"] == ALICE
        assert b"the exported portal text" in archive.read("mailboxes/INBOX.mbox")
    # Someone else's session (or none) cannot fetch it, even with the link.
    logged_in(bob, BOB)
    assert bob.get(link).status_code == 404
    assert Browser(app).get(link, follow_redirects=False).status_code == 303
    reads = [e for e in portal_rows(store, ALICE) if e.purpose == "access-request"]
    assert reads and {e.actor for e in reads} == {f"portal:{store.app.account_id_for(ALICE)}"}


def test_erasing_through_the_portal_shows_the_receipt_and_the_login_then_fails(
        store: Container, app: FastAPI, browser: Browser, fast_throttle: None) -> None:
    add_person(store, ALICE, b"Subject: hi\r\n\r\nsoon gone\r\n")
    account_id = store.app.account_id_for(ALICE)
    logged_in(browser)
    page = browser.get("/portal/erase")
    assert 'data-confirm="' in page.text
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    mistyped = browser.post("/portal/erase", {"csrf_token": token, "password": PASSWORD,
                                              "confirm_address": "alice@example.org"})
    assert mistyped.status_code == 422
    wrong = browser.post("/portal/erase", {"csrf_token": token, "password": "wrong",
                                           "confirm_address": ALICE})
    assert wrong.status_code == 401
    assert store.app.index_for(ALICE).erasure_id is None

    erased = browser.post("/portal/erase", {"csrf_token": token, "password": PASSWORD,
                                            "confirm_address": ALICE.upper()})
    assert erased.status_code == 303
    receipt_url = erased.headers["location"]
    request_id = receipt_url.rsplit("/", 1)[1]
    assert receipt_url == f"/portal/erasure/{request_id}"

    wait_for(lambda: store.app.erasure_status(request_id)["status"] == "completed", "the erasure")
    page = browser.get(receipt_url)  # no login any more: the session remembers the request
    assert page.status_code == 200
    assert 'id="erasure-status">completed<' in page.text
    shown = re.search(r'<pre id="receipt" tabindex="0">(.*?)</pre>', page.text, re.S)
    assert shown is not None
    receipt = json.loads(shown.group(1).replace("&#34;", '"').replace("&quot;", '"'))
    assert receipt == store.app.erasure_status(request_id)["receipt"]
    assert receipt["verification"]["passed"] is True
    assert ALICE not in page.text

    assert browser.get("/portal/", follow_redirects=False).headers["location"] == "/portal/login"
    assert browser.login(ALICE, PASSWORD).status_code == 401
    assert Browser(app).get(receipt_url).status_code == 404  # another browser
    # The request names the person by account id, never by address.
    actors = {e.actor for e in portal_rows(store, ALICE) if e.event_type.startswith("ErasureRequest.")}
    assert actors == {f"portal:{account_id}"}


def test_a_legal_hold_refuses_an_erasure_asked_in_the_portal_and_says_so(
        store: Container, browser: Browser) -> None:
    add_person(store, ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.place_legal_hold(ALICE, "litigation 42", case_id="case-42")
    logged_in(browser)
    token = browser.csrf("/portal/erase")
    refused = browser.post("/portal/erase", {"csrf_token": token, "password": PASSWORD,
                                             "confirm_address": ALICE})
    assert refused.status_code == 409
    assert "legal hold" in refused.text
    assert store.app.account_id_for(ALICE)  # still there
    assert browser.get("/portal/").status_code == 200  # and still logged in


def test_every_page_showing_personal_data_records_an_access_event_first(
        store: Container, browser: Browser) -> None:
    add_person(store, ALICE)
    logged_in(browser)
    assert [e for e in portal_rows(store, ALICE) if e.event_type == "AccessLedger.DataAccessed"] == []
    for path in ("/portal/", "/portal/history", "/portal/consents"):
        assert browser.get(path).status_code == 200
    reads = [e for e in portal_rows(store, ALICE) if e.event_type == "AccessLedger.DataAccessed"]
    assert len(reads) == 3
    assert {(e.actor, e.protocol, e.purpose) for e in reads} == {
        (f"portal:{store.app.account_id_for(ALICE)}", "http", "portal")}
    # The history shows the person's own reads, newest first.
    history = browser.get("/portal/history").text
    positions = [int(p) for p in re.findall(r'<td class="num">(\d+)</td>', history)]
    assert positions == sorted(positions, reverse=True) and len(positions) > 3
    assert "AccessLedger.DataAccessed" in history


def test_the_history_pages_with_a_numeric_cursor(store: Container, browser: Browser) -> None:
    add_person(store, ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        for number in range(60):
            store.app.give_consent(ALICE, f"list{number}", source="cli")
    logged_in(browser)
    first = browser.get("/portal/history").text
    older = re.search(r'href="/portal/history\?before=(\d+)"', first)
    assert older is not None
    first_positions = [int(p) for p in re.findall(r'<td class="num">(\d+)</td>', first)]
    assert len(first_positions) == 50
    second = browser.get(f"/portal/history?before={older.group(1)}").text
    second_positions = [int(p) for p in re.findall(r'<td class="num">(\d+)</td>', second)]
    assert second_positions and max(second_positions) < min(first_positions)
    assert browser.get("/portal/history?before=abc").status_code == 422


def test_no_personal_data_appears_in_any_url_or_log_line_of_the_whole_flow(
        store: Container, browser: Browser, caplog: pytest.LogCaptureFixture) -> None:
    add_person(store, ALICE, b"Subject: hi\r\n\r\nthe text\r\n")
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.give_consent(ALICE, "newsletter", source="cli")
    caplog.set_level(logging.DEBUG)
    logged_in(browser)
    for path in ("/portal/", "/portal/history", "/portal/consents", "/portal/export", "/portal/erase"):
        assert browser.get(path).status_code == 200
    token = browser.csrf("/portal/consents")
    browser.post("/portal/consents", {"purpose": "newsletter", "action": "withdraw", "csrf_token": token})
    browser.get(start_export(browser))
    erased = browser.post("/portal/erase", {"csrf_token": token, "password": PASSWORD,
                                            "confirm_address": ALICE})
    request_id = erased.headers["location"].rsplit("/", 1)[1]
    wait_for(lambda: store.app.erasure_status(request_id)["status"] == "completed", "the erasure")
    browser.get(erased.headers["location"])
    assert len(browser.urls) > 15
    for url in browser.urls:
        assert "alice" not in url.lower() and "example.test" not in url.lower(), url
    for record in caplog.records:
        assert "alice" not in record.getMessage().lower(), record.getMessage()


# -- the admin console -----------------------------------------------------------------------


def admin_login(browser: Browser, token: str) -> httpx.Response:
    return browser.post("/portal/admin/login", {"token": token, "csrf_token": browser.csrf("/portal/admin")})


def test_the_admin_console_shows_open_requests_holds_policies_and_the_audit_chain(
        store: Container, browser: Browser) -> None:
    for person in (ALICE, BOB, "carol@example.test"):
        add_person(store, person)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.place_legal_hold(BOB, "tax audit 2026", case_id="case-77")
        store.app.set_retention("carol@example.test", "INBOX", 30)
        request_id, _step = store.app.request_erasure(ALICE, "asked by letter")
    _token_id, token = store.app.create_token("console", ["admin"])
    assert "Admin token" in browser.get("/portal/admin").text
    response = admin_login(browser, token)
    assert response.status_code == 303 and response.headers["location"] == "/portal/admin"

    page = browser.get("/portal/admin")
    assert page.status_code == 200
    opened = page.text[page.text.index('id="open-requests"'):page.text.index('id="holds"')]
    assert request_id in opened and "requested" in opened
    assert ALICE not in opened  # requests are listed without addresses
    holds = page.text[page.text.index('id="holds"'):page.text.index('id="policies"')]
    assert "case-77" in holds and "tax audit 2026" in holds and BOB in holds
    policies = page.text[page.text.index('id="policies"'):]
    assert "carol@example.test" in policies and "INBOX" in policies and ">30<" in policies
    assert 'id="audit-chain">Intact' in page.text
    # Showing Bob's hold and Carol's rule is a read of their data, recorded under the token.
    store.catch_up()
    reads = [(row.entry.subject, row.entry.actor) for row in store.audit_trail.rows()
             if row.entry.event_type == "AccessLedger.DataAccessed"]
    assert sorted(reads) == sorted([(store.app.subject_pseudonym_for(BOB), f"token:{_token_id}"),
                                    (store.app.subject_pseudonym_for("carol@example.test"),
                                     f"token:{_token_id}")])
    # The administrator may follow a request to its status page.
    assert browser.get(f"/portal/erasure/{request_id}").status_code == 200


def test_the_admin_console_refuses_tokens_without_the_admin_scope_and_revoked_ones(
        store: Container, browser: Browser, fast_throttle: None) -> None:
    _id, reader = store.app.create_token("reader", ["audit:read"])
    for token in (reader, "lm_0123456789abcdef_wrong", "garbage"):
        refused = admin_login(browser, token)
        assert refused.status_code == 403, token
        assert "Audit chain" not in refused.text
        assert "Audit chain" not in browser.get("/portal/admin").text
    admin_id, admin = store.app.create_token("console", ["admin"])
    assert admin_login(browser, admin).status_code == 303
    assert "Audit chain" in browser.get("/portal/admin").text
    store.app.revoke_token(admin_id)
    assert "Audit chain" not in browser.get("/portal/admin").text
    # A person's session is not an administrator's.
    add_person(store, ALICE)
    person = Browser(browser.client.app)  # type: ignore[arg-type]
    logged_in(person)
    assert "Audit chain" not in person.get("/portal/admin").text
