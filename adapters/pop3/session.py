"""One POP3 connection (RFC 1939): its state, its commands, and what each answers.

DESIGN §5: no socket I/O here. ``server.py`` hands over whole lines (``lines.py`` cuts
them) and writes the ``Outcome``; the session calls use cases and reads the mailbox view,
in a worker thread, one command at a time. The maildrop is the account's INBOX as the
view shows it at login (RFC 1939 §5: numbers fixed for the session); deletions are
marks until QUIT commits them as one transaction (§6), so a dropped connection or RSET
deletes nothing. Passwords are checked by the same code and throttle as IMAP
(``adapters/logins.py``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from adapters.config import Pop3
from adapters.login_throttle import LoginThrottle
from adapters.logins import SaslError, check_login, decode_plain
from domain.application.context import acting
from domain.application.service import LedgerMail
from domain.model.errors import DomainError, SubjectErased
from projections.mailbox_view.view import MailboxViewInterface

log = logging.getLogger(__name__)


class State(Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


@dataclass
class Outcome:
    lines: list[bytes] = field(default_factory=list)
    close: bool = False
    delay: float = 0.0
    starttls: bool = False
    #: The next line is a SASL response (RFC 5034 §4), not a command.
    sasl: bool = False


@dataclass
class Peer:
    ip: str
    listener: str
    secure: bool
    tls: bool
    can_starttls: bool


@dataclass(slots=True)
class Message:
    number: int
    uid: int
    size: int
    deleted: bool = False


class Maildrops:
    """Which accounts have a POP3 session in the TRANSACTION state (RFC 1939 §8: the
    maildrop is locked for the session)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[uuid.UUID] = set()

    def take(self, account_id: uuid.UUID) -> bool:
        with self._lock:
            if account_id in self._held:
                return False
            self._held.add(account_id)
            return True

    def release(self, account_id: uuid.UUID) -> None:
        with self._lock:
            self._held.discard(account_id)


