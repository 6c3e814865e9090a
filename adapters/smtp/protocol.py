"""One SMTP connection: aiosmtpd's connection, STARTTLS and command loop, with our
commands, limits and replies on top.

aiosmtpd brings the parts that are easy to get wrong and that it has fixed: CRLF-only
line ends in DATA (CVE-2024-27305, SMTP smuggling) and plaintext discarded after
STARTTLS (CVE-2024-34083, RFC 3207 §4.2). It has no relay policy, no connection or
error limits, no brute-force protection, rejects the RFC 3461 DSN parameters and turns
handler exceptions into ``500`` with the exception text. So MAIL, RCPT, DATA, AUTH and
EHLO are ours here; policy decisions are the handler's (``handler.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.config import Smtp as SmtpLimits
from adapters.connections import BUSY, ConnectionTable
from adapters.smtp import replies
from adapters.smtp.data_reader import DataReader
from adapters.smtp.paths import (
    Path,
    PathError,
    check_envid,
    check_notify,
    check_orcpt,
    check_ret,
    is_xtext,
    parse_path,
)
from domain.application.submission import RemoteRecipient

log = logging.getLogger(__name__)

#: Commands that do no work; a client sending many is stalling (Postfix junk commands).
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "HELP", "VRFY", "EXPN"})
#: Room under ``max_message_bytes`` for the header fields the intake pipeline adds.
ADDED_HEADER_ROOM = 8192
#: RFC 5321 §4.5.3.1.4: 512 octets a command line, plus room for the ESMTP parameters
#: of RFC 1870 (SIZE), RFC 3461 (ORCPT ≤ 500, ENVID ≤ 100), RFC 6531 and RFC 4954 (AUTH=).
COMMAND_LIMITS = {"MAIL": 1000, "RCPT": 1000, "AUTH": 1000}
#: Why ``DataReader`` refused a message, as the reply the client gets.
_DATA_REFUSALS = {
    "too big": replies.TOO_BIG,
    "line too long": replies.LINE_TOO_LONG,
    "bare line end": replies.BARE_LINE_END,
    "nul": replies.NUL_IN_MESSAGE,
}
DATA_CHUNK = 65536
#: The stream reader's limit. aiosmtpd uses its 1001-octet line limit here, which also
#: makes the reader pause and resume the socket for every 2 KB buffered: a syscall pair
#: and two loop callbacks per chunk of every message. Command lines are still held to
#: RFC 5321 §4.5.3.1.4 by the command-size check; longer ones are read and refused.
STREAM_BUFFER = 16384


@dataclass
class Listener:
    """What one listening socket is: MX or submission, and how TLS is reached."""

    name: str
    kind: str  # "mx" or "submission"
    implicit_tls: bool
    hostname: str
    limits: SmtpLimits
    max_message_bytes: int


class LedgerEnvelope(Envelope):
    """aiosmtpd's envelope plus what our transaction decided, recipient by recipient."""

    def __init__(self) -> None:
        super().__init__()
        self.has_sender = False
        self.local_recipients: list[str] = []
        self.remote_recipients: list[RemoteRecipient] = []
        self.ret: str | None = None
        self.envid: str | None = None
        self.requiretls = False


@dataclass
class SessionState:
    """Counters of one connection, for the limits."""

    errors: int = 0
    junk: int = 0
    before_auth: int = 0
    bytes_in: int = 0
    account_id: Any = None
    login: str = ""
    secure: bool = False
    tls_description: str = ""
    #: Names this connection in the audit envelope of what it stores (no client data).
    session_id: str = field(default_factory=lambda: uuid4().hex[:12])
    session_timer: asyncio.TimerHandle | None = None
    #: Re-armed every second while DATA runs (the minimum-rate check).
    rate_timer: asyncio.TimerHandle | None = None


