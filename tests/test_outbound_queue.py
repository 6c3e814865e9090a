"""The outbound queue end to end: two ledgermail instances in one test, A relaying to
B's domain through a fake resolver (the edge of the world), on SQLite and PostgreSQL.

A's real submission listener takes the message; A's queue worker (the class ``serve``
runs) routes it by MX to B's real SMTP listener; what B stored is checked byte for byte
and its DKIM signatures are verified with dkimpy against the records
``ledgermail domain dns`` prints. Scripted peers stand in for remote MTAs that answer
450 or 550, or offer no STARTTLS.
"""

from __future__ import annotations

import asyncio
import email
import re
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dkim
import pytest
from fastapi.testclient import TestClient

from adapters import bootstrap
from adapters.bootstrap import Container, build
from adapters.config import Settings
from adapters.smtp.dkim_signing import dns_records
from api.main import create_app
from domain.application.context import acting
from domain.application.outbound import RetryPolicy
from domain.model.outbound import outbound_message_id_for, outbox_id_for
from tests.conftest import drop_schemas, make_settings
from tests.outbound_support import FakeResolver, ScriptedPeer
from tests.smtp_support import PASSWORD, add_user, client_context, inbox_bodies, running_smtp

ALICE = "alice@example.test"
BOB = "bob@b.test"
CAROL = "carol@b.test"
FAST = RetryPolicy(min_backoff=0.2, max_backoff=0.4, max_age=3600.0, delay_warning=0.0)


@pytest.fixture
def peer_settings(tmp_path: Path, backend: str) -> Iterator[Settings]:
    current = make_settings(tmp_path / "b", backend)
    yield current
    drop_schemas(current)


@pytest.fixture
def peer(peer_settings: Settings) -> Iterator[Container]:
    """Instance B: its own store, the domain b.test, Bob and Carol."""
    container = build(peer_settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("b.test")
        add_user(container, BOB)
        add_user(container, CAROL)
        yield container
    finally:
        container.close()


def resolver_to(port_owner: str = "mx.b.test", txt: dict[str, list[str]] | None = None) -> FakeResolver:
    return FakeResolver(mx={"b.test": [(10, port_owner)]}, addresses={port_owner: ["127.0.0.1"]},
                        txt=txt or {})


def submit(port: int, raw: bytes, recipients: list[str], sender: str = ALICE, **mail: Any) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as client:
        client.starttls(context=client_context())
        client.login(sender, PASSWORD)
        refused = client.sendmail(sender, recipients, raw, **mail)
        assert refused == {}


def letter(subject: str, to: str = BOB, *, extra: bytes = b"") -> bytes:
    return (f"From: Alice <{ALICE}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.test>\r\n".encode()
            + extra + b"\r\nHello from A.\r\n.leading dot line\r\n")


def run_queue(store: Container, resolver: FakeResolver, *, rounds: int = 1, pause: float = 0.0,
              https_get: Any = None, **overrides: Any) -> None:
    """Let A's queue worker deliver what is due, ``rounds`` times, ``pause`` apart."""

    async def go() -> None:
        worker = bootstrap.queue_worker(store, resolver=resolver, https_get=https_get, **overrides)
        for number in range(rounds):
            if number:
                await asyncio.sleep(pause)
            store.catch_up()
            await worker.run_once()
        store.catch_up()

    asyncio.run(go())


def queued(store: Container, number: int = 1) -> Any:
    with acting("admin:test", protocol="test", purpose="testing"):
        account = store.app.account_for(ALICE)
        message = store.app.repository.get(outbound_message_id_for(outbox_id_for(account.id), number))
        store.app.evict(message.id)
        return message


def event_types(store: Container, number: int = 1) -> list[str]:
    with acting("admin:test", protocol="test", purpose="testing"):
        account = store.app.account_for(ALICE)
        stream = outbound_message_id_for(outbox_id_for(account.id), number)
        return [type(e).__name__ for e in store.app.events.get(stream)]


def dkim_dns(store: Container, domain: str = "example.test") -> dict[bytes, bytes]:
    keys = bootstrap.dkim_keyring(store).keys_for(domain)
    records = dns_records(domain, keys, mx_host="mx.example.test", mta_sts_id=None)
    return {f"{r.name}.".encode(): r.value.encode() for r in records if "_domainkey" in r.name}


def test_a_message_submitted_to_a_reaches_b_by_mx_signed_with_both_dkim_keys(
        store: Container, peer: Container) -> None:
    add_user(store, ALICE)
    raw = letter("relay one")
    with running_smtp(store) as a, running_smtp(peer) as b:
        submit(a.submission, raw, [BOB])
        store.catch_up()
        assert store.mailbox_view.queue_size() == 1
        run_queue(store, resolver_to(), mx_port=b.mx)
    peer.catch_up()
    [arrived] = inbox_bodies(peer, BOB)
    # What A sent is what was submitted, below A's trace field and the two signatures.
    assert arrived.endswith(raw)
    message = email.message_from_bytes(arrived)
    signatures = message.get_all("DKIM-Signature")
    assert len(signatures) == 2
    assert {re.search(r"a=([\w-]+)", s).group(1) for s in signatures} == {"rsa-sha256", "ed25519-sha256"}
    # B's copy starts with B's own Received field; DKIM verifies both, as B would.
    records = dkim_dns(store)
    signed = arrived[arrived.index(b"DKIM-Signature"):]
    verifier = dkim.DKIM(signed)
    assert verifier.verify(idx=0, dnsfunc=lambda name, timeout=5: records.get(name))
    assert verifier.verify(idx=1, dnsfunc=lambda name, timeout=5: records.get(name))
    tampered = signed.replace(b"Hello from A.", b"Hello from Z.")
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: records.get(name))
    assert queued(store).status == "delivered"
    assert event_types(store) == ["Queued", "Leased", "Attempted", "Delivered"]
    assert store.mailbox_view.queue_size() == 0
    assert queued(store).outcomes[BOB]["code"] == 250