class PopError(Exception):
    """``-ERR [code] text``."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


def ok(text: str) -> bytes:
    return b"+OK " + _clean(text) + b"\r\n"


def err(text: str, code: str | None = None) -> bytes:
    # RFC 2449 §8 RESP-CODES: a bracketed code right after -ERR.
    return b"-ERR " + (f"[{code}] ".encode() if code else b"") + _clean(text) + b"\r\n"


def _clean(text: str) -> bytes:
    return "".join(ch if ch.isprintable() else " " for ch in text).encode("utf-8")


def uidl_of(uid: int, uidvalidity: int) -> str:
    """RFC 1939 §7 UIDL: the IMAP UID and UIDVALIDITY in hex (Dovecot's default
    ``%08Xu%08Xv``, which prints lower-case hex), so the id is stable across sessions and the same however the
    message is listed, and a move from Dovecot keeps clients from downloading again."""
    return f"{uid:08x}{uidvalidity:08x}"


def transmitted(raw: bytes) -> bytes:
    """The message as POP3 sends it (RFC 1939 §3): CRLF lines, every line starting with
    "." given another ".", ending CRLF "." CRLF."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    if text.startswith(b"."):
        text = b"." + text
    return text.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def top_of(raw: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the empty line, and the first ``lines`` body lines."""
    text = raw.replace(b"\r\n", b"\n")
    header, separator, body = text.partition(b"\n\n")
    if not separator:  # a header and no body: the header and its blank line
        return text + (b"\n" if text.endswith(b"\n") else b"\n\n")
    parts = body.split(b"\n")
    if parts[-1] == b"":
        parts.pop()  # the split's empty tail, not a line
    return header + b"\n\n" + b"".join(line + b"\n" for line in parts[:lines])


class Pop3Session:
    def __init__(self, app: LedgerMail, view: MailboxViewInterface, wait_for: Callable[[int], None],
                 throttle: LoginThrottle, maildrops: Maildrops, limits: Pop3, hostname: str,
                 peer: Peer) -> None:
        self.app = app
        self.view = view
        self.wait_for = wait_for
        self.throttle = throttle
        self.maildrops = maildrops
        self.limits = limits
        self.hostname = hostname
        self.peer = peer
        self.id = uuid.uuid4().hex[:16]
        self.state = State.AUTHORIZATION
        self.user: str | None = None
        self.account_id: uuid.UUID | None = None
        self.mailbox_id: uuid.UUID | None = None
        self.uidvalidity = 0
        self.messages: list[Message] = []
        self.errors = 0
        self.utf8 = False
        self.sasl_pending = False
        #: Reads made by a batch of pipelined commands, recorded when the batch ends.
        self.deferred_reads: list[tuple[list[uuid.UUID], str]] | None = None

    # -- entry points ----------------------------------------------------------------------

    def greeting(self) -> bytes:
        return ok(f"{self.hostname} ledgermail POP3 ready")

    def capabilities(self) -> list[str]:
        """RFC 2449 §5: what CAPA lists now."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8"]
        if self.state is State.AUTHORIZATION:
            if self.peer.secure:
                caps += ["USER", "SASL PLAIN"]
            if self.peer.can_starttls and not self.peer.tls:
                caps.append("STLS")  # RFC 2595 §4
        caps.append("IMPLEMENTATION ledgermail")
        return caps

    def execute(self, line: bytes) -> Outcome:
        if self.sasl_pending:
            self.sasl_pending = False
            return self._sasl_response(line)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._error("commands must be UTF-8")
        name, _, rest = text.partition(" ")
        name = name.upper()
        args = rest.split(" ") if rest else []
        handler = COMMANDS.get((self.state, name))
        if handler is None:
            known = any(key[1] == name for key in COMMANDS)
            return self._error(f"{name[:20]} is not valid in the {self.state.value} state" if known
                               else "unknown command")
        try:
            with acting(f"user:{self.account_id}" if self.account_id else f"peer:{self.peer.ip}",
                        protocol=f"pop3-{self.peer.listener}", session=self.id, purpose="mailbox access"):
                return handler(self, args)
        except PopError as error:
            return self._error(error.text, error.code)
        except SubjectErased:
            return Outcome([err("this account no longer exists", "SYS/PERM")], close=True)
        except DomainError as error:
            return self._error(str(error))
        except Exception:  # noqa: BLE001 - a store fault must not kill the connection
            log.exception("POP3 %s failed", name)
            return Outcome([err("internal server error; nothing was changed", "SYS/TEMP")])

    def refuse_line(self) -> Outcome:
        self.sasl_pending = False  # an over-long SASL response ends the exchange
        return self._error("line too long")

    def _error(self, text: str, code: str | None = None) -> Outcome:
        self.errors += 1
        limit = (self.limits.max_errors_before_login if self.state is State.AUTHORIZATION
                 else self.limits.max_errors)
        if self.errors >= limit:
            return Outcome([err(text, code), err("too many errors, closing")], close=True)
        return Outcome([err(text, code)])

    def closed(self) -> None:
        """The connection ended: without QUIT nothing is deleted (RFC 1939 §6)."""
        if self.state is State.TRANSACTION and self.account_id is not None:
            self.maildrops.release(self.account_id)
        self.state = State.UPDATE

    def tls_started(self) -> None:
        """RFC 2595 §4: what was said before TLS is forgotten."""
        self.peer.tls = True
        self.peer.secure = True
        self.user = None

    # -- AUTHORIZATION: RFC 1939 §4, §7; RFC 5034; RFC 2595 --------------------------

    def cmd_capa(self, args: list[str]) -> Outcome:
        return Outcome([ok("capability list follows"),
                        *[c.encode() + b"\r\n" for c in self.capabilities()], b".\r\n"])

    def cmd_stls(self, args: list[str]) -> Outcome:
        if args:
            raise PopError("STLS takes no arguments")
        if self.peer.tls or not self.peer.can_starttls:
            raise PopError("TLS is already active" if self.peer.tls else "STLS is not offered here")
        return Outcome([ok("begin TLS negotiation")], starttls=True)

    def cmd_utf8(self, args: list[str]) -> Outcome:
        self.utf8 = True  # RFC 6856 §2: our messages and names are UTF-8 already
        return Outcome([ok("UTF8 enabled")])

    def cmd_user(self, args: list[str]) -> Outcome:
        if len(args) != 1 or not args[0]:
            raise PopError("USER takes one name")
        if not self.peer.secure:
            raise PopError("log in after STLS", "AUTH")
        self.user = args[0]
        return Outcome([ok("send PASS")])

    def cmd_pass(self, args: list[str]) -> Outcome:
        if self.user is None:
            raise PopError("USER first")
        # RFC 1939 §7: the password is the rest of the line (it may hold spaces).
        password = " ".join(args)
        user, self.user = self.user, None
        return self._login(user, password)

    def cmd_auth(self, args: list[str]) -> Outcome:
        if not args:
            return Outcome([ok("mechanisms follow"), b"PLAIN\r\n", b".\r\n"])
        if args[0].upper() != "PLAIN" or len(args) > 2:
            raise PopError("unsupported mechanism; use PLAIN")
        if not self.peer.secure:
            raise PopError("log in after STLS", "AUTH")
        if len(args) == 2:  # RFC 5034 §4: initial response, "=" for an empty one
            return self._sasl_response(b"" if args[1] == "=" else args[1].encode())
        self.sasl_pending = True
        return Outcome([b"+ \r\n"], sasl=True)

    def _sasl_response(self, line: bytes) -> Outcome:
        if line.strip() == b"*":
            return self._error("authentication cancelled")
        try:
            authzid, user, password = decode_plain(line)
        except SaslError as error:
            return self._error(str(error))
        if authzid and authzid != user:
            return self._error("cannot act as another user", "AUTH")
        return self._login(user, password)

    def _login(self, user: str, password: str) -> Outcome:
        result = check_login(self.app, self.throttle, self.peer.ip, user, password,
                             protocol=f"pop3-{self.peer.listener}", session=self.id)
        if result.locked:
            return Outcome([err("too many failed logins; try again later", "SYS/TEMP")], delay=result.delay)
        if result.unavailable:
            return Outcome([err("cannot check credentials now; try again", "SYS/TEMP")])
        if result.account_id is None:
            # RFC 3206 [AUTH]; the same text for an unknown user and a wrong password.
            outcome = self._error("invalid credentials", "AUTH")
            outcome.delay = result.delay
            return outcome
        if not self.maildrops.take(result.account_id):
            return Outcome([err("maildrop already locked by another session", "IN-USE")])
        try:
            self._open_maildrop(result.account_id)
        except BaseException:
            self.maildrops.release(result.account_id)
            raise
        self.account_id = result.account_id
        self.state = State.TRANSACTION
        self.errors = 0
        count, size = self._totals()
        return Outcome([ok(f"{count} messages ({size} octets)")])

    def _open_maildrop(self, account_id: uuid.UUID) -> None:
        mailbox_id = self.app.mailbox_id_of(account_id, "INBOX")
        self.wait_for(self.app.log_position())  # the maildrop as of now
        row = self.view.mailbox(mailbox_id)
        self.mailbox_id = mailbox_id
        self.uidvalidity = row.uidvalidity if row is not None else 0
        sizes = self.view.message_sizes(mailbox_id)
        self.messages = [Message(number, uid, size) for number, (uid, size) in enumerate(sizes, start=1)]

    # -- TRANSACTION: RFC 1939 §5 -------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        live = [m for m in self.messages if not m.deleted]
        return len(live), sum(m.size for m in live)

    def _message(self, text: str) -> Message:
        """A message number of this session, not deleted (RFC 1939 §5)."""
        if not text.isascii() or not text.isdigit() or len(text) > 10:
            raise PopError(f"no such message: {text[:20]}")
        number = int(text)
        if not 1 <= number <= len(self.messages):
            raise PopError(f"no such message: {number}")
        message = self.messages[number - 1]
        if message.deleted:
            raise PopError(f"message {number} is deleted")
        return message

    def cmd_stat(self, args: list[str]) -> Outcome:
        if args:
            raise PopError("STAT takes no arguments")
        count, size = self._totals()
        return Outcome([f"+OK {count} {size}\r\n".encode()])

    def cmd_list(self, args: list[str]) -> Outcome:
        if len(args) > 1:
            raise PopError("LIST takes at most one message number")
        if args:
            message = self._message(args[0])
            return Outcome([f"+OK {message.number} {message.size}\r\n".encode()])
        count, size = self._totals()
        lines = [ok(f"{count} messages ({size} octets)")]
        lines += [f"{m.number} {m.size}\r\n".encode() for m in self.messages if not m.deleted]
        return Outcome([*lines, b".\r\n"])

    def cmd_uidl(self, args: list[str]) -> Outcome:
        if len(args) > 1:
            raise PopError("UIDL takes at most one message number")
        if args:
            message = self._message(args[0])
            return Outcome([f"+OK {message.number} {uidl_of(message.uid, self.uidvalidity)}\r\n".encode()])
        lines = [ok("unique-id listing follows")]
        lines += [f"{m.number} {uidl_of(m.uid, self.uidvalidity)}\r\n".encode()
                  for m in self.messages if not m.deleted]
        return Outcome([*lines, b".\r\n"])

    def execute_many(self, lines: list[bytes]) -> list[Outcome]:
        """Pipelined lines (RFC 2449 PIPELINING) in order, stopping after one the server
        must act on first (STLS, SASL, a delay, close). The messages they read are
        recorded at the end, one event per command in one transaction, before any answer
        is written; if that fails, the commands that read answer -ERR instead."""
        self.deferred_reads = []
        outcomes: list[Outcome] = []
        read_by: list[bool] = []
        try:
            for line in lines:
                before = len(self.deferred_reads)
                outcome = self.execute(line)
                outcomes.append(outcome)
                read_by.append(len(self.deferred_reads) > before)
                if outcome.close or outcome.starttls or outcome.sasl or outcome.delay:
                    break
            if self.deferred_reads:
                assert self.account_id is not None
                try:
                    with acting(f"user:{self.account_id}", protocol=f"pop3-{self.peer.listener}",
                                session=self.id, purpose="mailbox access"):
                        self.app.record_accesses(self.account_id, self.deferred_reads)
                except Exception:  # noqa: BLE001 - no record, no data
                    log.exception("POP3 reads could not be recorded")
                    for index, did_read in enumerate(read_by):
                        if did_read:
                            outcomes[index] = Outcome([err("the read could not be recorded; "
                                                           "nothing was sent", "SYS/TEMP")])
        finally:
            self.deferred_reads = None
        return outcomes

    def _body(self, message: Message, purpose: str) -> bytes:
        assert self.account_id is not None and self.mailbox_id is not None
        if self.deferred_reads is None:
            bodies = self.app.open_bodies(self.account_id, self.mailbox_id, [message.uid], purpose)
        else:
            bodies, opened = self.app.read_bodies(self.account_id, self.mailbox_id, [message.uid])
            if opened:
                self.deferred_reads.append((opened, purpose))
        if message.uid not in bodies:
            raise PopError(f"message {message.number} was removed by another session", "SYS/TEMP")
        return bodies[message.uid]

    def cmd_retr(self, args: list[str]) -> Outcome:
        if len(args) != 1:
            raise PopError("RETR takes one message number")
        message = self._message(args[0])
        raw = self._body(message, "pop3 retr")
        return Outcome([ok(f"{message.size} octets"), transmitted(raw)])

    def cmd_top(self, args: list[str]) -> Outcome:
        if len(args) != 2 or not args[1].isascii() or not args[1].isdigit() or len(args[1]) > 9:
            raise PopError("TOP takes a message number and a number of lines")
        message = self._message(args[0])
        raw = self._body(message, "pop3 top")
        return Outcome([ok("top of message follows"), transmitted(top_of(raw, int(args[1])))])

    def cmd_dele(self, args: list[str]) -> Outcome:
        if len(args) != 1:
            raise PopError("DELE takes one message number")
        message = self._message(args[0])
        message.deleted = True
        return Outcome([ok(f"message {message.number} deleted")])

    def cmd_noop(self, args: list[str]) -> Outcome:
        return Outcome([b"+OK\r\n"])

    def cmd_rset(self, args: list[str]) -> Outcome:
        for message in self.messages:
            message.deleted = False
        count, size = self._totals()
        return Outcome([ok(f"maildrop has {count} messages ({size} octets)")])

    def cmd_quit(self, args: list[str]) -> Outcome:
        if self.state is State.AUTHORIZATION:
            self.state = State.UPDATE
            return Outcome([ok("bye")], close=True)
        # RFC 1939 §6: the UPDATE state commits the deletions, all in one transaction.
        assert self.account_id is not None and self.mailbox_id is not None
        doomed = [m.uid for m in self.messages if m.deleted]
        removed: list[int] = []
        try:
            if doomed:
                removed, _ = self.app.remove(self.account_id, self.mailbox_id, doomed)
        except Exception:  # noqa: BLE001 - say so: the client will try again next time
            log.exception("POP3 QUIT could not remove messages")
            self.closed()
            return Outcome([err("some deleted messages were not removed", "SYS/TEMP")], close=True)
        self.closed()
        return Outcome([ok(f"bye; {len(removed)} messages removed")], close=True)


