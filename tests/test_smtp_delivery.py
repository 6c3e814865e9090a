"""SMTP delivery and submission end to end: real clients (smtplib, swaks, raw sockets)
against the real listeners, on both backends; results read back through the use cases.

Each test asserts on the bytes stored, the reply codes on the wire and the counts of
copies, so a regression in the protocol, the intake pipeline or the store shows here.
"""

from __future__ import annotations

import base64
import re
import smtplib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from adapters.bootstrap import Container
from adapters.intake import Arrival, trace_header
from domain.application.context import acting
from domain.model.outbound import outbound_message_id_for, outbox_id_for
from tests.smtp_support import PASSWORD, RawClient, add_user, client_context, inbox_bodies, running_smtp

SWAKS = "/usr/bin/swaks"
HELO = "client.example"
ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
#: The leading Received: field with its folded continuation lines (RFC 5322 §2.2.3).
_TRACE = re.compile(rb"\AReceived: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n")
#: RFC 2034 §4: ``status-code SP class.subject.detail``, on every line of a reply.
_ENHANCED = re.compile(rb"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}[ \r]")


# -- helpers ------------------------------------------------------------------------------


def message(subject: str, sender: str = "sender@far.test", to: str = ALICE, *,
            extra: bytes = b"", body: bytes = b"Hello.\r\n") -> bytes:
    """A message with CRLF line ends and a final CRLF, so smtplib sends it unchanged."""
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n".encode()
            + extra + b"\r\n" + body)


def split_trace(stored: bytes) -> tuple[str, bytes]:
    """The first Received: field, unfolded, and everything after it."""
    match = _TRACE.match(stored)
    assert match, f"stored message does not start with a Received: field: {stored[:200]!r}"
    field = match.group(0)[:-2].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    assert b"\r" not in field and b"\n" not in field
    return field.decode("utf-8"), stored[match.end():]


def trace_pattern(hostname: str, source: str, protocol: str, recipient: str | None) -> re.Pattern[str]:
    tail = rf" for <{re.escape(recipient)}>; (?P<date>.+)" if recipient else r"; (?P<date>.+)"
    return re.compile(rf"Received: from {source} by {re.escape(hostname)} \(ledgermail\) "
                      rf"with {protocol} id (?P<id>[0-9A-F]{{16}})(?: \(using (?P<tls>[^()]+)\))?{tail}\Z")


def check_trace(field: str, pattern: re.Pattern[str]) -> re.Match[str]:
    match = pattern.match(field)
    assert match, f"{field!r} does not match {pattern.pattern!r}"
    assert parsedate_to_datetime(match["date"]).tzinfo is not None
    return match


def queue_id(data_reply: bytes) -> str:
    match = re.fullmatch(rb"2\.0\.0 Message accepted as ([0-9A-F]{16})", data_reply)
    assert match, data_reply
    return match.group(1).decode()


def copies(container: Container, address: str) -> list[Any]:
    app = container.app
    with acting("admin:test", protocol="test", purpose="testing"):
        account = app.account_for(address)
        return app.live_copies(app.repository.get(account.mailbox_id("INBOX")))


def add_alias(container: Container, address: str, alias: str) -> None:
    with acting("admin:test", protocol="test", purpose="testing"):
        container.app.add_alias(address, alias)


def account_id(container: Container, address: str) -> Any:
    with acting("admin:test", protocol="test", purpose="testing"):
        return container.app.account_id_for(address)


@contextmanager
def mx_client(port: int, helo: str = HELO) -> Iterator[smtplib.SMTP]:
    client = smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=10)
    try:
        client.ehlo()
        yield client
    finally:
        client.close()


@contextmanager
def submission_client(port: int, user: str = ALICE, *, implicit: bool = False,
                      mechanism: str = "PLAIN") -> Iterator[smtplib.SMTP]:
    """Logged in over STARTTLS (``implicit=False``) or implicit TLS; the 235 checked."""
    if implicit:
        client: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname=HELO, timeout=10,
                                                context=client_context())
    else:
        client = smtplib.SMTP("127.0.0.1", port, local_hostname=HELO, timeout=10)
    try:
        client.ehlo()
        if not implicit:
            code, _ = client.starttls(context=client_context())
            assert code == 220
            client.ehlo()
        client.user, client.password = user, PASSWORD
        authobject = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        # LOGIN without an initial response: the full 334 Username:/Password: exchange.
        code, text = client.auth(mechanism, authobject, initial_response_ok=mechanism == "PLAIN")
        assert (code, text[:5]) == (235, b"2.7.0")
        yield client
    finally:
        client.close()


def transaction(client: smtplib.SMTP, sender: str, recipients: list[str], raw: bytes,
                mail_options: tuple[str, ...] = ()) -> tuple[int, bytes]:
    """MAIL, each RCPT (all must be accepted), DATA; the DATA reply."""
    code, text = client.mail(sender, list(mail_options))
    assert code == 250, (code, text)
    for recipient in recipients:
        code, text = client.rcpt(recipient)
        assert code == 250, (recipient, code, text)
    return client.data(raw)


def swaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SWAKS, "--ehlo", HELO, "--timeout", "10", "--body", "swaks body line",
                           *args], capture_output=True, text=True, timeout=30, check=False)


# -- 1. MX delivery -----------------------------------------------------------------------


