"""Abuse of the IMAP listeners, against the real service over real sockets.

Each test is one kind of bad input (the issue's "Bad input" list; literal abuse is
checklist §6.16-6.17, brute force §2.9): what the client sends byte for byte, what it
must get back, and whether the connection goes on in step or ends with BYE. Limits are
set small per test so the whole file runs in seconds.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import build
from adapters.imap.framing import Command
from adapters.imap.session import ImapSession
from adapters.imap.states import Peer
from domain.application.context import acting
from tests.conftest import drop_schemas, make_settings
from tests.imap_support import PASSWORD, RawImap, RunningImap, add_user, client_context, running_imap

ALICE = "alice@example.test"
#: Failed logins answer at once unless a test measures the delay.
FAST_AUTH: dict[str, Any] = {"failure_delay": 0.0}
BYE_AUTOLOGOUT = b"* BYE autologout; idle for too long\r\n"
BYE_TOO_MANY_BAD = b"* BYE too many invalid commands\r\n"
LOCKED = b"NO [UNAVAILABLE] too many failed logins; try again later\r\n"
MIB = 1024 * 1024


# -- the server --------------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., RunningImap]]:
    """Start a real IMAP service with its own settings: ``serve(backend, imap={...})``.
    Every store has the domain example.test and the user alice@example.test."""
    with ExitStack() as stack:
        count = 0

        def start(backend: str = "sqlite", *, imap: dict[str, Any] | None = None,
                  auth: dict[str, Any] | None = None, **extra: Any) -> RunningImap:
            nonlocal count
            count += 1
            settings = make_settings(tmp_path / f"data{count}", backend, imap=imap or {},
                                     auth={**FAST_AUTH, **(auth or {})}, **extra)
            stack.callback(drop_schemas, settings)
            container = build(settings)
            stack.callback(container.close)
            with acting("admin:test", protocol="test", purpose="testing"):
                container.app.add_domain("example.test")
            add_user(container, ALICE)
            return stack.enter_context(running_imap(container))

        yield start


# -- client helpers ----------------------------------------------------------------------


def connect(port: int, *, tls: bool = False) -> RawImap:
    client = RawImap(port, tls=tls)
    assert client.greeting.startswith(b"* OK [CAPABILITY "), client.greeting
    return client


def logged_in(imap: RunningImap, *, tls: bool = False) -> RawImap:
    client = connect(imap.imaps if tls else imap.imap, tls=tls)
    client.login(ALICE)
    return client


def still_answers(client: RawImap, tag: str = "z") -> None:
    reply = client.command(tag, "NOOP")
    assert reply.endswith(f"{tag} OK NOOP completed\r\n".encode()), f"out of step: {reply!r}"


def logout(client: RawImap) -> None:
    assert client.command("zz", "LOGOUT") == b"* BYE logging out\r\nzz OK LOGOUT completed\r\n"
    client.close()


def tls_wrap(client: RawImap) -> None:
    """Start TLS after STARTTLS's OK; nothing may be waiting in the plaintext buffer."""
    assert client.buffer == b"", f"plaintext left before TLS: {client.buffer!r}"
    client.sock = client_context().wrap_socket(client.sock, server_hostname="localhost")


def plain(login: str, password: str) -> str:
    """RFC 4616 PLAIN initial response."""
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode()


def fresh_connection_answers(imap: RunningImap) -> None:
    """The service as a whole is fine: a new client gets a greeting and a NOOP answer."""
    client = connect(imap.imap)
    still_answers(client)
    logout(client)