COMMANDS: dict[tuple[State, str], Callable[[Any, list[str]], Outcome]] = {
    (State.AUTHORIZATION, "CAPA"): Pop3Session.cmd_capa,
    (State.AUTHORIZATION, "STLS"): Pop3Session.cmd_stls,
    (State.AUTHORIZATION, "UTF8"): Pop3Session.cmd_utf8,
    (State.AUTHORIZATION, "USER"): Pop3Session.cmd_user,
    (State.AUTHORIZATION, "PASS"): Pop3Session.cmd_pass,
    (State.AUTHORIZATION, "AUTH"): Pop3Session.cmd_auth,
    (State.AUTHORIZATION, "QUIT"): Pop3Session.cmd_quit,
    (State.TRANSACTION, "CAPA"): Pop3Session.cmd_capa,
    (State.TRANSACTION, "STAT"): Pop3Session.cmd_stat,
    (State.TRANSACTION, "LIST"): Pop3Session.cmd_list,
    (State.TRANSACTION, "UIDL"): Pop3Session.cmd_uidl,
    (State.TRANSACTION, "RETR"): Pop3Session.cmd_retr,
    (State.TRANSACTION, "TOP"): Pop3Session.cmd_top,
    (State.TRANSACTION, "DELE"): Pop3Session.cmd_dele,
    (State.TRANSACTION, "NOOP"): Pop3Session.cmd_noop,
    (State.TRANSACTION, "RSET"): Pop3Session.cmd_rset,
    (State.TRANSACTION, "QUIT"): Pop3Session.cmd_quit,
}