def test_mx_delivery_stores_the_sent_bytes_exactly_behind_one_received_header(store: Container) -> None:
    add_user(store, ALICE)
    # A dot-stuffed line, 8-bit text and trailing spaces must all come back byte for byte.
    raw = message("exact", body=b"line one  \r\n.starts with a dot\r\ncaf\xc3\xa9\r\n")
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        code, text = transaction(client, "sender@far.test", [ALICE], raw, ("BODY=8BITMIME",))
    assert code == 250
    [stored] = inbox_bodies(store, ALICE)
    field, rest = split_trace(stored)
    assert rest == raw
    assert stored.endswith(raw) and len(stored) == len(_TRACE.match(stored).group(0)) + len(raw)
    match = check_trace(field, trace_pattern(store.settings.hostname, re.escape(f"{HELO} ([127.0.0.1])"),
                                             "ESMTP", ALICE))
    assert match["id"] == queue_id(text)
    assert match["tls"] is None
    assert rest.count(b"Received:") == 0


def test_mx_delivery_over_starttls_says_esmtps_and_the_cipher_in_the_trace(store: Container) -> None:
    add_user(store, ALICE)
    raw = message("tls")
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        assert client.starttls(context=client_context())[0] == 220
        client.ehlo()
        code, _ = transaction(client, "sender@far.test", [ALICE], raw)
    assert code == 250
    field, rest = split_trace(inbox_bodies(store, ALICE)[0])
    assert rest == raw
    match = check_trace(field, trace_pattern(store.settings.hostname, re.escape(f"{HELO} ([127.0.0.1])"),
                                             "ESMTPS", ALICE))
    assert match["tls"] and match["tls"].startswith("TLSv1.")


# -- 2. EHLO ------------------------------------------------------------------------------


def test_ehlo_on_mx_advertises_the_extensions_and_starttls_but_never_auth_and_auth_gets_503(
        store: Container) -> None:
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        features = dict(client.esmtp_features)
        assert client.starttls(context=client_context())[0] == 220
        client.ehlo()
        after_tls = dict(client.esmtp_features)
        code, text = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=")
        assert (code, text[:5]) == (503, b"5.5.1")  # not even inside TLS
    for name in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "dsn", "starttls"):
        assert name in features, (name, features)
    assert features["size"].isdigit()
    assert 0 < int(features["size"]) <= store.settings.max_message_bytes
    assert "auth" not in features
    assert "auth" not in after_tls and "starttls" not in after_tls
    assert after_tls["size"] == features["size"]