class DeflateSocket:
    """RFC 4978 on the client side: what ``RawImap`` sends and reads after COMPRESS."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def send_compressed(self, data: bytes) -> None:
        """Bytes compressed by the caller (with this stream's compressor)."""
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        while True:
            data = self.sock.recv(size)
            if not data:
                return b""
            out = self.inflate.decompress(data)
            if out:
                return out

    def settimeout(self, seconds: float) -> None:
        self.sock.settimeout(seconds)

    def close(self) -> None:
        self.sock.close()


def compressed(client: RawImap) -> DeflateSocket:
    assert client.command("c", "COMPRESS DEFLATE") == b"c OK DEFLATE active\r\n"
    assert client.buffer == b""
    wrapped = DeflateSocket(client.sock)
    client.sock = wrapped  # type: ignore[assignment]
    return wrapped


# -- 1. Literal sizes (checklist §6.16-6.17) -------------------------------------------


def test_a_4_gb_literal_before_login_gets_bad_and_no_continuation(
        serve: Callable[..., RunningImap]) -> None:
    imap = serve()
    client = connect(imap.imap)
    client.send(b"a LOGIN {4000000000}\r\n")
    # The BAD is the whole answer: no "+" ever asked for the data.
    assert client.line() == b"a BAD literal too large before authentication\r\n"
    still_answers(client)
    # Literals within the limit still work, so the refusal was not a blanket one.
    client.send(b"b LOGIN {%d}\r\n" % len(ALICE))
    assert client.line().startswith(b"+ ")
    client.send(ALICE.encode() + b" {%d}\r\n" % len(PASSWORD))
    assert client.line().startswith(b"+ ")
    client.send(PASSWORD.encode() + b"\r\n")
    assert client.until_tagged("b").startswith(b"b OK [CAPABILITY ")
    # After login the limit is the message size: over it is NO [TOOBIG], still no "+".
    client.send(b"c APPEND INBOX {4000000000}\r\n")
    assert client.line().startswith(b"c NO [TOOBIG] literal of 4000000000 octets is over the limit")
    still_answers(client)
    logout(client)


@pytest.mark.parametrize("size", [b"-1", b"", b"1a", b"99999999999999999999999", b" 5"])
def test_a_negative_or_malformed_literal_size_gets_bad(
        serve: Callable[..., RunningImap], size: bytes) -> None:
    imap = serve()
    client = connect(imap.imap)
    client.send(b"a LOGIN {" + size + b"}\r\n")
    assert client.line() == b"a BAD invalid literal\r\n"
    still_answers(client)
    client.login(ALICE)
    logout(client)


@pytest.mark.parametrize("when", ["before login", "after login"])
def test_a_huge_literal_plus_ends_the_session_with_bye_and_nothing_after_it_is_read(
        serve: Callable[..., RunningImap], when: str) -> None:
    """The 100 MB of a non-synchronizing literal are already on their way and could hold
    commands: the server says BYE and closes rather than read or skip them."""
    imap = serve()
    client = connect(imap.imap)
    if when == "after login":
        client.login(ALICE)
    tracemalloc.start()
    try:
        client.send(b"a APPEND INBOX {100000000+}\r\nb CAPABILITY\r\nc LOGOUT\r\n")
        said = client.closed_within(3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert said == b"* BYE non-synchronizing literal of 100000000 octets over the limit\r\n"
    assert peak < 4 * MIB, f"Python heap peaked at {peak / MIB:.1f} MiB"
    fresh_connection_answers(imap)


def test_small_literals_before_login_cannot_add_up_to_a_big_command(
        serve: Callable[..., RunningImap]) -> None:
    """Each literal before login is under ``max_literal_before_login``, but one command
    can chain any number of them; the command as a whole must be bounded before login
    too, or every unauthenticated connection may hold the 64 MiB of a whole message."""
    imap = serve()
    client = connect(imap.imap)
    literal = b"{8192+}\r\n" + b"x" * 8192 + b" "
    tracemalloc.start()
    try:
        client.send(b"a LOGIN ")
        try:
            for _ in range(256):  # 2 MiB in all
                client.send(literal)
        except OSError:
            pass  # the server hung up, as it should
        said = client.closed_within(3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The BYE may be lost to the reset the kernel sends for the bytes left unread.
    assert said == b"" or said.startswith(b"* BYE "), said
    assert peak < 1 * MIB, f"Python heap peaked at {peak / MIB:.1f} MiB before login"
    fresh_connection_answers(imap)


# -- 2. Nesting and NUL (Dovecot CVE-2026-27857, CVE-2019-11500) -----------------------


def test_100000_nested_parentheses_or_brackets_get_bad_within_a_second(
        serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"max_line": 1_000_000})
    client = connect(imap.imap)
    started = time.monotonic()
    reply = client.command("a", b"ID " + b"(" * 100_000 + b")" * 100_000)
    assert time.monotonic() - started < 1.0
    assert reply == b"a BAD lists nested too deeply\r\n"
    client.login(ALICE)
    assert client.command("s", "SELECT INBOX").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    for tag, text, reason in [
        ("b", b"SEARCH " + b"(" * 100_000 + b"ALL" + b")" * 100_000, b"lists nested too deeply"),
        ("c", b"FETCH 1 " + b"(" * 100_000, b"lists nested too deeply"),
        ("d", b"FETCH 1 BODY" + b"[" * 100_000, b"brackets nested too deeply"),
    ]:
        started = time.monotonic()
        reply = client.command(tag, text)
        assert time.monotonic() - started < 1.0, tag
        assert reply == tag.encode() + b" BAD " + reason + b"\r\n"
    still_answers(client)
    logout(client)


def test_nul_in_a_quoted_string_or_a_literal_gets_bad(serve: Callable[..., RunningImap]) -> None:
    imap = serve()
    client = connect(imap.imap)
    assert (client.command("a", b'LOGIN "alice\x00@example.test" "' + PASSWORD.encode() + b'"')
            == b"a BAD CR, LF or NUL in a quoted string\r\n")
    client.send(b"b LOGIN {19}\r\n")
    assert client.line().startswith(b"+ ")
    client.send(b"alice\x00@example.test " + PASSWORD.encode() + b"\r\n")
    assert client.until_tagged("b") == b"b BAD NUL in a literal (use a binary literal ~{n})\r\n"
    client.login(ALICE)
    assert client.command("c", b'CREATE "x\x00y"') == b"c BAD CR, LF or NUL in a quoted string\r\n"
    still_answers(client)
    logout(client)


# -- 3. Bad commands before login ------------------------------------------------------


def test_the_third_bad_command_before_login_gets_bye_and_the_connection_closes(
        serve: Callable[..., RunningImap]) -> None:
    imap = serve()
    client = connect(imap.imap)
    assert client.command("a", "FOO") == b"a BAD unknown command FOO\r\n"
    assert client.command("b", "SELECT INBOX") == (
        b"b BAD SELECT is not valid in the not authenticated state\r\n")
    client.send(b"c \x01\r\nd NOOP\r\n")
    assert client.closed_within(2) == b"c BAD control character in an atom\r\n" + BYE_TOO_MANY_BAD
    fresh_connection_answers(imap)


def test_bad_commands_before_login_are_forgiven_by_a_login(serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"max_bad_commands": 3})
    client = connect(imap.imap)
    for tag in ("a", "b"):
        assert client.command(tag, "FOO") == tag.encode() + b" BAD unknown command FOO\r\n"
    client.login(ALICE)
    for tag in ("c", "d"):
        assert client.command(tag, "FOO") == tag.encode() + b" BAD unknown command FOO\r\n"
    still_answers(client)
    client.send(b"e FOO\r\n")
    assert client.closed_within(2) == b"e BAD unknown command FOO\r\n" + BYE_TOO_MANY_BAD


# -- 4. Deadlines (RFC 9051 §5.4) ------------------------------------------------------


def test_a_silent_client_is_logged_out_after_the_login_timeout(serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"login_timeout": 0.5})
    client = connect(imap.imap)
    started = time.monotonic()
    assert client.closed_within(3) == BYE_AUTOLOGOUT
    assert 0.4 <= time.monotonic() - started < 2.0


