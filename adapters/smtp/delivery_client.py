"""Outbound SMTP: a session with the first of a route's hosts that will take mail, and
mail transactions on it (RFC 5321 §3.3, §5.1).

``open_connection`` walks the candidates in order and returns a ``DeliveryConnection``
that has been greeted, said EHLO and, whenever the peer offered it, STARTTLS (RFC 3207).
``DeliveryConnection.send`` runs one transaction and returns one ``RecipientResult`` per
recipient; the queue worker decides from those what is delivered, deferred or bounced.
Nothing here raises for a network problem: a host that cannot be used is skipped, and
when none can, ``ConnectFailure`` says why; trouble during a transaction becomes results.

The work is split between aiosmtplib and this module:

- aiosmtplib opens the session: the TCP connection, the greeting, EHLO/HELO and the
  STARTTLS handshake, where it discards plaintext buffered after the ``220`` (RFC 3207
  §4.2, CVE-2011-0411) and resets what EHLO said.
- The transaction is ours, on the same transport (``_Wire``). aiosmtplib's
  ``SMTPProtocol`` parses at most one reply per ``data_received`` call and drops bytes
  that arrive while a parsed reply waits to be picked up, so the replies to a pipelined
  group (RFC 2920 §3.1), which usually arrive in one segment, would be lost (measured
  with 5.1.3: the second of two replies in one segment never arrives). Its ``data()``
  also normalizes line ends and dot-stuffs by itself; we write the DATA bytes ourselves
  (``data_bytes``), so that happens exactly once.

Every ``text`` in a result or a ``ConnectFailure`` is the reply's text without its code
(what ``dsn.status_from_reply`` reads the enhanced status from), flattened to one line
of printable characters; synthesized texts start with their enhanced status too, so
``f"{code} {text}"`` is always a well-formed diagnostic.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple, cast

import aiosmtplib

from adapters.smtp.dsn import status_from_reply
from adapters.smtp.routing import Candidate

#: Reply lines longer than this end the session: RFC 5321 §4.5.3.1.5 allows 512 octets,
#: real servers stay far below; more is a broken or hostile peer.
MAX_REPLY_LINE = 8192
#: A whole (multiline) reply.
MAX_REPLY = 65536
#: Replies received and not yet asked for: a pipelined group has one per command; a
#: peer sending far more is flooding us.
MAX_UNREAD_REPLIES = 5000
#: Reply text kept in a result (Postfix keeps a few hundred characters).
MAX_TEXT = 500
#: The message goes out in blocks of this size, each within ``timeout`` (RFC 5321
#: §4.5.3.2.5 times each data block, not the whole message).
SEND_BLOCK = 65536
#: Seconds a QUIT may take before the connection is closed anyway.
QUIT_TIMEOUT = 5.0
#: Seconds to wait for the transport to finish closing before aborting it.
CLOSE_TIMEOUT = 2.0
#: RFC 3461 §4.4 and §4.2: the longest ENVID and ORCPT values.
MAX_ENVID = 100
MAX_ORCPT = 500
#: RFC 3461 §4.1: the NOTIFY words.
NOTIFY_WORDS = ("SUCCESS", "FAILURE", "DELAY")

# Replies this module makes up (code, enhanced status), named as DESIGN §5 asks.
#: RFC 3463 X.4.1: no answer from host.
NO_ANSWER = (421, "4.4.1")
#: RFC 3463 X.4.2: bad connection (lost, timed out) once the host had answered.
CONNECTION_LOST = (451, "4.4.2")
#: RFC 3463 X.5.0: the peer broke the protocol (a reply that cannot follow the command).
PROTOCOL_ERROR = (451, "4.5.0")
#: RFC 3463 X.7.4: security features not supported (no STARTTLS where TLS is required).
TLS_NOT_OFFERED = (421, "4.7.4")
#: RFC 3463 X.7.5: cryptographic failure (handshake or certificate verification).
TLS_FAILED = (421, "4.7.5")
#: RFC 8689 §5: REQUIRETLS support required.
REQUIRETLS_UNSUPPORTED = (550, "5.7.30")
#: RFC 1870 §6.1 with RFC 3463 X.3.4: message too big for system.
TOO_BIG = (552, "5.3.4")
#: RFC 6531 §3.2 with the status it registers (X.6.7): non-ASCII addresses not permitted.
UTF8_UNSUPPORTED = (553, "5.6.7")
#: RFC 5321 §4.1.2 with RFC 3463 X.1.3 / X.1.7: an address we will not put on the wire.
BAD_RECIPIENT = (553, "5.1.3")
BAD_SENDER = (553, "5.1.7")

_LINE_END = re.compile(rb"\r\n|\r|\n")
_DOT_AT_LINE_START = re.compile(rb"^\.", re.MULTILINE)
#: RFC 5321 §4.2: Reply-code (first digit 2-5), then "-" (more lines follow), SP or end.
_REPLY_LINE = re.compile(rb"[2-5][0-9][0-9](?:[ -]|\Z)")
#: Characters never kept in a reply text: C0 and C1 controls, DEL, line and paragraph
#: separators and the bidirectional overrides (as ``dsn._UNSAFE``).
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: What may never appear in an address we write into MAIL or RCPT: line ends and other
#: controls would start a new command (SMTP smuggling), angle brackets end the path, and
#: lone surrogates have no UTF-8 form.
_UNSAFE_ADDRESS = re.compile("[\x00-\x1f\x7f<>\ud800-\udfff]")
#: RFC 3461 §4: xtext, with hexchar "+" and two upper-case hex digits.
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")


# --- the public values ----------------------------------------------------------------


@dataclass(frozen=True)
class OutboundRecipient:
    address: str
    #: RFC 3461 NOTIFY values, e.g. ("FAILURE", "DELAY") or ("NEVER",); empty = not given.
    notify: tuple[str, ...] = ()
    #: RFC 3461 ORCPT value as received, e.g. "rfc822;bob@example.org".
    orcpt: str | None = None


@dataclass(frozen=True)
class OutboundEnvelope:
    #: "" is the null reverse-path (bounces).
    mail_from: str
    recipients: tuple[OutboundRecipient, ...]
    #: "FULL" or "HDRS" (RFC 3461 §4.3).
    ret: str | None = None
    #: The decoded ENVID (RFC 3461 §4.4); written as xtext.
    envid: str | None = None
    #: RFC 6531: say SMTPUTF8 on MAIL when the peer offers it.
    smtp_utf8: bool = False
    #: RFC 8689: say REQUIRETLS on MAIL; only sent over a session that offers it.
    requiretls: bool = False


@dataclass(frozen=True)
class TlsPolicy:
    #: No plaintext: STARTTLS must be offered and succeed (MTA-STS enforce, REQUIRETLS).
    required: bool = False
    #: Verify the MX host's chain and name; otherwise opportunistic, no verification.
    verify: bool = False
    #: The trust store when ``verify`` (default: ``ssl.create_default_context()``).
    context: ssl.SSLContext | None = None


class RecipientResult(NamedTuple):
    """What became of one recipient in one transaction."""

    address: str
    #: The SMTP reply code the peer gave, or one this module made up (see the constants).
    code: int
    #: RFC 3463 enhanced status: the reply's own, else ``class.0.0``.
    status: str
    #: The reply text without its code, one line, at most ``MAX_TEXT`` characters.
    text: str
    #: The host that answered ("" if none).
    host: str

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300


class ConnectFailure(Exception):
    """No candidate could take a transaction. Permanent only when every candidate lacked
    REQUIRETLS for a message that requires it (5.7.30); otherwise a 4xx to retry."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.status = status
        self.text = text

    @property
    def permanent(self) -> bool:
        return self.code >= 500


