"""The portal's "Spam and Junk" page (issue 8), over HTTP on both backends: it lists the
newest messages of Junk and INBOX, records the read, and its buttons move a message
through IMAP MOVE's use case so the person's own spam filter learns from it — only for
the person's own mailboxes, only with the form's CSRF token, and with no address in any
URL of the flow.
"""

from __future__ import annotations

import re
from uuid import UUID

from fastapi import FastAPI

from adapters.bootstrap import Container
from domain.application.context import acting
from domain.application.spam_learning import TRAINING_PURPOSE
from domain.model.spam_filter import spam_filter_id_for
from projections.audit_trail.view import AuditEntry
from tests.test_portal import ALICE, BOB, Browser, add_person, app, browser, logged_in, portal_rows

__all__ = ["app", "browser"]  # the fixtures, re-exported for pytest

SPAM = (b"From: Prize Desk <winner@lottery.example>\r\nSubject: You won <b>a prize</b> now\r\n"
        b"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nclaim your lottery prize money now\r\n")
HAM = (b"From: =?utf-8?q?Ren=C3=A9e?= <renee@friends.example>\r\nSubject: =?utf-8?q?Caf=C3=A9?= on Friday\r\n"
       b"Date: Tue, 3 Nov 2026 09:00:00 +0000\r\n\r\nshall we meet for lunch at the usual place\r\n")
_FORM = re.compile(r'name="mailbox" value="([^"]+)">\s*<input type="hidden" name="uid" value="(\d+)">\s*'
                   r'<button type="submit" name="verdict" value="(spam|ham)"')


