"""The daemon scanners end to end (issue 8): real clamd, spamd and rspamd processes
(tests/daemon_support.py), our real SMTP server on 127.0.0.1, smtplib as the client.

EICAR and a zip bomb are refused with 554 5.7.0 and nothing is stored; clamd stopped or
hung gives 451 and nothing is stored, unless fail_open; GTUBE scored by spamd and rspamd
adds their points to the built-in scorer's. SQLite only: what is under test is the
scanners, and the storage path they end in is the one test_sender_auth.py runs on both
backends. Plus tables for the three reply parsers.
"""

from __future__ import annotations

import base64
import io
import smtplib
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import Container, build
from adapters.config import ConfigError, load_settings
from adapters.scanners.clamd import ClamdResult
from adapters.scanners.clamd import parse_reply as clamd_reply
from adapters.scanners.daemons import DaemonScore, DaemonUnavailable
from adapters.scanners.rspamd import parse_reply as rspamd_reply
from adapters.scanners.rules import GTUBE
from adapters.scanners.spamd import parse_reply as spamd_reply
from adapters.smtp import replies
from domain.application.context import acting
from tests import daemon_support
from tests.conftest import make_settings
from tests.daemon_support import CLAMD_STREAM_MAX, EICAR, EICAR_SIGNATURE, Daemon
from tests.outbound_support import FakeResolver
from tests.scanner_support import ALICE, HOSTNAME, bodies, letter, running_mx, send, split_added
from tests.smtp_support import RunningSmtp, client_context

SENDER = "bob@sender.test"
ZONE = {"sender.test": ["v=spf1 ip4:127.0.0.1 -all"]}


@pytest.fixture(scope="session")
def clamd() -> Iterator[Daemon]:
    with daemon_support.clamd() as daemon:
        yield daemon


@pytest.fixture(scope="session")
def spamd() -> Iterator[Daemon]:
    with daemon_support.spamd() as daemon:
        yield daemon


@pytest.fixture(scope="session")
def rspamd() -> Iterator[Daemon]:
    with daemon_support.rspamd() as daemon:
        yield daemon


@contextmanager
def mx(tmp_path: Path, *, clamav: dict[str, Any] | None = None,
       antiabuse: dict[str, Any] | None = None) -> Iterator[tuple[Container, RunningSmtp]]:
    """A store with ALICE and its MX listener, scanning as configured."""
    settings = make_settings(tmp_path / "data", "sqlite", hostname=HOSTNAME,
                             antiabuse=antiabuse or {"enabled": False}, clamav=clamav or {})
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
            container.app.create_account(ALICE, "correct horse battery")
        with running_mx(container, FakeResolver(txt=ZONE)) as smtp:
            yield container, smtp
    finally:
        container.close()


def scanning(daemon_or_address: Daemon | str, **more: Any) -> dict[str, Any]:
    address = daemon_or_address if isinstance(daemon_or_address, str) else daemon_or_address.address
    return {"enabled": True, "address": address, **more}