# --- the bytes of a message -----------------------------------------------------------


def normalized(message: bytes) -> bytes:
    """The message as the peer will store it: every line ending in CRLF, bare LF and bare
    CR included (RFC 5321 §2.3.8: CR and LF only ever appear together), and a final CRLF
    when the message lacks one. Bare line ends sent as they are would let the message
    end, for a lax receiver, where we did not mean it to (SMTP smuggling)."""
    content = _LINE_END.sub(b"\r\n", message)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content


def data_bytes(message: bytes) -> bytes:
    """What goes on the wire after ``354``: the normalized message, dot-stuffed (RFC 5321
    §4.5.2: a line that starts with "." gets one more), then ``.CRLF``, which after the
    message's own final CRLF makes the CRLF.CRLF end of data (RFC 5321 §4.1.1.4)."""
    return _stuffed(normalized(message))


def _stuffed(content: bytes) -> bytes:
    return _DOT_AT_LINE_START.sub(b"..", content) + b".\r\n"


# --- replies ----------------------------------------------------------------------------


class _Reply(NamedTuple):
    code: int
    text: str


def _clean(text: str) -> str:
    """One line of printable text, capped: reply text ends up in bounces and logs."""
    return " ".join(_UNSAFE_TEXT.sub(" ", text).split())[:MAX_TEXT]


