"""Greylisting of MX mail (issue 8, RFC 6647): the greylist with a fake clock, then our
real MX and submission listeners driven by smtplib with greylisting on and off."""

from __future__ import annotations

import pickle
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters import bootstrap
from adapters.bootstrap import Container, build
from adapters.config import ConfigError, Greylisting, load_settings
from adapters.smtp import replies
from adapters.smtp.greylist import Greylist, client_network
from adapters.tls import server_context
from domain.application.context import acting
from tests.conftest import drop_schemas, make_settings
from tests.service_support import bound, on_a_thread
from tests.smtp_support import PASSWORD, RunningSmtp, client_context, inbox_bodies

ALICE = "alice@example.test"
BOB = "bob@sender.test"
DELAY, WINDOW, PASS = 300.0, 86400.0, 36 * 86400.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def greylist(clock: FakeClock, **settings: Any) -> Greylist:
    return Greylist(Greylisting(enabled=True, **settings), clock)


# -- the greylist ------------------------------------------------------------------------


def test_a_new_triplet_is_refused_until_the_delay_has_passed_then_admitted() -> None:
    clock = FakeClock()
    grey = greylist(clock)
    assert not grey.admit("192.0.2.10", BOB, ALICE)
    clock.advance(DELAY - 1)
    assert not grey.admit("192.0.2.10", BOB, ALICE)  # too soon: still refused
    clock.advance(1)
    assert grey.admit("192.0.2.10", BOB, ALICE)  # the delay counts from the first try
    clock.advance(1)
    assert grey.admit("192.0.2.10", BOB, ALICE)


def test_a_retry_after_the_window_starts_over() -> None:
    clock = FakeClock()
    grey = greylist(clock)
    assert not grey.admit("192.0.2.10", BOB, ALICE)
    clock.advance(WINDOW + 1)
    assert not grey.admit("192.0.2.10", BOB, ALICE)
    clock.advance(DELAY - 1)
    assert not grey.admit("192.0.2.10", BOB, ALICE)
    clock.advance(1)
    assert grey.admit("192.0.2.10", BOB, ALICE)


def test_a_passed_triplet_is_remembered_while_used_and_forgotten_after_pass_seconds_unused() -> None:
    clock = FakeClock()
    grey = greylist(clock)
    grey.admit("192.0.2.10", BOB, ALICE)
    clock.advance(DELAY)
    assert grey.admit("192.0.2.10", BOB, ALICE)
    clock.advance(PASS - 1)
    assert grey.admit("192.0.2.10", BOB, ALICE)  # renewed on use
    clock.advance(PASS - 1)
    assert grey.admit("192.0.2.10", BOB, ALICE)
    clock.advance(PASS)
    assert not grey.admit("192.0.2.10", BOB, ALICE)


def test_the_client_network_is_the_ipv4_24_or_the_ipv6_64() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:ffff::5") == "2001:db8:1:2::/64"
    clock = FakeClock()
    grey = greylist(clock)
    grey.admit("192.0.2.10", BOB, ALICE)
    grey.admit("2001:db8:1:2::1", BOB, ALICE)
    clock.advance(DELAY)
    assert grey.admit("192.0.2.200", BOB, ALICE)  # another address of the same pool
    assert grey.admit("2001:db8:1:2:ffff::5", BOB, ALICE)
    assert not grey.admit("192.0.3.10", BOB, ALICE)  # the next /24 is a stranger
    assert not grey.admit("2001:db8:1:3::1", BOB, ALICE)


def test_sender_and_recipient_are_part_of_the_triplet_and_the_null_sender_is_greylisted_too() -> None:
    clock = FakeClock()
    grey = greylist(clock)
    grey.admit("192.0.2.10", BOB, ALICE)
    grey.admit("192.0.2.10", "", ALICE)
    clock.advance(DELAY)
    assert not grey.admit("192.0.2.10", "carol@sender.test", ALICE)
    assert not grey.admit("192.0.2.10", BOB, "dave@example.test")
    assert grey.admit("192.0.2.10", "", ALICE)  # a bounce passes like any retried mail
    assert grey.admit("192.0.2.10", BOB.upper(), ALICE.upper())  # addresses compare without case


def test_memory_is_bounded_and_the_least_recently_used_triplet_goes_first() -> None:
    clock = FakeClock()
    grey = greylist(clock, max_entries=3)
    for n in range(4):
        grey.admit("192.0.2.10", f"s{n}@sender.test", ALICE)
    assert len(grey) == 3
    clock.advance(DELAY)
    assert not grey.admit("192.0.2.10", "s0@sender.test", ALICE)  # evicted: starts over
    assert grey.admit("192.0.2.10", "s3@sender.test", ALICE)


def test_a_network_with_auto_allow_after_passed_triplets_passes_whole() -> None:
    clock = FakeClock()
    grey = greylist(clock, auto_allow_after=2)
    grey.admit("192.0.2.10", "s1@sender.test", ALICE)
    grey.admit("192.0.2.10", "s2@sender.test", ALICE)
    clock.advance(DELAY)
    assert grey.admit("192.0.2.10", "s1@sender.test", ALICE)
    assert not grey.admit("192.0.2.10", "new@sender.test", ALICE)  # one pass is not enough
    assert grey.admit("192.0.2.10", "s2@sender.test", ALICE)
    assert grey.admit("192.0.2.11", "another@sender.test", ALICE)  # now the /24 passes
    assert not grey.admit("198.51.100.1", "another@sender.test", ALICE)
    clock.advance(PASS)
    assert not grey.admit("192.0.2.11", "yet.another@sender.test", ALICE)  # allowance over