def test_a_half_sent_command_does_not_stop_the_login_timeout(serve: Callable[..., RunningImap]) -> None:
    """The timer runs from the last byte, whether or not a command is under way."""
    imap = serve(imap={"login_timeout": 0.5})
    client = connect(imap.imap)
    client.send(b"a LOGIN ")
    started = time.monotonic()
    assert client.closed_within(3) == BYE_AUTOLOGOUT
    assert 0.4 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize("where", ["authenticated", "selected", "in IDLE"])
def test_an_idle_session_is_logged_out_after_the_idle_timeout(
        serve: Callable[..., RunningImap], backend: str, where: str) -> None:
    imap = serve(backend, imap={"idle_timeout": 0.5})
    client = logged_in(imap)
    if where != "authenticated":
        assert client.command("s", "SELECT INBOX").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    if where == "in IDLE":
        client.send(b"i IDLE\r\n")
        assert client.line() == b"+ idling\r\n"
    started = time.monotonic()
    assert client.closed_within(3) == BYE_AUTOLOGOUT
    assert 0.4 <= time.monotonic() - started < 2.0


def test_an_active_session_is_not_logged_out(serve: Callable[..., RunningImap]) -> None:
    """The idle timer restarts with each command (a NOOP poller stays connected)."""
    imap = serve(imap={"idle_timeout": 0.5})
    client = logged_in(imap)
    for _ in range(5):
        time.sleep(0.25)
        still_answers(client)
    logout(client)


