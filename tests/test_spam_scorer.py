"""The built-in spam scorer end to end (issue 8): GTUBE refused at DATA or sent to Junk,
DNS block and allow lists, the header heuristics, and mail that is not scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.scanners.rules import GTUBE
from adapters.scanners.scorer import header_rules, reversed_ip
from adapters.smtp import replies
from tests.outbound_support import FakeResolver
from tests.scanner_support import ALICE, bodies, letter, running_mx, scored_store, send, split_added

CLEAN_ZONE = {"sender.test": ["v=spf1 ip4:127.0.0.1 -all"]}


def test_gtube_is_refused_at_data_with_550_5_7_1_and_nothing_is_stored(tmp_path: Path, backend: str) -> None:
    with scored_store(tmp_path, backend) as store:
        position = store.app.log_position()
        with running_mx(store, FakeResolver(txt=CLEAN_ZONE)) as smtp:
            code, text = send(smtp.mx, "bob@sender.test", letter(body=GTUBE + b"\r\n"))
            # The session goes on: the next clean message is taken.
            assert send(smtp.mx, "bob@sender.test", letter("Next"))[0] == 250
        assert f"{code} {text.decode()}" == replies.SPAM_REJECTED
        assert len(bodies(store, ALICE, "INBOX")) == 1 and bodies(store, ALICE, "Junk") == []
        assert store.app.log_position() > position


def test_gtube_under_a_raised_reject_threshold_lands_in_junk_flagged(tmp_path: Path, backend: str) -> None:
    raw = letter(body=GTUBE + b"\r\n")
    with scored_store(tmp_path, backend, reject_threshold=5000.0) as store:
        with running_mx(store, FakeResolver(txt=CLEAN_ZONE)) as smtp:
            code, _ = send(smtp.mx, "bob@sender.test", raw)
        inbox, junk = bodies(store, ALICE, "INBOX"), bodies(store, ALICE, "Junk")
    assert code == 250 and inbox == [] and len(junk) == 1
    added = split_added(junk[0], raw)
    assert added.endswith(b"X-Spam-Flag: YES\r\n"
                          b"X-Spam-Status: Yes, score=1000.0 required=5.0\r\n\ttests=gtube\r\n"
                          b"X-Spam-Score: 1000.0\r\n")
    assert added.startswith(b"Authentication-Results: mx.ledger.test;\r\n\tspf=pass ")


def test_junk_follows_the_special_use_attribute_when_renamed(tmp_path: Path, backend: str) -> None:
    raw = letter(body=GTUBE + b"\r\n")
    with scored_store(tmp_path, backend, reject_threshold=5000.0) as store:
        account_id = store.app.account_id_for(ALICE)
        store.app.rename_mailbox(account_id, "Junk", "Spam")
        with running_mx(store, FakeResolver(txt=CLEAN_ZONE)) as smtp:
            assert send(smtp.mx, "bob@sender.test", raw)[0] == 250
        assert len(bodies(store, ALICE, "Spam")) == 1 and bodies(store, ALICE, "INBOX") == []


def test_clean_mail_goes_to_the_inbox_scored_zero(tmp_path: Path, backend: str) -> None:
    raw = letter()
    with scored_store(tmp_path, backend) as store:
        with running_mx(store, FakeResolver(txt=CLEAN_ZONE)) as smtp:
            assert send(smtp.mx, "bob@sender.test", raw)[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
    assert split_added(stored, raw).endswith(
        b"X-Spam-Status: No, score=0.0 required=5.0\r\n\ttests=none\r\nX-Spam-Score: 0.0\r\n")


def test_a_dnsbl_listing_and_heuristics_add_up_to_junk(tmp_path: Path, backend: str) -> None:
    resolver = FakeResolver(txt=CLEAN_ZONE, addresses={"1.0.0.127.bl.test": ["127.0.0.2"]})
    raw = b"From: bob@sender.test\r\nTo: alice@example.test\r\nSubject: FREE MONEY FOR YOU!!!\r\n\r\nhi\r\n"
    with scored_store(tmp_path, backend, dnsbl_zones=["bl.test"]) as store:
        with running_mx(store, resolver) as smtp:
            assert send(smtp.mx, "bob@sender.test", raw)[0] == 250
        junk = bodies(store, ALICE, "Junk")
    assert len(junk) == 1
    assert (b"X-Spam-Status: Yes, score=8.5 required=5.0\r\n\ttests=all_caps_subject,dnsbl,"
            b"excessive_exclamation,missing_date,missing_message_id\r\n") in junk[0]
    assert ("addresses", "1.0.0.127.bl.test") in resolver.queries


def test_a_dnswl_listing_lowers_the_score_and_list_error_codes_are_no_listing(tmp_path: Path,
                                                                               backend: str) -> None:
    resolver = FakeResolver(txt=CLEAN_ZONE, addresses={"1.0.0.127.wl.test": ["127.0.0.2"],
                                                       "1.0.0.127.bl.test": ["127.255.255.254"]})
    raw = letter()
    with scored_store(tmp_path, backend, dnswl_zones=["wl.test"], dnsbl_zones=["bl.test"]) as store:
        with running_mx(store, resolver) as smtp:
            assert send(smtp.mx, "bob@sender.test", raw)[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
    assert b"X-Spam-Status: No, score=-3.0 required=5.0\r\n\ttests=dnswl\r\n" in stored


def test_a_dns_failure_scores_zero_or_tempfails_when_asked(tmp_path: Path, backend: str) -> None:
    resolver = FakeResolver(temporary=["sender.test"])
    with scored_store(tmp_path, backend) as store:
        with running_mx(store, resolver) as smtp:
            assert send(smtp.mx, "bob@sender.test", letter())[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
        assert b"\tspf=temperror smtp.mailfrom=bob@sender.test;\r\n" in stored
    with scored_store(tmp_path / "strict", backend, tempfail_on_dns_error=True) as store:
        with running_mx(store, resolver) as smtp:
            code, text = send(smtp.mx, "bob@sender.test", letter())
        assert f"{code} {text.decode()}" == replies.AUTH_DNS_TEMPFAIL
        assert bodies(store, ALICE, "INBOX") == []


def test_submission_mail_is_not_scored(tmp_path: Path, backend: str) -> None:
    import smtplib

    from tests.smtp_support import client_context

    raw = b"From: alice@example.test\r\nTo: alice@example.test\r\nSubject: GTUBE\r\n\r\n" + GTUBE + b"\r\n"
    with scored_store(tmp_path, backend) as store:
        with running_mx(store, FakeResolver()) as smtp, \
                smtplib.SMTP("127.0.0.1", smtp.submission, timeout=10) as client:
            client.starttls(context=client_context())
            client.login(ALICE, "correct horse battery")
            client.sendmail(ALICE, [ALICE], raw)
        [stored] = bodies(store, ALICE, "INBOX")
    assert b"X-Spam" not in stored and b"Authentication-Results" not in stored


def test_unknown_rule_weights_are_refused_in_the_settings(tmp_path: Path) -> None:
    from adapters.config import ConfigError, load_settings

    with pytest.raises((ConfigError, ValueError), match="unknown rules"):
        load_settings(None, data_dir=tmp_path, antiabuse={"rule_weights": {"no_such_rule": 1.0}})


@pytest.mark.parametrize(("ip", "name"), [
    ("192.0.2.1", "1.2.0.192"),
    ("::ffff:192.0.2.1", "1.2.0.192"),
    ("2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"),
    ("not an ip", None),
])
def test_dnsbl_names_reverse_the_address(ip: str, name: str | None) -> None:
    assert reversed_ip(ip) == name


def test_header_heuristics() -> None:
    good = letter()
    assert header_rules(good, "bob@sender.test") == []
    assert header_rules(good, "bounces@mail.sender.test") == []  # same organization
    assert header_rules(good, "bounces@elsewhere.test") == ["from_return_path_mismatch"]
    assert header_rules(letter("RE: OK"), "") == []  # too short to judge
    assert header_rules(letter("URGENT ACTION REQUIRED"), "") == ["all_caps_subject"]
    assert header_rules(letter("Act now!!!"), "") == ["excessive_exclamation"]