def test_ehlo_on_submission_offers_auth_only_inside_tls_and_not_after_login(store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.submission, local_hostname=HELO, timeout=10) as client:
            client.ehlo()
            plain = dict(client.esmtp_features)
            assert client.starttls(context=client_context())[0] == 220
            client.ehlo()
            tls = dict(client.esmtp_features)
        with smtplib.SMTP_SSL("127.0.0.1", smtp.submissions, local_hostname=HELO, timeout=10,
                              context=client_context()) as client:
            client.ehlo()
            implicit = dict(client.esmtp_features)
        with submission_client(smtp.submission) as client:
            client.ehlo()
            logged_in = dict(client.esmtp_features)
    assert "starttls" in plain and "auth" not in plain
    assert tls.get("auth", "").split() == ["PLAIN", "LOGIN"] and "starttls" not in tls
    assert implicit.get("auth", "").split() == ["PLAIN", "LOGIN"] and "starttls" not in implicit
    assert "auth" not in logged_in and "starttls" not in logged_in
    for features in (plain, tls, implicit):
        assert {"pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "dsn"} <= set(features)


# -- 3. submission ------------------------------------------------------------------------


#: (implicit TLS, SASL mechanism): submission on 587-style STARTTLS and 465-style implicit TLS.
SUBMISSION_WAYS = [(False, "PLAIN"), (False, "LOGIN"), (True, "PLAIN"), (True, "LOGIN")]


def test_submission_with_plain_or_login_over_starttls_or_implicit_tls_delivers_with_an_esmtpsa_trace(
        store: Container) -> None:
    add_user(store, ALICE)
    add_user(store, BOB)
    sent = []
    with running_smtp(store) as smtp:
        for implicit, mechanism in SUBMISSION_WAYS:
            raw = message(f"{implicit} {mechanism}", sender=ALICE, to=BOB,
                          extra=b"Message-ID: <given@c.example>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n")
            port = smtp.submissions if implicit else smtp.submission
            with submission_client(port, implicit=implicit, mechanism=mechanism) as client:
                code, text = transaction(client, ALICE, [BOB], raw)
            assert code == 250, (implicit, mechanism, text)
            sent.append((raw, queue_id(text)))
    stored = inbox_bodies(store, BOB)
    assert len(stored) == len(SUBMISSION_WAYS)
    for (raw, sent_id), body in zip(sent, stored, strict=True):
        field, rest = split_trace(body)
        assert rest == raw  # Message-ID and Date were present: nothing added
        match = check_trace(field, trace_pattern(store.settings.hostname, re.escape(HELO), "ESMTPSA", BOB))
        assert match["id"] == sent_id
        assert match["tls"] and match["tls"].startswith("TLSv1.")
        assert "127.0.0.1" not in field  # hide_client_ip_on_submission is on by default
    assert inbox_bodies(store, ALICE) == []


def test_submission_adds_message_id_and_date_when_missing_and_only_then(store: Container) -> None:
    add_user(store, ALICE)
    bare = message("bare", sender=ALICE, to=ALICE)
    only_id = message("has id", sender=ALICE, to=ALICE, extra=b"Message-ID: <mine@client.example>\r\n")
    only_date = message("has date", sender=ALICE, to=ALICE, extra=b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n")
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        for raw in (bare, only_id, only_date):
            assert transaction(client, ALICE, [ALICE], raw)[0] == 250
    stored = inbox_bodies(store, ALICE)
    assert len(stored) == 3
    host = re.escape(store.settings.hostname)
    added_id = re.compile(rb"\AMessage-ID: <[0-9a-f]{32}@" + host.encode() + rb">\r\n")
    added_date = re.compile(rb"\ADate: ([^\r\n]+)\r\n")

    _, rest = split_trace(stored[0])
    id_match = added_id.match(rest)
    assert id_match, rest[:120]
    date_match = added_date.match(rest[id_match.end():])
    assert date_match and parsedate_to_datetime(date_match.group(1).decode()).tzinfo is not None
    assert rest[id_match.end() + date_match.end():] == bare

    _, rest = split_trace(stored[1])
    date_match = added_date.match(rest)
    assert date_match and rest[date_match.end():] == only_id
    assert rest.lower().count(b"message-id:") == 1

    _, rest = split_trace(stored[2])
    id_match = added_id.match(rest)
    assert id_match and rest[id_match.end():] == only_date
    assert rest.lower().count(b"\ndate:") == 1


# -- 4. submission sender checks ----------------------------------------------------------


def test_submission_refuses_mail_from_an_address_the_user_does_not_own_with_553_5_7_1(
        store: Container) -> None:
    add_user(store, ALICE)
    add_user(store, BOB)
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        code, text = client.mail(BOB)
        assert (code, text[:5]) == (553, b"5.7.1")
        code, text = client.mail("someone@far.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        code, text = client.mail("")
        assert (code, text[:5]) == (553, b"5.7.1")
        # The session goes on: an owned sender is still accepted.
        assert client.mail(ALICE)[0] == 250


def test_submission_refuses_a_from_header_the_user_does_not_own_and_stores_nothing(
        store: Container) -> None:
    add_user(store, ALICE)
    add_user(store, BOB)
    forged = [
        message("forged", sender=BOB, to=BOB),
        message("display name", sender=f'"{ALICE}" <{BOB}>', to=BOB),
        message("two addresses", sender=f"{ALICE}, {BOB}", to=BOB),
        b"To: bob@example.test\r\nSubject: no from\r\n\r\nbody\r\n",
        # A second From: field the parser skips but a reader may show (RFC 5322 §4.5.3
        # obs-from allows white space before the colon) ...
        message("obs-from", sender=ALICE, to=BOB, extra=b"From : bob@example.test\r\n"),
        message("obs-from tab", sender=ALICE, to=BOB, extra=b"From\t: bob@example.test\r\n"),
        # ... or one behind more header bytes than the check reads.
        message("huge header", sender=ALICE, to=BOB,
                extra=(b"X-Filler: " + b"f" * 70 + b"\r\n") * 3800 + b"From: bob@example.test\r\n"),
    ]
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        for raw in forged:
            code, text = transaction(client, ALICE, [BOB, "remote@far.test"], raw)
            assert (code, text[:5]) == (553, b"5.7.1"), raw
    assert inbox_bodies(store, BOB) == []
    assert inbox_bodies(store, ALICE) == []
    outbox = outbox_id_for(account_id(store, ALICE))
    with acting("admin:test", protocol="test", purpose="testing"):
        assert store.app.load_or_none(outbox) is None


def test_submission_accepts_an_alias_and_a_subaddress_as_sender(store: Container) -> None:
    add_user(store, ALICE)
    add_user(store, BOB)
    add_alias(store, ALICE, "al@example.test")
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        for sender in ("al@example.test", "alice+lists@example.test", "Alice@Example.Test"):
            code, text = transaction(client, sender, [BOB], message(sender, sender=sender, to=BOB))
            assert code == 250, (sender, text)
    stored = inbox_bodies(store, BOB)
    assert len(stored) == 3
    for sender, body in zip(("al@example.test", "alice+lists@example.test", "Alice@Example.Test"), stored,
                            strict=True):
        assert split_trace(body)[1].endswith(message(sender, sender=sender, to=BOB))


def test_submission_accepts_owned_from_fields_in_every_usual_form(store: Container) -> None:
    add_user(store, ALICE)
    forms = [
        "From: Ålice Ünïcode <alice@example.test>".encode(),  # raw UTF-8 display name
        b"From: =?utf-8?q?=C3=85lice?= <alice@example.test>",
        b"From: Alice\r\n <alice@example.test>",  # folded
        b"From: alice@example.test (Alice)",
        b"FROM:<alice@example.test>",
        b"From: alice+tag@example.test",
    ]
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        for field in forms:
            raw = field + b"\r\nTo: alice@example.test\r\nSubject: form\r\n\r\nbody\r\n"
            code, text = transaction(client, ALICE, [ALICE], raw, ("SMTPUTF8",))
            assert code == 250, (field, text)
    stored = inbox_bodies(store, ALICE)
    assert len(stored) == len(forms)
    for field, body in zip(forms, stored, strict=True):
        rest = split_trace(body)[1]
        assert rest.endswith(field + b"\r\nTo: alice@example.test\r\nSubject: form\r\n\r\nbody\r\n")


def test_submission_refuses_mail_before_auth_with_530(store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.submission, local_hostname=HELO, timeout=10) as client:
            client.ehlo()
            assert client.mail(ALICE)[0] == 530  # before STARTTLS
            client.starttls(context=client_context())
            client.ehlo()
            code, text = client.mail(ALICE)
            assert (code, text[:5]) == (530, b"5.7.0")
            code, text = client.rcpt(ALICE)
            assert code == 503
        with smtplib.SMTP_SSL("127.0.0.1", smtp.submissions, local_hostname=HELO, timeout=10,
                              context=client_context()) as client:
            client.ehlo()
            code, text = client.mail(ALICE)
            assert (code, text[:5]) == (530, b"5.7.0")
    assert inbox_bodies(store, ALICE) == []


# -- 5. remote recipients and RFC 3461 ----------------------------------------------------


def test_submission_queues_remote_recipients_as_one_outbound_message_per_domain_with_their_dsn_parameters(
        store: Container) -> None:
    add_user(store, ALICE)
    add_user(store, BOB)
    raw = message("outbound", sender=ALICE, to="x@far.test", extra=b"Message-ID: <o@client.example>\r\n"
                  b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n")
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        assert client.mail(ALICE, ["RET=HDRS", "ENVID=abc"])[0] == 250
        code, text = client.rcpt("x@far.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x@far.test"])
        assert (code, text[:5]) == (250, b"2.1.5")
        assert client.rcpt("y@elsewhere.test")[0] == 250
        assert client.rcpt(BOB, ["NOTIFY=NEVER"])[0] == 250
        code, _ = client.data(raw)
    assert code == 250
    sender_id = account_id(store, ALICE)
    outbox_id = outbox_id_for(sender_id)
    with acting("admin:test", protocol="test", purpose="testing"):
        outbound = store.app.repository.get(outbound_message_id_for(outbox_id, 1))
        outbound_body = store.app.ports.blobs.get(outbound.blob_id, outbound.data_key)
        other = store.app.repository.get(outbound_message_id_for(outbox_id, 2))
        assert store.app.load_or_none(outbound_message_id_for(outbox_id, 3)) is None
        assert store.app.repository.get(outbox_id).next_number == 3
    assert (outbound.domain, outbound.recipients) == ("far.test", [
        {"address": "x@far.test", "notify": ["SUCCESS", "FAILURE"], "orcpt": "rfc822;x@far.test"}])
    assert (other.domain, other.recipients) == ("elsewhere.test", [
        {"address": "y@elsewhere.test", "notify": [], "orcpt": None}])
    assert (other.blob_id, other.ret, other.envid) == (outbound.blob_id, "HDRS", "abc")
    assert (outbound.ret, outbound.envid, outbound.mail_from) == ("HDRS", "abc", ALICE)
    assert outbound.account_id == sender_id and outbound.status == "queued"
    # The queued message has its own body (the sender's), the same bytes as the local copy.
    [local] = copies(store, BOB)
    assert local.blob_id != outbound.blob_id
    with acting("admin:test", protocol="test", purpose="testing"):
        assert store.app.ports.blobs.get(local.blob_id, local.data_key) == outbound_body
    field, rest = split_trace(outbound_body)
    assert rest == raw and outbound.size == len(outbound_body)
    check_trace(field, trace_pattern(store.settings.hostname, re.escape(HELO), "ESMTPSA", None))


def test_a_remote_recipient_named_twice_is_queued_once_with_its_first_parameters(store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        assert client.mail(ALICE)[0] == 250
        assert client.rcpt("x@far.test", ["NOTIFY=FAILURE"])[0] == 250
        assert client.rcpt("y@far.test")[0] == 250
        assert client.rcpt("x@far.test", ["NOTIFY=NEVER"])[0] == 250
        assert client.rcpt("X@far.test")[0] == 250  # another mailbox: the local part is case-sensitive
        assert client.data(message("twice", sender=ALICE))[0] == 250
        # The next submission is the outbox's message number 2.
        assert transaction(client, ALICE, ["z@far.test"], message("next", sender=ALICE))[0] == 250
    outbox_id = outbox_id_for(account_id(store, ALICE))
    with acting("admin:test", protocol="test", purpose="testing"):
        first, second = (store.app.repository.get(outbound_message_id_for(outbox_id, n)) for n in (1, 2))
        assert store.app.load_or_none(outbound_message_id_for(outbox_id, 3)) is None
    assert first.recipients == [
        {"address": "x@far.test", "notify": ["FAILURE"], "orcpt": None},
        {"address": "y@far.test", "notify": [], "orcpt": None},
        {"address": "X@far.test", "notify": [], "orcpt": None},
    ]
    assert second.recipients == [{"address": "z@far.test", "notify": [], "orcpt": None}]
    assert (second.number, second.ret, second.envid) == (2, None, None)


def test_the_dsn_parameters_of_a_refused_mail_do_not_leak_into_the_next_transaction(
        store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client:
        # Refused for an unknown parameter (555), after RET and ENVID were read.
        assert client.mail(ALICE, ["RET=HDRS", "ENVID=stale", "FROBNICATE=1"])[0] == 555
        # Refused by policy (553), after RET and ENVID were read.
        assert client.mail("bob@example.test", ["RET=FULL", "ENVID=other"])[0] == 553
        assert client.mail(ALICE)[0] == 250
        assert client.rcpt("x@far.test")[0] == 250
        assert client.data(message("clean", sender=ALICE))[0] == 250
    outbox_id = outbox_id_for(account_id(store, ALICE))
    with acting("admin:test", protocol="test", purpose="testing"):
        outbound = store.app.repository.get(outbound_message_id_for(outbox_id, 1))
    assert (outbound.ret, outbound.envid) == (None, None), (
        f"MAIL FROM:<{ALICE}> had no RET/ENVID, yet the queued message has ret={outbound.ret!r} "
        f"envid={outbound.envid!r} from an earlier refused MAIL")


def test_submission_refuses_bad_dsn_parameters_with_501_and_unknown_ones_with_555(store: Container) -> None:
    add_user(store, ALICE)
    # Two sessions, each under the soft error limit, so no error reply is delayed.
    with running_smtp(store) as smtp, submission_client(smtp.submission) as client, \
            submission_client(smtp.submissions, implicit=True) as second:
        for bad in (["RET=NONE"], ["ENVID=a+2"], ["ENVID=" + "a" * 101], ["RET=HDRS", "RET=FULL"]):
            code, text = client.mail(ALICE, bad)
            assert (code, text[:5]) == (501, b"5.5.4"), bad
        code, text = client.mail(ALICE, ["FROBNICATE=1"])
        assert (code, text[:5]) == (555, b"5.5.4")
        assert second.mail(ALICE)[0] == 250
        for bad in (["NOTIFY=NEVER,SUCCESS"], ["NOTIFY=SOMETIMES"], ["NOTIFY=SUCCESS,SUCCESS"], ["NOTIFY="],
                    ["ORCPT=x@far.test"], ["ORCPT=rfc822;x+zz"], ["ORCPT=;x@far.test"]):
            code, text = second.rcpt("x@far.test", bad)
            assert (code, text[:5]) == (501, b"5.5.4"), bad
        code, text = second.rcpt("x@far.test", ["XFORWARD=1"])
        assert (code, text[:5]) == (555, b"5.5.4")
        # Nothing was accepted, so DATA has no recipient.
        code, _ = second.docmd("DATA")
        assert code == 503


# -- 6. aliases, sub-addresses, unknown users ---------------------------------------------


def test_mx_delivers_alias_and_subaddress_mail_to_the_owners_inbox(store: Container) -> None:
    add_user(store, ALICE)
    add_alias(store, ALICE, "al@example.test")
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        for recipient in ("al@example.test", "alice+news@example.test", "AL+x@EXAMPLE.test"):
            code, _ = transaction(client, "sender@far.test", [recipient], message(recipient, to=recipient))
            assert code == 250
    stored = inbox_bodies(store, ALICE)
    assert len(stored) == 3
    fors = [re.search(r" for <([^>]+)>;", split_trace(s)[0]).group(1) for s in stored]
    assert fors == ["al@example.test", "alice+news@example.test", "al+x@example.test"]
    assert [split_trace(s)[1] for s in stored] == [
        message(r, to=r) for r in ("al@example.test", "alice+news@example.test", "AL+x@EXAMPLE.test")]


def test_one_person_named_by_address_alias_and_subaddress_in_one_transaction_gets_one_copy(
        store: Container) -> None:
    add_user(store, ALICE)
    add_alias(store, ALICE, "al@example.test")
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        code, _ = transaction(client, "sender@far.test", [ALICE, "al@example.test", "alice+x@example.test"],
                              message("dup"))
    assert code == 250
    assert len(copies(store, ALICE)) == 1


def test_mx_refuses_unknown_users_and_their_subaddresses_with_550_5_1_1(store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        assert client.mail("sender@far.test")[0] == 250
        for recipient in ("nobody@example.test", "nobody+tag@example.test", "+tag@example.test"):
            code, text = client.rcpt(recipient)
            assert (code, text[:5]) == (550, b"5.1.1"), recipient
        code, text = client.rcpt("someone@far.test")
        assert (code, text[:5]) == (550, b"5.7.1")  # no relaying for strangers
        assert client.rcpt(ALICE)[0] == 250
        assert client.data(message("after refusals"))[0] == 250
    [stored] = inbox_bodies(store, ALICE)
    field, _ = split_trace(stored)
    assert field.count(" for <") == 1 and f"for <{ALICE}>" in field


# -- 7. several local recipients ----------------------------------------------------------


def test_one_data_to_three_local_users_stores_one_body_and_three_copies_without_a_for_clause(
        store: Container) -> None:
    for address in (ALICE, BOB, CAROL):
        add_user(store, address)
    raw = message("to three", to=f"{ALICE}, {BOB}, {CAROL}")
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        code, text = transaction(client, "sender@far.test", [ALICE, BOB, CAROL], raw)
    assert code == 250
    all_copies = {address: copies(store, address) for address in (ALICE, BOB, CAROL)}
    assert [len(c) for c in all_copies.values()] == [1, 1, 1]
    assert len({c[0].blob_id for c in all_copies.values()}) == 1
    bodies = {address: inbox_bodies(store, address)[0] for address in (ALICE, BOB, CAROL)}
    assert len(set(bodies.values())) == 1
    field, rest = split_trace(bodies[ALICE])
    assert rest == raw
    match = check_trace(field, trace_pattern(store.settings.hostname, re.escape(f"{HELO} ([127.0.0.1])"),
                                             "ESMTP", None))
    assert match["id"] == queue_id(text)
    assert " for " not in field and "@" not in field


def test_a_pipelined_transaction_gets_every_reply_in_order(store: Container) -> None:
    add_user(store, ALICE)
    add_user(store, BOB)
    raw = message("pipelined")
    with running_smtp(store) as smtp:
        client = RawClient(smtp.mx)
        try:
            client.reply()
            assert client.command(b"EHLO client.example").startswith(b"250-")
            # RFC 2920 §3.1: MAIL, RCPT and DATA may go in one write; DATA ends the group.
            client.send(b"MAIL FROM:<sender@far.test>\r\nRCPT TO:<alice@example.test>\r\n"
                        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
            replies = [client.reply()[:9] for _ in range(5)]
            assert replies == [b"250 2.1.0", b"250 2.1.5", b"550 5.1.1", b"250 2.1.5", b"354 End d"]
            client.send(raw + b".\r\nQUIT\r\n")
            assert client.reply().startswith(b"250 2.0.0 Message accepted as ")
            assert client.reply().startswith(b"221 2.0.0 ")
        finally:
            client.close()
    assert [split_trace(s)[1] for s in inbox_bodies(store, ALICE) + inbox_bodies(store, BOB)] == [raw, raw]


def test_a_helo_client_is_traced_with_smtp_and_cannot_use_esmtp_parameters(store: Container) -> None:
    add_user(store, ALICE)
    raw = message("helo")
    with running_smtp(store) as smtp:
        client = smtplib.SMTP("127.0.0.1", smtp.mx, local_hostname=HELO, timeout=10)
        try:
            assert client.helo()[0] == 250
            assert client.docmd("MAIL", "FROM:<sender@far.test> BODY=8BITMIME")[0] == 501
            assert client.docmd("MAIL", "FROM:<sender@far.test>")[0] == 250
            assert client.docmd("RCPT", "TO:<alice@example.test>")[0] == 250
            assert client.data(raw)[0] == 250
        finally:
            client.close()
    field, rest = split_trace(inbox_bodies(store, ALICE)[0])
    assert rest == raw
    check_trace(field, trace_pattern(store.settings.hostname, re.escape(f"{HELO} ([127.0.0.1])"),
                                     "SMTP", ALICE))


# -- 8. swaks -----------------------------------------------------------------------------


def test_swaks_delivers_to_the_mx_port(store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp:
        result = swaks("--server", f"127.0.0.1:{smtp.mx}", "--from", "sender@far.test", "--to", ALICE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 2.0.0 Message accepted as " in result.stdout
    [stored] = inbox_bodies(store, ALICE)
    field, rest = split_trace(stored)
    assert f"for <{ALICE}>" in field and " with ESMTP id " in field
    assert b"\r\n\r\nswaks body line\r\n" in rest
    assert b"\r\nTo: alice@example.test\r\n" in rest


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_swaks_submits_with_tls_and_auth_plain(store: Container, implicit: bool) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp:
        transport = ["--tlsc", "--server", f"127.0.0.1:{smtp.submissions}"] if implicit else \
            ["--tls", "--server", f"127.0.0.1:{smtp.submission}"]
        result = swaks(*transport, "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", PASSWORD,
                       "--from", ALICE, "--to", ALICE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0 " in result.stdout
    [stored] = inbox_bodies(store, ALICE)
    field, rest = split_trace(stored)
    assert " with ESMTPSA id " in field and "(using TLSv1." in field and "127.0.0.1" not in field
    assert b"\r\n\r\nswaks body line\r\n" in rest and b"\r\nFrom: alice@example.test\r\n" in rest


# -- 9. SMTPUTF8 --------------------------------------------------------------------------

UTF8_SENDER = "δοκιμή@παράδειγμα.δοκιμή"


def test_a_utf8_sender_with_smtputf8_is_accepted_and_stored(store: Container) -> None:
    add_user(store, ALICE)
    raw = f"From: {UTF8_SENDER}\r\nTo: {ALICE}\r\nSubject: ünïcode\r\n\r\nΚαλημέρα\r\n".encode()
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        code, text = transaction(client, UTF8_SENDER, [ALICE], raw, ("SMTPUTF8",))
    assert (code, text[:5]) == (250, b"2.0.0")
    [stored] = inbox_bodies(store, ALICE)
    field, rest = split_trace(stored)
    assert rest == raw
    check_trace(field, trace_pattern(store.settings.hostname, re.escape(f"{HELO} ([127.0.0.1])"),
                                     "UTF8SMTP", ALICE))


def test_a_utf8_sender_without_smtputf8_is_refused_with_553_5_6_7(store: Container) -> None:
    add_user(store, ALICE)
    with running_smtp(store) as smtp:
        client = RawClient(smtp.mx)
        try:
            assert client.reply().startswith(b"220 ")
            assert client.command("EHLO client.example").startswith(b"250-")
            reply = client.command(f"MAIL FROM:<{UTF8_SENDER}>".encode())
            assert reply.startswith(b"553 5.6.7 "), reply
            # A UTF-8 recipient needs SMTPUTF8 on MAIL too.
            assert client.command(b"MAIL FROM:<sender@far.test>").startswith(b"250 ")
            reply = client.command("RCPT TO:<δοκιμή@example.test>".encode())
            assert reply.startswith(b"553 5.6.7 "), reply
            assert client.command(b"DATA").startswith(b"503 5.5.1 ")
            assert client.command(b"QUIT").startswith(b"221 2.0.0 ")
        finally:
            client.close()
    assert inbox_bodies(store, ALICE) == []


# -- 10. enhanced status codes ------------------------------------------------------------


def raw_session(port: int, lines: list[bytes], raw: bytes | None = None) -> dict[bytes, bytes]:
    """Greet, send each line, optionally one message, then RSET and QUIT; every reply
    after the greeting and EHLO, keyed by the line that caused it."""
    seen: dict[bytes, bytes] = {}
    client = RawClient(port)
    try:
        assert client.reply().startswith(b"220 ")
        ehlo = client.command(b"EHLO client.example")
        assert ehlo.startswith(b"250-") and b"ENHANCEDSTATUSCODES" in ehlo
        for line in lines:
            seen[line] = client.command(line)
        if raw is not None:
            assert client.command(b"DATA").startswith(b"354 ")
            client.send(raw)
            seen[b"end of data"] = client.command(b".")
        seen[b"RSET at the end"] = client.command(b"RSET")
        seen[b"QUIT"] = client.command(b"QUIT")
    finally:
        client.close()
    return seen


def test_every_reply_after_the_greeting_carries_an_enhanced_status_code(store: Container) -> None:
    add_user(store, ALICE)
    # Two sessions, each under the soft error limit, so no error reply is delayed.
    commands = [
        b"NOOP", b"NOOP any string", b"RSET", b"BOGUS", b"HELP", b"VRFY alice", b"EXPN staff",
        b"RCPT TO:<alice@example.test>", b"DATA", b"MAIL FROM:bad address", b"STARTTLS extra",
    ]
    transaction_lines = [
        b"MAIL FROM:<a@b.example> X=1", b"MAIL FROM:<sender@far.test> SIZE=999999999999",
        b"MAIL FROM:<sender@far.test>", b"MAIL FROM:<sender@far.test> ", b"RCPT TO:<nobody@example.test>",
        b"RCPT TO:<x@far.test>", b"RCPT TO:<alice%far.test@example.test>",
        b"RCPT TO:<alice@example.test> NOTIFY=NEVER,DELAY", b"RCPT TO:<alice@example.test>",
        b"AUTH PLAIN", b"DATA extra",
    ]
    with running_smtp(store) as smtp:
        first = raw_session(smtp.mx, commands)
        second = raw_session(smtp.mx, transaction_lines, message("codes"))
    for seen in (first, second):
        for line, reply in seen.items():
            assert reply, line
            for reply_line in reply.splitlines(keepends=True):
                assert _ENHANCED.match(reply_line), (line, reply)
        assert seen[b"RSET at the end"][:3] == b"250" and seen[b"QUIT"][:3] == b"221"
    assert [first[line][:3] for line in commands] == [
        b"250", b"250", b"250", b"500", b"214", b"502", b"502", b"503", b"503", b"501", b"501"]
    assert [second[line][:3] for line in transaction_lines] == [
        b"555", b"552", b"250", b"503", b"550", b"550", b"550", b"501", b"250", b"503", b"501"]
    assert second[b"end of data"][:3] == b"250"
    assert len(inbox_bodies(store, ALICE)) == 1


def test_every_submission_reply_including_auth_carries_an_enhanced_status_code(store: Container) -> None:
    add_user(store, ALICE)
    plain = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    lines = [
        f"MAIL FROM:<{ALICE}>", "AUTH XOAUTH2 abc", "AUTH PLAIN !!!", "AUTH LOGIN", "*",
        f"AUTH PLAIN {plain}", f"AUTH PLAIN {plain}", "MAIL FROM:<bob@example.test>", f"MAIL FROM:<{ALICE}>",
        "RCPT TO:<x@far.test> NOTIFY=DELAY", "STARTTLS", "RSET", "QUIT",
    ]
    with running_smtp(store) as smtp:
        before_tls = RawClient(smtp.submission)
        try:
            assert before_tls.reply().startswith(b"220 ")
            assert before_tls.command(b"EHLO client.example").startswith(b"250-")
            early = {line: before_tls.command(line)
                     for line in (b"AUTH PLAIN " + plain.encode(), b"MAIL FROM:<>", b"NOOP", b"QUIT")}
        finally:
            before_tls.close()
        client = RawClient(smtp.submissions)
        client.sock = client_context().wrap_socket(client.sock)  # implicit TLS (RFC 8314 §3.3)
        try:
            assert client.reply().startswith(b"220 ")
            assert client.command(b"EHLO client.example").startswith(b"250-")
            seen = [client.command(line) for line in lines]
        finally:
            client.close()
    assert [reply[:3] for reply in early.values()] == [b"530", b"530", b"250", b"221"]
    # "AUTH LOGIN" gets the 334 challenge (RFC 4954 §4: no enhanced code there), "*" aborts.
    assert seen[3].startswith(b"334 ")
    checked = early | dict(zip((line.encode() for line in lines), seen, strict=True))
    del checked[b"AUTH LOGIN"]
    for line, reply in checked.items():
        assert reply and _ENHANCED.match(reply), (line, reply)
    assert [int(reply[:3]) for reply in seen] == [
        530, 504, 501, 334, 501, 235, 503, 553, 250, 250, 554, 250, 221]


# -- 11. the Received: header cannot be injected ------------------------------------------


#: EHLO names outside a plain token: accepted (traced as ``unknown``) or refused with 501.
ODD_EHLO_NAMES = ["a(b)", "héllo.example", "x;by=evil", "<a@b>", "a)by(x", "a\tb", "x" * 256, "\udcff"]


def test_an_ehlo_name_outside_a_plain_token_is_traced_as_unknown(store: Container) -> None:
    add_user(store, ALICE)
    sources = []
    with running_smtp(store) as smtp:
        for helo in ODD_EHLO_NAMES:
            client = RawClient(smtp.mx)
            try:
                client.reply()
                reply = client.command(f"EHLO {helo}".encode("utf-8", "surrogateescape"))
                if reply.startswith(b"250"):
                    sources.append("unknown")
                else:
                    # A refused name cannot reach a header either; greet properly and go on.
                    assert reply.startswith(b"501 5.5.4 "), (helo, reply)
                    assert client.command(b"EHLO ok.example").startswith(b"250")
                    sources.append(r"ok\.example")
                assert client.command(b"MAIL FROM:<sender@far.test>").startswith(b"250 ")
                assert client.command(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
                assert client.command(b"DATA").startswith(b"354 ")
                client.send(message(repr(helo)))
                assert client.command(b".").startswith(b"250 2.0.0 ")
            finally:
                client.close()
    stored = inbox_bodies(store, ALICE)
    assert len(stored) == len(ODD_EHLO_NAMES)
    assert sources.count("unknown") >= 5  # most are accepted as EHLO names: the trace must cope
    for helo, source, body in zip(ODD_EHLO_NAMES, sources, stored, strict=True):
        field, rest = split_trace(body)
        assert rest == message(repr(helo))
        check_trace(field, trace_pattern(store.settings.hostname, source + re.escape(" ([127.0.0.1])"),
                                         "ESMTP", ALICE))


def test_cr_or_lf_in_the_ehlo_name_never_reaches_the_stored_header(store: Container) -> None:
    add_user(store, ALICE)
    raw = message("injection")
    with running_smtp(store) as smtp:
        client = RawClient(smtp.mx)
        try:
            client.reply()
            assert client.command(b"EHLO a\rX-Injected: 1").startswith(b"501 5.5.4 ")
            # A bare LF ends the command line: the rest is a separate (unknown) command.
            assert client.command(b"EHLO ok.example\nX-Injected: 2").startswith(b"250-")
            assert client.reply().startswith(b"500 5.5.")
            assert client.command(b"MAIL FROM:<sender@far.test>").startswith(b"250 ")
            assert client.command(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
            assert client.command(b"DATA").startswith(b"354 ")
            client.send(raw)
            assert client.command(b".").startswith(b"250 2.0.0 ")
        finally:
            client.close()
    [stored] = inbox_bodies(store, ALICE)
    field, rest = split_trace(stored)
    assert rest == raw
    assert b"X-Injected" not in stored
    check_trace(field, trace_pattern(store.settings.hostname, re.escape("ok.example ([127.0.0.1])"),
                                     "ESMTP", ALICE))


@pytest.mark.parametrize(("ip", "literal"), [
    ("192.0.2.7", "[192.0.2.7]"),
    ("2001:db8::1", "[IPv6:2001:db8::1]"),  # RFC 5321 §4.1.3 IPv6-address-literal
    ("::ffff:192.0.2.7", "[192.0.2.7]"),  # a dual-stack socket's view of an IPv4 client
    ("fe80::1%eth0", "[IPv6:fe80::1]"),  # no zone index in an address literal
    ("not an ip", "[unknown]"),
])
def test_the_trace_header_writes_the_client_address_as_an_rfc_5321_address_literal(
        ip: str, literal: str) -> None:
    arrival = Arrival(channel="mx", local_recipients=[ALICE], helo="client.example", client_ip=ip)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    field = trace_header(arrival, "mx.example", "0123456789ABCDEF", now, b"\r\n")
    assert field.startswith(f"Received: from client.example ({literal})\r\n".encode())


def test_rcpt_to_a_mailbox_over_its_quota_gets_452_4_2_2_and_the_other_recipients_still_get_the_message(
        store: Container) -> None:
    """A soft quota (RFC 3463 X.2.2): the full mailbox is refused at RCPT, temporarily,
    so the sender retries after the owner makes room; the other recipient is served."""
    with acting("admin:test", protocol="test", purpose="testing"):
        full = store.app.create_account("full@example.test", PASSWORD, quota_bytes=2048)
    add_user(store, ALICE)
    store.app.append(full, "INBOX", b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")
    store.catch_up()
    with running_smtp(store) as smtp, mx_client(smtp.mx) as client:
        client.ehlo(HELO)
        client.mail("sender@far.test")
        refused = client.rcpt("full@example.test")
        accepted = client.rcpt(ALICE)
        code, _ = client.data(message("to both"))
    assert refused == (452, b"4.2.2 Mailbox full, try again later")
    assert accepted[0] == 250
    assert code == 250
    assert len(inbox_bodies(store, ALICE)) == 1
    assert len(inbox_bodies(store, "full@example.test")) == 1  # only the message that filled it