# -- 5. STARTTLS command injection (CVE-2011-0411 class) -------------------------------


@pytest.mark.parametrize("writes", [
    [b"a STARTTLS\r\nb CAPABILITY\r\n"],
    [b"a STARTTLS\r\nb LOGIN alice@example.test \"" + PASSWORD.encode() + b"\"\r\n"],
    [b"a STARTTLS\r\n", b"b CAPABILITY\r\n"],
], ids=["one write", "injected login", "two writes"])
def test_commands_pipelined_behind_starttls_in_plaintext_are_never_answered(
        serve: Callable[..., RunningImap], writes: list[bytes]) -> None:
    imap = serve()
    client = connect(imap.imap)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for data in writes:
        client.send(data)
    assert client.line() == b"a OK begin TLS negotiation now\r\n"
    tls_wrap(client)
    reply = client.command("c", "CAPABILITY")
    assert reply.startswith(b"* CAPABILITY ") and reply.endswith(b"\r\nc OK CAPABILITY completed\r\n"), reply
    assert reply.count(b"\r\n") == 2, reply
    assert b" STARTTLS" not in reply and b" AUTH=PLAIN" in reply
    # The injected LOGIN (if any) did not log in: SELECT is still in the wrong state.
    assert client.command("d", "SELECT INBOX") == (
        b"d BAD SELECT is not valid in the not authenticated state\r\n")
    client.login(ALICE)
    assert b"\r\nb " not in client.command("e", "NOOP")
    logout(client)


def test_a_second_starttls_is_refused(serve: Callable[..., RunningImap]) -> None:
    imap = serve()
    client = connect(imap.imap)
    assert client.command("a", "STARTTLS") == b"a OK begin TLS negotiation now\r\n"
    tls_wrap(client)
    assert client.command("b", "STARTTLS") == b"b BAD TLS is already active\r\n"
    still_answers(client)
    logout(client)
    client = connect(imap.imaps, tls=True)
    assert b" STARTTLS" not in client.greeting
    assert client.command("b", "STARTTLS") == b"b BAD TLS is already active\r\n"
    still_answers(client)
    logout(client)


# -- 6. Long lines ---------------------------------------------------------------------


def test_a_line_over_max_line_gets_bad_and_the_next_command_is_answered(
        serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"max_line": 1024})
    client = logged_in(imap)
    client.send(b"a NOOP " + b"x" * 5000 + b"\r\nb NOOP\r\n")
    assert client.until_tagged("b") == b"a BAD line too long\r\nb OK NOOP completed\r\n"
    # The same line dripped in pieces: one BAD, and its tail is not read as a command.
    client.send(b"c NOOP ")
    for _ in range(6):
        client.send(b"d NOOP " * 100)
        time.sleep(0.02)
    client.send(b"\r\ne NOOP\r\n")
    assert client.until_tagged("e") == b"c BAD line too long\r\ne OK NOOP completed\r\n"
    # A line of exactly max_line octets is taken; one more is not.
    assert client.command("s", "SELECT INBOX").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    longest = b"SEARCH ALL" + b" ALL" * 253
    assert len(b"f " + longest) == 1024
    assert client.command("f", longest).endswith(b"f OK SEARCH completed\r\n")
    assert client.command("g", longest + b" ") == b"g BAD line too long\r\n"
    logout(client)


