"""Abuse of the SMTP listeners, against the real service over real sockets.

Each test is one attack class of the security checklist (§2.1 smuggling, §2.2 STARTTLS
injection, §2.3 open relay, §2.5 long lines, §2.6 NUL, §2.9 brute force, §2.10 junk and
pre-auth limits, §3 aiosmtpd pitfalls, §6 SMTP items 1-9 and 32-33): what the client
sends byte for byte, which reply it must get, what the store holds afterwards and how
long the server took. Limits are set small per test so the whole file runs in seconds.
"""

from __future__ import annotations

import base64
import errno
import resource
import select
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import Container, build
from adapters.smtp import replies
from domain.application.context import acting
from tests.conftest import drop_schemas, make_settings
from tests.smtp_support import (
    PASSWORD,
    RawClient,
    RunningSmtp,
    add_user,
    client_context,
    inbox_bodies,
    running_smtp,
)

ALICE = "alice@example.test"
#: Defaults for every server here: no sleeping on soft errors, no slow AUTH failures,
#: so only the test that measures a delay pays for it.
FAST_SMTP: dict[str, Any] = {"error_delay": 0.0, "idle_timeout": 10.0}
FAST_AUTH: dict[str, Any] = {"failure_delay": 0.0}


def line(reply: str) -> bytes:
    """A named reply as it travels: one CRLF-terminated line."""
    return reply.encode() + b"\r\n"


# -- the server --------------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., RunningSmtp]]:
    """Start a real SMTP service with its own settings: ``serve(backend, smtp={...})``.
    Every store has the domain example.test and the user alice@example.test."""
    with ExitStack() as stack:
        count = 0

        def start(backend: str = "sqlite", *, smtp: dict[str, Any] | None = None,
                  auth: dict[str, Any] | None = None, **extra: Any) -> RunningSmtp:
            nonlocal count
            count += 1
            settings = make_settings(tmp_path / f"data{count}", backend,
                                     smtp={**FAST_SMTP, **(smtp or {})},
                                     auth={**FAST_AUTH, **(auth or {})}, **extra)
            stack.callback(drop_schemas, settings)
            container = build(settings)
            stack.callback(container.close)
            with acting("admin:test", protocol="test", purpose="testing"):
                container.app.add_domain("example.test")
            add_user(container, ALICE)
            return stack.enter_context(running_smtp(container))

        yield start


# -- client helpers ----------------------------------------------------------------------


def tls_wrap(client: RawClient) -> None:
    """Start TLS on the raw socket; nothing may be waiting in the plaintext buffer."""
    assert client.buffer == b"", f"plaintext left before TLS: {client.buffer!r}"
    client.sock = client_context().wrap_socket(client.sock, server_hostname="localhost")


def connect(port: int, *, tls: bool = False, timeout: float = 10.0) -> RawClient:
    """A client past the 220 greeting (and the TLS handshake for implicit TLS)."""
    client = RawClient(port, timeout)
    if tls:
        tls_wrap(client)
    greeting = client.reply()
    assert greeting.startswith(b"220 "), greeting
    return client


def ehlo(client: RawClient, name: str = "client.test") -> bytes:
    reply = client.command(f"EHLO {name}")
    assert reply.startswith(b"250"), reply
    return reply


def plain(login: str, password: str) -> str:
    """RFC 4616 PLAIN initial response."""
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode()


def mx_session(smtp: RunningSmtp) -> RawClient:
    client = connect(smtp.mx)
    ehlo(client)
    return client


def submission_session(smtp: RunningSmtp) -> RawClient:
    """Authenticated as alice on the implicit-TLS submission port."""
    client = connect(smtp.submissions, tls=True)
    ehlo(client)
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == line(replies.AUTH_OK)
    return client