def _made_up(code_status: tuple[int, str], detail: str) -> _Reply:
    code, status = code_status
    return _Reply(code, _clean(f"{status} {detail}"))


def _as_failure(reply: _Reply) -> _Reply:
    """A refusal as it stands, or, when the peer answered something that cannot be a
    refusal here (a 2xx to DATA, a 3xx to RCPT), a temporary protocol error: a reply
    out of sequence never counts as delivered."""
    if reply.code // 100 in (4, 5):
        return reply
    return _made_up(PROTOCOL_ERROR, f"Unexpected reply: {reply.code} {reply.text}")


class _Lost(Exception):
    """The connection ended, timed out or spoke nonsense: no more replies will come."""


class _Wire(asyncio.Protocol):
    """The session's transport after aiosmtplib has opened it: bytes out, SMTP replies in,
    every reply kept, in order, however the peer's bytes were split (RFC 2920 §3.1)."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._size = 0
        self._replies: deque[_Reply] = deque()
        self._arrived = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._gone = asyncio.get_running_loop().create_future()
        self._ended: str | None = None
        transport.set_protocol(self)
        if transport.is_closing():
            self._end("connection closed")

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._ended is not None:
            return
        self._buffer += data
        while (end := self._buffer.find(b"\n")) != -1:
            line = bytes(self._buffer[:end]).removesuffix(b"\r")
            del self._buffer[: end + 1]
            if not self._take(line):
                return
        if len(self._buffer) > MAX_REPLY_LINE:
            self._end("reply line too long")

    def eof_received(self) -> bool:
        self._end("connection closed by the peer")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost ({exc})" if exc else "connection closed by the peer")
        if not self._gone.done():
            self._gone.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ours

    @property
    def open(self) -> bool:
        """Connected, and no reply waiting that nobody asked for (RFC 5321 §3.8: a server
        may send 421 and close at any time)."""
        return self._ended is None and not self._replies

    async def send(self, data: bytes) -> None:
        """Write ``data``, block by block, each taken by the transport within the timeout."""
        for start in range(0, len(data), SEND_BLOCK):
            if self._ended is not None:
                raise _Lost(self._ended)
            self._transport.write(data[start : start + SEND_BLOCK])
            try:
                async with asyncio.timeout(self._timeout):
                    await self._writable.wait()
            except TimeoutError:
                self._end("timed out sending")
        if self._ended is not None:
            raise _Lost(self._ended)

    async def reply(self) -> _Reply:
        """The next reply, in order; ``_Lost`` when none will come within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                while not self._replies:
                    if self._ended is not None:
                        raise _Lost(self._ended)
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            self._end("timed out waiting for a reply")
            raise _Lost(self._ended) from None
        return self._replies.popleft()

    async def command(self, line: bytes) -> _Reply:
        await self.send(line)
        return await self.reply()

    async def close(self) -> None:
        self._end("closed")
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self._gone)
        except TimeoutError:
            self._transport.abort()

    def _take(self, line: bytes) -> bool:
        """One reply line (RFC 5321 §4.2.1); a reply is complete at its line without "-"."""
        self._size += len(line)
        if len(line) > MAX_REPLY_LINE or self._size > MAX_REPLY or not _REPLY_LINE.match(line):
            self._end("malformed reply from the peer")
            return False
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if line[3:4] == b"-":
            return True
        self._replies.append(_Reply(int(line[:3]), _clean(" ".join(self._lines))))
        self._lines, self._size = [], 0
        if len(self._replies) > MAX_UNREAD_REPLIES:
            self._end("too many replies from the peer")
            return False
        self._arrived.set()
        return True

    def _end(self, why: str) -> None:
        if self._ended is None:
            self._ended = why
        self._arrived.set()
        self._writable.set()
        self._transport.close()


