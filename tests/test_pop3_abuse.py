"""Abuse of the POP3 listeners, against the real service over real sockets (and, where a
socket cannot show it, the session and the line reader on their own).

Each test is one kind of bad input from issue #5: unknown commands and wrong arguments,
too many errors, deadlines, message numbers out of range, STLS command injection, long
lines, logins before TLS, connection caps and failed logins. What the client sends is
given byte for byte, with what it must get back and whether the connection goes on or
ends. Limits are set small per test so the whole file runs in seconds.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from adapters.bootstrap import build
from adapters.pop3.lines import LineReader, TooLong
from adapters.pop3.session import Peer, Pop3Session, State
from domain.application.context import acting
from domain.application.mail import AppendItem
from tests.conftest import drop_schemas, make_settings
from tests.imap_support import RawImap, running_imap
from tests.pop3_support import PASSWORD, RawPop3, RunningPop3, add_user, client_context, running_pop3

ALICE = "alice@example.test"
#: Failed logins answer at once unless a test measures the delay.
FAST_AUTH: dict[str, Any] = {"failure_delay": 0.0}
#: RFC 1939 §3: the autologout closes the connection without a word.
AUTOLOGOUT = b""
TOO_MANY = b"-ERR too many errors, closing\r\n"
INVALID = b"-ERR [AUTH] invalid credentials\r\n"
LOCKED = b"-ERR [SYS/TEMP] too many failed logins; try again later\r\n"
CAPA_AFTER_TLS = (b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
                  b"PIPELINING\r\nUTF8\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION ledgermail\r\n.\r\n")


def message(n: int) -> bytes:
    return (f"From: Bob <bob@far.test>\r\nTo: {ALICE}\r\nSubject: message {n}\r\n"
            f"Message-ID: <m{n}@far.test>\r\n\r\nHello.\r\n").encode()


# -- the server --------------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., RunningPop3]]:
    """Start a real POP3 service with its own settings: ``serve(backend, pop3={...},
    messages=n)``. Every store has the user alice@example.test with ``n`` messages."""
    with ExitStack() as stack:
        count = 0

        def start(backend: str = "sqlite", *, pop3: dict[str, Any] | None = None,
                  auth: dict[str, Any] | None = None, messages: int = 0) -> RunningPop3:
            nonlocal count
            count += 1
            settings = make_settings(tmp_path / f"data{count}", backend, pop3=pop3 or {},
                                     auth={**FAST_AUTH, **(auth or {})})
            stack.callback(drop_schemas, settings)
            container = build(settings)
            stack.callback(container.close)
            with acting("admin:test", protocol="test", purpose="testing"):
                container.app.add_domain("example.test")
            account_id: UUID = add_user(container, ALICE)
            if messages:
                with acting("admin:test", protocol="test", purpose="testing"):
                    _, position = container.app.append_many(
                        account_id, "INBOX", [AppendItem(message(n), []) for n in range(1, messages + 1)])
                container.projections.wait_for(position, 30)
            return stack.enter_context(running_pop3(container))

        yield start


# -- client helpers ----------------------------------------------------------------------


def connect(port: int, *, tls: bool = False) -> RawPop3:
    client = RawPop3(port, tls=tls)
    assert client.greeting == b"+OK localhost ledgermail POP3 ready\r\n", client.greeting
    return client


def logged_in(pop3: RunningPop3) -> RawPop3:
    client = connect(pop3.pop3)
    client.login(ALICE)
    return client


def plain(login: str, password: str) -> str:
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode()


def still_answers(client: RawPop3) -> None:
    reply = client.command("CAPA", multiline=True)
    assert reply.startswith(b"+OK capability list follows\r\n") and reply.endswith(b"\r\n.\r\n"), reply


def quit_session(client: RawPop3) -> bytes:
    reply = client.command("QUIT")
    assert reply.startswith(b"+OK bye"), reply
    assert client.closed_within(2) == b""
    client.close()
    return reply


def stat_when_free(pop3: RunningPop3) -> bytes:
    """STAT of a new session, once a closed connection's lock on the maildrop is gone."""
    deadline = time.monotonic() + 3
    while True:
        client = connect(pop3.pop3)
        client.command(f"USER {ALICE}")
        reply = client.command(f"PASS {PASSWORD}")
        if reply.startswith(b"+OK"):
            stat = client.command("STAT")
            quit_session(client)
            return stat
        assert reply.startswith(b"-ERR [IN-USE]") and time.monotonic() < deadline, reply
        client.close()
        time.sleep(0.05)


