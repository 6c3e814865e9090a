"""Sender authentication of MX mail end to end (issue 8): SPF, DKIM (Ed25519 and RSA,
signed by dkimpy with keys in a fake zone), DMARC policies and the Authentication-Results
field, through our real SMTP server with smtplib; plus unit tables for SPF (limits,
macros, void lookups) and DMARC alignment."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from uuid import UUID

import dkim
import pytest

from adapters.bootstrap import Container
from adapters.scanners.authentication_results import remove_forged_fields
from adapters.scanners.dkim_verify import DkimResult, DkimVerifier
from adapters.scanners.dmarc import DmarcEvaluator, aligned, organizational_domain, parse_record
from adapters.scanners.spf import SpfChecker, SpfOutcome, expand_macros
from adapters.smtp import replies
from adapters.smtp.dkim_signing import generate_keys
from tests.outbound_support import FakeResolver
from tests.scanner_support import ALICE, HOSTNAME, bodies, letter, running_mx, scored_store, send, split_added

SPF_LOCAL = "v=spf1 ip4:127.0.0.1 -all"


def zone(spf: str | None = SPF_LOCAL, dmarc: str | None = None, **more: list[str]) -> FakeResolver:
    txt: dict[str, list[str]] = {}
    if spf is not None:
        txt["sender.test"] = [spf]
    if dmarc is not None:
        txt["_dmarc.sender.test"] = [dmarc]
    txt.update({name.replace("__", "."): value for name, value in more.items()})
    return FakeResolver(txt=txt)


def deliver(tmp_path: Path, backend: str, resolver: FakeResolver, raw: bytes,
            sender: str = "bob@sender.test",
            **antiabuse: object) -> tuple[int, bytes, list[bytes], list[bytes]]:
    """Send ``raw`` over MX; the DATA reply and what INBOX and Junk then hold."""
    with scored_store(tmp_path, backend, **antiabuse) as store:
        with running_mx(store, resolver) as smtp:
            code, text = send(smtp.mx, sender, raw)
        return code, text, bodies(store, ALICE, "INBOX"), bodies(store, ALICE, "Junk")


# -- SPF through SMTP -------------------------------------------------------------------


def test_spf_pass_with_aligned_dmarc_lands_in_the_inbox_with_authentication_results(
        tmp_path: Path, backend: str) -> None:
    raw = letter()
    code, _, inbox, junk = deliver(tmp_path, backend, zone(dmarc="v=DMARC1; p=reject"), raw)
    assert code == 250 and junk == [] and len(inbox) == 1
    assert split_added(inbox[0], raw) == (
        b"Authentication-Results: mx.ledger.test;\r\n"
        b"\tspf=pass smtp.mailfrom=bob@sender.test;\r\n"
        b"\tdkim=none;\r\n"
        b"\tdmarc=pass (p=reject) header.from=sender.test;\r\n"
        b"\tarc=none\r\n"
        b"X-Spam-Status: No, score=-1.0 required=5.0\r\n"
        b"\ttests=dmarc_pass\r\n"
        b"X-Spam-Score: -1.0\r\n")


@pytest.mark.parametrize(("record", "result", "score"), [
    ("v=spf1 -all", "fail", "3.5"),
    ("v=spf1 ~all", "softfail", "1.5"),
    ("v=spf1 ?all", "neutral", "0.0"),
])
def test_spf_fail_and_softfail_are_recorded_and_scored_without_dmarc(
        tmp_path: Path, backend: str, record: str, result: str, score: str) -> None:
    raw = letter()
    code, _, inbox, junk = deliver(tmp_path, backend, zone(spf=record), raw)
    assert code == 250 and junk == [] and len(inbox) == 1
    added = split_added(inbox[0], raw)
    assert f"\tspf={result} smtp.mailfrom=bob@sender.test;\r\n".encode() in added
    assert b"\tdmarc=none header.from=sender.test;\r\n" in added
    tests = f"spf_{result}" if result != "neutral" else "none"
    assert f"X-Spam-Status: No, score={score} required=5.0\r\n\ttests={tests}\r\n".encode() in added


def test_the_null_sender_is_checked_as_postmaster_at_the_helo_name(tmp_path: Path, backend: str) -> None:
    resolver = FakeResolver(txt={"client.sender.test": ["v=spf1 ip4:127.0.0.0/8 -all"]})
    raw = letter()
    code, _, inbox, _ = deliver(tmp_path, backend, resolver, raw, sender="")
    assert code == 250
    assert b"\tspf=pass smtp.helo=client.sender.test;\r\n" in split_added(inbox[0], raw)


# -- DKIM through SMTP ------------------------------------------------------------------


def signed_letter(keys_domain: str = "sender.test") -> tuple[bytes, FakeResolver, tuple[str, str]]:
    """A letter signed by dkimpy with a fresh RSA and Ed25519 key, RSA topmost, and a zone
    publishing both keys (SPF failing, DMARC p=reject: only DKIM can pass DMARC)."""
    keys = generate_keys()
    raw = letter("Signed")
    signatures = b""
    for key in (keys.rsa, keys.ed25519):
        signatures += dkim.sign(raw, key.selector.encode(), keys_domain.encode(), key.private_key,
                                signature_algorithm=key.signature_algorithm)
    resolver = zone(spf="v=spf1 -all", dmarc="v=DMARC1; p=reject", **{
        f"{keys.rsa.selector}._domainkey.{keys_domain}".replace(".", "__"): [keys.rsa.txt_value()],
        f"{keys.ed25519.selector}._domainkey.{keys_domain}".replace(".", "__"): [keys.ed25519.txt_value()],
    })
    return signatures + raw, resolver, (keys.rsa.selector, keys.ed25519.selector)


def test_a_dkim_signed_message_verifies_with_rsa_and_ed25519_and_passes_dmarc_despite_spf(
        tmp_path: Path, backend: str) -> None:
    raw, resolver, (rsa, ed) = signed_letter()
    code, _, inbox, junk = deliver(tmp_path, backend, resolver, raw)
    assert code == 250 and junk == [] and len(inbox) == 1
    assert split_added(inbox[0], raw) == (
        b"Authentication-Results: mx.ledger.test;\r\n"
        b"\tspf=fail smtp.mailfrom=bob@sender.test;\r\n"
        + f"\tdkim=pass header.d=sender.test header.s={rsa} header.a=rsa-sha256;\r\n".encode()
        + f"\tdkim=pass header.d=sender.test header.s={ed} header.a=ed25519-sha256;\r\n".encode()
        + b"\tdmarc=pass (p=reject) header.from=sender.test;\r\n"
        b"\tarc=none\r\n"
        b"X-Spam-Status: No, score=2.5 required=5.0\r\n"
        b"\ttests=dmarc_pass,spf_fail\r\n"
        b"X-Spam-Score: 2.5\r\n")


def test_a_signed_message_whose_body_changed_fails_dkim_and_dmarc_reject_refuses_it(
        tmp_path: Path, backend: str) -> None:
    raw, resolver, _ = signed_letter()
    tampered = raw.replace(b"See you at noon.", b"See you at one.")
    code, text, inbox, junk = deliver(tmp_path, backend, resolver, tampered)
    assert f"{code} {text.decode()}" == replies.DMARC_REJECTED
    assert inbox == [] and junk == []


def test_a_broken_signature_without_dmarc_is_delivered_marked_dkim_fail(tmp_path: Path, backend: str) -> None:
    raw, resolver, (rsa, ed) = signed_letter()
    resolver.txt_records["sender.test"] = [SPF_LOCAL]
    del resolver.txt_records["_dmarc.sender.test"]
    tampered = raw.replace(b"See you at noon.", b"See you at one.")
    code, _, inbox, _ = deliver(tmp_path, backend, resolver, tampered)
    assert code == 250
    added = split_added(inbox[0], tampered)
    assert f"\tdkim=fail header.d=sender.test header.s={rsa} header.a=rsa-sha256;\r\n".encode() in added
    assert f"\tdkim=fail header.d=sender.test header.s={ed} header.a=ed25519-sha256;\r\n".encode() in added
    assert b"X-Spam-Status: No, score=2.0 required=5.0\r\n\ttests=dkim_fail\r\n" in added


def test_every_signature_is_verified_on_its_own_and_a_missing_key_is_permerror() -> None:
    raw, resolver, (rsa, ed) = signed_letter()
    del resolver.txt_records[f"{ed}._domainkey.sender.test"]
    results = DkimVerifier(resolver).verify(raw)
    assert results == [
        DkimResult("pass", "sender.test", rsa, "rsa-sha256"),
        DkimResult("permerror", "sender.test", ed, "ed25519-sha256", "no key record"),
    ]


def test_a_key_lookup_that_fails_for_now_is_temperror_not_fail() -> None:
    raw, resolver, (rsa, _) = signed_letter()
    resolver.temporary.add(f"{rsa}._domainkey.sender.test")
    assert DkimVerifier(resolver).verify(raw)[0].result == "temperror"


# -- DMARC through SMTP -----------------------------------------------------------------


def test_dmarc_reject_refuses_at_data_with_550_5_7_1_and_stores_nothing(tmp_path: Path, backend: str) -> None:
    with scored_store(tmp_path, backend) as store:
        position = store.app.log_position()
        with running_mx(store, zone(spf="v=spf1 -all", dmarc="v=DMARC1; p=reject")) as smtp:
            code, text = send(smtp.mx, "bob@sender.test", letter())
        assert f"{code} {text.decode()}" == replies.DMARC_REJECTED
        assert bodies(store, ALICE, "INBOX") == [] and bodies(store, ALICE, "Junk") == []
        assert store.app.log_position() == position  # not one event written


def test_dmarc_reject_goes_to_junk_when_the_operator_does_not_honour_it(tmp_path: Path, backend: str) -> None:
    raw = letter()
    code, _, inbox, junk = deliver(tmp_path, backend, zone(spf="v=spf1 -all", dmarc="v=DMARC1; p=reject"),
                                   raw, dmarc_reject_honoured=False)
    assert code == 250 and inbox == [] and len(junk) == 1
    added = split_added(junk[0], raw)
    assert added.startswith(b"Authentication-Results: mx.ledger.test;\r\n\tspf=fail ")
    assert b"\tdmarc=fail (p=reject) header.from=sender.test;\r\n" in added
    assert b"X-Spam-Flag: YES\r\n" in added


def test_dmarc_quarantine_delivers_to_junk(tmp_path: Path, backend: str) -> None:
    code, _, inbox, junk = deliver(tmp_path, backend,
                                   zone(spf="v=spf1 -all", dmarc="v=DMARC1; p=quarantine"), letter())
    assert code == 250 and inbox == [] and len(junk) == 1
    assert b"X-Spam-Flag: YES\r\n" in junk[0]


def test_forged_results_for_our_authserv_id_are_removed_and_others_kept(tmp_path: Path, backend: str) -> None:
    forged = (b"Authentication-Results: MX.LEDGER.TEST (forged);\r\n\tspf=pass smtp.mailfrom=x@y.test\r\n"
              b"X-Spam-Flag: NO\r\n"
              b"Authentication-Results: other.example; dkim=pass header.d=y.test\r\n")
    raw = letter(extra=forged)
    code, _, inbox, _ = deliver(tmp_path, backend, zone(), raw)
    assert code == 250
    stored = inbox[0]
    assert stored.count(b"Authentication-Results: ") == 2
    assert stored.count(f"Authentication-Results: {HOSTNAME};".encode()) == 1
    assert b"MX.LEDGER.TEST" not in stored and b"X-Spam-Flag: NO" not in stored
    assert b"Authentication-Results: other.example; dkim=pass header.d=y.test\r\n" in stored
    assert stored.endswith(b"\r\n\r\nSee you at noon.\r\n")


def test_the_verdict_is_an_audited_security_event_without_addresses(tmp_path: Path, backend: str) -> None:
    with scored_store(tmp_path, backend) as store:
        with running_mx(store, zone(spf="v=spf1 ~all")) as smtp:
            assert send(smtp.mx, "bob@sender.test", letter())[0] == 250
        store.catch_up()
        scans = [row.entry for row in store.audit_trail.rows() if row.entry.event_type == "Delivery.Scanned"]
        assert [e.purpose for e in scans] == ["security"]
        delivery = store.app.repository.get(_delivery_id(store))
        assert delivery.scan == {"action": "accept", "score": 1.5, "rules": ["spf_softfail"],
                                 "spf": "softfail", "dkim": ["none"], "dmarc": "none",
                                 "dmarc_policy": "none", "arc": "none"}
        assert "sender.test" not in repr(delivery.scan)


def _delivery_id(store: Container) -> UUID:
    app = store.app
    inbox = app.repository.get(app.account_for(ALICE).mailbox_id("INBOX"))
    [copy] = app.live_copies(inbox)
    return copy.delivery_id


# -- SPF unit table -----------------------------------------------------------------------


def spf(records: dict[str, list[str]], ip: str = "192.0.2.10", sender: str = "user@example.com",
        helo: str = "mail.example.com", addresses: dict[str, list[str]] | None = None,
        mx: dict[str, list[tuple[int, str]]] | None = None, temporary: tuple[str, ...] = ()) -> SpfOutcome:
    resolver = FakeResolver(txt=records, addresses=addresses or {}, mx=mx or {}, temporary=temporary)
    return SpfChecker(resolver).check(ip, sender, helo)


@pytest.mark.parametrize(("record", "expected"), [
    ("v=spf1 ip4:192.0.2.0/24 -all", "pass"),
    ("v=spf1 ip4:198.51.100.1 -all", "fail"),
    ("v=spf1 ip4:198.51.100.1 ~all", "softfail"),
    ("v=spf1 ip4:198.51.100.1 ?all", "neutral"),
    ("v=spf1 ip4:198.51.100.1", "neutral"),
    ("v=spf1 ip6:2001:db8::/32 -all", "fail"),
    ("v=spf1 a -all", "fail"),
    ("v=spf1 a/24 -all", "pass"),
    ("v=spf1 mx -all", "pass"),
    ("v=spf1 include:_spf.example.net -all", "pass"),
    ("v=spf1 include:_fail.example.net -all", "fail"),
    ("v=spf1 include:nowhere.example.net -all", "permerror"),
    ("v=spf1 redirect=_spf.example.net", "pass"),
    ("v=spf1 -all redirect=_spf.example.net", "fail"),
    ("v=spf1 redirect=nowhere.example.net", "permerror"),
    ("v=spf1 exists:%{ir}.ok.example.net -all", "pass"),
    ("v=spf1 ptr -all", "fail"),
    ("v=spf1 foo:bar -all", "permerror"),
    ("v=spf1 ip4:300.1.1.1 -all", "permerror"),
    ("v=spf1 a:%{z}.example.com -all", "permerror"),
    ("v=spf1 unknown-modifier=x ip4:192.0.2.10 -all", "pass"),
    ("v=spf1 redirect=a.example.net redirect=b.example.net", "permerror"),
    ("v=spf10 -all", "none"),
])
def test_spf_mechanisms_and_qualifiers(record: str, expected: str) -> None:
    records = {"example.com": [record], "_spf.example.net": ["v=spf1 ip4:192.0.2.10 -all"],
               "_fail.example.net": ["v=spf1 -all"], "10.2.0.192.ok.example.net": ["unrelated"]}
    addresses = {"example.com": ["192.0.2.99"], "mx1.example.com": ["192.0.2.10"],
                 "10.2.0.192.ok.example.net": ["127.0.0.2"]}
    outcome = spf(records, addresses=addresses, mx={"example.com": [(10, "mx1.example.com")]})
    assert outcome.result == expected, outcome


def test_spf_without_a_record_is_none_and_two_records_are_permerror() -> None:
    assert spf({"other.example": ["v=spf1 -all"]}).result == "none"
    assert spf({"example.com": ["v=spf1 -all", "v=spf1 +all"]}).result == "permerror"


def test_spf_temporary_dns_failure_is_temperror() -> None:
    assert spf({}, temporary=("example.com",)).result == "temperror"
    records = {"example.com": ["v=spf1 include:slow.example.net -all"], "slow.example.net": []}
    assert spf(records, temporary=("slow.example.net",)).result == "temperror"


def test_spf_more_than_ten_dns_terms_is_permerror() -> None:
    """RFC 7208 §4.6.4: the 11th term that queries DNS ends the evaluation."""
    chain = {f"l{n}.example.net": [f"v=spf1 include:l{n + 1}.example.net"] for n in range(11)}
    chain["l11.example.net"] = ["v=spf1 ip4:192.0.2.10"]
    chain["example.com"] = ["v=spf1 include:l1.example.net -all"]
    assert spf(chain).result == "permerror"
    shorter = dict(chain)
    shorter["l9.example.net"] = ["v=spf1 ip4:192.0.2.10"]
    assert spf(shorter).result == "pass"  # 9 includes: within the limit


def test_spf_a_third_void_lookup_is_permerror() -> None:
    """RFC 7208 §4.6.4: two lookups that find nothing are allowed, a third is not."""
    two = "v=spf1 a:gone1.example.com a:gone2.example.com ip4:192.0.2.10 -all"
    three = "v=spf1 a:gone1.example.com a:gone2.example.com a:gone3.example.com ip4:192.0.2.10 -all"
    assert spf({"example.com": [two]}).result == "pass"
    assert spf({"example.com": [three]}).result == "permerror"


def test_spf_more_than_ten_mx_names_is_permerror() -> None:
    mx = {"example.com": [(n, f"mx{n}.example.com") for n in range(11)]}
    assert spf({"example.com": ["v=spf1 mx -all"]}, mx=mx).result == "permerror"


@pytest.mark.parametrize(("spec", "expanded"), [
    ("%{s}", "strong-bad@email.example.com"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"),
    ("%{lr}", "strong-bad"),
    ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{h}", "helo.example.org"),
    ("%%%_%-", "% %20"),
    ("%{S}", "strong-bad%40email.example.com"),
])
def test_spf_macros_expand_as_rfc_7208_section_7_4_shows(spec: str, expanded: str) -> None:
    """The examples of RFC 7208 §7.4 (sender strong-bad@email.example.com, 192.0.2.3)."""
    assert expand_macros(spec, sender="strong-bad@email.example.com", domain="email.example.com",
                         ip=ipaddress.ip_address("192.0.2.3"), helo="helo.example.org") == expanded


def test_spf_ipv6_macro_is_dotted_nibbles() -> None:
    ip = ipaddress.ip_address("2001:db8::cb01")
    assert expand_macros("%{ir}.%{v}._spf.%{d2}", sender="a@email.example.com", domain="email.example.com",
                         ip=ip, helo="h") == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com")


# -- DMARC unit table ---------------------------------------------------------------------


@pytest.mark.parametrize(("identifier", "author", "mode", "expected"), [
    ("example.com", "example.com", "s", True),
    ("mail.example.com", "example.com", "s", False),
    ("mail.example.com", "example.com", "r", True),
    ("example.com", "news.example.com", "r", True),
    ("example.net", "example.com", "r", False),
    ("a.example.co.uk", "b.example.co.uk", "r", True),
    ("example.co.uk", "other.co.uk", "r", False),
    ("alice.github.io", "bob.github.io", "r", False),
])
def test_dmarc_alignment_relaxed_and_strict(identifier: str, author: str, mode: str, expected: bool) -> None:
    assert aligned(identifier, author, mode) is expected


def test_organizational_domain_uses_the_bundled_public_suffix_list() -> None:
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("mail.sender.test") == "sender.test"
    assert organizational_domain("co.uk") == "co.uk"


def test_dmarc_record_parsing() -> None:
    record = parse_record("v=DMARC1; p=reject; sp=none; pct=50; adkim=s")
    assert record is not None
    assert (record.policy, record.subdomain_policy, record.percent, record.adkim, record.aspf) == (
        "reject", "none", 50, "s", "r")
    assert parse_record("p=reject; v=DMARC1") is None
    assert parse_record("v=DMARC1; p=bogus") is None
    assert parse_record("v=DMARC1; p=bogus; rua=mailto:x@example.com").policy == "none"  # type: ignore[union-attr]


def _dmarc(records: dict[str, list[str]], raw_from: str, spf_domain: str, spf_result: str = "pass",
           dkim: list[DkimResult] | None = None, sample: float = 0.0) -> tuple[str, str]:
    evaluator = DmarcEvaluator(FakeResolver(txt=records), sample=lambda: sample)
    raw = f"From: {raw_from}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    outcome = evaluator.evaluate(raw, SpfOutcome(spf_result, "mailfrom", spf_domain), dkim or [])
    return outcome.result, outcome.policy


def test_dmarc_passes_on_aligned_spf_or_dkim_and_fails_otherwise() -> None:
    records = {"_dmarc.example.com": ["v=DMARC1; p=reject; aspf=s"]}
    assert _dmarc(records, "a@example.com", "example.com") == ("pass", "none")
    assert _dmarc(records, "a@example.com", "bounce.example.com") == ("fail", "reject")  # strict SPF
    relaxed_dkim = [DkimResult("pass", "mail.example.com", "s", "rsa-sha256")]
    assert _dmarc(records, "a@example.com", "other.net", "fail", relaxed_dkim) == ("pass", "none")
    failed_dkim = [DkimResult("fail", "example.com", "s", "rsa-sha256")]
    assert _dmarc(records, "a@example.com", "other.net", "fail", failed_dkim) == ("fail", "reject")


def test_dmarc_subdomains_use_the_organizational_record_and_its_sp() -> None:
    records = {"_dmarc.example.com": ["v=DMARC1; p=reject; sp=quarantine"]}
    assert _dmarc(records, "a@news.example.com", "other.net", "fail") == ("fail", "quarantine")
    assert _dmarc(records, "a@example.com", "other.net", "fail") == ("fail", "reject")
    assert _dmarc({}, "a@example.com", "other.net", "fail") == ("none", "none")


def test_dmarc_pct_samples_out_to_the_next_weaker_policy() -> None:
    records = {"_dmarc.example.com": ["v=DMARC1; p=reject; pct=20"]}
    assert _dmarc(records, "a@example.com", "x.net", "fail", sample=0.1) == ("fail", "reject")
    assert _dmarc(records, "a@example.com", "x.net", "fail", sample=0.5) == ("fail", "quarantine")


def test_dmarc_needs_exactly_one_from_address() -> None:
    records = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    assert _dmarc(records, "a@example.com, b@example.org", "example.com")[0] == "permerror"


def test_removing_forged_results_keeps_every_other_byte() -> None:
    raw = (b"Received: x\r\nAuthentication-Results: mx.ledger.test;\r\n spf=pass\r\n"
           b"Subject: s\r\nAuthentication-Results: mx.ledger.test.evil; spf=pass\r\n\r\n"
           b"Authentication-Results: mx.ledger.test; in the body\r\n")
    assert remove_forged_fields(raw, "mx.ledger.test") == (
        b"Received: x\r\nSubject: s\r\nAuthentication-Results: mx.ledger.test.evil; spf=pass\r\n\r\n"
        b"Authentication-Results: mx.ledger.test; in the body\r\n")