class LedgerSMTP(SMTP):
    def __init__(self, handler: Any, listener: Listener, table: ConnectionTable,
                 tls_context: Any) -> None:
        self.listener = listener
        self.limits = listener.limits
        self.table = table
        self.state = SessionState(secure=listener.implicit_tls)
        self._admitted_ip: str | None = None
        self._greeted = False
        self._closing = False
        self._in_data = False
        self._data_started = 0.0
        self._data_bytes_at_start = 0
        self.committing = False
        self._init_session(handler, tls_context)

    def _init_session(self, handler: Any, tls_context: Any) -> None:
        """What ``SMTP.__init__`` sets up, without its per-connection introspection.

        aiosmtpd 1.4.6 runs ``inspect.getmembers`` on the session and the handler for every
        connection, to find ``auth_*`` and ``handle_*`` methods we do not use (our AUTH,
        EHLO, MAIL, RCPT and DATA call the handler directly). Measured under smtp-source it
        was a fifth of the server's CPU, so the command table is built once per class.
        The attributes mirror aiosmtpd 1.4.6 exactly (the version is pinned).
        """
        loop = asyncio.get_running_loop()
        self.__ident__ = "ESMTP ledgermail"
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=loop, limit=STREAM_BUFFER),
            client_connected_cb=self._cb_client_connected, loop=loop)
        self.event_handler = handler
        self.data_size_limit = max(self.listener.max_message_bytes - ADDED_HEADER_ROOM, 1024)
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        # An instance table: aiosmtpd's is a class attribute shared by every session.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit,
                                                           COMMAND_LIMITS)
        self.hostname = self.listener.hostname
        # Implicit TLS happens below us; STARTTLS only where the socket is plain.
        self.tls_context = None if self.listener.implicit_tls else tls_context
        self.require_starttls = bool(self.tls_context) and self.is_submission
        self._timeout_duration = self.limits.idle_timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = True
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = None
        self._auth_required = False
        self._auth_methods = {}
        self._handle_hooks = {}
        self._ehlo_hook_ver = None
        self._enforce_call_limit = False
        self._smtp_methods = _CommandTable(self)
        self._idle_deadline = 0.0

    def _create_envelope(self) -> LedgerEnvelope:
        return LedgerEnvelope()

    @property
    def is_submission(self) -> bool:
        return self.listener.kind == "submission"

    @property
    def peer_ip(self) -> str:
        return self._admitted_ip or ""

    # -- connection limits and deadlines -----------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None and self._original_transport is None
        if first:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else ""
            why = self.table.admit(ip)
            if why is not None:
                self._closing = True
                refusal = replies.SERVER_BUSY if why == BUSY else replies.TOO_MANY_CONNECTIONS
                transport.write(refusal.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._admitted_ip = ip
            self.table.open.add(self)
        super().connection_made(transport)
        if first:
            self.state.session_timer = self.loop.call_later(self.limits.session_timeout, self.close_with,
                                                            replies.SESSION_TOO_LONG)
            if self.listener.implicit_tls:
                self.state.tls_description = describe_tls(transport.get_extra_info("ssl_object"))
        elif self._tls_protocol is not None:
            self.state.secure = True
            ssl_object = self._tls_protocol._extra.get("ssl_object")  # noqa: SLF001
            self.state.tls_description = describe_tls(ssl_object)

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted_ip is None:
            return  # refused at the door: nothing was started
        for timer in (self.state.session_timer, self.state.rate_timer):
            if timer is not None:
                timer.cancel()
        if self in self.table.open:
            self.table.open.discard(self)
            self.table.release(self._admitted_ip)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._admitted_ip is None:
            return False
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        self.state.bytes_in += len(data)
        if self._in_data:
            # During DATA the idle deadline counts from the last byte, not the last
            # command; the minimum rate (below) catches a drip instead.
            self._reset_timeout()
        super().data_received(data)


    def close_with(self, reply: str) -> None:
        """Say why (one 421 line) and close, whatever the session is doing."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        log.info("%s closing %s: %s", self.listener.name, self.peer_ip, reply)
        with contextlib.suppress(Exception):  # the peer may be gone already
            self._writer.write(reply.encode() + b"\r\n")
        self.transport.close()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the idle deadline. aiosmtpd cancels and creates a timer on every command
        (and we would on every chunk of DATA); one timer per connection that re-arms
        itself when it fires early does the same work without the churn."""
        self._idle_deadline = self.loop.time() + (duration or self._timeout_duration)
        if self._timeout_handle is None:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
        else:
            self._timeout_cb()

    def _timeout_cb(self) -> None:
        self.close_with(replies.IDLE_TIMEOUT)

    def _check_data_rate(self) -> None:
        if not self._in_data or self._closing:
            return
        elapsed = time.monotonic() - self._data_started
        received = self.state.bytes_in - self._data_bytes_at_start
        if elapsed >= self.limits.data_rate_grace and received < self.limits.min_data_rate * elapsed:
            self.close_with(replies.DATA_TOO_SLOW)
            return
        self.state.rate_timer = self.loop.call_later(1.0, self._check_data_rate)

    # -- replies -----------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        if self._closing:
            return
        if isinstance(status, bytes):
            await super().push(status)
            return
        if not self._greeted:
            self._greeted = True  # the 220 greeting carries no enhanced code (RFC 2034 §3)
            await super().push(status)
            return
        status = replies.with_enhanced_code(status)
        if replies.is_error(status) and not status.startswith("421"):
            self.state.errors += 1
            if self.state.errors > self.limits.soft_errors:
                await asyncio.sleep(self.limits.error_delay)
            if self.state.errors >= self.limits.max_errors:
                await super().push(status)
                self.close_with(replies.TOO_MANY_ERRORS)
                return
        await super().push(status)

    async def push_raw(self, status: str) -> None:
        if not self._closing:
            await super().push(status)

    # -- the command gate ----------------------------------------------------------------

    async def run_command(self, name: str, arg: str | None) -> None:
        """Every command passes here: the junk and before-AUTH limits, then the command."""
        if self._closing:
            return
        if name in JUNK_COMMANDS:
            self.state.junk += 1
            if self.state.junk > self.limits.max_junk_commands:
                self.close_with(replies.TOO_MANY_COMMANDS)
                return
        if self.is_submission and not self.session.authenticated and name != "QUIT":
            self.state.before_auth += 1
            if self.state.before_auth > self.limits.max_commands_before_auth:
                self.close_with(replies.TOO_MANY_COMMANDS)
                return
        await getattr(self, f"smtp_{name}")(arg)

    # -- HELO / EHLO (RFC 5321 §4.1.1.1) -----------------------------------------------

    async def _greeted_as(self, hostname: str | None, *, extended: bool) -> bool:
        """Check the client's name and start a new session state (RFC 5321 §4.1.4)."""
        if not (hostname and hostname.isprintable() and len(hostname) <= 255 and " " not in hostname.strip()):
            await self.push(replies.EHLO_SYNTAX if extended else replies.HELO_SYNTAX)
            return False
        self._set_rset_state()
        self.session.extended_smtp = extended
        self.session.host_name = hostname
        return True

    async def smtp_HELO(self, hostname: str | None) -> None:
        if await self._greeted_as(hostname, extended=False):
            await self.push_raw(f"250 {self.hostname}")

    async def smtp_EHLO(self, hostname: str | None) -> None:
        if not await self._greeted_as(hostname, extended=True):
            return
        lines = [
            self.hostname,
            "PIPELINING",  # RFC 2920
            f"SIZE {self.data_size_limit}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "DSN",  # RFC 3461
        ]
        if self.tls_context is not None and not self.state.secure:
            lines.append("STARTTLS")  # RFC 3207
        if self.is_submission and self.state.secure and not self.session.authenticated:
            lines.append("AUTH PLAIN LOGIN")  # RFC 4954, only inside TLS
        if self.is_submission and self.state.secure:
            lines.append("REQUIRETLS")  # RFC 8689 §4.1: offered only over TLS
        # One write for the whole reply (RFC 5321 §4.2.1 multiline form).
        await self.push_raw("\r\n".join([*(f"250-{line}" for line in lines[:-1]), f"250 {lines[-1]}"]))

    # -- STARTTLS (RFC 3207) -------------------------------------------------------------

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if self.state.secure:
            # RFC 3207 §4.2: once TLS is up STARTTLS is no longer offered. aiosmtpd would
            # answer 220 and start TLS inside TLS, which fails with an exception and drops
            # the connection; implicit TLS would get "454 TLS not available" (a 4xx:
            # "try again later"). Refuse it and carry on, as Postfix does.
            await self.push(replies.TLS_ALREADY_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

    # -- MAIL (RFC 5321 §4.1.1.2) --------------------------------------------------------

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed("EHLO"):
            return
        if self.is_submission and not self.session.authenticated:
            await self.push(replies.AUTH_REQUIRED)
            return
        envelope: LedgerEnvelope = self.envelope
        if envelope.has_sender:
            await self.push(replies.NESTED_MAIL)
            return
        try:
            _require_utf8(arg)
            path = parse_path(arg, "FROM:", utf8_allowed=True)
            # Checked on a scratch envelope: a refused MAIL must leave no RET or ENVID
            # behind for the next transaction.
            accepted = LedgerEnvelope()
            self._check_mail_params(path, accepted)
        except PathError as error:
            await self.push(self._path_error_reply(error, replies.BAD_SENDER_SYNTAX))
            return
        if not self.session.extended_smtp and path.params:
            await self.push(replies.MAIL_SYNTAX)
            return
        status = await self.event_handler.handle_MAIL(self, self.session, envelope, path)
        if status.startswith("250"):
            envelope.has_sender = True
            envelope.mail_from = path.address
            envelope.smtp_utf8 = "SMTPUTF8" in path.params
            envelope.ret, envelope.envid = accepted.ret, accepted.envid
            envelope.requiretls = accepted.requiretls
        await self.push(status)

    def _check_mail_params(self, path: Path, envelope: LedgerEnvelope) -> None:
        params = dict(path.params)
        if not path.address.isascii() and "SMTPUTF8" not in params:
            raise PathError("utf8")
        if "SMTPUTF8" in params and params.pop("SMTPUTF8") is not None:
            raise PathError("parameter", "SMTPUTF8 takes no value")
        size = params.pop("SIZE", None)
        if size is not None:
            # isascii: str.isdigit() also holds for "²" and other digits int() refuses.
            if not (size.isascii() and size.isdigit()) or len(size) > 20:
                raise PathError("parameter", "SIZE")
            if int(size) > self.data_size_limit:
                raise PathError("size")
        body = params.pop("BODY", None)  # RFC 6152: accepted; the bytes are stored as they come
        if body is not None and body.upper() not in ("7BIT", "8BITMIME"):
            raise PathError("parameter", "BODY")
        if "RET" in params:
            envelope.ret = check_ret(params.pop("RET"))
        if "ENVID" in params:
            envelope.envid = check_envid(params.pop("ENVID"))
        if "REQUIRETLS" in params:
            # RFC 8689 §4.1: only on a TLS session of a server that offered it (we relay
            # only submissions); it takes no value.
            if not (self.is_submission and self.state.secure) or params.pop("REQUIRETLS") is not None:
                raise PathError("parameter", "REQUIRETLS")
            envelope.requiretls = True
        auth = params.pop("AUTH", None)  # RFC 4954 §5: accepted, not trusted
        if auth is not None and auth != "<>" and not is_xtext(auth):
            raise PathError("parameter", "AUTH")
        if params:
            raise PathError("unknown", ",".join(params))

    def _path_error_reply(self, error: PathError, bad_address: str) -> str:
        if error.reason == "utf8":
            return replies.UTF8_ADDRESS_WITHOUT_SMTPUTF8
        if error.reason == "size":
            return replies.TOO_BIG_DECLARED
        if error.reason == "unknown":
            return replies.PARAMETERS_UNKNOWN
        if error.reason == "parameter":
            return replies.BAD_PARAMETER
        if error.reason == "length":
            return f"{bad_address} (too long)"
        return bad_address

    # -- RCPT (RFC 5321 §4.1.1.3) --------------------------------------------------------

    async def _in_transaction(self) -> LedgerEnvelope | None:
        """The envelope, once EHLO and MAIL came; else None, after saying what is missing."""
        if await self.check_helo_needed("EHLO"):
            return None
        envelope: LedgerEnvelope = self.envelope
        if not envelope.has_sender:
            await self.push(replies.NEED_MAIL)
            return None
        return envelope

    async def smtp_RCPT(self, arg: str | None) -> None:
        envelope = await self._in_transaction()
        if envelope is None:
            return
        try:
            _require_utf8(arg)
            path = parse_path(arg, "TO:", utf8_allowed=envelope.smtp_utf8)
            if not path.address:
                raise PathError("syntax", "empty recipient")
            notify = check_notify(path.params["NOTIFY"]) if "NOTIFY" in path.params else []
            orcpt = check_orcpt(path.params["ORCPT"]) if "ORCPT" in path.params else None
            unknown = set(path.params) - {"NOTIFY", "ORCPT"}
            if unknown:
                raise PathError("unknown", ",".join(unknown))
        except PathError as error:
            await self.push(self._path_error_reply(error, replies.BAD_RECIPIENT_SYNTAX))
            return
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            # RFC 5321 §4.5.3.1.10: a temporary failure, so the client sends the rest later.
            await self.push(replies.TOO_MANY_RECIPIENTS)
            return
        status = await self.event_handler.handle_RCPT(self, self.session, envelope, path, notify, orcpt)
        if status.startswith("250"):
            envelope.rcpt_tos.append(path.address)
        await self.push(status)

    # -- DATA (RFC 5321 §4.1.1.4) --------------------------------------------------------

    async def smtp_DATA(self, arg: str | None) -> None:
        envelope = await self._in_transaction()
        if envelope is None:
            return
        if not envelope.rcpt_tos:
            await self.push(replies.NEED_RCPT)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        await self.push_raw("354 End data with <CR><LF>.<CR><LF>")
        self._in_data = True
        self._data_started = time.monotonic()
        self._data_bytes_at_start = self.state.bytes_in
        self._check_data_rate()
        try:
            outcome, raw = await self._read_data()
        finally:
            self._in_data = False
        if outcome is not None:
            self._set_post_data_state()
            await self.push(outcome)
            return
        envelope.original_content = envelope.content = raw
        self.committing = True
        try:
            status = await self.event_handler.handle_DATA(self, self.session, envelope)
        finally:
            self.committing = False
        self._set_post_data_state()
        if status.startswith("250"):
            # The error and junk limits are for clients that deliver nothing. Postfix
            # (smtpd.c data_cmd) "forgive[s] any previous client errors when a message
            # was received successfully" and resets its junk count too; without that a
            # relay sending a long batch (RSET between messages, some unknown
            # recipients) would be cut off with 421 half way through.
            self.state.errors = 0
            self.state.junk = 0
        await self.push(status)

    async def _read_data(self) -> tuple[str | None, bytes]:
        """Read to the end of data in chunks, bounded by the size limit; the reason to
        refuse, or None and the message (``data_reader.py`` has the rules)."""
        reader = DataReader(self.data_size_limit)
        stream = self._reader
        while self.transport is not None and not reader.done:
            chunk = await stream.read(DATA_CHUNK)
            if not chunk:
                return replies.LOCAL_ERROR, b""  # the client went away
            reader.feed(chunk)
        if reader.leftover:
            # Pipelined commands after the end go back for the command loop.
            stream._buffer[0:0] = reader.leftover  # noqa: SLF001
        problem, raw = reader.result()
        return (_DATA_REFUSALS[problem], b"") if problem else (None, raw)

    # -- AUTH (RFC 4954) ----------------------------------------------------------------

    async def smtp_AUTH(self, arg: str | None) -> None:
        if not self.is_submission:
            await self.push(replies.AUTH_NOT_HERE)
            return
        if await self.check_helo_needed("EHLO"):
            return
        if not self.state.secure:
            await self.push(replies.ENCRYPTION_REQUIRED)
            return
        if self.session.authenticated:
            await self.push(replies.ALREADY_AUTHENTICATED)
            return
        if self.envelope.has_sender:
            # RFC 4954 §4: AUTH is not permitted during a mail transaction.
            await self.push(replies.AUTH_IN_TRANSACTION)
            return
        words = (arg or "").split()
        if not 1 <= len(words) <= 2:
            await self.push(replies.AUTH_SYNTAX)
            return
        mechanism = words[0].upper()
        initial = words[1] if len(words) == 2 else None
        if mechanism == "PLAIN":
            credentials = await self._auth_plain(initial)
        elif mechanism == "LOGIN":
            credentials = await self._auth_login(initial)
        else:
            await self.push(replies.AUTH_UNKNOWN_MECHANISM)
            return
        if credentials is None:
            return  # the reason was sent
        login, password = credentials
        status = await self.event_handler.authenticate(self, self.session, login, password)
        await self.push(status)

    async def _response(self, challenge: bytes, initial: str | None) -> bytes | None:
        """One client response (base64), or None after sending why not."""
        if initial is not None:
            # surrogateescape: bytes that were not UTF-8 give the 501 below, not an exception.
            text = initial.encode("utf-8", "surrogateescape")
        else:
            await self.push_raw("334 " + base64.b64encode(challenge).decode())
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as error:
                # Read past the whole line first: left in the buffer, its rest would be
                # taken as the next command and answered too (one line, two replies).
                await self._discard_line(error.consumed)
                await self.push(replies.AUTH_BAD_BASE64)
                return None
            except asyncio.IncompleteReadError:
                await self.push(replies.AUTH_BAD_BASE64)
                return None
            text = line.strip()
            if len(line) > COMMAND_LIMITS["AUTH"]:
                await self.push(replies.AUTH_BAD_BASE64)  # longer than any credential we take
                return None
        if text == b"*":
            await self.push(replies.AUTH_ABORTED)  # RFC 4954 §4
            return None
        if text == b"=":
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            await self.push(replies.AUTH_BAD_BASE64)
            return None

    async def _discard_line(self, consumed: int) -> None:
        """Drop an over-long line up to and including its LF."""
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                await self._reader.read(consumed)
                try:
                    await self._reader.readuntil(b"\n")
                    return
                except asyncio.LimitOverrunError as error:
                    consumed = error.consumed

    async def _auth_plain(self, initial: str | None) -> tuple[str, str] | None:
        # RFC 4616: [authzid] NUL authcid NUL passwd
        decoded = await self._response(b"", initial)
        if decoded is None:
            return None
        parts = decoded.split(b"\x00")
        if len(parts) != 3:
            await self.push(replies.AUTH_FAILED)
            return None
        authzid, login, password = parts
        if authzid and authzid != login:
            await self.push(replies.AUTH_FAILED)  # no proxy authorization
            return None
        return _text(login), _text(password)

    async def _auth_login(self, initial: str | None) -> tuple[str, str] | None:
        login = await self._response(b"Username:", initial)
        if login is None:
            return None
        password = await self._response(b"Password:", None)
        if password is None:
            return None
        return _text(login), _text(password)

    # -- the rest ------------------------------------------------------------------------

    async def smtp_VRFY(self, arg: str | None) -> None:
        await self.push(replies.VRFY_DISABLED)  # no address harvesting (Postfix disable_vrfy_command)

    async def smtp_EXPN(self, arg: str | None) -> None:
        await self.push(replies.EXPN_DISABLED)

    async def smtp_HELP(self, arg: str | None) -> None:
        await self.push(replies.HELP)

    async def handle_exception(self, error: Exception) -> str:
        return await self.event_handler.handle_exception(error)


def _require_utf8(arg: str | None) -> None:
    """aiosmtpd decodes arguments as UTF-8 with surrogateescape, so a byte that was not
    UTF-8 arrives as a lone surrogate, which no later ``encode()`` accepts. That is the
    client's syntax error (RFC 6531 §3.3: addresses are UTF-8), not a local fault (451)."""
    if arg is not None:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise PathError("syntax", "not UTF-8") from None


class _CommandTable:
    """What aiosmtpd's command loop looks commands up in (``_smtp_methods.get``): each
    command routed through ``run_command``, the names found once per class."""

    _names: dict[type, frozenset[str]] = {}

    def __init__(self, session: LedgerSMTP) -> None:
        cls = type(session)
        if cls not in self._names:
            self._names[cls] = frozenset(m.removeprefix("smtp_") for m in dir(cls) if m.startswith("smtp_"))
        self._known = self._names[cls]
        self._session = session

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self._known:
            return default
        return functools.partial(self._session.run_command, name)


def _text(value: bytes) -> str:
    """Credentials as text; invalid UTF-8 becomes text that matches no account."""
    return value.decode("utf-8", "replace")


def describe_tls(ssl_object: Any) -> str:
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    return f"{ssl_object.version()} with cipher {cipher[0] if cipher else 'unknown'}"


__all__ = ["LedgerEnvelope", "LedgerSMTP", "Listener", "Session"]