@pytest.mark.parametrize("pieces", [1, 40], ids=["one write", "dripped"])
def test_literal_plus_data_after_an_overlong_line_is_never_read_as_commands(
        serve: Callable[..., RunningImap], pieces: int) -> None:
    """The line is refused, but its ``{n+}`` still announced n octets that are already on
    their way: they are message data, never commands (Stalwart #2768, net-imap #701)."""
    imap = serve(imap={"max_line": 1024})
    client = logged_in(imap)
    smuggled = b"b DELETE Trash\r\n"
    line = b"a APPEND INBOX (" + b"\\Seen " * 400 + b") {%d+}\r\n" % len(smuggled)
    step = -(-len(line) // pieces)
    for start in range(0, len(line), step):
        client.send(line[start:start + step])
        if pieces > 1:
            time.sleep(0.005)
    client.send(smuggled + b"c NOOP\r\n")
    said = b""
    while not said.endswith(b"\r\nc OK NOOP completed\r\n"):
        try:
            piece = client.line()
        except ConnectionResetError:
            break  # closed with our bytes unread: the kernel's reset may swallow the BYE
        if not piece:
            assert b"* BYE " in said, f"closed without BYE: {said!r}"
            break
        said += piece
    assert b"\r\nb " not in b"\r\n" + said, f"a smuggled command was answered: {said!r}"
    other = logged_in(imap)
    assert b"\\Trash" in other.command("l", 'LIST "" Trash'), "the smuggled DELETE ran"
    logout(other)


# -- 7. Authentication over TLS --------------------------------------------------------


def test_authenticate_after_starttls_and_login_over_imaps_both_work(
        serve: Callable[..., RunningImap], backend: str) -> None:
    """LOGIN before TLS on a non-loopback address is refused (tested on the session
    below): loopback counts as secure, so here the TLS paths are what is shown."""
    imap = serve(backend)
    client = connect(imap.imap)
    assert client.command("a", "STARTTLS") == b"a OK begin TLS negotiation now\r\n"
    tls_wrap(client)
    client.send(b"b AUTHENTICATE PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(plain(ALICE, PASSWORD).encode() + b"\r\n")
    assert client.until_tagged("b").startswith(b"b OK [CAPABILITY IMAP4rev1 ")
    assert client.command("s", "SELECT INBOX").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    logout(client)

    client = connect(imap.imap)
    assert client.command("a", "STARTTLS") == b"a OK begin TLS negotiation now\r\n"
    tls_wrap(client)
    assert client.command("b", "AUTHENTICATE PLAIN " + plain(ALICE, "wrong")) == (
        b"b NO [AUTHENTICATIONFAILED] invalid credentials\r\n")
    reply = client.command("c", "AUTHENTICATE PLAIN " + plain(ALICE, PASSWORD))
    assert reply.startswith(b"c OK [CAPABILITY "), reply
    logout(client)

    client = connect(imap.imaps, tls=True)
    assert b" AUTH=PLAIN" in client.greeting and b"LOGINDISABLED" not in client.greeting
    client.login(ALICE)
    assert client.command("s", "SELECT INBOX").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    logout(client)


def test_login_and_authenticate_are_refused_before_tls_from_a_non_loopback_address(
        serve: Callable[..., RunningImap]) -> None:
    """A socket test cannot come from a non-loopback address here, so this drives the
    session the server builds for such a peer, as the server would."""
    imap = serve()
    service = imap.service
    settings = imap.container.settings
    session = ImapSession(service.app, service.view, service.wait_for, service.throttle, settings.imap,
                          settings.max_message_bytes, settings.hostname,
                          Peer(ip="192.0.2.7", listener="imap", secure=False, tls=False, can_starttls=True))

    def execute(line: bytes) -> bytes:
        return b"".join(session.execute(Command((line,))).lines)

    assert b" STARTTLS LOGINDISABLED " in session.greeting() and b"AUTH=PLAIN" not in session.greeting()
    assert execute(b'a LOGIN alice@example.test "' + PASSWORD.encode() + b'"') == (
        b"a NO [PRIVACYREQUIRED] LOGIN needs TLS; use STARTTLS first\r\n")
    assert execute(b"b AUTHENTICATE PLAIN " + plain(ALICE, PASSWORD).encode()) == (
        b"b NO [PRIVACYREQUIRED] authentication needs TLS; use STARTTLS first\r\n")
    assert execute(b"c STARTTLS") == b"c OK begin TLS negotiation now\r\n"
    session.tls_started()
    reply = execute(b'd LOGIN alice@example.test "' + PASSWORD.encode() + b'"')
    assert reply.startswith(b"d OK [CAPABILITY "), reply


# -- 8. Connection caps ----------------------------------------------------------------


def test_a_third_connection_from_one_address_gets_bye_until_one_closes(
        serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"max_connections_per_ip": 2})
    # The cap counts across both listeners.
    open_clients = [connect(imap.imap), connect(imap.imaps, tls=True)]
    for port, tls in ((imap.imap, False), (imap.imaps, True)):
        refused = RawImap(port, tls=tls)
        assert refused.greeting == b"* BYE [UNAVAILABLE] too many connections from your address\r\n"
        assert refused.closed_within(2) == b""
        refused.close()
    open_clients.pop(0).close()
    deadline = time.monotonic() + 3
    while True:
        client = RawImap(imap.imap)
        if client.greeting.startswith(b"* OK "):
            break
        client.close()
        assert time.monotonic() < deadline, "the slot of the closed connection was never freed"
        time.sleep(0.05)
    still_answers(client)
    for other in [client, *open_clients]:
        other.close()


def test_connections_over_the_total_cap_get_bye(serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"max_connections": 2})
    open_clients = [connect(imap.imap), connect(imap.imap)]
    refused = RawImap(imap.imap)
    assert refused.greeting == b"* BYE [UNAVAILABLE] server busy, try again later\r\n"
    assert refused.closed_within(2) == b""
    for client in open_clients:
        still_answers(client)
        client.close()