def message(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return (f"From: {ALICE}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\n").encode() + body


def send_mail(client: RawClient, data: bytes, sender: str = "sender@far.test",
              recipients: tuple[str, ...] = (ALICE,)) -> bytes:
    """One whole transaction; the reply after the end of data. ``data`` is sent as is,
    followed by CRLF . CRLF."""
    assert client.command(f"MAIL FROM:<{sender}>").startswith(b"250")
    for recipient in recipients:
        assert client.command(f"RCPT TO:<{recipient}>").startswith(b"250")
    assert client.command("DATA").startswith(b"354")
    client.send(data + b"\r\n.\r\n")
    return client.reply()


def quit_rest(client: RawClient) -> bytes:
    """QUIT, then everything the server still says until it closes: exactly the 221
    when the session was in step."""
    client.send(b"QUIT\r\n")
    rest = client.closed_within(5)
    client.close()
    return rest


def still_answers(client: RawClient) -> None:
    assert client.command("NOOP").startswith(b"250 "), "the session fell out of step"


def stored(smtp: RunningSmtp, address: str = ALICE) -> list[bytes]:
    return inbox_bodies(smtp.container, address)


def accepted(reply: bytes) -> bool:
    return reply.startswith(b"250 2.0.0 Message accepted as ")


# -- 1. SMTP smuggling (checklist §2.1, §6.1) -------------------------------------------

#: hannob/smtpsmug vectors: each a "dot line" some MTA would take as the end of DATA.
SMUGGLING_ENDS = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\r\n.\n", b"\r.\r\n",
                  b"\r\n.\r", b"\r\n\x00.\r\n"]
SMUGGLED = b"MAIL FROM:<a@far.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nsmuggled"


def test_every_smuggled_end_of_data_is_refused_whole_and_no_smuggled_command_is_answered(
        serve: Callable[..., RunningSmtp], backend: str) -> None:
    smtp = serve(backend)
    for end in SMUGGLING_ENDS:
        client = mx_session(smtp)
        final = send_mail(client, b"Subject: smuggling\r\n\r\nfirst" + end + SMUGGLED)
        expected = replies.NUL_IN_MESSAGE if b"\x00" in end else replies.BARE_LINE_END
        assert final == line(expected), f"{end!r}: {final!r}"
        # No 250 to the smuggled MAIL/RCPT/DATA: the only reply left is QUIT's.
        assert quit_rest(client) == line(replies.BYE), end
    assert stored(smtp) == []
    client = mx_session(smtp)
    assert accepted(send_mail(client, message("clean")))
    assert quit_rest(client) == line(replies.BYE)
    bodies = stored(smtp)
    assert len(bodies) == 1
    assert b"smuggled" not in bodies[0]


def test_a_dot_line_right_after_an_overlong_line_does_not_end_the_data(
        serve: Callable[..., RunningSmtp], backend: str) -> None:
    """The rest of a line cut at the line limit is not a line start: a '.' there is text,
    not the end of DATA (aiosmtpd keeps ``line_fragments`` for this)."""
    smtp = serve(backend)
    client = mx_session(smtp)
    assert client.command("MAIL FROM:<sender@far.test>").startswith(b"250")
    assert client.command(f"RCPT TO:<{ALICE}>").startswith(b"250")
    assert client.command("DATA").startswith(b"354")
    # The dot arrives alone at the end of an over-long chunk, its CRLF a moment later.
    client.send(b"Subject: long\r\n\r\n" + b"A" * 5000 + b".")
    time.sleep(0.3)
    client.send(b"\r\n" + SMUGGLED + b"\r\n.\r\n")
    assert client.reply() == line(replies.LINE_TOO_LONG)
    assert quit_rest(client) == line(replies.BYE)
    assert stored(smtp) == []


# -- 2. STARTTLS command injection (checklist §2.2, §6.4) -------------------------------


