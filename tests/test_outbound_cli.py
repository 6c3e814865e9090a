"""The outbound commands: ``domain add`` makes the DKIM pair, ``domain dns`` prints what
to publish, ``queue`` lists what waits, each a real ``ledgermail`` process."""

from __future__ import annotations

import re

from adapters import bootstrap
from adapters.bootstrap import build
from adapters.config import Settings
from domain.application.context import acting
from domain.application.submission import RemoteRecipient
from tests.smtp_support import add_user
from tests.test_cli import assert_one_line_error, command_env, ledgermail


def test_domain_add_makes_both_dkim_keys_and_keeps_them_sealed(settings: Settings) -> None:
    added = ledgermail(settings, "domain", "add", "example.org")
    assert added.returncode == 0, added.stderr
    selectors = re.findall(r"(ed\d{8}|rsa\d{8})", added.stdout)
    assert len(selectors) == 2
    container = build(settings, run_projections=False)
    try:
        keys = bootstrap.dkim_keyring(container).keys_for("example.org", create=False)
        assert keys is not None and keys.selectors == tuple(selectors)
        private_pem = keys.rsa.private_key
    finally:
        container.close()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    if not settings.is_postgres:  # the key store holds them wrapped, never in the clear
        stored = (settings.data_dir / "keys.sqlite").read_bytes()
        assert b"BEGIN PRIVATE KEY" not in stored and private_pem[40:80] not in stored


def test_domain_dns_prints_mx_spf_both_dkim_keys_dmarc_and_mta_sts(settings: Settings) -> None:
    assert ledgermail(settings, "domain", "add", "example.org").returncode == 0
    env = {**command_env(settings), "LEDGERMAIL_HOSTNAME": "mx.example.org"}
    printed = ledgermail(settings, "domain", "dns", "example.org", env=env)
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout
    assert "example.org. 3600 IN MX 10 mx.example.org." in text
    assert 'example.org. 3600 IN TXT "v=spf1 mx -all"' in text
    assert re.search(r'ed\d{8}\._domainkey\.example\.org\. 3600 IN TXT '
                     r'"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/=]{44}"', text)
    assert re.search(r'rsa\d{8}\._domainkey\.example\.org\. 3600 IN TXT "v=DKIM1; k=rsa; p=', text)
    assert '_dmarc.example.org. 3600 IN TXT "v=DMARC1; p=quarantine"' in text
    assert re.search(r'_mta-sts\.example\.org\. 3600 IN TXT "v=STSv1; id=\d{8}"', text)
    assert ";   mode: testing" in text and ";   mx: mx.example.org" in text
    # The same keys every time: printing publishes nothing new.
    again = ledgermail(settings, "domain", "dns", "example.org", env=env)
    assert again.stdout == text


def test_domain_dns_refuses_unknown_and_malformed_domains_in_one_line(settings: Settings) -> None:
    assert_one_line_error(ledgermail(settings, "domain", "dns", "nothere.org"), 2, "unknown domain")
    assert_one_line_error(ledgermail(settings, "domain", "dns", "bad..name"), 2, "not a mail domain name")


def test_queue_lists_waiting_messages_by_domain_without_addresses(settings: Settings) -> None:
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
        account_id = add_user(container, "alice@example.test")
        raw = b"From: alice@example.test\r\nTo: x@far.test\r\nSubject: q\r\n\r\nbody\r\n"
        with acting("user:alice", protocol="test", purpose="testing"):
            result = container.app.submit(account_id, "alice@example.test", [],
                                          [RemoteRecipient("x@far.test"), RemoteRecipient("y@far.test")], raw)
        container.catch_up()
    finally:
        container.close()
    listed = ledgermail(settings, "queue")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == "1 message(s) queued"
    assert lines[0].startswith(f"{result.outbound_ids[0]} queued far.test attempts=0 pending=2 queued=")
    assert "x@far.test" not in listed.stdout
    assert_one_line_error(ledgermail(settings, "queue", "--limit", "0"), 2, "--limit")