def test_a_message_for_two_domains_is_queued_once_per_domain(store: Container, peer: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as a:
        submit(a.submission, letter("split"), [BOB, "dave@c.test", CAROL])
    first, second = queued(store, 1), queued(store, 2)
    assert (first.domain, [r["address"] for r in first.recipients]) == ("b.test", [BOB, CAROL])
    assert (second.domain, [r["address"] for r in second.recipients]) == ("c.test", ["dave@c.test"])
    assert first.blob_id == second.blob_id


def test_while_b_is_down_the_message_is_deferred_then_delivered_when_b_comes_up(
        store: Container, peer: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as a:
        submit(a.submission, letter("patience"), [BOB])
    with running_smtp(peer) as b:
        b_port = b.mx
    # B is down now: nothing listens on its port.
    run_queue(store, resolver_to(), mx_port=b_port, policy=FAST)
    waiting = queued(store)
    assert waiting.status == "deferred" and waiting.attempts == 1
    assert BOB not in waiting.outcomes
    assert inbox_bodies(store, ALICE) == []  # no report: a deferral is not a failure
    with running_smtp(peer) as b:
        run_queue(store, resolver_to(), rounds=20, pause=0.1, mx_port=b.mx, policy=FAST)
        peer.catch_up()
        assert len(inbox_bodies(peer, BOB)) == 1
    assert queued(store).status == "delivered"
    assert event_types(store) == ["Queued", "Leased", "Attempted", "Deferred", "Leased", "Attempted",
                                  "Delivered"]


def test_a_550_from_b_bounces_with_a_dsn_in_the_senders_inbox_carrying_the_original_headers(
        store: Container, peer: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as a, running_smtp(peer) as b:
        submit(a.submission, letter("to nobody", to="nobody@b.test"), ["nobody@b.test"])
        run_queue(store, resolver_to(), mx_port=b.mx)
    assert queued(store).status == "bounced"
    assert event_types(store) == ["Queued", "Leased", "Attempted", "Bounced"]
    store.catch_up()
    [dsn] = inbox_bodies(store, ALICE)
    report = email.message_from_bytes(dsn)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = [part.get_content_type() for part in report.walk()]
    assert "message/delivery-status" in parts
    status = dsn.decode()
    assert "Final-Recipient: rfc822; nobody@b.test" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    # The original's header comes back (RET=HDRS is the default), not its body.
    assert "Subject: to nobody" in status and "Message-ID: <to-nobody@example.test>" in status
    assert "Hello from A." not in status


def test_a_450_answered_past_the_maximum_age_expires_with_a_dsn(store: Container) -> None:
    add_user(store, ALICE)
    with ScriptedPeer(rcpt_reply="450 4.2.1 Mailbox busy, try later") as remote, running_smtp(store) as a:
        submit(a.submission, letter("never"), [BOB])
        policy = RetryPolicy(min_backoff=0.2, max_backoff=0.2, max_age=1.0, delay_warning=0.0)
        deadline = time.monotonic() + 20
        while queued(store).status != "expired" and time.monotonic() < deadline:
            run_queue(store, resolver_to(), mx_port=remote.port, policy=policy)
            time.sleep(0.1)
        tries = sum(1 for line in remote.log.commands if line.startswith("RCPT"))
    message = queued(store)
    assert message.status == "expired"
    assert tries == message.attempts >= 2
    assert remote.log.messages == []
    assert message.outcomes[BOB]["status"] == "4.4.7"
    store.catch_up()
    [dsn] = inbox_bodies(store, ALICE)
    text = dsn.decode()
    assert "Action: failed" in text and "Status: 4.4.7" in text
    assert "Final-Recipient: rfc822; bob@b.test" in text
    assert "Subject: never" in text


def test_a_delay_notice_is_sent_once_after_the_warning_time(store: Container) -> None:
    add_user(store, ALICE)
    with ScriptedPeer(rcpt_reply="451 4.3.0 Not now") as remote, running_smtp(store) as a:
        submit(a.submission, letter("slow"), [BOB])
        policy = RetryPolicy(min_backoff=0.1, max_backoff=0.1, max_age=3600.0, delay_warning=0.3)
        for _ in range(8):
            run_queue(store, resolver_to(), mx_port=remote.port, policy=policy)
            time.sleep(0.15)
    message = queued(store)
    assert message.status == "deferred" and message.delay_reported and message.attempts >= 3
    assert event_types(store).count("DelayReported") == 1
    store.catch_up()
    [notice] = inbox_bodies(store, ALICE)
    assert b"Action: delayed" in notice and b"Status: 4.3.0" in notice
    assert b"Will-Retry-Until:" in notice


def enforcing_policy(url: str) -> tuple[int, str, bytes]:
    assert url == "https://mta-sts.b.test/.well-known/mta-sts.txt"
    return 200, "text/plain", b"version: STSv1\r\nmode: enforce\r\nmx: mx.b.test\r\nmax_age: 86400\r\n"


def test_an_enforcing_mta_sts_domain_without_starttls_is_deferred_and_never_sent_in_plaintext(
        store: Container) -> None:
    add_user(store, ALICE)
    sts = {"_mta-sts.b.test": ["v=STSv1; id=20261127"]}
    with ScriptedPeer() as remote, running_smtp(store) as a:  # a plain peer: no STARTTLS
        submit(a.submission, letter("secret"), [BOB])
        run_queue(store, resolver_to(txt=sts), mx_port=remote.port, policy=FAST, https_get=enforcing_policy)
        assert remote.log.commands == []  # not even MAIL FROM went over plaintext
        assert remote.log.messages == []
    message = queued(store)
    assert message.status == "deferred" and BOB not in message.outcomes
    # Without the policy the same peer takes the message (opportunistic TLS).
    with ScriptedPeer() as remote:
        run_queue(store, resolver_to(), rounds=10, pause=0.1, mx_port=remote.port, policy=FAST)
        assert len(remote.log.messages) == 1
    assert queued(store).status == "delivered"


def test_requiretls_mail_is_not_sent_to_a_peer_without_tls(store: Container) -> None:
    add_user(store, ALICE)
    with ScriptedPeer() as remote, running_smtp(store) as a:
        submit(a.submission, letter("must be tls"), [BOB], mail_options=["REQUIRETLS"])
        assert queued(store).requiretls
        run_queue(store, resolver_to(), mx_port=remote.port, policy=FAST)
        assert remote.log.commands == []
    assert BOB not in queued(store).outcomes or queued(store).outcomes[BOB]["code"] >= 400


def test_purpose_mail_reaches_only_consenting_recipients_and_the_one_click_post_withdraws(
        store: Container, peer: Container) -> None:
    add_user(store, ALICE)
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.give_consent(BOB, "newsletter", source="test")
    news = letter("news one", to="subscribers@example.test", extra=b"X-Ledgermail-Purpose: newsletter\r\n")
    with running_smtp(store) as a, running_smtp(peer) as b:
        submit(a.submission, news, [BOB, CAROL])
        run_queue(store, resolver_to(), mx_port=b.mx)
        peer.catch_up()
        [got] = inbox_bodies(peer, BOB)
        assert inbox_bodies(peer, CAROL) == []
        assert b"X-Ledgermail-Purpose" not in got
        message = email.message_from_bytes(got)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = message["List-Unsubscribe"].strip("<>")
        # The unsubscribe fields are covered by the DKIM signatures (RFC 8058 §4).
        records = dkim_dns(store)
        signed = got[got.index(b"DKIM-Signature"):]
        assert dkim.DKIM(signed).verify(idx=0, dnsfunc=lambda name, timeout=5: records.get(name))
        assert b"list-unsubscribe-post" in signed.split(b"\r\n\r\n")[0].lower()
        assert "RecipientsSuppressed" in event_types(store)
        assert queued(store).outcomes[CAROL]["status"] == "5.7.1"
        store.catch_up()
        [report] = inbox_bodies(store, ALICE)
        assert b"Final-Recipient: rfc822; carol@b.test" in report and b"Status: 5.7.1" in report
        assert b"bob@b.test" not in report.split(b"message/delivery-status")[1].split(b"--")[0]

        # Bob clicks: the one-click POST (RFC 8058 §3.1) withdraws at once.
        client = TestClient(create_app(store))
        answer = client.post(urlparse(url).path, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
        with acting("admin:test", protocol="test", purpose="testing"):
            assert not store.app.has_consent(BOB, "newsletter")
        submit(a.submission, letter("news two", extra=b"X-Ledgermail-Purpose: newsletter\r\n"), [BOB])
        run_queue(store, resolver_to(), mx_port=b.mx)
        peer.catch_up()
        assert len(inbox_bodies(peer, BOB)) == 1  # news two was not sent
    assert queued(store, 2).outcomes[BOB]["status"] == "5.7.1"
    assert queued(store, 2).status == "bounced"


def test_a_bad_purpose_field_is_refused_at_submission(store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as a, pytest.raises(smtplib.SMTPDataError) as refused:
        submit(a.submission, letter("x", extra=b"X-Ledgermail-Purpose: two words\r\n"), [BOB])
    assert refused.value.smtp_code == 554
    with acting("admin:test", protocol="test", purpose="testing"):
        account = store.app.account_for(ALICE)
        assert store.app.load_or_none(outbox_id_for(account.id)) is None


def test_every_attempt_appears_in_the_audit_trail(store: Container, peer: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as a, running_smtp(peer) as b:
        submit(a.submission, letter("audited"), [BOB])
        run_queue(store, resolver_to(), mx_port=b.mx)
    store.catch_up()
    rows = [row.entry for row in store.audit_trail.rows()]
    kinds = [row.event_type for row in rows if row.event_type.startswith("OutboundMessage")]
    assert kinds == ["OutboundMessage.Queued", "OutboundMessage.Leased", "OutboundMessage.Attempted",
                     "OutboundMessage.Delivered"]
    attempted = next(row for row in rows if row.event_type == "OutboundMessage.Attempted")
    assert attempted.actor == "system:outbound"
    assert "bob" not in str(attempted)


def test_purpose_mail_to_a_local_recipient_without_consent_is_not_delivered_and_is_reported(
        store: Container) -> None:
    add_user(store, ALICE)
    add_user(store, "erin@example.test")
    news = letter("local news", to="erin@example.test", extra=b"X-Ledgermail-Purpose: newsletter\r\n")
    with running_smtp(store) as a:
        submit(a.submission, news, ["erin@example.test"])
    assert inbox_bodies(store, "erin@example.test") == []
    message = queued(store)
    assert message.outcomes["erin@example.test"]["status"] == "5.7.1"
    run_queue(store, resolver_to())
    assert queued(store).status == "bounced"
    [report] = inbox_bodies(store, ALICE)
    assert b"Final-Recipient: rfc822; erin@example.test" in report and b"Status: 5.7.1" in report


def test_erasing_the_sender_empties_their_queue_and_nothing_is_sent(store: Container) -> None:
    add_user(store, ALICE)
    with ScriptedPeer() as remote, running_smtp(store) as a:
        submit(a.submission, letter("unsent"), [BOB])
        store.catch_up()
        assert store.mailbox_view.queue_size() == 1
        with acting("admin:test", protocol="test", purpose="testing"):
            receipt = store.app.erase_subject(ALICE, "request 7")
        assert receipt["verification"]["passed"] is True
        store.catch_up()
        assert store.mailbox_view.queue_size() == 0
        run_queue(store, resolver_to(), mx_port=remote.port)
        assert remote.log.commands == []


def test_a_message_queued_before_the_split_per_domain_goes_to_each_domains_mx(store: Container) -> None:
    """Stores from before one message per domain may hold a message for several."""
    from domain.model.outbound import OutboundMessage, Outbox

    account_id = add_user(store, ALICE)
    raw = letter("legacy")
    with acting("user:alice", protocol="test", purpose="testing"):
        account = store.app.account_for(ALICE)
        sealed = store.app.ports.blobs.put(raw)
        outbox = Outbox(subject_id=account.subject_id, account_id=account_id)
        outbox.take_number()
        message = OutboundMessage(
            subject_id=account.subject_id, outbox_id=outbox.id, number=1, account_id=account_id,
            mail_from=ALICE, recipients=[{"address": BOB, "notify": [], "orcpt": None},
                                         {"address": "dave@c.test", "notify": [], "orcpt": None}],
            ret=None, envid=None, size=len(raw), blob_id=sealed.blob_id, data_key=sealed.data_key,
            queued_at=store.app.now_iso())
        store.app.save_with_envelope(outbox, message)
    resolver = FakeResolver(mx={"b.test": [(10, "mx.b.test")], "c.test": [(10, "mx.c.test")]},
                            addresses={"mx.b.test": ["127.0.0.1"], "mx.c.test": ["127.0.0.1"]})
    with ScriptedPeer() as remote:
        run_queue(store, resolver, mx_port=remote.port)
        envelopes = sorted(recipients for _sender, recipients, _data in remote.log.messages)
    assert envelopes == [[BOB], ["dave@c.test"]]
    assert queued(store).status == "delivered"