@pytest.mark.parametrize("listener", ["submission", "mx"])
def test_commands_pipelined_behind_starttls_in_plaintext_are_discarded(
        serve: Callable[..., RunningSmtp], listener: str) -> None:
    smtp = serve()
    client = connect(smtp.submission if listener == "submission" else smtp.mx)
    client.send(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<inj@far.test>\r\n")
    assert b"STARTTLS" in client.reply()
    assert client.reply().startswith(b"220 ")
    tls_wrap(client)
    # RFC 3207 §4.2: a fresh EHLO; its reply is the first thing we hear (no reply to
    # the injected MAIL is waiting).
    reply = ehlo(client)
    assert reply.startswith(b"250-localhost\r\n") and b"STARTTLS" not in reply, reply
    if listener == "submission":
        assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == line(replies.AUTH_OK)
    assert client.command(f"RCPT TO:<{ALICE}>") == line(replies.NEED_MAIL)
    assert quit_rest(client) == line(replies.BYE)


def test_a_second_starttls_inside_tls_is_refused_and_the_session_goes_on(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = connect(smtp.mx)
    ehlo(client)
    assert client.command("STARTTLS").startswith(b"220 ")
    tls_wrap(client)
    ehlo(client)
    assert client.command("STARTTLS") == line(replies.TLS_ALREADY_ACTIVE)
    still_answers(client)
    assert quit_rest(client) == line(replies.BYE)
    client = connect(smtp.submissions, tls=True)
    assert b"STARTTLS" not in ehlo(client)
    assert client.command("STARTTLS") == line(replies.TLS_ALREADY_ACTIVE)
    still_answers(client)
    assert quit_rest(client) == line(replies.BYE)


# -- 3. Open relay (checklist §2.3, §6.5) -----------------------------------------------

#: Sender-specified routing through our domain, and the forms that reach another host.
ROUTED_FORMS = {
    "x%ext.test@example.test": replies.ROUTING_DENIED,
    "ext.test!x@example.test": replies.ROUTING_DENIED,
    '"x@ext.test"@example.test': replies.ROUTING_DENIED,
    "x@ext.test@example.test": replies.BAD_RECIPIENT_SYNTAX,
}
OUTSIDE_FORMS = {
    "x@ext.test": replies.RELAY_DENIED,
    "@example.test:x@ext.test": replies.RELAY_DENIED,  # the source route is ignored
    "x@[192.0.2.1]": replies.RELAY_DENIED,
}


def test_the_mx_without_auth_refuses_every_relay_form_with_a_5xx(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = mx_session(smtp)
    assert client.command("MAIL FROM:<sender@far.test>").startswith(b"250")
    for address, expected in {**OUTSIDE_FORMS, **ROUTED_FORMS}.items():
        assert client.command(f"RCPT TO:<{address}>") == line(expected), address
    # Nothing was accepted: there is no recipient to send data to.
    assert client.command("DATA") == line(replies.NEED_RCPT)
    assert quit_rest(client) == line(replies.BYE)


def test_authenticated_submission_relays_to_outside_addresses_but_not_sender_routed_ones(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = submission_session(smtp)
    assert client.command(f"MAIL FROM:<{ALICE}>").startswith(b"250")
    assert client.command("RCPT TO:<x@ext.test>") == line(replies.RECIPIENT_QUEUED)
    for address, expected in ROUTED_FORMS.items():
        assert client.command(f"RCPT TO:<{address}>") == line(expected), address
    assert client.command("RCPT TO:<x@[192.0.2.1]>") == line(replies.ADDRESS_LITERAL_REFUSED)
    # RFC 5321 §3.6.1 / appendix C: a source route is ignored, so this is x@ext.test,
    # which this user may relay to anyway.
    assert client.command("RCPT TO:<@example.test:x@ext.test>") == line(replies.RECIPIENT_QUEUED)
    assert quit_rest(client) == line(replies.BYE)


# -- 4. NUL and control characters in addresses (checklist §2.6, §6.8) ------------------


def test_nul_control_characters_and_overlong_local_parts_in_addresses_are_refused(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = mx_session(smtp)
    for sender in (b"a\x00b@far.test", b"a\x01b@far.test", b"a\x7fb@far.test"):
        assert client.command(b"MAIL FROM:<" + sender + b">") == line(replies.BAD_SENDER_SYNTAX), sender
        still_answers(client)
    assert client.command("MAIL FROM:<sender@far.test>").startswith(b"250")
    for recipient in (b"a\x00b@example.test", b"a\x01b@example.test", b"a\x1bb@example.test",
                      b"a\rb@example.test", b"alice@exa\x00mple.test"):
        reply = client.command(b"RCPT TO:<" + recipient + b">")
        assert reply == line(replies.BAD_RECIPIENT_SYNTAX), (recipient, reply)
        still_answers(client)
    too_long = "a" * 300 + "@example.test"
    assert client.command(f"RCPT TO:<{too_long}>") == line(replies.BAD_RECIPIENT_SYNTAX + " (too long)")
    still_answers(client)
    # RFC 5321 §4.1.2 lets a Quoted-string be empty, so this is no syntax error; it
    # names nobody here.
    assert client.command('RCPT TO:<""@example.test>') == line(replies.UNKNOWN_USER)
    still_answers(client)
    # Non-ASCII without SMTPUTF8 (RFC 6531 §3.4), and C1 controls in UTF-8.
    assert client.command("RCPT TO:<a\u00e9b@example.test>".encode()).startswith(b"553 5.6.7")
    assert client.command("RCPT TO:<a\u0085b@example.test>".encode()) == line(replies.BAD_RECIPIENT_SYNTAX)
    still_answers(client)
    assert client.command("DATA") == line(replies.NEED_RCPT)
    assert quit_rest(client) == line(replies.BYE)
    assert stored(smtp) == []


def test_c1_controls_and_unicode_line_separators_in_utf8_addresses_are_refused(
        serve: Callable[..., RunningSmtp]) -> None:
    """U+0085 (NEL) and U+2028 are line breaks to str.splitlines() and to some mail
    readers: in a relayed address they can end up splitting a header line."""
    smtp = serve()
    client = submission_session(smtp)
    assert client.command(f"MAIL FROM:<{ALICE}> SMTPUTF8").startswith(b"250")
    for address in ("a\u0085b@ext.test", "a\u2028b@ext.test", "ab@ext\u0085.test"):
        reply = client.command(f"RCPT TO:<{address}>".encode())
        assert reply[:1] == b"5", (address, reply)
    assert quit_rest(client) == line(replies.BYE)


def test_invalid_utf8_in_addresses_is_a_syntax_error_not_a_local_error(
        serve: Callable[..., RunningSmtp]) -> None:
    """Bytes that are not UTF-8 come to the parser as lone surrogates; they must give a
    5xx syntax reply, not the 451 of an unexpected exception."""
    smtp = serve()
    client = mx_session(smtp)
    reply = client.command(b"MAIL FROM:<\xff\xfe@far.test> SMTPUTF8")
    assert reply[:1] == b"5", reply
    still_answers(client)
    assert client.command("MAIL FROM:<sender@far.test> SMTPUTF8").startswith(b"250")
    reply = client.command(b"RCPT TO:<\xff@example.test>")
    assert reply[:1] == b"5", reply
    still_answers(client)
    assert quit_rest(client) == line(replies.BYE)


# -- 5. Long lines (checklist §2.5, §6.7) -----------------------------------------------


def test_an_overlong_command_line_gets_500_and_the_session_stays_in_step(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = connect(smtp.mx)
    assert client.command("EHLO " + "a" * 10_000).startswith(b"500 5.5.2 ")
    ehlo(client)
    mail = "MAIL FROM:<sender@far.test> ENVID=" + "x" * 1100
    assert client.command(mail).startswith(b"500 5.5.2 ")
    still_answers(client)
    assert quit_rest(client) == line(replies.BYE)


def test_a_100_kb_data_line_is_refused_with_500_after_the_end_of_data(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = mx_session(smtp)
    reply = send_mail(client, b"Subject: long\r\n\r\n" + b"x" * 100_000 + b"\r\nMAIL FROM:<a@far.test>")
    assert reply == line(replies.LINE_TOO_LONG)
    still_answers(client)
    assert stored(smtp) == []
    assert accepted(send_mail(client, message("after the long line")))
    assert quit_rest(client) == line(replies.BYE)
    assert len(stored(smtp)) == 1


# -- 6. Size (checklist §6.7) -----------------------------------------------------------

MIB = 1024 * 1024


def advertised_size(ehlo_reply: bytes) -> int:
    for text in ehlo_reply.split(b"\r\n"):
        if text[4:].startswith(b"SIZE "):
            return int(text[9:])
    raise AssertionError(f"no SIZE in {ehlo_reply!r}")


def test_a_declared_size_over_the_limit_is_refused_at_mail(serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(max_message_bytes=MIB)
    client = connect(smtp.mx)
    limit = advertised_size(ehlo(client))
    assert 0 < limit <= MIB
    assert client.command(f"MAIL FROM:<sender@far.test> SIZE={limit + 1}") == line(replies.TOO_BIG_DECLARED)
    assert client.command(f"MAIL FROM:<sender@far.test> SIZE={10**30}") == line(replies.BAD_PARAMETER)
    # str.isdigit() is true for "²", which int() refuses.
    assert client.command("MAIL FROM:<sender@far.test> SIZE=\u00b2".encode()) == line(replies.BAD_PARAMETER)
    assert client.command(f"MAIL FROM:<sender@far.test> SIZE={limit}").startswith(b"250")
    assert quit_rest(client) == line(replies.BYE)


def test_20_mib_of_data_over_a_1_mib_limit_gets_552_with_bounded_memory(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(max_message_bytes=MIB)
    client = mx_session(smtp)
    assert client.command("MAIL FROM:<sender@far.test>").startswith(b"250")
    assert client.command(f"RCPT TO:<{ALICE}>").startswith(b"250")
    assert client.command("DATA").startswith(b"354")
    chunk = (b"y" * 998 + b"\r\n") * 1024  # 1000 KiB of legal lines, sent 21 times
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        client.send(b"Subject: big\r\n\r\n")
        for _ in range(21):
            client.send(chunk)
        client.send(b".\r\n")
        reply = client.reply()
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert reply == line(replies.TOO_BIG)
    # Server and client share this process: the client's chunk (1 MiB) is counted too.
    assert python_peak < 3 * MIB, f"Python heap peaked at {python_peak / MIB:.1f} MiB"
    assert rss_growth < 40 * MIB, f"RSS grew by {rss_growth / MIB:.1f} MiB"
    still_answers(client)
    assert stored(smtp) == []
    assert accepted(send_mail(client, message("small enough", (b"z" * 998 + b"\r\n") * 500)))
    assert quit_rest(client) == line(replies.BYE)
    assert len(stored(smtp)) == 1


# -- 7. Recipients -----------------------------------------------------------------------


def test_the_recipient_after_max_recipients_gets_452_and_the_others_still_get_the_mail(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"max_recipients": 3})
    people = ["bob@example.test", "carol@example.test", "dave@example.test"]
    for person in people:
        add_user(smtp.container, person)
    client = mx_session(smtp)
    assert client.command("MAIL FROM:<sender@far.test>").startswith(b"250")
    for person in [ALICE, *people[:2]]:
        assert client.command(f"RCPT TO:<{person}>") == line(replies.RECIPIENT_OK)
    # RFC 5321 §4.5.3.1.10: temporary, so the client sends to the rest in a new transaction.
    assert client.command(f"RCPT TO:<{people[2]}>") == line(replies.TOO_MANY_RECIPIENTS)
    assert client.command("DATA").startswith(b"354")
    client.send(message("three of four") + b"\r\n.\r\n")
    assert accepted(client.reply())
    assert quit_rest(client) == line(replies.BYE)
    assert [len(stored(smtp, p)) for p in [ALICE, *people]] == [1, 1, 1, 0]


# -- 8. Error, pre-auth and junk limits (checklist §2.10) -------------------------------


def test_the_fifth_error_reply_is_followed_by_421_and_the_connection_closes(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"max_errors": 5})
    client = mx_session(smtp)
    for _ in range(4):
        assert client.command(f"RCPT TO:<{ALICE}>") == line(replies.NEED_MAIL)
    client.send(f"RCPT TO:<{ALICE}>\r\n".encode())
    assert client.closed_within(2) == line(replies.NEED_MAIL) + line(replies.TOO_MANY_ERRORS)


def test_errors_and_junk_commands_are_forgiven_after_each_delivered_message(
        serve: Callable[..., RunningSmtp]) -> None:
    """Postfix smtpd: the limits are for clients that deliver nothing, not for a relay
    sending a long batch with RSETs and the odd unknown recipient."""
    smtp = serve(smtp={"max_errors": 3, "max_junk_commands": 3})
    client = mx_session(smtp)
    for n in range(4):
        assert client.command("RSET").startswith(b"250")
        still_answers(client)
        assert client.command("MAIL FROM:<sender@far.test>").startswith(b"250")
        assert client.command("RCPT TO:<nobody@example.test>") == line(replies.UNKNOWN_USER)
        assert client.command("RCPT TO:<x@ext.test>") == line(replies.RELAY_DENIED)
        assert client.command(f"RCPT TO:<{ALICE}>").startswith(b"250")
        assert client.command("DATA").startswith(b"354")
        client.send(message(f"batch {n}") + b"\r\n.\r\n")
        assert accepted(client.reply())
    assert quit_rest(client) == line(replies.BYE)
    assert len(stored(smtp)) == 4


def test_too_many_commands_before_auth_on_submission_get_421_and_close(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"max_commands_before_auth": 3})
    client = connect(smtp.submissions, tls=True)
    for _ in range(3):
        ehlo(client)
    client.send(b"EHLO client.test\r\n")
    assert client.closed_within(2) == line(replies.TOO_MANY_COMMANDS)


def test_a_noop_loop_gets_421_and_close_after_max_junk_commands(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"max_junk_commands": 10})
    client = mx_session(smtp)
    for _ in range(10):
        still_answers(client)
    client.send(b"NOOP\r\n")
    assert client.closed_within(2) == line(replies.TOO_MANY_COMMANDS)


# -- 9. Deadlines (checklist §2.10, §6.33) ----------------------------------------------


def test_an_idle_client_is_told_421_and_disconnected_after_the_idle_timeout(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"idle_timeout": 1.0})
    client = mx_session(smtp)
    started = time.monotonic()
    assert client.closed_within(4) == line(replies.IDLE_TIMEOUT)
    assert 0.8 <= time.monotonic() - started < 3.0


def drip_until_closed(client: RawClient, interval: float, limit: float) -> bytes:
    """Send one byte per ``interval`` until the server closes; what it said."""
    received = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        readable, _, _ = select.select([client.sock], [], [], interval)
        if readable:
            chunk = client.sock.recv(65536)
            if not chunk:
                return received
            received += chunk
            continue
        try:
            client.send(b"x")
        except OSError:
            return received + client.sock.recv(65536)
    raise AssertionError(f"still open after {limit}s: {received!r}")


def test_data_dripped_at_10_bytes_a_second_is_cut_off_with_421(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"min_data_rate": 500, "data_rate_grace": 1.0, "idle_timeout": 5.0})
    client = mx_session(smtp)
    assert client.command("MAIL FROM:<sender@far.test>").startswith(b"250")
    assert client.command(f"RCPT TO:<{ALICE}>").startswith(b"250")
    assert client.command("DATA").startswith(b"354")
    started = time.monotonic()
    assert drip_until_closed(client, 0.1, limit=6) == line(replies.DATA_TOO_SLOW)
    assert time.monotonic() - started < 4.0
    assert stored(smtp) == []


def test_a_client_sending_noop_every_0_3_s_is_closed_at_the_session_timeout(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"session_timeout": 1.5, "idle_timeout": 1.0})
    started = time.monotonic()
    client = mx_session(smtp)
    while time.monotonic() - started < 5:
        readable, _, _ = select.select([client.sock], [], [], 0.3)
        if readable:
            break  # the server spoke unasked
        reply = client.command("NOOP")
        if reply != line(replies.OK):
            client.buffer = reply + client.buffer  # it answered with the 421 instead
            break
    said = client.closed_within(2)
    lasted = time.monotonic() - started
    assert said == line(replies.SESSION_TOO_LONG)
    # Never idle for 1 s, yet gone at 1.5 s.
    assert 1.4 <= lasted < 3.0, lasted


# -- 10. Connections per address (checklist §6.32) --------------------------------------


def test_the_fourth_connection_from_one_address_gets_421_until_one_closes(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(smtp={"max_connections_per_ip": 3})
    # The cap counts across listeners.
    open_clients = [connect(smtp.mx), connect(smtp.submission), connect(smtp.submissions, tls=True)]
    refused = RawClient(smtp.mx)
    assert refused.closed_within(2) == line(replies.TOO_MANY_CONNECTIONS)
    refused.close()
    open_clients.pop(0).close()
    deadline = time.monotonic() + 3
    while True:
        client = RawClient(smtp.mx)
        greeting = client.reply()
        if greeting.startswith(b"220 "):
            break
        client.close()
        assert time.monotonic() < deadline, "the slot of the closed connection was never freed"
        time.sleep(0.05)
    still_answers(client)
    for other in [client, *open_clients]:
        other.close()


# -- 11. AUTH (checklist §2.9, §6.6, §6.25-26) ------------------------------------------


def auth_timed(client: RawClient, login: str, password: str) -> tuple[bytes, float]:
    started = time.monotonic()
    reply = client.command("AUTH PLAIN " + plain(login, password))
    return reply, time.monotonic() - started


def test_failed_logins_are_answered_ever_later_then_locked_out_even_with_the_right_password(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve(auth={"failure_delay": 0.1, "ip_lockout_failures": 4})
    client = connect(smtp.submissions, tls=True)
    ehlo(client)
    times = []
    for _ in range(4):
        reply, took = auth_timed(client, ALICE, "wrong password")
        assert reply == line(replies.AUTH_FAILED)
        times.append(took)
    assert times[0] >= 0.1
    assert times[2] > times[0] + 0.2, times  # 0.1 s, 0.2 s, 0.4 s, 0.8 s
    reply, _ = auth_timed(client, ALICE, PASSWORD)
    assert reply == line(replies.AUTH_LOCKED)
    assert quit_rest(client) == line(replies.BYE)
    # The lockout is the address's, not the connection's.
    client = connect(smtp.submissions, tls=True)
    ehlo(client)
    assert auth_timed(client, ALICE, PASSWORD)[0] == line(replies.AUTH_LOCKED)
    assert quit_rest(client) == line(replies.BYE)


def test_a_login_name_is_locked_out_after_its_own_failures_whatever_the_address(
        serve: Callable[..., RunningSmtp]) -> None:
    """Per login: guessing one account's password is stopped even from many addresses
    (here one address with a high limit), while other accounts still log in; a name
    that does not exist locks out the same way, so the replies reveal no accounts."""
    smtp = serve(auth={"failure_delay": 0, "ip_lockout_failures": 100, "login_lockout_failures": 3})
    add_user(smtp.container, "bob@example.test")
    client = connect(smtp.submissions, tls=True)
    ehlo(client)
    for login in (ALICE, "ghost@example.test"):
        for _ in range(3):
            assert client.command("AUTH PLAIN " + plain(login, "guess")) == line(replies.AUTH_FAILED)
        assert client.command("AUTH PLAIN " + plain(login, PASSWORD)) == line(replies.AUTH_LOCKED)
    assert client.command("AUTH PLAIN " + plain("bob@example.test", PASSWORD)) == line(replies.AUTH_OK)
    assert quit_rest(client) == line(replies.BYE)


def test_a_lockout_ends_when_the_failures_age_out() -> None:
    from adapters.config import Auth
    from adapters.login_throttle import LoginThrottle, Verdict

    now = [1000.0]
    throttle = LoginThrottle(Auth(ip_lockout_failures=2, lockout_seconds=60, failure_delay=1,
                                  max_failure_delay=8), clock=lambda: now[0])
    assert throttle.check("192.0.2.1", "a@example.test").delay == 0
    throttle.failed("192.0.2.1", "a@example.test")
    assert throttle.check("192.0.2.1", "b@example.test").delay == 1
    throttle.failed("192.0.2.1", "b@example.test")
    assert throttle.check("192.0.2.1", "c@example.test").locked
    assert not throttle.check("198.51.100.7", "c@example.test").locked  # another address
    now[0] += 61
    assert throttle.check("192.0.2.1", "c@example.test") == Verdict(False, 0.0)


def test_parallel_guesses_on_many_connections_get_no_more_tries_than_the_lockout_allows(
        serve: Callable[..., RunningSmtp]) -> None:
    """Once an address has failed, attempts still being verified count towards the
    lockout, or ten connections guessing at once would all pass the check before the
    next failure is recorded."""
    smtp = serve(auth={"ip_lockout_failures": 3, "login_lockout_failures": 100, "failure_delay": 0})
    first = connect(smtp.submissions, tls=True)
    ehlo(first)
    assert first.command("AUTH PLAIN " + plain("user@example.test", "guess")) == line(replies.AUTH_FAILED)
    clients = [connect(smtp.submissions, tls=True) for _ in range(10)]
    for client in clients:
        ehlo(client)
    for n, client in enumerate(clients):
        client.send(b"AUTH PLAIN " + plain(f"user{n}@example.test", "guess").encode() + b"\r\n")
    answers = [client.reply() for client in clients]
    assert answers.count(line(replies.AUTH_FAILED)) == 2, answers
    assert answers.count(line(replies.AUTH_LOCKED)) == 8, answers
    assert clients[0].command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == line(replies.AUTH_LOCKED)
    for client in [first, *clients]:
        client.close()


def test_many_good_logins_at_once_from_one_address_are_not_locked_out(
        serve: Callable[..., RunningSmtp]) -> None:
    """A webmail host or a NAT logs many users in at once: with no failure yet, the
    attempts in flight do not count towards the lockout."""
    smtp = serve(auth={"ip_lockout_failures": 3})
    clients = [connect(smtp.submissions, tls=True) for _ in range(10)]
    for client in clients:
        ehlo(client)
    for client in clients:
        client.send(b"AUTH PLAIN " + plain(ALICE, PASSWORD).encode() + b"\r\n")
    assert [client.reply() for client in clients] == [line(replies.AUTH_OK)] * 10
    for client in clients:
        client.close()


def test_unknown_user_and_wrong_password_get_the_same_reply(serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = connect(smtp.submissions, tls=True)
    ehlo(client)
    unknown = client.command("AUTH PLAIN " + plain("nobody@example.test", PASSWORD))
    wrong = client.command("AUTH PLAIN " + plain(ALICE, "not the password"))
    assert unknown == wrong == line(replies.AUTH_FAILED)
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == line(replies.AUTH_OK)
    assert quit_rest(client) == line(replies.BYE)


def test_auth_is_neither_offered_nor_accepted_before_starttls_on_submission(
        serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = connect(smtp.submission)
    assert b"AUTH" not in ehlo(client)
    reply = client.command("AUTH PLAIN " + plain(ALICE, PASSWORD))
    assert reply in (line(replies.STARTTLS_FIRST), line(replies.ENCRYPTION_REQUIRED)), reply
    assert client.command("MAIL FROM:<alice@example.test>").startswith(b"530 5.7.0")
    assert quit_rest(client) == line(replies.BYE)


def test_auth_is_neither_offered_nor_accepted_on_the_mx(serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = connect(smtp.mx)
    assert b"AUTH" not in ehlo(client)
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == line(replies.AUTH_NOT_HERE)
    client.send(b"STARTTLS\r\n")
    assert client.reply().startswith(b"220 ")
    tls_wrap(client)
    assert b"AUTH" not in ehlo(client)
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == line(replies.AUTH_NOT_HERE)
    assert quit_rest(client) == line(replies.BYE)


def test_bad_base64_and_an_aborted_exchange_get_501(serve: Callable[..., RunningSmtp]) -> None:
    smtp = serve()
    client = connect(smtp.submissions, tls=True)
    ehlo(client)
    assert client.command("AUTH PLAIN !!!notbase64") == line(replies.AUTH_BAD_BASE64)
    assert client.command(b"AUTH PLAIN \xff\xfe") == line(replies.AUTH_BAD_BASE64)
    assert client.command("AUTH PLAIN").startswith(b"334 ")
    assert client.command("*") == line(replies.AUTH_ABORTED)
    assert client.command("AUTH LOGIN").startswith(b"334 ")
    assert client.command("not base64!") == line(replies.AUTH_BAD_BASE64)
    assert client.command("AUTH LOGIN").startswith(b"334 ")
    assert client.command(base64.b64encode(ALICE.encode())).startswith(b"334 ")
    assert client.command("*") == line(replies.AUTH_ABORTED)
    # An over-long response line is one error, not two (the rest is not a command).
    assert client.command("AUTH PLAIN").startswith(b"334 ")
    assert client.command("A" * 5000) == line(replies.AUTH_BAD_BASE64)
    still_answers(client)
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == line(replies.AUTH_OK)
    assert quit_rest(client) == line(replies.BYE)


# -- 12. Storage faults (checklist §3 item 1, §6.9, §6.13) ------------------------------


class FailingBlobs:
    """The real blob store, except that ``put`` raises."""

    def __init__(self, inner: Any, error: BaseException) -> None:
        self.inner = inner
        self.error = error

    def put(self, raw: bytes) -> Any:
        raise self.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def blobs_failing_with(container: Container, error: BaseException) -> Iterator[None]:
    ports = container.app.ports
    original = ports.blobs
    ports.blobs = FailingBlobs(original, error)
    try:
        yield
    finally:
        ports.blobs = original


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("secret internals"), replies.LOCAL_ERROR),
    (OSError(errno.ENOSPC, "No space left on device"), replies.NO_STORAGE),
], ids=["fault", "enospc"])
def test_a_storage_failure_during_data_is_a_4xx_without_internals_and_nothing_is_stored(
        serve: Callable[..., RunningSmtp], backend: str, error: BaseException, expected: str) -> None:
    smtp = serve(backend)
    mx = mx_session(smtp)
    submission = submission_session(smtp)
    with blobs_failing_with(smtp.container, error):
        assert send_mail(mx, message("mx fault")) == line(expected)
        assert send_mail(submission, message("submission fault"), sender=ALICE) == line(expected)
    assert stored(smtp) == []
    assert accepted(send_mail(mx, message("mx after")))
    assert accepted(send_mail(submission, message("submission after"), sender=ALICE))
    for client in (mx, submission):
        assert quit_rest(client) == line(replies.BYE)
    assert len(stored(smtp)) == 2


def test_mail_gets_452_while_the_disk_is_nearly_full(
        serve: Callable[..., RunningSmtp], backend: str) -> None:
    smtp = serve(backend, smtp={"min_free_bytes": 10**18})
    client = mx_session(smtp)
    assert client.command("MAIL FROM:<sender@far.test>") == line(replies.NO_STORAGE)
    assert client.command(f"RCPT TO:<{ALICE}>") == line(replies.NEED_MAIL)
    assert quit_rest(client) == line(replies.BYE)
    client = submission_session(smtp)
    assert client.command(f"MAIL FROM:<{ALICE}>") == line(replies.NO_STORAGE)
    assert quit_rest(client) == line(replies.BYE)