def test_exempt_networks_pass_at_once() -> None:
    grey = greylist(FakeClock(), exempt_networks=["192.0.2.0/24", "2001:db8::/32"])
    assert grey.admit("192.0.2.10", BOB, ALICE)
    assert grey.admit("2001:db8:5::1", BOB, ALICE)
    assert not grey.admit("198.51.100.1", BOB, ALICE)


def test_only_keyed_hashes_are_held_never_an_address_or_ip() -> None:
    clock = FakeClock()
    grey = greylist(clock, auto_allow_after=1)
    grey.admit("192.0.2.10", "canary-sender@sender.test", "canary-rcpt@example.test")
    clock.advance(DELAY)
    grey.admit("192.0.2.10", "canary-sender@sender.test", "canary-rcpt@example.test")
    triplets, passed, allowed = grey.state()
    assert triplets and allowed  # something is held...
    held = pickle.dumps(grey.state())
    for needle in (b"canary", b"sender.test", b"example.test", b"192.0.2", b"\xc0\x00\x02"):
        assert needle not in held  # ...but none of it readable
    assert {len(key) for key in [*triplets, *passed, *allowed]} == {32}
    # A second process (another key) cannot match the first one's hashes.
    other = Greylist(Greylisting(enabled=True), clock)
    other.admit("192.0.2.10", "canary-sender@sender.test", "canary-rcpt@example.test")
    assert set(other.state()[0]).isdisjoint(triplets)


def test_a_bad_exempt_network_is_a_configuration_error_and_greylisting_is_off_by_default(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="antiabuse.greylist.exempt_networks"):
        load_settings(None, data_dir=tmp_path, antiabuse={"greylist": {"exempt_networks": ["10.0.0.300/8"]}})
    settings = load_settings(None, data_dir=tmp_path)
    assert settings.antiabuse.greylist.enabled is False
    assert bootstrap.greylist(settings) is None


# -- end to end ----------------------------------------------------------------------


@contextmanager
def mx_store(tmp_path: Path, backend: str, **greylisting: Any) -> Iterator[Container]:
    settings = make_settings(tmp_path / "data", backend,
                             antiabuse={"enabled": False, "greylist": greylisting})
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
            container.app.create_account(ALICE, PASSWORD)
        yield container
    finally:
        container.close()
        drop_schemas(settings)


@contextmanager
def running(container: Container, clock: FakeClock) -> Iterator[RunningSmtp]:
    sockets, ports = bound("smtp", "submission", "submissions")
    service = bootstrap.smtp_service(container, server_context(container.settings), greylist_clock=clock)
    with on_a_thread(service, sockets, "smtp") as loop:
        yield RunningSmtp(container, service, ports, loop)


def message(subject: str, sender: str = BOB) -> bytes:
    return (f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{subject}@sender.test>\r\n\r\nhello\r\n").encode()


def try_mx(port: int, subject: str) -> tuple[str, tuple[int, bytes] | None]:
    """One MX transaction: the reply to RCPT, and to the end of DATA when RCPT passed."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.sender.test", timeout=10) as client:
        client.ehlo()
        assert client.mail(BOB)[0] == 250
        code, text = client.rcpt(ALICE)
        if code != 250:
            return f"{code} {text.decode()}", None
        return f"{code} {text.decode()}", client.data(message(subject))


def test_mx_mail_is_greylisted_at_rcpt_then_delivered_after_the_delay(tmp_path: Path, backend: str) -> None:
    clock = FakeClock()
    with mx_store(tmp_path, backend, enabled=True) as store:
        with running(store, clock) as smtp:
            first, _ = try_mx(smtp.mx, "first")
            assert first == replies.GREYLISTED
            assert inbox_bodies(store, ALICE) == []  # nothing stored
            clock.advance(60)
            assert try_mx(smtp.mx, "early")[0] == replies.GREYLISTED
            clock.advance(DELAY)
            reply, data = try_mx(smtp.mx, "later")
            assert reply == replies.RECIPIENT_OK
            assert data is not None and data[0] == 250
        [stored] = inbox_bodies(store, ALICE)
    assert b"Subject: later" in stored


def test_submission_is_never_greylisted(tmp_path: Path, backend: str) -> None:
    with mx_store(tmp_path, backend, enabled=True) as store:
        with running(store, FakeClock()) as smtp:
            with smtplib.SMTP("127.0.0.1", smtp.submission, timeout=10) as client:
                client.starttls(context=client_context())
                client.login(ALICE, PASSWORD)
                assert client.mail(ALICE)[0] == 250
                assert client.rcpt(ALICE)[0] == 250
                assert client.data(message("own", sender=ALICE))[0] == 250
            # The same client on the MX listener is a stranger and is greylisted.
            assert try_mx(smtp.mx, "mx")[0] == replies.GREYLISTED
        assert len(inbox_bodies(store, ALICE)) == 1


def test_greylisting_is_off_by_default_and_mx_mail_passes_at_once(tmp_path: Path, backend: str) -> None:
    with mx_store(tmp_path, backend) as store:
        assert store.settings.antiabuse.greylist.enabled is False
        with running(store, FakeClock()) as smtp:
            assert smtp.service.handler.greylist is None
            reply, data = try_mx(smtp.mx, "at.once")
        assert reply == replies.RECIPIENT_OK and data is not None and data[0] == 250
        assert len(inbox_bodies(store, ALICE)) == 1