# -- 9. Failed logins (checklist §2.9; the LoginThrottle SMTP uses) --------------------


def login_timed(client: RawImap, tag: str, password: str, user: str = ALICE) -> tuple[bytes, float]:
    started = time.monotonic()
    reply = client.command(tag, f'LOGIN "{user}" "{password}"')
    return reply, time.monotonic() - started


def test_failed_logins_are_answered_ever_later_then_locked_out_even_with_the_right_password(
        serve: Callable[..., RunningImap]) -> None:
    imap = serve(auth={"failure_delay": 0.1, "ip_lockout_failures": 3})
    client = connect(imap.imap)
    times = []
    for tag in ("a", "b", "c"):
        reply, took = login_timed(client, tag, "wrong password")
        assert reply == tag.encode() + b" NO [AUTHENTICATIONFAILED] invalid credentials\r\n"
        times.append(took)
    assert times[0] >= 0.1
    assert times[2] > times[0] + 0.2, times  # 0.1 s, 0.2 s, 0.4 s
    reply, _ = login_timed(client, "d", PASSWORD)
    assert reply == b"d " + LOCKED
    still_answers(client)  # NO is not BAD: the connection is not closed for it
    # The lockout is the address's, not the connection's, and covers AUTHENTICATE too.
    client = connect(imap.imaps, tls=True)
    assert login_timed(client, "e", PASSWORD)[0] == b"e " + LOCKED
    assert client.command("f", "AUTHENTICATE PLAIN " + plain(ALICE, PASSWORD)) == b"f " + LOCKED
    logout(client)


def test_unknown_users_and_wrong_passwords_get_the_same_answer(serve: Callable[..., RunningImap]) -> None:
    imap = serve()
    client = connect(imap.imap)
    unknown = login_timed(client, "a", PASSWORD, user="nobody@example.test")[0]
    wrong = login_timed(client, "a", "not the password")[0]
    assert unknown == wrong == b"a NO [AUTHENTICATIONFAILED] invalid credentials\r\n"
    client.login(ALICE)
    logout(client)


# -- 10. Compression bombs (RFC 4978) --------------------------------------------------


def test_a_compressed_megabyte_of_zeros_gets_bad_line_too_long_and_the_server_stays_responsive(
        serve: Callable[..., RunningImap]) -> None:
    imap = serve()
    client = logged_in(imap)
    wire = compressed(client)
    bomb = wire.deflate.compress(b"\x00" * MIB) + wire.deflate.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 8192
    wire.send_compressed(bomb)
    client.send(b"\r\nb NOOP\r\n")
    # No tag can be read from NULs: the BAD is untagged (RFC 9051 §7.1.3).
    assert client.until_tagged("b") == b"* BAD line too long\r\nb OK NOOP completed\r\n"
    assert client.command("s", "SELECT INBOX").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    logout(client)
    fresh_connection_answers(imap)