def setup_mail(store: Container) -> UUID:
    """Alice with the spam in Junk and the friend's mail in INBOX; her account id."""
    add_person(store, ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.deliver([ALICE], SPAM, folder="junk")
        store.app.deliver([ALICE], HAM)
    return store.app.account_id_for(ALICE)


def counts(store: Container, account_id: UUID) -> dict[str, int]:
    """Messages per mailbox, as the mailbox view (what IMAP serves) has them."""
    store.catch_up()
    return {row.name: row.messages for row in store.mailbox_view.mailboxes(account_id)}


def forms(page: str) -> dict[str, tuple[str, str]]:
    """The page's filing forms by verdict: (mailbox id, uid)."""
    return {verdict: (mailbox, uid) for mailbox, uid, verdict in _FORM.findall(page)}


def trained(store: Container, address: str) -> list[AuditEntry]:
    return [e for e in portal_rows(store, address) if e.event_type == "SpamFilter.Trained"]


def assert_no_address_in_urls(browser: Browser) -> None:
    assert browser.urls
    for url in browser.urls:
        lowered = url.lower()
        for part in ("alice", "bob", "example.test", "lottery", "renee", "friends.example"):
            assert part not in lowered, url


def test_the_page_lists_junk_and_inbox_escaped_and_records_the_read_first(
        store: Container, browser: Browser) -> None:
    setup_mail(store)
    logged_in(browser)
    assert [e for e in portal_rows(store, ALICE) if e.event_type == "AccessLedger.DataAccessed"] == []

    page = browser.get("/portal/junk")

    assert page.status_code == 200, page.text
    assert "You won &lt;b&gt;a prize&lt;/b&gt; now" in page.text and "<b>a prize</b>" not in page.text
    assert "Café on Friday" in page.text and "Renée" in page.text  # RFC 2047 decoded
    assert "Prize Desk &lt;winner@lottery.example&gt;" in page.text
    assert "2 Nov 2026" in page.text
    assert set(forms(page.text)) == {"spam", "ham"}
    assert page.text.count('name="csrf_token"') == 3  # two filing forms and the logout form
    assert 'href="/portal/junk" aria-current="page">Spam and Junk' in page.text
    reads = [e for e in portal_rows(store, ALICE) if e.event_type == "AccessLedger.DataAccessed"]
    assert [(e.actor, e.purpose) for e in reads] == [(f"portal:{store.app.account_id_for(ALICE)}", "portal")]
    # The nav of every person's page links it.
    assert 'href="/portal/junk"' in browser.get("/portal/consents").text


def test_the_page_lists_only_the_newest_messages(store: Container, browser: Browser) -> None:
    add_person(store, ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        for number in range(53):
            store.app.deliver([ALICE], f"Subject: note {number:02d}\r\n\r\ntext\r\n".encode())
    logged_in(browser)
    page = browser.get("/portal/junk").text
    assert "The newest 50 of 53 messages" in page
    assert "note 52" in page and "note 03" in page and "note 02" not in page
    assert page.index("note 52") < page.index("note 03")  # newest first


def test_not_spam_moves_the_junk_message_to_inbox_and_trains_ham(store: Container, browser: Browser) -> None:
    account_id = setup_mail(store)
    logged_in(browser)
    page = browser.get("/portal/junk").text
    token = browser.csrf("/portal/junk")
    mailbox, uid = forms(page)["ham"]
    assert (counts(store, account_id)["INBOX"], counts(store, account_id)["Junk"]) == (1, 1)

    response = browser.post("/portal/junk", {"mailbox": mailbox, "uid": uid, "verdict": "ham",
                                             "csrf_token": token})

    assert response.status_code == 303 and response.headers["location"] == "/portal/junk"
    assert counts(store, account_id)["INBOX"] == 2 and counts(store, account_id)["Junk"] == 0
    assert store.app.spam_filter_counts(account_id) == (0, 1)
    events = trained(store, ALICE)
    assert [(e.actor, e.purpose, e.stream_id) for e in events] == [
        (f"portal:{account_id}", TRAINING_PURPOSE, str(spam_filter_id_for(account_id)))]
    after = browser.get("/portal/junk").text
    assert "as not spam" in after and 'role="status"' in after
    assert "as not spam" not in browser.get("/portal/junk").text  # the notice is shown once
    assert_no_address_in_urls(browser)


def test_spam_moves_the_inbox_message_to_junk_and_trains_spam(store: Container, browser: Browser) -> None:
    account_id = setup_mail(store)
    logged_in(browser)
    mailbox, uid = forms(browser.get("/portal/junk").text)["spam"]
    token = browser.csrf("/portal/junk")

    response = browser.post("/portal/junk", {"mailbox": mailbox, "uid": uid, "verdict": "spam",
                                             "csrf_token": token})

    assert response.status_code == 303
    assert counts(store, account_id)["INBOX"] == 0 and counts(store, account_id)["Junk"] == 2
    assert store.app.spam_filter_counts(account_id) == (1, 0)
    assert len(trained(store, ALICE)) == 1
    assert "as spam" in browser.get("/portal/junk").text
    # Posting the same form again (a double click): nothing left to move, nothing learned.
    again = browser.post("/portal/junk", {"mailbox": mailbox, "uid": uid, "verdict": "spam",
                                          "csrf_token": token})
    assert again.status_code == 303
    assert "no longer there" in browser.get("/portal/junk").text
    assert store.app.spam_filter_counts(account_id) == (1, 0)
    assert counts(store, account_id)["Junk"] == 2
    assert_no_address_in_urls(browser)


def test_a_form_naming_another_persons_or_the_wrong_mailbox_moves_nothing(
        store: Container, browser: Browser) -> None:
    alice_id = setup_mail(store)
    add_person(store, BOB)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.deliver([BOB], SPAM, folder="junk")
        store.app.deliver([BOB], HAM)
    bob_id = store.app.account_id_for(BOB)
    bob_junk = str(store.app.mailbox_id_of(bob_id, "Junk"))
    bob_inbox = str(store.app.mailbox_id_of(bob_id, "INBOX"))
    alice_inbox = str(store.app.mailbox_id_of(alice_id, "INBOX"))
    before = (counts(store, alice_id), counts(store, bob_id))
    logged_in(browser)
    token = browser.csrf("/portal/junk")

    for mailbox, uid, verdict in ((bob_junk, "1", "ham"), (bob_inbox, "1", "spam"),
                                  (alice_inbox, "1", "ham"),  # INBOX is not Junk: no "Not spam" there
                                  ("not-a-uuid", "1", "ham"), (alice_inbox, "0", "spam"),
                                  (alice_inbox, "١", "spam"), (alice_inbox, "4294967296", "spam")):
        response = browser.post("/portal/junk", {"mailbox": mailbox, "uid": uid, "verdict": verdict,
                                                 "csrf_token": token})
        assert response.status_code == 404, (mailbox, uid, verdict, response.status_code)
    assert browser.post("/portal/junk", {"mailbox": alice_inbox, "uid": "1", "verdict": "maybe",
                                         "csrf_token": token}).status_code == 422

    assert (counts(store, alice_id), counts(store, bob_id)) == before
    assert store.app.spam_filter_counts(alice_id) == store.app.spam_filter_counts(bob_id) == (0, 0)
    assert trained(store, ALICE) == [] and trained(store, BOB) == []


def test_a_filing_form_without_the_csrf_token_is_refused_and_moves_nothing(
        store: Container, app: FastAPI, browser: Browser) -> None:
    account_id = setup_mail(store)
    logged_in(browser)
    page = browser.get("/portal/junk").text
    token = browser.csrf("/portal/junk")
    mailbox, uid = forms(page)["ham"]
    before = counts(store, account_id)
    for data, headers in (({}, {}), ({"csrf_token": "forged"}, {}),
                          ({"csrf_token": token}, {"Origin": "https://evil.example"})):
        response = browser.post("/portal/junk", {"mailbox": mailbox, "uid": uid, "verdict": "ham", **data},
                                headers=headers)
        assert response.status_code == 403, (data, headers)
    assert counts(store, account_id) == before
    assert store.app.spam_filter_counts(account_id) == (0, 0)
    assert trained(store, ALICE) == []
    # Logged out, the page is not shown and its form does nothing.
    anonymous = Browser(app)
    assert anonymous.get("/portal/junk", follow_redirects=False).headers["location"] == "/portal/login"
    assert anonymous.post("/portal/junk", {"mailbox": mailbox, "uid": uid, "verdict": "ham",
                                           "csrf_token": token}).status_code == 403
    assert counts(store, account_id) == before


def test_without_a_junk_mailbox_the_page_says_so_and_spam_is_refused(
        store: Container, browser: Browser) -> None:
    add_person(store, ALICE, HAM)
    account_id = store.app.account_id_for(ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.delete_mailbox(account_id, "Junk")
    logged_in(browser)
    page = browser.get("/portal/junk").text
    assert "You have no Junk mailbox" in page
    mailbox, uid = forms(page)["spam"]
    response = browser.post("/portal/junk", {"mailbox": mailbox, "uid": uid, "verdict": "spam",
                                             "csrf_token": browser.csrf("/portal/junk")})
    assert response.status_code == 409
    assert counts(store, account_id)["INBOX"] == 1
    assert store.app.spam_filter_counts(account_id) == (0, 0)