def attached(payload: bytes, name: str) -> bytes:
    """A message with ``payload`` as a base64 attachment (the raw bytes never appear)."""
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return letter("Files", extra=b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n",
                  body=b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\n"
                       b"Content-Type: application/octet-stream; name=\"" + name.encode() + b"\"\r\n"
                       b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b1--\r\n")


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def zip_bomb() -> bytes:
    """4 MiB of zeros deflated to about 4 KiB: four times clamd's MaxFileSize here."""
    return zipped("zeros.bin", bytes(4 * 1024 * 1024))


def nested_zips(depth: int = 8) -> bytes:
    """Archives inside archives, deeper than clamd's MaxRecursion (5) here: 42.zip's shape."""
    data = b"innermost\r\n"
    for level in range(depth):
        data = zipped(f"level{level}.zip" if level else "note.txt", data)
    return data


def refused(container: Container, port: int, raw: bytes) -> str:
    """Send ``raw``; assert the store did not change at all; the reply line."""
    position = container.app.log_position()
    code, text = send(port, SENDER, raw)
    assert container.app.log_position() == position, "a refused or deferred message wrote events"
    assert bodies(container, ALICE, "INBOX") == [] and bodies(container, ALICE, "Junk") == []
    return f"{code} {text.decode()}"


# -- ClamAV ------------------------------------------------------------------------------


def test_eicar_in_an_attachment_is_refused_with_554_5_7_0_and_nothing_is_stored(
        tmp_path: Path, clamd: Daemon) -> None:
    with mx(tmp_path, clamav=scanning(clamd)) as (store, smtp):
        assert refused(store, smtp.mx, attached(EICAR, "eicar.com")) == replies.VIRUS_REJECTED
    assert replies.VIRUS_REJECTED.startswith("554 5.7.0 ")


def test_clean_mail_is_delivered_marked_clean_with_the_clients_bytes_unchanged(
        tmp_path: Path, clamd: Daemon) -> None:
    raw = attached(b"just a text file\r\n", "notes.txt")
    with mx(tmp_path, clamav=scanning(clamd)) as (store, smtp):
        assert send(smtp.mx, SENDER, raw)[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
    assert split_added(stored, raw) == b"X-Virus-Status: Clean\r\n"


def test_clamd_is_reached_over_its_unix_socket_too(tmp_path: Path, clamd: Daemon) -> None:
    with mx(tmp_path, clamav=scanning(clamd.unix_socket)) as (store, smtp):
        assert refused(store, smtp.mx, attached(EICAR, "eicar.com")) == replies.VIRUS_REJECTED
        assert send(smtp.mx, SENDER, letter())[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
    assert stored.startswith(b"X-Virus-Status: Clean\r\n")


def test_quarantine_delivers_an_infected_message_to_junk_naming_the_signature(
        tmp_path: Path, clamd: Daemon) -> None:
    raw = attached(EICAR, "eicar.com")
    with mx(tmp_path, clamav=scanning(clamd, infected="quarantine")) as (store, smtp):
        assert send(smtp.mx, SENDER, raw)[0] == 250
        inbox, [stored] = bodies(store, ALICE, "INBOX"), bodies(store, ALICE, "Junk")
    assert inbox == []
    assert split_added(stored, raw) == f"X-Virus-Status: Infected ({EICAR_SIGNATURE}.UNOFFICIAL)\r\n".encode()


@pytest.mark.parametrize("archive", [zip_bomb, nested_zips])
def test_a_zip_bomb_over_the_scan_limits_is_refused_as_infected(
        tmp_path: Path, clamd: Daemon, archive: Callable[[], bytes]) -> None:
    bomb = attached(archive(), "bomb.zip")
    assert len(bomb) < 10_000
    with mx(tmp_path, clamav=scanning(clamd)) as (store, smtp):
        assert refused(store, smtp.mx, bomb) == replies.SCAN_LIMITS_REJECTED


def test_a_message_over_clamds_stream_limit_is_refused_not_waved_through(
        tmp_path: Path, clamd: Daemon) -> None:
    big = letter("Big", body=b"plain text line of a large message\r\n" * (CLAMD_STREAM_MAX // 36 + 1000))
    assert len(big) > CLAMD_STREAM_MAX
    with mx(tmp_path, clamav=scanning(clamd)) as (store, smtp):
        assert refused(store, smtp.mx, big) == replies.SCAN_LIMITS_REJECTED


def test_a_message_over_our_own_scan_limit_is_refused_without_asking_clamd(tmp_path: Path) -> None:
    # Nothing listens on the address: had it been asked, the answer would be 451.
    settings = scanning(daemon_support.closed_port(), max_bytes=1000)
    with mx(tmp_path, clamav=settings) as (store, smtp):
        raw = letter(body=(b"x" * 70 + b"\r\n") * 30)
        assert refused(store, smtp.mx, raw) == replies.SCAN_LIMITS_REJECTED


def test_clamd_stopped_gives_451_and_nothing_is_stored(tmp_path: Path) -> None:
    with daemon_support.clamd() as own, mx(tmp_path, clamav=scanning(own)) as (store, smtp):
        assert send(smtp.mx, SENDER, letter("Before"))[0] == 250
        own.stop()
        [before] = bodies(store, ALICE, "INBOX")
        position = store.app.log_position()
        code, text = send(smtp.mx, SENDER, letter("After"))
        assert store.app.log_position() == position
        assert bodies(store, ALICE, "INBOX") == [before]
    assert f"{code} {text.decode()}" == replies.SCAN_TEMPFAIL and code == 451


def test_a_hung_clamd_times_out_into_451(tmp_path: Path) -> None:
    with daemon_support.silent_listener() as address, \
            mx(tmp_path, clamav=scanning(address, timeout=0.5)) as (store, smtp):
        started = time.monotonic()
        assert refused(store, smtp.mx, letter()) == replies.SCAN_TEMPFAIL
        assert time.monotonic() - started < 5


def test_fail_open_delivers_unscanned_mail_marked_so_and_drops_a_forged_status(tmp_path: Path) -> None:
    raw = letter(extra=b"X-Virus-Status: Clean\r\n")
    with mx(tmp_path, clamav=scanning(daemon_support.closed_port(), fail_open=True),
            antiabuse={"enabled": True}) as (store, smtp):
        assert send(smtp.mx, SENDER, raw)[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
    assert stored.startswith(b"X-Virus-Status: Unscanned (scanner unavailable)\r\nAuthentication-Results: ")
    assert stored.count(b"X-Virus-Status") == 1
    assert stored.endswith(raw.replace(b"X-Virus-Status: Clean\r\n", b""))


def test_submission_mail_is_scanned_too(tmp_path: Path, clamd: Daemon) -> None:
    raw = attached(EICAR, "eicar.com").replace(b"From: Bob <bob@sender.test>", b"From: alice@example.test")
    with mx(tmp_path, clamav=scanning(clamd)) as (store, smtp), \
            smtplib.SMTP("127.0.0.1", smtp.submission, timeout=10) as client:
        client.starttls(context=client_context())
        client.login(ALICE, "correct horse battery")
        with pytest.raises(smtplib.SMTPDataError) as refusal:
            client.sendmail(ALICE, [ALICE], raw)
    assert (refusal.value.smtp_code, refusal.value.smtp_error.decode()) == (554, replies.VIRUS_REJECTED[4:])


def trained_letters(words: str, kind: str) -> list[bytes]:
    """Twelve messages of one kind, rotating through ``words`` (the filter wants ten)."""
    vocabulary = words.split()
    bodies = (" ".join(vocabulary[(n + i) % len(vocabulary)] for i in range(40)) for n in range(12))
    return [letter(f"{kind} {n}", body=body.encode() + b"\r\n") for n, body in enumerate(bodies)]


HAM = "meeting agenda project deadline review quarterly report budget draft minutes lunch schedule"
SPAM = "viagra pills casino winner prize lottery bitcoin jackpot pharmacy replica watches rolex"


def test_a_quarantined_virus_stays_in_junk_when_the_recipients_filter_calls_it_ham(
        tmp_path: Path, clamd: Daemon) -> None:
    # An all-capitals subject scores 6 here: Junk, unless Alice's trained filter says ham.
    antiabuse = {"enabled": True, "rule_weights": {"all_caps_subject": 6.0}}
    clean = attached(b"the agenda\r\n", "agenda.txt").replace(b"Subject: Files", b"Subject: QUARTERLY REPORT")
    infected = attached(EICAR, "agenda.com").replace(b"Subject: Files", b"Subject: QUARTERLY REPORT")
    with mx(tmp_path, clamav=scanning(clamd, infected="quarantine"), antiabuse=antiabuse) as (store, smtp):
        with acting("admin:test", protocol="test", purpose="testing"):
            account_id = store.app.account_id_for(ALICE)
            store.app.train_spam_filter(account_id, "ham", messages=trained_letters(HAM, "ham"))
            store.app.train_spam_filter(account_id, "spam", messages=trained_letters(SPAM, "spam"))
        assert send(smtp.mx, SENDER, clean.replace(b"See attached.", HAM.encode()))[0] == 250
        assert len(bodies(store, ALICE, "INBOX")) == 1  # her filter overrode the spam score
        assert send(smtp.mx, SENDER, infected.replace(b"See attached.", HAM.encode()))[0] == 250
        [quarantined] = bodies(store, ALICE, "Junk")
    assert quarantined.startswith(b"X-Virus-Status: Infected (")


# -- spamd and rspamd ------------------------------------------------------------------

#: The built-in GTUBE rule off, so every point for GTUBE below comes from a daemon.
NO_BUILTIN_GTUBE = {"enabled": True, "rule_weights": {"gtube": 0.0}, "reject_threshold": 5000.0}


def spam_status(stored: bytes) -> bytes:
    return stored[stored.index(b"X-Spam-Status: "):stored.index(b"Received: ")]


@pytest.mark.parametrize("with_spamd", [True, False])
def test_gtube_scored_by_spamd_adds_its_1000_points_and_lands_in_junk(
        tmp_path: Path, spamd: Daemon, with_spamd: bool) -> None:
    raw = letter(body=GTUBE + b"\r\n")
    antiabuse = {**NO_BUILTIN_GTUBE, "spamd": scanning(spamd, enabled=with_spamd)}
    with mx(tmp_path, antiabuse=antiabuse) as (store, smtp):
        assert send(smtp.mx, SENDER, raw)[0] == 250
        inbox, junk = bodies(store, ALICE, "INBOX"), bodies(store, ALICE, "Junk")
    if with_spamd:
        assert inbox == [] and len(junk) == 1
        assert spam_status(junk[0]) == (b"X-Spam-Status: Yes, score=1000.0 required=5.0\r\n"
                                        b"\ttests=gtube,spamd(1000.0)\r\nX-Spam-Score: 1000.0\r\n")
    else:  # the control: without spamd the same message is clean
        assert junk == [] and len(inbox) == 1
        assert spam_status(inbox[0]).startswith(b"X-Spam-Status: No, score=0.0 ")


def test_gtube_scored_by_rspamd_is_refused_at_the_default_thresholds(tmp_path: Path, rspamd: Daemon) -> None:
    antiabuse = {"enabled": True, "rule_weights": {"gtube": 0.0}, "rspamd": scanning(rspamd)}
    with mx(tmp_path, antiabuse=antiabuse) as (store, smtp):
        assert refused(store, smtp.mx, letter(body=GTUBE + b"\r\n")) == replies.SPAM_REJECTED


def test_spamd_and_rspamd_scores_add_up_with_the_builtin_rules(
        tmp_path: Path, spamd: Daemon, rspamd: Daemon) -> None:
    raw = letter("NOW OPEN FOR BUSINESS", body=GTUBE + b"\r\n")  # all_caps_subject: 1.5
    antiabuse = {**NO_BUILTIN_GTUBE, "spamd": scanning(spamd), "rspamd": scanning(rspamd)}
    with mx(tmp_path, antiabuse=antiabuse) as (store, smtp):
        assert send(smtp.mx, SENDER, raw)[0] == 250
        [stored] = bodies(store, ALICE, "Junk")
    # rspamd scores GTUBE at its reject score, 15.
    assert spam_status(stored) == (b"X-Spam-Status: Yes, score=1016.5 required=5.0\r\n"
                                   b"\ttests=all_caps_subject,gtube,rspamd(15.0),spamd(1000.0)\r\n"
                                   b"X-Spam-Score: 1016.5\r\n")


def test_clean_mail_through_both_daemons_reaches_the_inbox(
        tmp_path: Path, spamd: Daemon, rspamd: Daemon) -> None:
    antiabuse = {"enabled": True, "spamd": scanning(spamd), "rspamd": scanning(rspamd)}
    with mx(tmp_path, antiabuse=antiabuse) as (store, smtp):
        assert send(smtp.mx, SENDER, letter())[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
    assert b"tests=rspamd(" in spam_status(stored) and b",spamd(0.0)\r\n" in spam_status(stored)


@pytest.mark.parametrize("daemon", ["spamd", "rspamd"])
def test_a_spam_daemon_down_defers_with_451_unless_fail_open(tmp_path: Path, daemon: str) -> None:
    down = scanning(daemon_support.closed_port())
    with mx(tmp_path, antiabuse={"enabled": True, daemon: down}) as (store, smtp):
        assert refused(store, smtp.mx, letter()) == replies.SCAN_TEMPFAIL
    fail_open = {"enabled": True, daemon: {**down, "fail_open": True}}
    with mx(tmp_path / "open", antiabuse=fail_open) as (store, smtp):
        assert send(smtp.mx, SENDER, letter())[0] == 250
        [stored] = bodies(store, ALICE, "INBOX")
    assert f"tests={daemon}(unscanned)\r\n".encode() in spam_status(stored)


# -- the reply parsers -------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "result"), [
    (b"stream: OK\0", ClamdResult("clean")),
    (b"stream: Eicar-Signature FOUND\0", ClamdResult("infected", "Eicar-Signature")),
    (b"stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND\0",
     ClamdResult("limits", "Heuristics.Limits.Exceeded.MaxRecursion")),
    (b"INSTREAM size limit exceeded. ERROR\0",
     ClamdResult("limits", "Heuristics.Limits.Exceeded.StreamMaxLength")),
    (b"stream: Evil\r\nX-Injected: 1 FOUND\0", ClamdResult("infected", "Unknown.Signature")),
])
def test_clamd_replies(reply: bytes, result: ClamdResult) -> None:
    assert clamd_reply(reply) == result


@pytest.mark.parametrize("reply", [b"", b"lstat() failed: No such file. ERROR\0", b"stream: FOUND\0",
                                   b"PONG\0"])
def test_other_clamd_replies_mean_unscanned_never_clean(reply: bytes) -> None:
    with pytest.raises(DaemonUnavailable):
        clamd_reply(reply)


def test_spamd_replies() -> None:
    reply = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 11\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,OTHER"
    assert spamd_reply(reply) == DaemonScore("spamd", 1000.0, ("GTUBE", "OTHER"))
    assert spamd_reply(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -1.5 / 5.0\r\n\r\n") == DaemonScore("spamd", -1.5)
    for bad in (b"SPAMD/1.0 76 Bad header line: x\r\n\r\n", b"SPAMD/1.1 0 EX_OK\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n\r\n"):
        with pytest.raises(DaemonUnavailable):
            spamd_reply(bad)


def test_rspamd_replies() -> None:
    assert rspamd_reply(200, b'{"score": 15.0, "action": "reject", "symbols": {"GTUBE": {}}}') \
        == DaemonScore("rspamd", 15.0, ("GTUBE",))
    for status, body in ((200, b"not json"), (200, b'{"action": "no action"}'), (500, b"{}")):
        with pytest.raises(DaemonUnavailable):
            rspamd_reply(status, body)


@pytest.mark.parametrize(("section", "value"), [
    ({"clamav": {"address": "localhost"}}, "neither host:port"),
    ({"clamav": {"infected": "ignore"}}, "reject"),
    ({"antiabuse": {"rspamd": {"address": "/run/rspamd.sock"}}}, "host:port"),
])
def test_bad_daemon_settings_are_refused(tmp_path: Path, section: dict[str, Any], value: str) -> None:
    with pytest.raises(ConfigError, match=value):
        load_settings(None, data_dir=tmp_path, **section)