def test_a_compression_bomb_is_inflated_a_bounded_piece_at_a_time(
        serve: Callable[..., RunningImap]) -> None:
    """256 MiB of zeros come as about 250 KiB of deflate: one 64 KiB read inflates to
    some 64 MiB. The server must hand them on in steps, never holding them all."""
    imap = serve()
    client = logged_in(imap)
    wire = compressed(client)
    zeros = b"\x00" * MIB
    bomb = b"".join(wire.deflate.compress(zeros) for _ in range(256)) + wire.deflate.flush(zlib.Z_SYNC_FLUSH)
    tracemalloc.start()
    try:
        wire.send_compressed(bomb)
        client.send(b"\r\nb NOOP\r\n")
        reply = client.until_tagged("b")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply == b"* BAD line too long\r\nb OK NOOP completed\r\n"
    assert peak < 16 * MIB, f"Python heap peaked at {peak / MIB:.1f} MiB for a {len(bomb)} byte bomb"
    still_answers(client)
    logout(client)


# -- 11. Unknown commands and commands in the wrong state (RFC 9051 §3, §7.1.3) --------


def test_an_unknown_command_gets_bad(serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"max_bad_commands": 20})
    client = logged_in(imap)
    for tag, text, expected in [
        ("a", "FOO", b"a BAD unknown command FOO\r\n"),
        ("b", "XYZZY some arguments", b"b BAD unknown command XYZZY\r\n"),
        ("c", "DONE", b"c BAD unknown command DONE\r\n"),
        ("d", "", b"d BAD expected: tag SP command\r\n"),
        ("e", "X" * 100, b"e BAD unknown command " + b"X" * 30 + b"\r\n"),
    ]:
        assert client.command(tag, text) == expected, tag
    client.send(b"+ NOOP\r\n")
    assert client.line() == b"* BAD invalid tag\r\n"
    still_answers(client)
    logout(client)


def test_a_command_in_the_wrong_state_gets_bad(serve: Callable[..., RunningImap]) -> None:
    imap = serve(imap={"max_bad_commands_before_login": 5})
    client = connect(imap.imap)
    for tag, name in [("a", "SELECT INBOX"), ("b", "FETCH 1 FLAGS"), ("c", "IDLE"),
                      ("d", "COMPRESS DEFLATE")]:
        verb = name.split()[0]
        assert client.command(tag, name) == (
            f"{tag} BAD {verb} is not valid in the not authenticated state\r\n".encode())
    client.login(ALICE)
    for tag, name in [("e", f'LOGIN "{ALICE}" "{PASSWORD}"'), ("f", "STARTTLS"),
                      ("g", "AUTHENTICATE PLAIN"), ("h", "FETCH 1 FLAGS"), ("i", "EXPUNGE")]:
        verb = name.split()[0]
        assert client.command(tag, name) == (
            f"{tag} BAD {verb} is not valid in the authenticated state\r\n".encode())
    assert client.command("s", "SELECT INBOX").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    assert client.command("j", "STARTTLS") == b"j BAD STARTTLS is not valid in the selected state\r\n"
    still_answers(client)
    logout(client)


def test_pipelined_bad_input_from_many_clients_leaves_the_service_answering(
        serve: Callable[..., RunningImap]) -> None:
    """Twenty clients at once each send every kind of bad input above; then a new
    client is served normally."""
    imap = serve(imap={"max_line": 2048, "max_connections_per_ip": 40})
    junk = (b"a LOGIN {4000000000}\r\nb ID " + b"(" * 1000 + b"\r\nc " + b"x" * 5000
            + b"\r\nd APPEND INBOX {100000000+}\r\n")
    errors: list[BaseException] = []

    def attack() -> None:
        try:
            client = connect(imap.imap)
            client.send(junk)
            said = client.closed_within(5)
            assert said.endswith(BYE_TOO_MANY_BAD), said
            client.close()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=attack) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors[0]
    fresh_connection_answers(imap)