def tls_wrap(client: RawPop3) -> None:
    """Start TLS after STLS's +OK; nothing may be waiting in the plaintext buffer."""
    assert client.buffer == b"", f"plaintext left before TLS: {client.buffer!r}"
    client.sock = client_context().wrap_socket(client.sock, server_hostname="localhost")


# -- 1. Unknown commands and wrong arguments ---------------------------------------------


def test_an_unknown_command_gets_err_and_the_session_goes_on(serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve()
    client = connect(pop3.pop3)
    assert client.command("FOO") == b"-ERR unknown command\r\n"
    still_answers(client)
    client.login(ALICE)
    for line in ("FOO bar", "", "US\x00ER x", "APOP alice@example.test 0123456789abcdef"):
        assert client.command(line) == b"-ERR unknown command\r\n", line
    still_answers(client)
    quit_session(client)


@pytest.mark.parametrize("state, lines", [
    ("authorization", ["STAT", "LIST", "UIDL 1", "RETR 1", "TOP 1 0", "DELE 1", "NOOP", "RSET"]),
    ("transaction", ["USER x", "PASS x", "AUTH PLAIN", "STLS", "UTF8"]),
])
def test_a_command_in_the_wrong_state_gets_err_naming_the_state(
        serve: Callable[..., RunningPop3], state: str, lines: list[str]) -> None:
    pop3 = serve(pop3={"max_errors_before_login": 20})
    client = connect(pop3.pop3)
    if state == "transaction":
        client.login(ALICE)
    for line in lines:
        name = line.split()[0]
        assert client.command(line) == f"-ERR {name} is not valid in the {state} state\r\n".encode()
    still_answers(client)
    quit_session(client)


@pytest.mark.parametrize("line, answer", [
    ("STAT 1", b"-ERR STAT takes no arguments\r\n"),
    ("LIST 1 1", b"-ERR LIST takes at most one message number\r\n"),
    ("UIDL 1 1", b"-ERR UIDL takes at most one message number\r\n"),
    ("RETR", b"-ERR RETR takes one message number\r\n"),
    ("RETR 1 1", b"-ERR RETR takes one message number\r\n"),
    ("RETR  1", b"-ERR RETR takes one message number\r\n"),
    ("DELE", b"-ERR DELE takes one message number\r\n"),
    ("DELE 1 1", b"-ERR DELE takes one message number\r\n"),
    ("TOP 1", b"-ERR TOP takes a message number and a number of lines\r\n"),
    ("TOP 1 x", b"-ERR TOP takes a message number and a number of lines\r\n"),
    ("TOP 1 -1", b"-ERR TOP takes a message number and a number of lines\r\n"),
    ("TOP 1 1 1", b"-ERR TOP takes a message number and a number of lines\r\n"),
    ("TOP 1 99999999999999999999", b"-ERR TOP takes a message number and a number of lines\r\n"),
    ("RETR one", b"-ERR no such message: one\r\n"),
    ("\xff\xfe", b"-ERR commands must be UTF-8\r\n"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_wrong_arguments_after_login_get_err_with_a_clear_text(
        serve: Callable[..., RunningPop3], line: str, answer: bytes) -> None:
    pop3 = serve(messages=1)
    client = logged_in(pop3)
    data = line.encode("latin-1") if line.startswith("\xff") else line.encode()
    assert client.command(data) == answer
    assert client.command("STAT") == f"+OK 1 {len(message(1))}\r\n".encode()
    quit_session(client)


@pytest.mark.parametrize("line, answer", [
    ("STLS now", b"-ERR STLS takes no arguments\r\n"),
    ("USER a b", b"-ERR USER takes one name\r\n"),
    ("USER", b"-ERR USER takes one name\r\n"),
    ("AUTH PLAIN a b", b"-ERR unsupported mechanism; use PLAIN\r\n"),
    ("AUTH PLAIN =", b"-ERR invalid SASL PLAIN response\r\n"),
    ("PASS x", b"-ERR USER first\r\n"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_wrong_arguments_before_login_get_err_with_a_clear_text(
        serve: Callable[..., RunningPop3], line: str, answer: bytes) -> None:
    pop3 = serve()
    client = connect(pop3.pop3)
    assert client.command(line) == answer
    client.login(ALICE)
    quit_session(client)


# -- 2. Message numbers -------------------------------------------------------------------


@pytest.mark.parametrize("number", [
    "0", "-1", "3", "4294967297", "99999999999999999999", "9" * 100, "+1", "1.0", "0x1", "\u0661", "1e3",
], ids=["zero", "negative", "one past the end", "past 2**32", "20 digits", "100 digits", "plus sign",
        "decimal point", "hex", "arabic-indic digit", "exponent"])
def test_message_numbers_out_of_range_zero_negative_huge_or_malformed_get_err(
        serve: Callable[..., RunningPop3], number: str) -> None:
    pop3 = serve(messages=2)
    client = logged_in(pop3)
    answer = f"-ERR no such message: {number[:20]}\r\n".encode()
    for command in ("LIST", "UIDL", "RETR", "DELE"):
        assert client.command(f"{command} {number}") == answer, command
    assert client.command(f"TOP {number} 0") == answer
    # Nothing was marked, nothing else changed: both messages are still there.
    assert client.command("STAT") == f"+OK 2 {2 * len(message(1))}\r\n".encode()
    quit_session(client)
    assert stat_when_free(pop3) == f"+OK 2 {2 * len(message(1))}\r\n".encode()


# -- 3. Too many errors -----------------------------------------------------------------


def test_the_third_error_before_login_gets_err_then_the_connection_closes(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve()
    client = connect(pop3.pop3)
    assert client.command("FOO") == b"-ERR unknown command\r\n"
    assert client.command("STAT") == b"-ERR STAT is not valid in the authorization state\r\n"
    client.send(b"BAR\r\nCAPA\r\n")
    assert client.closed_within(2) == b"-ERR unknown command\r\n" + TOO_MANY
    still_answers(connect(pop3.pop3))


def test_errors_before_login_are_forgiven_by_a_login_and_too_many_after_close_without_deleting(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"max_errors": 3}, messages=1)
    client = connect(pop3.pop3)
    for _ in range(2):
        assert client.command("FOO") == b"-ERR unknown command\r\n"
    client.login(ALICE)
    assert client.command("DELE 1") == b"+OK message 1 deleted\r\n"
    for _ in range(2):
        assert client.command("FOO") == b"-ERR unknown command\r\n"
    client.send(b"RETR 9\r\nQUIT\r\n")
    assert client.closed_within(2) == b"-ERR no such message: 9\r\n" + TOO_MANY
    assert stat_when_free(pop3) == f"+OK 1 {len(message(1))}\r\n".encode()


# -- 4. Deadlines (RFC 1939 §3 autologout) --------------------------------------------------


def test_an_idle_session_is_logged_out_after_the_idle_timeout_and_deletes_nothing(
        serve: Callable[..., RunningPop3], backend: str) -> None:
    pop3 = serve(backend, pop3={"idle_timeout": 0.5}, messages=1)
    client = logged_in(pop3)
    assert client.command("DELE 1") == b"+OK message 1 deleted\r\n"
    started = time.monotonic()
    assert client.closed_within(3) == AUTOLOGOUT
    assert 0.4 <= time.monotonic() - started < 2.0
    assert stat_when_free(pop3) == f"+OK 1 {len(message(1))}\r\n".encode()


def test_a_silent_client_is_logged_out_before_login_after_the_idle_timeout(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"idle_timeout": 0.5})
    client = connect(pop3.pop3)
    client.send(b"USER ali")  # a half-sent line does not stop the timer
    started = time.monotonic()
    assert client.closed_within(3) == AUTOLOGOUT
    assert 0.4 <= time.monotonic() - started < 2.0


def test_a_client_that_keeps_talking_but_never_logs_in_is_closed_at_the_login_deadline(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"login_deadline": 0.6, "idle_timeout": 30})
    client = connect(pop3.pop3)
    started = time.monotonic()
    said = b""
    while time.monotonic() - started < 3:
        try:
            client.send(b"CAPA\r\n")
        except OSError:
            break
        client.sock.settimeout(0.1)
        try:
            chunk = client.sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        said += chunk
    took = time.monotonic() - started
    assert 0.5 <= took < 2.0, took
    assert said.endswith(b".\r\n"), said[-200:]  # the last CAPA answered whole, then the close


def test_an_active_session_is_not_logged_out(serve: Callable[..., RunningPop3]) -> None:
    """The idle timer restarts with each command, and the login deadline no longer
    applies after login."""
    pop3 = serve(pop3={"idle_timeout": 0.5, "login_deadline": 0.5})
    client = logged_in(pop3)
    for _ in range(5):
        time.sleep(0.25)
        assert client.command("NOOP") == b"+OK\r\n"
    quit_session(client)


# -- 5. STLS command injection (RFC 2595 §4, CVE-2011-0411 class) ------------------------


@pytest.mark.parametrize("writes", [
    [b"STLS\r\nCAPA\r\n"],
    [b"STLS\r\nUSER " + ALICE.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\n"],
    [b"STLS\r\n", b"USER " + ALICE.encode() + b"\r\n"],
], ids=["one write", "injected login", "two writes"])
def test_commands_pipelined_behind_stls_in_plaintext_are_never_answered(
        serve: Callable[..., RunningPop3], writes: list[bytes]) -> None:
    pop3 = serve()
    client = connect(pop3.pop3)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for data in writes:
        client.send(data)
    assert client.line() == b"+OK begin TLS negotiation\r\n"
    tls_wrap(client)
    assert client.command("CAPA", multiline=True) == CAPA_AFTER_TLS
    # The injected USER and PASS (if any) did not count: still not logged in, no user.
    assert client.command("STAT") == b"-ERR STAT is not valid in the authorization state\r\n"
    assert client.command("PASS " + PASSWORD) == b"-ERR USER first\r\n"
    client.login(ALICE)
    quit_session(client)


def test_a_user_given_before_stls_is_forgotten_after_it(serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve()
    client = connect(pop3.pop3)
    assert client.command(f"USER {ALICE}") == b"+OK send PASS\r\n"
    assert client.command("STLS") == b"+OK begin TLS negotiation\r\n"
    tls_wrap(client)
    assert client.command(f"PASS {PASSWORD}") == b"-ERR USER first\r\n"
    client.login(ALICE)
    quit_session(client)


def test_a_second_stls_and_stls_on_pop3s_are_refused(serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve()
    client = connect(pop3.pop3)
    assert client.command("STLS") == b"+OK begin TLS negotiation\r\n"
    tls_wrap(client)
    assert client.command("STLS") == b"-ERR TLS is already active\r\n"
    still_answers(client)
    client.login(ALICE)
    quit_session(client)
    client = connect(pop3.pop3s, tls=True)
    assert client.command("STLS") == b"-ERR TLS is already active\r\n"
    client.login(ALICE)
    quit_session(client)


# -- 6. Long lines ---------------------------------------------------------------------


def test_a_line_over_max_line_gets_err_and_the_next_command_is_answered(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"max_line": 512})
    client = logged_in(pop3)
    client.send(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
    assert client.line() == b"-ERR line too long\r\n"
    assert client.line() == b"+OK\r\n"
    # The same line dripped in pieces: one -ERR, and its tail is not read as a command.
    client.send(b"NOOP ")
    for _ in range(6):
        client.send(b"QUIT " * 40)
        time.sleep(0.02)
    client.send(b"\r\nSTAT\r\n")
    assert client.line() == b"-ERR line too long\r\n"
    assert client.line() == b"+OK 0 0\r\n"
    # A line of exactly max_line octets is taken; one more is not.
    longest = b"NOOP " + b"x" * 507
    assert len(longest) == 512
    assert client.command(longest) == b"+OK\r\n"
    assert client.command(longest + b"x") == b"-ERR line too long\r\n"
    quit_session(client)


def test_an_overlong_sasl_response_gets_err_and_the_next_line_is_a_command_again(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"max_line": 512})
    client = connect(pop3.pop3)
    assert client.command("AUTH PLAIN") == b"+ \r\n"
    assert client.command(b"A" * 600) == b"-ERR line too long\r\n"
    still_answers(client)
    client.login(ALICE)
    quit_session(client)


# -- 7. The line reader at every chunk size ---------------------------------------------


MAX = 512
STREAM = [
    (b"USER alice@example.test\r\n", b"USER alice@example.test"),
    (b"PASS with  two spaces \r\n", b"PASS with  two spaces "),
    (b"\r\n", b""),
    (b"bare LF\n", b"bare LF"),
    (b"CR in the \r middle\r\n", b"CR in the \r middle"),
    (b"X" * MAX + b"\r\n", b"X" * MAX),
    (b"L" * MAX + b"\n", b"L" * MAX),
    (b"Y" * (MAX + 1) + b"\r\n", TooLong()),
    (b"W" * (MAX + 1) + b"\n", TooLong()),
    (b"R" * MAX + b"\r\r\n", TooLong()),
    (b"Z" * 3000 + b"\r\n", TooLong()),
    (b"STAT\r\n", b"STAT"),
    (b"V" * 2000 + b"\n", TooLong()),
    (b"\n", b""),
    (b"QUIT\r\n", b"QUIT"),
]
WIRE = b"".join(data for data, _ in STREAM) + b"half a comm"
EXPECTED = [event for _, event in STREAM]


def test_the_line_reader_gives_the_same_events_at_every_chunk_size_from_1_to_512() -> None:
    for size in range(1, 513):
        reader = LineReader(max_line=MAX)
        events: list[Any] = []
        for start in range(0, len(WIRE), size):
            reader.receive_data(WIRE[start:start + size])
            # Memory stays bounded: at most one partial line of the limit is held.
            assert len(reader._buffer) <= MAX + 1, (size, start, len(reader._buffer))
            events += reader.events()
        assert events == EXPECTED, size
        reader.receive_data(b"and\r\n")
        assert reader.events() == [b"half a command"], size


def test_the_line_reader_drops_what_it_holds_on_discard() -> None:
    reader = LineReader(max_line=MAX)
    reader.receive_data(b"STLS\r\nUSER injected\r\nPASS inj")
    assert reader.events() == [b"STLS", b"USER injected"]
    reader.discard()
    reader.receive_data(b"CAPA\r\n")
    assert reader.events() == [b"CAPA"]
    # In the middle of skipping an overlong line, too: the next line is read.
    reader.receive_data(b"A" * 2000)
    assert reader.events() == [TooLong()]
    reader.discard()
    reader.receive_data(b"STAT\r\n")
    assert reader.events() == [b"STAT"]


# -- 8. Logins before TLS ---------------------------------------------------------------


def test_user_pass_and_auth_are_refused_before_tls_from_a_non_loopback_address(
        serve: Callable[..., RunningPop3]) -> None:
    """A socket test cannot come from a non-loopback address here, so this drives the
    session the server builds for such a peer, as the server would."""
    pop3 = serve(pop3={"max_errors_before_login": 20})
    service = pop3.service
    settings = pop3.container.settings
    session = Pop3Session(service.app, service.view, service.wait_for, service.throttle, service.maildrops,
                          settings.pop3, settings.hostname,
                          Peer(ip="192.0.2.1", listener="pop3", secure=False, tls=False, can_starttls=True))

    def execute(line: bytes) -> bytes:
        return b"".join(session.execute(line).lines)

    try:
        capa = execute(b"CAPA")
        assert b"\r\nSTLS\r\n" in capa and b"\r\nUSER\r\n" not in capa and b"SASL" not in capa
        refused = b"-ERR [AUTH] log in after STLS\r\n"
        assert execute(b"USER " + ALICE.encode()) == refused
        assert execute(b"PASS " + PASSWORD.encode()) == b"-ERR USER first\r\n"
        assert execute(b"AUTH PLAIN " + plain(ALICE, PASSWORD).encode()) == refused
        assert execute(b"AUTH PLAIN") == refused  # no "+ ": the password is never asked for
        assert session.state is State.AUTHORIZATION
        outcome = session.execute(b"STLS")
        assert (outcome.lines, outcome.starttls) == ([b"+OK begin TLS negotiation\r\n"], True)
        session.tls_started()
        assert execute(b"CAPA") == CAPA_AFTER_TLS
        assert execute(b"USER " + ALICE.encode()) == b"+OK send PASS\r\n"
        assert execute(b"PASS " + PASSWORD.encode()) == b"+OK 0 messages (0 octets)\r\n"
        assert session.state is State.TRANSACTION
    finally:
        session.closed()


# -- 9. Connection caps ----------------------------------------------------------------


def test_a_third_connection_from_one_address_is_refused_until_one_closes(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"max_connections_per_ip": 2})
    # The cap counts across both listeners.
    open_clients = [connect(pop3.pop3), connect(pop3.pop3s, tls=True)]
    for port, tls in ((pop3.pop3, False), (pop3.pop3s, True)):
        refused = RawPop3(port, tls=tls)
        assert refused.greeting == b"-ERR [SYS/TEMP] too many connections from your address\r\n"
        assert refused.closed_within(2) == b""
        refused.close()
    open_clients.pop(0).close()
    deadline = time.monotonic() + 3
    while True:
        client = RawPop3(pop3.pop3)
        if client.greeting.startswith(b"+OK "):
            break
        client.close()
        assert time.monotonic() < deadline, "the slot of the closed connection was never freed"
        time.sleep(0.05)
    still_answers(client)
    for other in [client, *open_clients]:
        other.close()


def test_connections_over_the_total_cap_are_refused(serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"max_connections": 2})
    open_clients = [connect(pop3.pop3), connect(pop3.pop3)]
    refused = RawPop3(pop3.pop3)
    assert refused.greeting == b"-ERR [SYS/TEMP] server busy, try again later\r\n"
    assert refused.closed_within(2) == b""
    for client in open_clients:
        still_answers(client)
        client.close()


# -- 10. Failed logins (the LoginThrottle IMAP and SMTP use) -----------------------------


def timed(client: RawPop3, line: str) -> tuple[bytes, float]:
    started = time.monotonic()
    reply = client.command(line)
    return reply, time.monotonic() - started


def test_failed_logins_are_answered_ever_later_then_locked_out_even_with_the_right_password(
        serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"max_errors_before_login": 10}, auth={"failure_delay": 0.1, "ip_lockout_failures": 3})
    client = connect(pop3.pop3)
    times = []
    for _ in range(3):
        assert client.command(f"USER {ALICE}") == b"+OK send PASS\r\n"
        reply, took = timed(client, "PASS wrong password")
        assert reply == INVALID
        times.append(took)
    assert times[0] >= 0.1
    assert times[2] > times[0] + 0.2, times  # 0.1 s, 0.2 s, 0.4 s
    client.command(f"USER {ALICE}")
    assert client.command(f"PASS {PASSWORD}") == LOCKED
    # The lockout is the address's, not the connection's, and covers AUTH PLAIN too.
    client = connect(pop3.pop3s, tls=True)
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == LOCKED
    still_answers(client)


def test_the_third_failed_login_on_one_connection_closes_it(serve: Callable[..., RunningPop3]) -> None:
    """Failed logins are errors before login (max_errors_before_login) as well as
    throttled failures."""
    pop3 = serve()
    client = connect(pop3.pop3)
    for _ in range(2):
        client.command(f"USER {ALICE}")
        assert client.command("PASS wrong") == INVALID
    client.send(b"AUTH PLAIN " + plain(ALICE, "wrong").encode() + b"\r\nCAPA\r\n")
    assert client.closed_within(2) == INVALID + TOO_MANY
    logged_in(pop3).close()


def test_failed_logins_share_one_budget_with_imap(serve: Callable[..., RunningPop3]) -> None:
    """A guesser cannot reset its delays or its lockout by switching protocol."""
    pop3 = serve(auth={"failure_delay": 0.1, "ip_lockout_failures": 3})
    with running_imap(pop3.container) as imap:
        other = RawImap(imap.imap)
        started = time.monotonic()
        assert other.command("a", f'LOGIN "{ALICE}" "wrong"') == (
            b"a NO [AUTHENTICATIONFAILED] invalid credentials\r\n")
        imap_took = time.monotonic() - started
        client = connect(pop3.pop3)
        reply, took = timed(client, "AUTH PLAIN " + plain(ALICE, "wrong"))
        assert reply == INVALID
        assert imap_took >= 0.1 and took >= 0.2, (imap_took, took)  # the second failure of the address
        started = time.monotonic()
        assert other.command("b", f'LOGIN "{ALICE}" "wrong"') == (
            b"b NO [AUTHENTICATIONFAILED] invalid credentials\r\n")
        assert time.monotonic() - started >= 0.4
        assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == LOCKED
        other.close()


def test_unknown_users_and_wrong_passwords_get_the_same_answer(serve: Callable[..., RunningPop3]) -> None:
    pop3 = serve(pop3={"max_errors_before_login": 10})
    client = connect(pop3.pop3)
    answers = []
    for user, password in (("nobody@example.test", PASSWORD), (ALICE, "not the password"),
                           ("nobody@nowhere.test", "x")):
        assert client.command(f"USER {user}") == b"+OK send PASS\r\n"
        answers.append(client.command(f"PASS {password}"))
        answers.append(client.command("AUTH PLAIN " + plain(user, password)))
    assert answers == [INVALID] * 6
    client.login(ALICE)
    quit_session(client)
