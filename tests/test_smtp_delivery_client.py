"""The outbound SMTP client (adapters/smtp/delivery_client.py) against real peers on
127.0.0.1: aiosmtpd servers, and scripted asyncio peers that record every byte they get
and when it arrived. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as AiosmtpdServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.smtp.delivery_client import (
    ConnectFailure,
    DeliveryConnection,
    OutboundEnvelope,
    OutboundRecipient,
    RecipientResult,
    TlsPolicy,
    data_bytes,
    open_connection,
)
from adapters.smtp.routing import Candidate
from adapters.tls import write_self_signed

HELO = "client.test"
LOOPBACK = "127.0.0.1"
#: What every scripted peer offers unless a test says otherwise.
FULL_EHLO = ("PIPELINING", "SIZE 10240000", "8BITMIME", "DSN", "SMTPUTF8", "ENHANCEDSTATUSCODES")
PLAIN_MESSAGE = b"Subject: test\r\nFrom: alice@example.org\r\n\r\nHello.\r\n"


def run(scenario: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(30):
            return await scenario
    return asyncio.run(bounded())


def at(port: int, host: str = LOOPBACK) -> Candidate:
    return Candidate(host, port, 0)


def envelope(*addresses: str, mail_from: str = "alice@example.org", **fields: Any) -> OutboundEnvelope:
    return OutboundEnvelope(mail_from, tuple(OutboundRecipient(a) for a in addresses), **fields)


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


# --- certificates -----------------------------------------------------------------------


@dataclass
class Certs:
    server: ssl.SSLContext  # a certificate for localhost and 127.0.0.1
    trust: ssl.SSLContext  # a client context that trusts it
    other_name: ssl.SSLContext  # the same kind of certificate, for elsewhere.test only
    trust_other: ssl.SSLContext


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _write_cert_for(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "localhost.crt", directory / "localhost.key"
    write_self_signed(cert, key, "localhost")  # the project's own pair: localhost + 127.0.0.1
    other_cert, other_key = _write_cert_for(directory, "elsewhere.test")
    return Certs(_server_context(cert, key), ssl.create_default_context(cafile=str(cert)),
                 _server_context(other_cert, other_key), ssl.create_default_context(cafile=str(other_cert)))


# --- a scripted peer --------------------------------------------------------------------


@dataclass
class PeerSession:
    """One connection as the peer saw it."""

    #: Every command line, exactly as received (CRLF included); DATA content is not here.
    commands: list[bytes] = field(default_factory=list)
    #: For each command, how many replies the peer had sent when it arrived.
    replies_sent_before: list[int] = field(default_factory=list)
    #: Each message's raw bytes after 354, up to and including the final ".\r\n".
    data: list[bytes] = field(default_factory=list)
    tls: bool = False

    def verbs(self) -> list[str]:
        return [line.split(b" ")[0].split(b":")[0].strip().decode().upper() for line in self.commands]


class ScriptedPeer:
    """An SMTP server that replies as told and records the bytes it gets.

    ``replies`` maps the start of a command line (case-insensitive) to the reply it gets;
    other commands get a plain success, except that RCPT without an accepted MAIL gets
    503 and DATA without an accepted RCPT gets 554, as real servers answer.
    ``after_354``: "receive" the message, "drop" the connection, or "ignore" (read the
    message, never answer). ``mail_delay`` holds the reply to MAIL back for a while;
    ``idle_close`` sends 421 and closes that long after EHLO (RFC 5321 §3.8), or only
    sends it with ``idle_keep_open``.
    """

    def __init__(self, *, greeting: str = "220 peer.test ESMTP", ehlo: tuple[str, ...] = FULL_EHLO,
                 ehlo_reply: str | None = None, tls: ssl.SSLContext | None = None,
                 ehlo_after_tls: tuple[str, ...] | None = None, starttls_garbage: bool = False,
                 replies: dict[str, str] | None = None, final_reply: str = "250 2.0.0 Ok: queued as 1",
                 after_354: str = "receive", mail_delay: float = 0.0,
                 idle_close: float | None = None, idle_keep_open: bool = False) -> None:
        self.greeting = greeting
        self.ehlo = ehlo
        self.ehlo_reply = ehlo_reply
        self.tls = tls
        self.ehlo_after_tls = ehlo_after_tls
        self.starttls_garbage = starttls_garbage
        self.replies = replies or {}
        self.final_reply = final_reply
        self.after_354 = after_354
        self.mail_delay = mail_delay
        self.idle_close = idle_close
        self.idle_keep_open = idle_keep_open
        self.sessions: list[PeerSession] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    @property
    def session(self) -> PeerSession:
        (only,) = self.sessions
        return only

    async def __aenter__(self) -> ScriptedPeer:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port: int = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        session = PeerSession()
        self.sessions.append(session)
        sent = 0
        arrived: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()

        async def pump() -> None:
            # Lines are stamped when they arrive, not when the script gets to them.
            while line := await reader.readline():
                arrived.put_nowait((sent, line))
            arrived.put_nowait((sent, b""))

        def reply(text: str) -> None:
            nonlocal sent
            writer.write(text.encode() + b"\r\n")
            sent += 1

        pumping = asyncio.create_task(pump())
        try:
            reply(self.greeting)
            if not self.greeting.startswith("220"):
                await writer.drain()
                return
            mail_ok, accepted = False, 0
            while True:
                stamp, line = await arrived.get()
                if not line:
                    return
                session.commands.append(line)
                session.replies_sent_before.append(stamp)
                verb = session.verbs()[-1]
                rule = next((text for start, text in self.replies.items()
                             if line.upper().startswith(start.upper().encode())), None)
                if verb == "EHLO":
                    if self.ehlo_reply:
                        reply(self.ehlo_reply)
                        continue
                    keywords = self.ehlo
                    if session.tls and self.ehlo_after_tls is not None:
                        keywords = self.ehlo_after_tls
                    if self.tls is not None and not session.tls:
                        keywords = (*keywords, "STARTTLS")
                    lines = ["peer.test", *keywords]
                    reply("\r\n".join([*(f"250-{text}" for text in lines[:-1]), f"250 {lines[-1]}"]))
                    if self.idle_close:
                        await asyncio.sleep(self.idle_close)
                        reply("421 4.4.2 Idle timeout, closing connection")
                        await writer.drain()
                        if not self.idle_keep_open:
                            return
                elif verb == "HELO":
                    reply("250 peer.test")
                elif verb == "STARTTLS":
                    reply("220 2.0.0 Ready to start TLS")
                    if self.starttls_garbage:
                        writer.write(b"this is not a TLS handshake\r\n")
                        await writer.drain()
                        return
                    assert self.tls is not None
                    await writer.start_tls(self.tls)
                    session.tls = True
                elif verb == "MAIL":
                    await asyncio.sleep(self.mail_delay)
                    text = rule or "250 2.1.0 Ok"
                    mail_ok, accepted = text.startswith("2"), 0
                    reply(text)
                elif verb == "RCPT":
                    text = (rule or "250 2.1.5 Ok") if mail_ok else "503 5.5.1 Error: need MAIL command"
                    accepted += text.startswith("2")
                    reply(text)
                elif verb == "DATA":
                    text = rule or ("354 End data with <CR><LF>.<CR><LF>" if accepted
                                    else "554 5.5.1 Error: no valid recipients")
                    reply(text)
                    if not text.startswith("354"):
                        continue
                    if self.after_354 == "drop":
                        writer.transport.abort()
                        return
                    raw = b""
                    while not raw.endswith(b"\r\n.\r\n") and raw != b".\r\n":
                        _, chunk = await arrived.get()
                        if not chunk:
                            return
                        raw += chunk
                    session.data.append(raw)
                    mail_ok, accepted = False, 0
                    if self.after_354 == "receive":
                        reply(self.final_reply)
                elif verb == "RSET":
                    mail_ok, accepted = False, 0
                    reply("250 2.0.0 Ok")
                elif verb == "QUIT":
                    reply("221 2.0.0 Bye")
                    await writer.drain()
                    return
                else:
                    reply("502 5.5.2 Error: command not recognized")
        except (asyncio.CancelledError, OSError):
            # The test is over, or the client went away mid-handshake: nothing to record.
            # (Returning, not re-raising: asyncio 3.11 logs a cancelled handler as an error.)
            return
        finally:
            pumping.cancel()
            with contextlib.suppress(Exception):
                writer.close()


async def deliver(candidates: list[Candidate], env: OutboundEnvelope, message: bytes = PLAIN_MESSAGE, *,
                  tls: TlsPolicy | None = None, **options: Any) -> list[RecipientResult]:
    connection = await open_connection(candidates, helo=HELO, tls=tls or TlsPolicy(), **options)
    try:
        return await connection.send(env, message)
    finally:
        await connection.close()


# --- an aiosmtpd peer -------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    tls: bool
    peer: Any


class Recorder:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Received] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                                      list(envelope.mail_options), list(envelope.rcpt_options),
                                      session.ssl is not None, session.peer))
        return "250 2.0.0 Ok: queued"


@contextlib.asynccontextmanager
async def aiosmtpd_peer(handler: Recorder, **options: Any) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: AiosmtpdServer(handler, hostname="aiosmtpd.test", **options),
                                      LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


# --- delivery and the bytes on the wire -------------------------------------------------


def test_an_aiosmtpd_peer_gets_the_envelope_and_every_line_ending_in_crlf() -> None:
    message = (b"Subject: line ends\nFrom: alice@example.org\r\n\r\n"
               b"bare lf\nbare cr\rcrlf\r\n.a leading dot\n..two dots\nno final line end")
    expected = (b"Subject: line ends\r\nFrom: alice@example.org\r\n\r\n"
                b"bare lf\r\nbare cr\r\ncrlf\r\n.a leading dot\r\n..two dots\r\nno final line end\r\n")
    recorder = Recorder()

    async def scenario() -> list[RecipientResult]:
        async with aiosmtpd_peer(recorder) as port:
            return await deliver([at(port)], envelope("bob@example.net", "carol@example.net"), message)

    results = run(scenario())
    assert results == [RecipientResult("bob@example.net", 250, "2.0.0", "2.0.0 Ok: queued", LOOPBACK),
                       RecipientResult("carol@example.net", 250, "2.0.0", "2.0.0 Ok: queued", LOOPBACK)]
    assert all(result.delivered and not result.permanent for result in results)
    (received,) = recorder.messages
    assert received.mail_from == "alice@example.org"
    assert received.rcpt_tos == ["bob@example.net", "carol@example.net"]
    assert received.content == expected  # un-stuffed by the peer: the dots came through intact
    # aiosmtpd offers SIZE and 8BITMIME; an ASCII message needs no BODY=, and no DSN means no NOTIFY.
    assert received.mail_options == [f"SIZE={len(expected)}"]
    assert received.rcpt_options == []


def test_the_wire_carries_crlf_lines_dot_stuffed_and_one_crlf_dot_crlf_at_the_end() -> None:
    message = b"Subject: dots\n\n.leading\r\n..double\r.\nlast line"

    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer() as peer:
            await deliver([at(peer.port)], envelope("bob@example.net"), message)
            return peer

    peer = run(scenario())
    assert peer.session.data == [b"Subject: dots\r\n\r\n..leading\r\n...double\r\n..\r\nlast line\r\n.\r\n"]
    assert data_bytes(message) == peer.session.data[0]


def test_a_message_already_ending_in_crlf_gets_no_extra_line() -> None:
    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer() as peer:
            await deliver([at(peer.port)], envelope("bob@example.net"), b"Subject: x\r\n\r\nbody\r\n")
            return peer

    assert run(scenario()).session.data == [b"Subject: x\r\n\r\nbody\r\n.\r\n"]


def test_dsn_size_body_and_smtputf8_parameters_go_on_the_wire_when_the_peer_offers_them() -> None:
    message = "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()
    env = OutboundEnvelope(
        "alice@example.org",
        (OutboundRecipient("bob@example.net", notify=("failure", "DELAY"), orcpt="rfc822;bob@example.net"),
         OutboundRecipient("j\u00fcrgen@example.net", notify=("NEVER",))),
        ret="HDRS", envid="queue id+1=x", smtp_utf8=True)

    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer() as peer:
            await deliver([at(peer.port)], env, message)
            return peer

    commands = run(scenario()).session.commands
    assert commands[1] == f"MAIL FROM:<alice@example.org> SIZE={len(message)} BODY=8BITMIME SMTPUTF8 " \
                          "RET=HDRS ENVID=queue+20id+2B1+3Dx\r\n".encode()
    assert commands[2] == b"RCPT TO:<bob@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.net\r\n"
    assert commands[3] == "RCPT TO:<j\u00fcrgen@example.net> NOTIFY=NEVER\r\n".encode()
    assert commands[4] == b"DATA\r\n"


def test_no_extension_parameter_goes_to_a_peer_that_offers_none() -> None:
    bob = OutboundRecipient("bob@example.net", notify=("FAILURE",), orcpt="rfc822;bob@example.net")
    env = OutboundEnvelope("alice@example.org", (bob,), ret="FULL", envid="id1")

    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer(ehlo=()) as peer:
            await deliver([at(peer.port)], env, "Subject: x\r\n\r\n8-bit body \u00e9\r\n".encode())
            return peer

    assert run(scenario()).session.commands[1:4] == [
        b"MAIL FROM:<alice@example.org>\r\n", b"RCPT TO:<bob@example.net>\r\n", b"DATA\r\n"]


def test_an_orcpt_that_is_not_xtext_is_encoded_and_one_that_is_passes_unchanged() -> None:
    env = OutboundEnvelope("", (
        OutboundRecipient("a@example.net", orcpt="rfc822;bob+tag=1@example.net"),
        OutboundRecipient("b@example.net", orcpt="rfc822;bob+2Btag+3D1@example.net"),
        OutboundRecipient("c@example.net", orcpt="utf-8;j\u00fcrgen@example.net"),
    ))

    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer() as peer:
            await deliver([at(peer.port)], env)
            return peer

    commands = run(scenario()).session.commands
    assert commands[1] == f"MAIL FROM:<> SIZE={len(PLAIN_MESSAGE)}\r\n".encode()  # the null reverse-path
    assert commands[2:5] == [
        b"RCPT TO:<a@example.net> ORCPT=rfc822;bob+2Btag+3D1@example.net\r\n",
        b"RCPT TO:<b@example.net> ORCPT=rfc822;bob+2Btag+3D1@example.net\r\n",
        b"RCPT TO:<c@example.net> ORCPT=utf-8;j+C3+BCrgen@example.net\r\n",
    ]


def test_an_aiosmtpd_peer_offering_smtputf8_gets_it_with_body_8bitmime_for_a_utf8_envelope() -> None:
    recorder = Recorder()
    message = "Subject: gr\u00fc\u00dfe\r\n\r\nhallo\r\n".encode()

    async def scenario() -> None:
        async with aiosmtpd_peer(recorder, enable_SMTPUTF8=True) as port:
            await deliver([at(port)], envelope("j\u00fcrgen@example.net"), message)

    run(scenario())
    (received,) = recorder.messages
    assert received.rcpt_tos == ["j\u00fcrgen@example.net"]
    assert received.mail_options == [f"SIZE={len(message)}", "BODY=8BITMIME", "SMTPUTF8"]
    assert received.content == message


def test_a_utf8_envelope_to_a_peer_without_smtputf8_fails_553_5_6_7_and_sends_no_mail() -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer(ehlo=("PIPELINING", "8BITMIME")) as peer:
            results = await deliver([at(peer.port)], envelope("j\u00fcrgen@example.net", "bob@example.net"))
            return peer, results

    peer, results = run(scenario())
    assert [(r.code, r.status, r.permanent) for r in results] == [(553, "5.6.7", True)] * 2
    assert peer.session.verbs() == ["EHLO", "QUIT"]


def test_a_utf8_header_alone_also_needs_smtputf8() -> None:
    async def scenario() -> list[RecipientResult]:
        async with ScriptedPeer(ehlo=("8BITMIME",)) as peer:
            return await deliver([at(peer.port)], envelope("bob@example.net"),
                                 "From: J\u00fcrgen <j@example.org>\r\n\r\nbody\r\n".encode())

    assert [(r.code, r.status) for r in run(scenario())] == [(553, "5.6.7")]


def test_a_message_over_the_peers_size_limit_fails_552_5_3_4_without_a_mail_command() -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer(ehlo=("PIPELINING", "SIZE 100")) as peer:
            results = await deliver([at(peer.port)], envelope("bob@example.net"), b"x" * 99)
            return peer, results

    peer, results = run(scenario())
    # 99 octets plus the CRLF the message lacked: 101 > 100.
    assert [(r.code, r.status, r.permanent) for r in results] == [(552, "5.3.4", True)]
    assert "MAIL" not in peer.session.verbs()


# --- pipelining (RFC 2920) --------------------------------------------------------------


def test_with_pipelining_mail_every_rcpt_and_data_arrive_before_the_first_reply() -> None:
    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer(mail_delay=0.2) as peer:
            await deliver([at(peer.port)], envelope("bob@example.net", "carol@example.net"))
            return peer

    session = run(scenario()).session
    assert session.verbs() == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    greeting_and_ehlo = 2
    assert session.replies_sent_before[1:5] == [greeting_and_ehlo] * 4


def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer(ehlo=("8BITMIME",), mail_delay=0.2) as peer:
            await deliver([at(peer.port)], envelope("bob@example.net", "carol@example.net"))
            return peer

    session = run(scenario()).session
    assert session.verbs() == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert session.replies_sent_before[1:5] == [2, 3, 4, 5]


# --- per-recipient results --------------------------------------------------------------


@pytest.mark.parametrize("ehlo", [FULL_EHLO, ()], ids=["pipelining", "one-by-one"])
def test_a_recipient_refused_with_550_gets_its_reply_while_the_others_are_delivered(
        ehlo: tuple[str, ...]) -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer(ehlo=ehlo, replies={"RCPT TO:<nobody@": "550 5.1.1 <nobody@example.net>: "
                                                                       "Recipient address rejected"}) as peer:
            results = await deliver([at(peer.port)],
                                    envelope("bob@example.net", "nobody@example.net", "carol@example.net"))
            return peer, results

    peer, results = run(scenario())
    assert results == [
        RecipientResult("bob@example.net", 250, "2.0.0", "2.0.0 Ok: queued as 1", LOOPBACK),
        RecipientResult("nobody@example.net", 550, "5.1.1",
                        "5.1.1 <nobody@example.net>: Recipient address rejected", LOOPBACK),
        RecipientResult("carol@example.net", 250, "2.0.0", "2.0.0 Ok: queued as 1", LOOPBACK),
    ]
    assert results[1].permanent and not results[1].delivered
    assert len(peer.session.data) == 1


def test_a_450_at_rcpt_is_a_temporary_result_for_that_recipient_alone() -> None:
    async def scenario() -> list[RecipientResult]:
        async with ScriptedPeer(replies={"RCPT TO:<grey@": "450 4.7.1 Greylisted, try again"}) as peer:
            return await deliver([at(peer.port)], envelope("grey@example.net", "bob@example.net"))

    grey, bob = run(scenario())
    assert (grey.code, grey.status, grey.text, grey.permanent, grey.delivered) == (
        450, "4.7.1", "4.7.1 Greylisted, try again", False, False)
    assert bob.delivered


def test_a_554_at_the_end_of_data_applies_to_every_accepted_recipient() -> None:
    async def scenario() -> list[RecipientResult]:
        async with ScriptedPeer(replies={"RCPT TO:<nobody@": "550 5.1.1 No such user"},
                                final_reply="554 5.7.1 Message rejected as spam") as peer:
            return await deliver([at(peer.port)],
                                 envelope("bob@example.net", "nobody@example.net", "carol@example.net"))

    results = run(scenario())
    assert [(r.address, r.code, r.status, r.text) for r in results] == [
        ("bob@example.net", 554, "5.7.1", "5.7.1 Message rejected as spam"),
        ("nobody@example.net", 550, "5.1.1", "5.1.1 No such user"),
        ("carol@example.net", 554, "5.7.1", "5.7.1 Message rejected as spam"),
    ]


def test_a_refused_mail_from_is_the_result_of_every_recipient() -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer(replies={"MAIL": "553 5.7.1 Sender rejected"}) as peer:
            results = await deliver([at(peer.port)], envelope("bob@example.net", "carol@example.net"))
            return peer, results

    peer, results = run(scenario())
    assert [(r.code, r.status, r.text) for r in results] == [(553, "5.7.1", "5.7.1 Sender rejected")] * 2
    assert peer.session.data == []
    assert peer.session.verbs() == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "RSET", "QUIT"]


@pytest.mark.parametrize(("ehlo", "verbs"), [
    (FULL_EHLO, ["EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "QUIT"]),
    ((), ["EHLO", "MAIL", "RCPT", "RSET", "MAIL", "RCPT", "DATA", "QUIT"]),
], ids=["pipelining", "one-by-one"])
def test_when_every_recipient_is_refused_no_message_is_sent_and_the_session_is_reset_for_the_next(
        ehlo: tuple[str, ...], verbs: list[str]) -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult], list[RecipientResult]]:
        async with ScriptedPeer(ehlo=ehlo, replies={"RCPT TO:<nobody@": "550 5.1.1 No such user"}) as peer:
            connection = await open_connection([at(peer.port)], helo=HELO, tls=TlsPolicy())
            refused = await connection.send(envelope("nobody@example.net"), PLAIN_MESSAGE)
            assert connection.usable
            delivered = await connection.send(envelope("bob@example.net"), PLAIN_MESSAGE)
            await connection.close()
            return peer, refused, delivered

    peer, refused, delivered = run(scenario())
    assert [(r.code, r.status) for r in refused] == [(550, "5.1.1")]
    assert [r.delivered for r in delivered] == [True]
    assert peer.session.verbs() == verbs
    assert len(peer.session.data) == 1


def test_a_354_to_pipelined_data_without_any_accepted_recipient_gets_only_the_terminating_dot() -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer(replies={"RCPT": "550 5.1.1 No such user", "DATA": "354 go ahead"}) as peer:
            results = await deliver([at(peer.port)], envelope("nobody@example.net"))
            return peer, results

    peer, results = run(scenario())
    assert [(r.code, r.status) for r in results] == [(550, "5.1.1")]
    # RFC 2920 §3.1: an empty message, then RSET.
    assert peer.session.data == [b".\r\n"]
    assert peer.session.verbs()[-2:] == ["RSET", "QUIT"]


def test_two_sends_on_one_connection_deliver_two_messages() -> None:
    recorder = Recorder()

    async def scenario() -> list[list[RecipientResult]]:
        async with aiosmtpd_peer(recorder) as port:
            connection = await open_connection([at(port)], helo=HELO, tls=TlsPolicy())
            first = await connection.send(envelope("bob@example.net"), b"Subject: one\r\n\r\n1\r\n")
            second = await connection.send(envelope("carol@example.net"), b"Subject: two\r\n\r\n2\r\n")
            await connection.close()
            return [first, second]

    first, second = run(scenario())
    assert [r.delivered for r in first + second] == [True, True]
    assert [(m.rcpt_tos, m.content) for m in recorder.messages] == [
        (["bob@example.net"], b"Subject: one\r\n\r\n1\r\n"),
        (["carol@example.net"], b"Subject: two\r\n\r\n2\r\n"),
    ]
    assert recorder.messages[0].peer == recorder.messages[1].peer  # one connection


def test_an_address_with_a_line_break_is_refused_without_reaching_the_wire() -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer() as peer:
            smuggler = "evil@example.net>\r\nRCPT TO:<x@example.com"
            results = await deliver([at(peer.port)], envelope(smuggler, "bob@example.net"))
            return peer, results

    peer, results = run(scenario())
    assert [(r.code, r.status) for r in results] == [(553, "5.1.3"), (250, "2.0.0")]
    assert not any(b"evil" in line or b"x@example.com" in line for line in peer.session.commands)


def test_reply_text_joins_the_lines_without_control_characters_and_is_capped() -> None:
    long_line = "y" * 1000
    refusal = f"550-5.1.1 first\x07 line\r\n550-5.1.1 second\tline\r\n550 5.1.1 {long_line}"

    async def scenario() -> list[RecipientResult]:
        async with ScriptedPeer(replies={"RCPT": refusal}) as peer:
            return await deliver([at(peer.port)], envelope("bob@example.net"))

    (result,) = run(scenario())
    assert (result.code, result.status) == (550, "5.1.1")
    assert result.text.startswith("5.1.1 first line 5.1.1 second line 5.1.1 yyy")
    assert len(result.text) == 500


# --- a connection that breaks -----------------------------------------------------------


def test_a_peer_that_drops_the_connection_after_354_leaves_every_recipient_at_451_4_4_2() -> None:
    async def scenario() -> tuple[list[RecipientResult], bool]:
        async with ScriptedPeer(after_354="drop") as peer:
            connection = await open_connection([at(peer.port)], helo=HELO, tls=TlsPolicy())
            results = await connection.send(envelope("bob@example.net", "carol@example.net"), PLAIN_MESSAGE)
            usable = connection.usable
            await connection.close()
            return results, usable

    results, usable = run(scenario())
    assert [(r.code, r.status, r.delivered, r.permanent) for r in results] == [
        (451, "4.4.2", False, False)] * 2
    assert "Lost connection with 127.0.0.1" in results[0].text
    assert not usable


def test_a_peer_that_never_answers_the_end_of_data_times_out_to_451_4_4_2() -> None:
    async def scenario() -> list[RecipientResult]:
        async with ScriptedPeer(after_354="ignore") as peer:
            return await deliver([at(peer.port)], envelope("bob@example.net"), timeout=0.5)

    (result,) = run(scenario())
    assert (result.code, result.status, result.delivered) == (451, "4.4.2", False)
    assert "end of data" in result.text and "timed out" in result.text


@pytest.mark.parametrize("keep_open", [False, True], ids=["closed", "421-only"])
def test_a_421_to_an_idle_session_leaves_it_unusable_and_send_writes_nothing(keep_open: bool) -> None:
    async def scenario() -> tuple[ScriptedPeer, DeliveryConnection, list[RecipientResult]]:
        async with ScriptedPeer(idle_close=0.1, idle_keep_open=keep_open) as peer:
            connection = await open_connection([at(peer.port)], helo=HELO, tls=TlsPolicy())
            for _ in range(100):
                if not connection.usable:
                    break
                await asyncio.sleep(0.01)
            results = await connection.send(envelope("bob@example.net"), PLAIN_MESSAGE)
            await connection.close()
            return peer, connection, results

    peer, connection, results = run(scenario())
    assert not connection.usable
    assert [(r.code, r.status) for r in results] == [(451, "4.4.2")]
    assert peer.session.verbs() == ["EHLO"]


def test_close_says_quit_and_never_raises_even_when_the_peer_is_gone() -> None:
    async def scenario() -> tuple[ScriptedPeer, ScriptedPeer]:
        async with ScriptedPeer() as polite:
            connection = await open_connection([at(polite.port)], helo=HELO, tls=TlsPolicy())
            await connection.close()
            await connection.close()
        async with ScriptedPeer(after_354="drop") as rude:
            connection = await open_connection([at(rude.port)], helo=HELO, tls=TlsPolicy())
            await connection.send(envelope("bob@example.net"), PLAIN_MESSAGE)
            await connection.close()
        return polite, rude

    polite, rude = run(scenario())
    assert polite.session.verbs() == ["EHLO", "QUIT"]
    assert rude.session.verbs()[-1] == "DATA"


# --- choosing a host (RFC 5321 §5.1) ----------------------------------------------------


@pytest.mark.parametrize("greeting", ["421 4.3.2 Service not available", "554 5.7.1 No SMTP service here"])
def test_a_refusing_greeting_makes_the_next_candidate_take_the_mail(greeting: str) -> None:
    async def scenario() -> tuple[ScriptedPeer, ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer(greeting=greeting) as first, ScriptedPeer() as second:
            results = await deliver([at(first.port), at(second.port)], envelope("bob@example.net"))
            return first, second, results

    first, second, results = run(scenario())
    assert first.session.commands == []
    assert second.session.verbs() == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert [r.delivered for r in results] == [True]


def test_a_refused_connection_makes_the_next_candidate_take_the_mail() -> None:
    async def scenario() -> tuple[ScriptedPeer, DeliveryConnection]:
        async with ScriptedPeer() as second:
            candidates = [at(closed_port()), at(second.port)]
            connection = await open_connection(candidates, helo=HELO, tls=TlsPolicy())
            await connection.close()
            return second, connection

    second, connection = run(scenario())
    assert (connection.host, connection.port) == (LOOPBACK, second.port)
    assert connection.extensions == frozenset(FULL_EHLO[:1] + ("SIZE", "8BITMIME", "DSN", "SMTPUTF8",
                                                                "ENHANCEDSTATUSCODES"))
    assert connection.tls_version is None


def test_when_every_candidate_is_down_the_connect_failure_is_a_temporary_4xx() -> None:
    with pytest.raises(ConnectFailure) as caught:
        run(open_connection([at(closed_port()), at(closed_port())], helo=HELO, tls=TlsPolicy(), timeout=5))
    assert (caught.value.code, caught.value.status, caught.value.permanent) == (421, "4.4.1", False)
    assert caught.value.text.startswith("4.4.1 connect to 127.0.0.1:")


def test_a_host_that_answered_gives_the_reason_rather_than_a_later_refused_connection() -> None:
    async def scenario() -> None:
        async with ScriptedPeer(greeting="421 4.3.2 Too busy") as busy:
            await open_connection([at(busy.port), at(closed_port())], helo=HELO, tls=TlsPolicy())

    with pytest.raises(ConnectFailure) as caught:
        run(scenario())
    assert (caught.value.code, caught.value.status, caught.value.permanent) == (421, "4.3.2", False)
    assert "refused to talk to me: 421 4.3.2 Too busy" in caught.value.text


def test_a_peer_refusing_ehlo_gets_helo_and_no_extension_parameters() -> None:
    async def scenario() -> tuple[ScriptedPeer, DeliveryConnection]:
        async with ScriptedPeer(ehlo_reply="502 5.5.2 Error: command not recognized") as peer:
            connection = await open_connection([at(peer.port)], helo=HELO, tls=TlsPolicy())
            await connection.send(envelope("bob@example.net"), PLAIN_MESSAGE)
            await connection.close()
            return peer, connection

    peer, connection = run(scenario())
    assert peer.session.commands[:3] == [b"EHLO client.test\r\n", b"HELO client.test\r\n",
                                         b"MAIL FROM:<alice@example.org>\r\n"]
    assert connection.extensions == frozenset()


def test_a_helo_name_that_would_break_the_command_line_is_refused() -> None:
    with pytest.raises(ValueError):
        run(open_connection([at(closed_port())], helo="client.test\r\nMAIL FROM:<x>", tls=TlsPolicy()))


# --- TLS (RFC 3207, MTA-STS, RFC 8689) --------------------------------------------------


def test_starttls_is_used_whenever_the_peer_offers_it(certs: Certs) -> None:
    recorder = Recorder()

    async def scenario() -> DeliveryConnection:
        async with aiosmtpd_peer(recorder, tls_context=certs.server) as port:
            connection = await open_connection([at(port)], helo=HELO, tls=TlsPolicy())
            async with connection:  # __aexit__ closes it
                await connection.send(envelope("bob@example.net"), PLAIN_MESSAGE)
            return connection

    connection = run(scenario())
    assert connection.tls_version in ("TLSv1.2", "TLSv1.3")
    assert "STARTTLS" not in connection.extensions  # the EHLO after TLS (RFC 3207 §4.2)
    assert [message.tls for message in recorder.messages] == [True]


def test_verified_tls_to_localhost_works_with_a_context_trusting_the_certificate(certs: Certs) -> None:
    recorder = Recorder()
    policy = TlsPolicy(required=True, verify=True, context=certs.trust)

    async def scenario() -> list[RecipientResult]:
        async with aiosmtpd_peer(recorder, tls_context=certs.server) as port:
            return await deliver([at(port, "localhost")], envelope("bob@example.net"), tls=policy)

    assert [r.delivered for r in run(scenario())] == [True]
    assert [message.tls for message in recorder.messages] == [True]


def test_tls_required_but_not_offered_fails_and_no_mail_is_sent() -> None:
    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer() as peer:
            with pytest.raises(ConnectFailure) as caught:
                await open_connection([at(peer.port)], helo=HELO, tls=TlsPolicy(required=True))
            assert (caught.value.code, caught.value.status, caught.value.permanent) == (421, "4.7.4", False)
            return peer

    session = run(scenario()).session
    assert session.verbs() == ["EHLO", "QUIT"]
    assert session.data == []


@pytest.mark.parametrize("which", ["untrusted", "other name"])
def test_a_certificate_that_fails_verification_fails_the_host_and_no_mail_is_sent(
        certs: Certs, which: str) -> None:
    server, trust = (certs.server, ssl.create_default_context()) if which == "untrusted" else (
        certs.other_name, certs.trust_other)

    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer(tls=server) as peer:
            with pytest.raises(ConnectFailure) as caught:
                await open_connection([at(peer.port, "localhost")], helo=HELO,
                                      tls=TlsPolicy(required=True, verify=True, context=trust))
            assert (caught.value.code, caught.value.status, caught.value.permanent) == (421, "4.7.5", False)
            assert "certificate" in caught.value.text
            return peer

    peer = run(scenario())
    assert [session.verbs() for session in peer.sessions] == [["EHLO", "STARTTLS"]]


def test_a_failed_opportunistic_handshake_is_tried_again_without_starttls() -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult], str | None]:
        async with ScriptedPeer(tls=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), starttls_garbage=True) as peer:
            connection = await open_connection([at(peer.port)], helo=HELO, tls=TlsPolicy())
            results = await connection.send(envelope("bob@example.net"), PLAIN_MESSAGE)
            await connection.close()
            return peer, results, connection.tls_version

    peer, results, tls_version = run(scenario())
    assert [session.verbs() for session in peer.sessions] == [
        ["EHLO", "STARTTLS"], ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]]
    assert [r.delivered for r in results] == [True]
    assert tls_version is None


def test_a_failed_handshake_when_tls_is_required_moves_on_instead_of_falling_back(certs: Certs) -> None:
    async def scenario() -> tuple[ScriptedPeer, ScriptedPeer, DeliveryConnection]:
        async with ScriptedPeer(tls=certs.server, starttls_garbage=True) as broken, \
                ScriptedPeer(tls=certs.server) as good:
            connection = await open_connection([at(broken.port), at(good.port)], helo=HELO,
                                               tls=TlsPolicy(required=True))
            await connection.close()
            return broken, good, connection

    broken, good, connection = run(scenario())
    assert [session.verbs() for session in broken.sessions] == [["EHLO", "STARTTLS"]]
    assert good.session.tls and connection.port == good.port and connection.tls_version is not None


def test_requiretls_to_peers_without_it_is_a_permanent_5_7_30_failure(certs: Certs) -> None:
    async def scenario() -> tuple[ScriptedPeer, ScriptedPeer]:
        async with ScriptedPeer(tls=certs.server) as tls_only, ScriptedPeer() as plain:
            with pytest.raises(ConnectFailure) as caught:
                await open_connection([at(tls_only.port, "localhost"), at(plain.port)], helo=HELO,
                                      tls=TlsPolicy(context=certs.trust), requiretls=True)
            assert (caught.value.code, caught.value.status, caught.value.permanent) == (550, "5.7.30", True)
            return tls_only, plain

    tls_only, plain = run(scenario())
    assert tls_only.session.verbs() == ["EHLO", "STARTTLS", "EHLO", "QUIT"]
    assert plain.session.verbs() == ["EHLO", "QUIT"]


def test_requiretls_is_temporary_when_one_host_could_not_be_asked(certs: Certs) -> None:
    async def scenario() -> None:
        async with ScriptedPeer(tls=certs.server) as tls_only:
            await open_connection([at(tls_only.port, "localhost"), at(closed_port())], helo=HELO,
                                  tls=TlsPolicy(context=certs.trust), requiretls=True)

    with pytest.raises(ConnectFailure) as caught:
        run(scenario())
    assert (caught.value.code, caught.value.status, caught.value.permanent) == (421, "4.4.1", False)


def test_a_requiretls_peer_gets_requiretls_on_mail(certs: Certs) -> None:
    async def scenario() -> ScriptedPeer:
        async with ScriptedPeer(tls=certs.server, ehlo=("PIPELINING",),
                                ehlo_after_tls=("PIPELINING", "REQUIRETLS")) as peer:
            await deliver([at(peer.port, "localhost")], envelope("bob@example.net", requiretls=True),
                          tls=TlsPolicy(context=certs.trust), requiretls=True)
            return peer

    session = run(scenario()).session
    assert session.tls
    assert session.commands[3] == b"MAIL FROM:<alice@example.org> REQUIRETLS\r\n"


def test_a_requiretls_message_is_not_sent_over_a_session_without_requiretls() -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer() as peer:
            results = await deliver([at(peer.port)], envelope("bob@example.net", requiretls=True))
            return peer, results

    peer, results = run(scenario())
    assert [(r.code, r.status, r.permanent) for r in results] == [(550, "5.7.30", True)]
    assert "MAIL" not in peer.session.verbs()


def test_a_candidate_resolved_to_an_address_is_connected_there_and_verified_by_its_name(certs: Certs) -> None:
    async def scenario() -> tuple[ScriptedPeer, list[RecipientResult]]:
        async with ScriptedPeer(tls=certs.other_name) as peer:
            candidate = Candidate("elsewhere.test", peer.port, 10, address=LOOPBACK)
            results = await deliver([candidate], envelope("bob@example.net"),
                                    tls=TlsPolicy(required=True, verify=True, context=certs.trust_other))
            return peer, results

    peer, results = run(scenario())
    assert peer.session.tls
    assert [(r.delivered, r.host) for r in results] == [(True, "elsewhere.test")]


def test_a_host_that_never_greets_is_given_up_after_the_timeout_for_the_next() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    async def scenario() -> tuple[DeliveryConnection, ScriptedPeer]:
        mute = await asyncio.start_server(silent, LOOPBACK, 0)
        try:
            async with ScriptedPeer() as good:
                connection = await open_connection([at(mute.sockets[0].getsockname()[1]), at(good.port)],
                                                   helo=HELO, tls=TlsPolicy(), timeout=0.3)
                await connection.close()
                return connection, good
        finally:
            mute.close()

    connection, good = run(scenario())
    assert connection.port == good.port


def test_the_connection_comes_from_the_source_address_asked_for() -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with aiosmtpd_peer(recorder) as port:
            await deliver([at(port)], envelope("bob@example.net"), source_address="127.0.0.2")

    run(scenario())
    assert [message.peer[0] for message in recorder.messages] == ["127.0.0.2"]