# --- a delivery session ---------------------------------------------------------------


class DeliveryConnection:
    """An SMTP session that is ready for mail: greeted, EHLO (or HELO) said, TLS when it
    could be had. ``send`` runs one transaction at a time; the session can carry more
    than one (RFC 5321 §3.3) while ``usable``."""

    def __init__(self, candidate: Candidate, wire: _Wire, extensions: Mapping[str, str],
                 tls_version: str | None) -> None:
        self.host = candidate.host
        self.port = candidate.port
        self._candidate = candidate
        self.tls_version = tls_version
        self._params = {keyword.upper(): value for keyword, value in extensions.items()}
        self.extensions = frozenset(self._params)
        self._wire = wire
        self._busy = asyncio.Lock()

    async def __aenter__(self) -> DeliveryConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def usable(self) -> bool:
        """Still connected and fit for another transaction."""
        return self._wire.open

    async def send(self, envelope: OutboundEnvelope, message: bytes) -> list[RecipientResult]:
        """One transaction: one result per recipient, in the envelope's order. Only a 2xx
        reply to the end of data, actually read, makes a recipient delivered."""
        async with self._busy:
            if not envelope.recipients:
                return []
            content = normalized(message)
            refusal = self._refusal(envelope, content)
            if refusal is None and not self.usable:
                refusal = _made_up(CONNECTION_LOST, f"Connection with {self._where} is no longer usable")
            if refusal is not None:
                return [self._result(r.address, refusal) for r in envelope.recipients]
            return await self._transaction(envelope, content)

    async def close(self) -> None:
        """QUIT politely (RFC 5321 §4.1.1.10), then close. Never raises."""
        with contextlib.suppress(Exception):
            if self._wire.open:
                async with asyncio.timeout(QUIT_TIMEOUT):
                    await self._wire.command(b"QUIT\r\n")
        with contextlib.suppress(Exception):
            await self._wire.close()

    # -- before MAIL -------------------------------------------------------------------

    def _refusal(self, envelope: OutboundEnvelope, content: bytes) -> _Reply | None:
        """A reason not to start the transaction at all, for every recipient: what this
        peer said in EHLO already rules the message out."""
        if envelope.requiretls and "REQUIRETLS" not in self.extensions:
            # RFC 8689 §4.2.1: such a message goes only over a session offering REQUIRETLS.
            return _made_up(REQUIRETLS_UNSUPPORTED, f"{self._where} does not offer REQUIRETLS")
        if _needs_utf8(envelope, content) and "SMTPUTF8" not in self.extensions:
            # RFC 6531 §3.2: no downgrade here; the message cannot go to this peer.
            return _made_up(UTF8_UNSUPPORTED, f"{self._where} does not support SMTPUTF8, "
                                              "which this message needs")
        limit = self._size_limit
        if limit and len(content) > limit:
            # RFC 1870 §6.1: the peer told us its fixed maximum; do not send what exceeds it.
            return _made_up(TOO_BIG, f"Message of {len(content)} octets exceeds the "
                                     f"{limit}-octet limit of {self._where}")
        if _UNSAFE_ADDRESS.search(envelope.mail_from):
            return _made_up(BAD_SENDER, "Bad sender address syntax")
        return None

    @property
    def _size_limit(self) -> int:
        """RFC 1870 §4: "SIZE n" in EHLO; 0 or no number means no fixed maximum."""
        value = self._params.get("SIZE", "").strip()
        return int(value) if value.isascii() and value.isdigit() else 0

    # -- the transaction (RFC 5321 §3.3) -------------------------------------------------

    async def _transaction(self, envelope: OutboundEnvelope, content: bytes) -> list[RecipientResult]:
        recipients = envelope.recipients
        results: list[RecipientResult | None] = [
            self._result(r.address, _made_up(BAD_RECIPIENT, "Bad recipient address syntax"))
            if _UNSAFE_ADDRESS.search(r.address) else None
            for r in recipients
        ]
        pending = [index for index, result in enumerate(results) if result is None]
        if not pending:
            return cast(list[RecipientResult], results)

        def settle(indexes: list[int], reply: _Reply) -> None:
            for index in indexes:
                results[index] = self._result(recipients[index].address, reply)

        utf8 = "SMTPUTF8" in self.extensions and (envelope.smtp_utf8 or _needs_utf8(envelope, content))
        mail = self._mail_command(envelope, content, utf8)
        rcpts = [self._rcpt_command(recipients[index], utf8) for index in pending]
        stage = "while sending the envelope"
        try:
            mail_reply, rcpt_replies, data_reply = await self._envelope(mail, rcpts)
            if mail_reply.code // 100 != 2:
                # RFC 5321 §4.1.1.2: a refused MAIL refuses the message for everyone.
                settle(pending, _as_failure(mail_reply))
                await self._abort(data_reply)
                return cast(list[RecipientResult], results)
            accepted = []
            for index, reply in zip(pending, rcpt_replies, strict=True):
                if reply.code // 100 == 2:
                    accepted.append(index)
                else:  # RFC 5321 §4.1.1.3: each recipient has its own answer.
                    settle([index], _as_failure(reply))
            if not accepted or data_reply is None or data_reply.code != 354:
                if accepted and data_reply is not None:
                    settle(accepted, _as_failure(data_reply))
                await self._abort(data_reply)
                return cast(list[RecipientResult], results)
            stage = "while sending the message"
            await self._wire.send(_stuffed(content))
            stage = "while waiting for the reply to the end of data"
            final = await self._wire.reply()
            # RFC 5321 §4.1.1.4: the reply to the end of data is every accepted recipient's.
            settle(accepted, final if final.code // 100 in (2, 4, 5) else _as_failure(final))
        except _Lost as lost:
            unsettled = [index for index, result in enumerate(results) if result is None]
            settle(unsettled, _made_up(CONNECTION_LOST, f"Lost connection with {self._where} "
                                                        f"{stage}: {lost}"))
        return cast(list[RecipientResult], results)

    async def _envelope(self, mail: bytes, rcpts: list[bytes]) -> tuple[_Reply, list[_Reply], _Reply | None]:
        """MAIL, the RCPTs and DATA, with the reply to each (None: not sent).

        With PIPELINING they go as one group with DATA last (RFC 2920 §3.1) and every
        reply is read, whatever the earlier ones said. Without it each waits for its reply
        (RFC 5321 §4.3.1), and nothing is sent after a refused MAIL or once no RCPT has
        been accepted."""
        if "PIPELINING" in self.extensions:
            await self._wire.send(mail + b"".join(rcpts) + b"DATA\r\n")
            mail_reply = await self._wire.reply()
            rcpt_replies = [await self._wire.reply() for _ in rcpts]
            return mail_reply, rcpt_replies, await self._wire.reply()
        mail_reply = await self._wire.command(mail)
        if mail_reply.code // 100 != 2:
            return mail_reply, [], None
        rcpt_replies = [await self._wire.command(rcpt) for rcpt in rcpts]
        if not any(reply.code // 100 == 2 for reply in rcpt_replies):
            return mail_reply, rcpt_replies, None
        return mail_reply, rcpt_replies, await self._wire.command(b"DATA\r\n")

    async def _abort(self, data_reply: _Reply | None) -> None:
        """End a transaction that sends no message, leaving the session clean for the next.

        RFC 2920 §3.1: a server may answer the pipelined DATA with 354 even though no
        recipient was accepted; then the client sends only the terminating dot. Then RSET
        (RFC 5321 §4.1.1.5); a session that cannot even reset is not reused."""
        if data_reply is not None and data_reply.code == 354:
            await self._wire.command(b".\r\n")
        reset = await self._wire.command(b"RSET\r\n")
        if reset.code // 100 != 2:
            await self._wire.close()

    def _mail_command(self, envelope: OutboundEnvelope, content: bytes, utf8: bool) -> bytes:
        params = []
        if "SIZE" in self.extensions:
            params.append(f"SIZE={len(content)}")  # RFC 1870 §3: the size as transmitted
        if "8BITMIME" in self.extensions and not content.isascii():
            params.append("BODY=8BITMIME")  # RFC 6152 §3
        if utf8:
            params.append("SMTPUTF8")  # RFC 6531 §3.4
        if "DSN" in self.extensions:
            ret = (envelope.ret or "").upper()
            if ret in ("FULL", "HDRS"):
                params.append(f"RET={ret}")  # RFC 3461 §4.3
            envid = xtext(envelope.envid) if envelope.envid else ""
            if envid and len(envid) <= MAX_ENVID:
                params.append(f"ENVID={envid}")  # RFC 3461 §4.4
        if envelope.requiretls:
            params.append("REQUIRETLS")  # RFC 8689 §4.1
        return _command("MAIL FROM:", envelope.mail_from, params, utf8)

    def _rcpt_command(self, recipient: OutboundRecipient, utf8: bool) -> bytes:
        params = []
        if "DSN" in self.extensions:
            notify = _notify_value(recipient.notify)
            if notify:
                params.append(f"NOTIFY={notify}")  # RFC 3461 §4.1
            orcpt = _orcpt_value(recipient.orcpt) if recipient.orcpt else None
            if orcpt:
                params.append(f"ORCPT={orcpt}")  # RFC 3461 §4.2
        return _command("RCPT TO:", recipient.address, params, utf8)

    def _result(self, address: str, reply: _Reply) -> RecipientResult:
        return RecipientResult(address, reply.code, status_from_reply(reply.code, reply.text), reply.text,
                               self.host)

    @property
    def _where(self) -> str:
        return _where(self._candidate)


def _command(verb: str, address: str, params: list[str], utf8: bool) -> bytes:
    line = f"{verb}<{address}>" + "".join(f" {param}" for param in params) + "\r\n"
    # RFC 6531 §3.3: UTF-8 only once SMTPUTF8 is given; _needs_utf8 keeps it ASCII otherwise.
    return line.encode("utf-8" if utf8 else "ascii")


def _needs_utf8(envelope: OutboundEnvelope, content: bytes) -> bool:
    """RFC 6531 §3.2: a non-ASCII address in the envelope or non-ASCII bytes in the
    header section need SMTPUTF8; a non-ASCII body alone needs only 8BITMIME."""
    header = content.split(b"\r\n\r\n", 1)[0]
    addresses = [envelope.mail_from, *(r.address for r in envelope.recipients)]
    return not header.isascii() or not all(address.isascii() for address in addresses)


def xtext(value: str) -> str:
    """RFC 3461 §4: every octet outside "!".."~", and "+" and "=", as "+HH"."""
    return "".join(chr(octet) if 0x21 <= octet <= 0x7E and octet not in (0x2B, 0x3D) else f"+{octet:02X}"
                   for octet in value.encode("utf-8", "replace"))


def _notify_value(words: Sequence[str]) -> str | None:
    """RFC 3461 §4.1: NEVER alone, or some of SUCCESS, FAILURE, DELAY; anything else is
    left out rather than risk the peer refusing the recipient over it."""
    upper = [word.strip().upper() for word in words]
    if upper == ["NEVER"]:
        return "NEVER"
    if not upper or any(word not in NOTIFY_WORDS for word in upper):
        return None
    return ",".join(word for word in NOTIFY_WORDS if word in upper)


def _orcpt_value(orcpt: str) -> str | None:
    """RFC 3461 §4.2: ``addr-type ";" xtext``. The value as received is already xtext and
    is relayed unchanged (RFC 3461 §5.2.1 wants it passed on as it came); a value that is
    not valid xtext is taken as the plain address and encoded. None when unusable."""
    addr_type, semicolon, address = orcpt.partition(";")
    if not semicolon:
        addr_type, address = "rfc822", orcpt
    addr_type = addr_type.strip()
    if not _ADDR_TYPE.fullmatch(addr_type) or not address:
        return None
    value = f"{addr_type};{address if _XTEXT.fullmatch(address) else xtext(address)}"
    return value if len(value) <= MAX_ORCPT else None


def _where(candidate: Candidate) -> str:
    """How a host is named in texts: ``mx.example.org[192.0.2.1]:25``, ``[2001:db8::1]:25``."""
    host = f"[{candidate.host}]" if ":" in candidate.host else candidate.host
    if candidate.address and candidate.address != candidate.host:
        host += f"[{candidate.address}]"
    return f"{host}:{candidate.port}"


# --- opening a session ----------------------------------------------------------------


class _HostFailed(Exception):
    """This candidate cannot take mail now; ``answered``: it got as far as speaking SMTP."""

    def __init__(self, code_status: tuple[int, str], detail: str, *, answered: bool) -> None:
        self.code, self.status = code_status
        self.text = _clean(f"{self.status} {detail}")
        self.answered = answered
        super().__init__(self.text)


class _HandshakeFailed(Exception):
    """Opportunistic STARTTLS failed after the 220: the connection is gone."""


async def open_connection(candidates: Sequence[Candidate], *, helo: str, tls: TlsPolicy,
                          requiretls: bool = False, timeout: float = 60.0,
                          source_address: str | None = None) -> DeliveryConnection:
    """A ready session with the first candidate that will take a transaction, trying them
    in order (RFC 5321 §5.1). Raises ``ConnectFailure`` when none will, ``ValueError``
    for a HELO name that cannot go on the EHLO line.

    ``requiretls`` (RFC 8689 §4.2.1) picks only a host that does TLS with a verified
    certificate and offers REQUIRETLS afterwards; it makes ``tls`` required and verified.
    ``timeout`` bounds each step: connecting, each reply, each block written.
    """
    if not helo or not helo.isascii() or any(char.isspace() or not char.isprintable() for char in helo):
        raise ValueError(f"HELO name {helo!r} is not usable on the EHLO line")
    if requiretls:
        tls = TlsPolicy(required=True, verify=True, context=tls.context)
    failures: list[_HostFailed] = []
    for candidate in candidates:
        try:
            return await _open(candidate, helo=helo, tls=tls, requiretls=requiretls, timeout=timeout,
                               source_address=source_address, starttls=True)
        except _HostFailed as failure:
            failures.append(failure)
    raise _verdict(failures)


def _verdict(failures: list[_HostFailed]) -> ConnectFailure:
    """Permanent only if every candidate failed for good (REQUIRETLS); otherwise the last
    temporary reason from a host that answered, which says more than a refused
    connection, else the last temporary reason."""
    if not failures:
        return ConnectFailure(*NO_ANSWER, f"{NO_ANSWER[1]} No host to connect to")
    temporary = [failure for failure in failures if failure.code < 500]
    chosen = ([f for f in temporary if f.answered] or temporary or failures)[-1]
    return ConnectFailure(chosen.code, chosen.status, chosen.text)


async def _open(candidate: Candidate, *, helo: str, tls: TlsPolicy, requiretls: bool, timeout: float,
                source_address: str | None, starttls: bool) -> DeliveryConnection:
    """One candidate: connect, greeting, EHLO, STARTTLS, the TLS checks; then the session
    is handed to a ``DeliveryConnection``. Raises ``_HostFailed``."""
    # RFC 5321 §5.1: by name unless the route resolved it already; TLS checks the name.
    smtp = aiosmtplib.SMTP(hostname=candidate.connect_to, port=candidate.port, local_hostname=helo,
                           source_address=(source_address, 0) if source_address else None,
                           timeout=timeout, start_tls=False)
    stage = "connect"
    try:
        # RFC 5321 §3.1 and §3.8: a 421 or 554 greeting means "not this host".
        await smtp.connect()
        stage = "EHLO"
        await _hello(smtp)
        if starttls and smtp.supports_extension("starttls"):
            stage = "STARTTLS"
            if await _start_tls(smtp, candidate, tls):
                stage = "EHLO"
                # RFC 3207 §4.2: what EHLO said before TLS is forgotten; ask again (no
                # HELO fallback: a server that spoke ESMTP a moment ago is broken now).
                await smtp.ehlo()
        _check_security(smtp, candidate, tls, requiretls)
        return _hand_over(smtp, candidate, timeout)
    except _HandshakeFailed:
        # As Postfix does: opportunistic TLS that fails is tried again without STARTTLS,
        # so mail still flows to a host with a broken TLS setup.
        return await _open(candidate, helo=helo, tls=tls, requiretls=requiretls, timeout=timeout,
                           source_address=source_address, starttls=False)
    except _HostFailed:
        await _abandon(smtp)
        raise
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        await _abandon(smtp)
        raise _host_failure(candidate, stage, error) from None


async def _hello(smtp: aiosmtplib.SMTP) -> None:
    """EHLO; on a 5xx (a server that does not know it), HELO (RFC 5321 §3.2, §4.1.4)."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError as refusal:
        if refusal.code < 500 or not smtp.is_connected:
            raise
        await smtp.helo()


async def _start_tls(smtp: aiosmtplib.SMTP, candidate: Candidate, tls: TlsPolicy) -> bool:
    """STARTTLS (RFC 3207): True once TLS is up. A refused STARTTLS (454) leaves the
    session in plaintext (RFC 3207 §4): False, or ``_HostFailed`` through the caller when
    TLS is required. A failed handshake leaves no session: ``_HandshakeFailed`` when TLS
    is optional, else ``_HostFailed``."""
    context = (tls.context or _verifying_context()) if tls.verify else _opportunistic_context()
    try:
        await smtp.starttls(server_hostname=candidate.host, tls_context=context)
    except aiosmtplib.SMTPResponseException as refusal:
        if tls.required or refusal.code == 421 or not smtp.is_connected:
            raise
        return False
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        smtp.close()
        if not tls.required:
            raise _HandshakeFailed(str(error)) from error
        reason = getattr(error, "verify_message", None) or str(error) or type(error).__name__
        raise _HostFailed(TLS_FAILED, f"TLS with {_where(candidate)} failed: {reason}",
                          answered=True) from None
    return True


def _check_security(smtp: aiosmtplib.SMTP, candidate: Candidate, tls: TlsPolicy, requiretls: bool) -> None:
    where = _where(candidate)
    encrypted = smtp.get_transport_info("sslcontext") is not None
    if requiretls and not (encrypted and smtp.supports_extension("requiretls")):
        # RFC 8689 §4.2.1: REQUIRETLS is offered only after TLS; a host without it
        # cannot take the message, now or later.
        raise _HostFailed(REQUIRETLS_UNSUPPORTED, f"REQUIRETLS is required, but {where} does not offer it",
                          answered=True)
    if tls.required and not encrypted:
        raise _HostFailed(TLS_NOT_OFFERED, f"TLS is required, but {where} did not offer STARTTLS",
                          answered=True)


def _hand_over(smtp: aiosmtplib.SMTP, candidate: Candidate, timeout: float) -> DeliveryConnection:
    """Take the transport from aiosmtplib for the transactions (see the module docstring)."""
    ssl_object = smtp.get_transport_info("ssl_object")
    tls_version = ssl_object.version() if ssl_object is not None else None
    wire = _Wire(cast(asyncio.Transport, smtp.transport), timeout)
    return DeliveryConnection(candidate, wire, dict(smtp.esmtp_extensions), tls_version)


async def _abandon(smtp: aiosmtplib.SMTP) -> None:
    """QUIT if the session still stands (RFC 8689 §4.2.1 asks for it), close. Never raises."""
    with contextlib.suppress(Exception):
        if smtp.is_connected:
            async with asyncio.timeout(QUIT_TIMEOUT):
                await smtp.quit()
    smtp.close()


def _host_failure(candidate: Candidate, stage: str, error: BaseException) -> _HostFailed:
    """What an aiosmtplib or socket error means for this candidate, as a 4xx, worded as
    Postfix words it ("host X said: ... (in reply to EHLO command)")."""
    where = _where(candidate)
    if isinstance(error, aiosmtplib.SMTPResponseException) and error.code // 100 in (4, 5):
        said = _clean(f"{error.code} {error.message}")
        # The peer's refusal, as a deferral: another host or a later try may do better.
        status = "4" + status_from_reply(error.code, error.message)[1:]
        code = error.code if error.code // 100 == 4 else NO_ANSWER[0]
        if stage == "connect":
            return _HostFailed((code, status), f"host {where} refused to talk to me: {said}", answered=True)
        return _HostFailed((code, status), f"host {where} said: {said} (in reply to {stage} command)",
                           answered=True)
    reason = "timed out" if isinstance(error, TimeoutError) else str(error.__cause__ or error)
    reason = reason or type(error).__name__
    if stage == "connect":
        return _HostFailed(NO_ANSWER, f"connect to {where}: {reason}", answered=False)
    detail = f"lost connection with {where} (in reply to {stage} command): {reason}"
    return _HostFailed(CONNECTION_LOST, detail, answered=True)


@cache
def _opportunistic_context() -> ssl.SSLContext:
    """RFC 7435 opportunistic security (Postfix "may"): encrypt, verify nothing, since an
    MX certificate rarely matches and plaintext would be the alternative."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@cache
def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context()
