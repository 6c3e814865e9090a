"""One IMAP connection's state and its commands: the command-by-state table (RFC 9051 §3,
§6), authentication, and the commands valid in any state.

DESIGN §5: the session does no socket I/O. ``server.py`` feeds it whole commands from
the framer and writes the ``Outcome`` it returns; the session calls use cases (through
``MailUseCases``) and reads the mailbox view. Commands run in a worker thread, one at a
time per connection. The commands of the authenticated and selected states live in
``mailbox_commands.py`` and ``message_commands.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from adapters.config import Imap
from adapters.imap import responses as r
from adapters.imap.capabilities import ENABLEABLE, capabilities
from adapters.imap.framing import BadCommand, Command, LiteralRefused
from adapters.imap.mailbox_commands import MailboxCommands
from adapters.imap.message_commands import NO_EXPUNGE_DURING, MessageCommands
from adapters.imap.selected import SelectedMailbox, compress_uids
from adapters.imap.states import ANY, AUTH, NOT_AUTH, SELECTED, Outcome, Peer, Refusal, State, bad, no
from adapters.imap.tokens import NIL, Atom, ParsedCommand, ParseError, String, Token, parse_command
from adapters.login_throttle import LoginThrottle
from adapters.logins import SaslError, check_login, decode_plain
from domain.application.context import acting
from domain.application.mail import AppendItem
from domain.application.service import LedgerMail
from domain.model.errors import (
    DomainError,
    InvalidMailboxName,
    LegalHoldActive,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxProtected,
    MessageTooLarge,
    SubjectErased,
)
from projections.mailbox_view.view import MailboxViewInterface

log = logging.getLogger(__name__)


class ImapSession(MailboxCommands, MessageCommands):
    def __init__(self, app: LedgerMail, view: MailboxViewInterface, wait_for: Callable[[int], None],
                 throttle: LoginThrottle, limits: Imap, max_message_bytes: int, hostname: str,
                 peer: Peer) -> None:
        self.app = app
        self.view = view
        self.wait_for = wait_for
        self.throttle = throttle
        self.limits = limits
        self.max_message_bytes = max_message_bytes
        self.hostname = hostname
        self.peer = peer
        self.id = uuid.uuid4().hex[:16]
        self.state = State.NOT_AUTHENTICATED
        self.account_id: uuid.UUID | None = None
        self.login = ""
        #: ENABLEd extensions (RFC 5161); None until one is: most sessions never
        #: enable anything, and 10,000 idle sessions need not hold 10,000 empty sets.
        self._enabled: set[str] | None = None
        self.compressed = False
        self.bad_commands = 0
        self.selected: SelectedMailbox | None = None
        self.selected_id: uuid.UUID | None = None
        self.selected_name = ""
        self.saved_uids: list[int] | None = None  # RFC 5182 SEARCHRES "$"
        self.idling_tag = b""
        self.sasl_tag = b""
        self.out: list[bytes] = []
        #: Within a batch, before its last command: no untagged updates yet.
        self.quiet = False
        #: Reads made by a batch of pipelined commands, recorded when the batch ends.
        self.deferred_reads: list[tuple[list[uuid.UUID], str]] | None = None

    # -- facts ---------------------------------------------------------------------------

    @property
    def enabled(self) -> set[str]:
        """The ENABLEd extensions, to test or add to (made on first use)."""
        if self._enabled is None:
            self._enabled = set()
        return self._enabled

    @property
    def utf8(self) -> bool:
        """Mailbox names and strings in UTF-8 (RFC 9051, RFC 6855 UTF8=ACCEPT)."""
        return bool(self._enabled and self._enabled & {"UTF8=ACCEPT", "IMAP4REV2"})

    @property
    def rev2(self) -> bool:
        return bool(self._enabled and "IMAP4REV2" in self._enabled)

    @property
    def condstore(self) -> bool:
        return bool(self._enabled and self._enabled & {"CONDSTORE", "QRESYNC"})

    @property
    def qresync(self) -> bool:
        return bool(self._enabled and "QRESYNC" in self._enabled)

    def capability_list(self) -> list[str]:
        return capabilities(authenticated=self.state is not State.NOT_AUTHENTICATED,
                            secure=self.peer.secure,
                            can_starttls=self.peer.can_starttls and not self.peer.tls,
                            append_limit=self.max_message_bytes, compressed=self.compressed)

    def greeting(self) -> bytes:
        caps = " ".join(self.capability_list())
        return f"* OK [CAPABILITY {caps}] {self.hostname} ledgermail IMAP ready\r\n".encode()

    def untagged(self, line: bytes | str) -> None:
        self.out.append((line.encode() if isinstance(line, str) else line) + b"\r\n")

    # -- entry points (called by the server, in a worker thread) ----------------------

    def execute(self, command: Command) -> Outcome:
        self.out = []
        tag = command.tag
        try:
            parsed = parse_command(command, self.limits.max_nesting)
        except ParseError as error:
            return self._bad_command(tag, str(error))
        handler, states = COMMANDS.get(parsed.name, (None, ANY))
        if handler is None:
            return self._bad_command(tag, f"unknown command {parsed.name[:30]}")
        if self.state not in states:
            return self._bad_command(tag, f"{parsed.name} is not valid in the {self.state.value} state")
        principal = f"user:{self.account_id}" if self.account_id else "anonymous"
        outcome = Outcome()
        try:
            with acting(principal, protocol=f"imap-{self.peer.listener}", session=self.id,
                        purpose="mailbox access"):
                result = handler(self, parsed)
                if isinstance(result, Outcome):
                    outcome = result
                else:
                    if self.state is State.SELECTED and not self.quiet:
                        # Other sessions' changes ride on every response (RFC 9051 §7),
                        # expunges only where sequence numbers cannot be in use (§7.5.1).
                        self.report_updates(expunge_allowed=parsed.name not in NO_EXPUNGE_DURING)
                    code, _, text = result.partition("] ") if result.startswith("[") else ("", "", result)
                    self.out.append(r.tagged(tag, "OK", text, code[1:] or None))
        except Refusal as refusal:
            if refusal.status == "BAD":
                return self._bad_command(tag, refusal.text, keep=self.out)
            self.out.append(r.tagged(tag, refusal.status, refusal.text, refusal.code))
        except SubjectErased:
            self.out.append(b"* BYE this account no longer exists\r\n")
            outcome.close = True
        except DomainError as error:
            self.out.append(r.tagged(tag, "NO", str(error), response_code(error)))
        except TimeoutError:
            self.out.append(r.tagged(tag, "NO", "the server is busy; try again", "UNAVAILABLE"))
        except Exception:  # noqa: BLE001 - a store failure must not kill the connection
            log.exception("IMAP %s failed", parsed.name)
            self.out.append(r.tagged(tag, "NO", "internal server error; nothing was changed",
                                     "SERVERBUG"))
        outcome.lines = self.out + outcome.lines
        self.out = []
        return outcome

    def execute_many(self, commands: list[Command]) -> list[Outcome]:
        """Pipelined commands in order, stopping after one whose outcome the server must
        act on before reading on (TLS, compression, IDLE, SASL, a delay, close). Message
        reads are recorded at the end, one event per command in one transaction, before
        any answer leaves; if that fails, the commands that read answer NO instead."""
        self.deferred_reads = []
        outcomes: list[Outcome] = []
        read_by: list[bool] = []
        try:
            while len(outcomes) < len(commands):
                appended = self._appends_together(commands[len(outcomes):])
                if appended:
                    outcomes += appended
                    read_by += [False] * len(appended)
                    continue
                before = len(self.deferred_reads)
                # Updates from other sessions ride on the batch's last answer only.
                self.quiet = len(outcomes) < len(commands) - 1
                outcome = self.execute(commands[len(outcomes)])
                outcomes.append(outcome)
                read_by.append(len(self.deferred_reads) > before)
                if (outcome.close or outcome.starttls or outcome.compress or outcome.idle or outcome.sasl
                        or outcome.delay):
                    break
            if self.deferred_reads:
                try:
                    with acting(f"user:{self.account_id}", protocol=f"imap-{self.peer.listener}",
                                session=self.id, purpose="mailbox access"):
                        self.app.record_accesses(self.require_account(), self.deferred_reads)
                except Exception:  # noqa: BLE001 - no record, no data
                    log.exception("IMAP reads could not be recorded")
                    for index, command in enumerate(commands[:len(outcomes)]):
                        if read_by[index]:
                            outcomes[index] = Outcome([r.tagged(command.tag, "NO", "the read could not be "
                                                                "recorded; nothing was sent", "SERVERBUG")])
        finally:
            self.deferred_reads = None
            self.quiet = False
        return outcomes

    def _appends_together(self, commands: list[Command]) -> list[Outcome]:
        """Consecutive pipelined APPENDs to one mailbox, stored in one transaction, each
        answered with its own APPENDUID. Fewer than two, or any refusal before the store
        (a bad argument, no such mailbox, over quota), and [] is returned: the commands
        then run one by one and each gets its own answer."""
        if self.state not in AUTH:
            return []
        group: list[tuple[ParsedCommand, list[AppendItem]]] = []
        target = None
        for command in commands:
            try:
                parsed = parse_command(command, self.limits.max_nesting)
                if parsed.name != "APPEND" or len(parsed.args) < 2:
                    break
                name, items = self.mailbox_name(parsed.args[0]), self._append_items(parsed.args[1:])
            except (ParseError, Refusal):
                break
            if target is not None and name != target:
                break
            target = name
            group.append((parsed, items))
        if len(group) < 2 or target is None:
            return []
        every = [item for _, items in group for item in items]
        account_id = self.require_account()
        try:
            with acting(f"user:{account_id}", protocol=f"imap-{self.peer.listener}", session=self.id,
                        purpose="mailbox access"):
                self.app.mailbox_id_of(account_id, target)
                self.check_quota(sum(len(item.raw) for item in every))
                refs, position = self.app.append_many(account_id, target, every)
        except (Refusal, DomainError):
            return []
        except Exception:  # noqa: BLE001 - perhaps stored, perhaps not: never store twice
            log.exception("IMAP APPEND batch failed")
            return [Outcome([r.tagged(parsed.tag.encode(), "NO", "internal server error", "SERVERBUG")])
                    for parsed, _ in group]
        if refs[0].mailbox_id == self.selected_id:
            self.settle(position)
        outcomes = []
        for parsed, items in group:
            mine, refs = refs[:len(items)], refs[len(items):]
            uids = compress_uids([ref.uid for ref in mine])
            outcomes.append(Outcome([r.tagged(parsed.tag.encode(), "OK", "APPEND completed",
                                              f"APPENDUID {mine[0].uidvalidity} {uids}")]))
        if self.state is State.SELECTED:
            self.report_updates(expunge_allowed=True)
            outcomes[-1].lines = self.out + outcomes[-1].lines
            self.out = []
        return outcomes

    def open_bodies(self, uids: list[int], purpose: str) -> dict[int, bytes]:
        """Message bodies of the selected mailbox. Alone, the read is recorded at once;
        inside ``execute_many`` it is recorded with the batch's other reads."""
        if self.deferred_reads is None:
            return self.app.open_bodies(self.require_account(), self.selected_id, uids, purpose)
        bodies, opened = self.app.read_bodies(self.require_account(), self.selected_id, uids)
        if opened:
            self.deferred_reads.append((opened, purpose))
        return bodies

    def _bad_command(self, tag: bytes, text: str, keep: list[bytes] | None = None) -> Outcome:
        """RFC 9051 §7.1.3 BAD; too many of them end the connection (three before login)."""
        self.bad_commands += 1
        limit = (self.limits.max_bad_commands_before_login if self.state is State.NOT_AUTHENTICATED
                 else self.limits.max_bad_commands)
        lines = list(keep or []) + [r.tagged(tag, "BAD", text)]
        if self.bad_commands >= limit:
            lines.append(b"* BYE too many invalid commands\r\n")
            return Outcome(lines, close=True)
        return Outcome(lines)

    def refuse(self, event: BadCommand | LiteralRefused) -> Outcome:
        """The framer refused a command before it was complete."""
        if isinstance(event, LiteralRefused):
            if self.state is State.NOT_AUTHENTICATED:
                return self._bad_command(event.tag, "literal too large before authentication")
            # RFC 7889 §4 / RFC 9051 §7.1: TOOBIG, and the client does not send the data.
            return Outcome([r.tagged(event.tag, "NO", f"literal of {event.size} octets is over the "
                                     f"limit of {self.max_message_bytes}", "TOOBIG")])
        return self._bad_command(event.tag, event.reason)

    def command_limit(self) -> int:
        """Octets one command may hold, literals included: small literals cannot add up
        to a big command before login."""
        if self.state is State.NOT_AUTHENTICATED:
            return self.limits.max_line + 2 * self.limits.max_literal_before_login
        return self.max_message_bytes + self.limits.max_line

    def literal_limit(self) -> int:
        if self.state is State.NOT_AUTHENTICATED:
            return self.limits.max_literal_before_login
        return self.max_message_bytes

    # -- any state: RFC 9051 §6.1 ------------------------------------------------------

    def cmd_capability(self, cmd: ParsedCommand) -> str:
        self.no_args(cmd)
        self.untagged("* CAPABILITY " + " ".join(self.capability_list()))
        return "CAPABILITY completed"

    def cmd_noop(self, cmd: ParsedCommand) -> str:
        # RFC 9051 §6.1.2: NOOP is how a client polls for updates.
        self.no_args(cmd)
        self.report_updates(expunge_allowed=True)
        return "NOOP completed"

    def cmd_logout(self, cmd: ParsedCommand) -> Outcome:
        self.no_args(cmd)
        self.state = State.LOGOUT
        return Outcome([b"* BYE logging out\r\n", r.tagged(cmd.tag.encode(), "OK", "LOGOUT completed")],
                       close=True)

    def cmd_id(self, cmd: ParsedCommand) -> str:
        # RFC 2971 §3.1: the client's list is NIL or pairs; ours names no version.
        if len(cmd.args) != 1 or not (cmd.args[0] is NIL or isinstance(cmd.args[0], tuple)):
            raise bad("ID takes NIL or a list of field-value pairs")
        if isinstance(cmd.args[0], tuple) and (len(cmd.args[0]) % 2 or len(cmd.args[0]) > 60):
            raise bad("ID takes at most 30 field-value pairs")
        self.untagged(b'* ID ("name" "ledgermail")')
        return "ID completed"

    def cmd_enable(self, cmd: ParsedCommand) -> str:
        # RFC 5161 §3.1: unknown capabilities are ignored; ENABLED lists what took effect.
        if not cmd.args or not all(isinstance(a, Atom) for a in cmd.args):
            raise bad("ENABLE takes capability names")
        newly = []
        for arg in cmd.args:
            name = arg.upper()  # type: ignore[union-attr]
            if name in ENABLEABLE and name not in self.enabled:
                self.enabled.add(name)
                if name == "QRESYNC":
                    self.enabled.add("CONDSTORE")  # RFC 7162 §3.2.3
                newly.append({"IMAP4REV2": "IMAP4rev2"}.get(name, name))
        self.untagged("* ENABLED" + "".join(" " + n for n in newly))
        return "ENABLE completed"

    # -- not authenticated: RFC 9051 §6.2 ----------------------------------------------

    def cmd_starttls(self, cmd: ParsedCommand) -> Outcome:
        self.no_args(cmd)
        if self.peer.tls or not self.peer.can_starttls:
            raise bad("TLS is already active" if self.peer.tls else "STARTTLS is not offered here")
        return Outcome([r.tagged(cmd.tag.encode(), "OK", "begin TLS negotiation now")], starttls=True)

    def tls_started(self) -> None:
        """RFC 9051 §6.2.1: after STARTTLS the client must ask for capabilities again."""
        self.peer.tls = True
        self.peer.secure = True

    def cmd_login(self, cmd: ParsedCommand) -> Outcome:
        if len(cmd.args) != 2:
            raise bad("LOGIN takes a user name and a password")
        user, password = (self.astring(a) for a in cmd.args)
        return self._authenticate(cmd.tag.encode(), user, password)

    def cmd_authenticate(self, cmd: ParsedCommand) -> Outcome:
        if not cmd.args or not isinstance(cmd.args[0], Atom) or len(cmd.args) > 2:
            raise bad("AUTHENTICATE takes a mechanism name and an optional initial response")
        if cmd.args[0].upper() != "PLAIN":
            raise no("unsupported authentication mechanism; use PLAIN")
        if not self.peer.secure:
            raise no("authentication needs TLS; use STARTTLS first", "PRIVACYREQUIRED")
        if len(cmd.args) == 2:  # RFC 4959 SASL-IR
            initial = self.astring(cmd.args[1])
            return self._sasl_plain(cmd.tag.encode(), b"" if initial == "=" else initial.encode())
        self.sasl_tag = cmd.tag.encode()
        return Outcome([b"+ \r\n"], sasl=True)

    def sasl_response(self, line: bytes) -> Outcome:
        """The client's answer to our ``+`` (RFC 9051 §6.2.2); ``*`` cancels."""
        tag, self.sasl_tag = self.sasl_tag, b""
        if line.strip() == b"*":
            return self._bad_command(tag, "authentication cancelled")
        return self._sasl_plain(tag, line.strip())

    def _sasl_plain(self, tag: bytes, encoded: bytes) -> Outcome:
        try:
            authzid, user, secret = decode_plain(encoded)
        except SaslError as error:
            return self._bad_command(tag, str(error))
        if authzid and authzid != user:
            return Outcome([r.tagged(tag, "NO", "cannot act as another user", "AUTHORIZATIONFAILED")])
        return self._authenticate(tag, user, secret)

    def _authenticate(self, tag: bytes, user: str, password: str) -> Outcome:
        if not self.peer.secure:
            # RFC 9051 §6.2.3: LOGINDISABLED was advertised.
            return Outcome([r.tagged(tag, "NO", "LOGIN needs TLS; use STARTTLS first", "PRIVACYREQUIRED")])
        result = check_login(self.app, self.throttle, self.peer.ip, user, password,
                             protocol=f"imap-{self.peer.listener}", session=self.id)
        if result.locked:
            return Outcome([r.tagged(tag, "NO", "too many failed logins; try again later", "UNAVAILABLE")],
                           delay=result.delay)
        if result.unavailable:
            return Outcome([r.tagged(tag, "NO", "cannot check credentials now; try again", "UNAVAILABLE")])
        if result.account_id is None:
            # Identical text for unknown user and wrong password (checklist §1).
            return Outcome([r.tagged(tag, "NO", "invalid credentials", "AUTHENTICATIONFAILED")],
                           delay=result.delay)
        self.state = State.AUTHENTICATED
        self.account_id = result.account_id
        self.login = user
        self.bad_commands = 0
        caps = " ".join(self.capability_list())
        return Outcome([r.tagged(tag, "OK", "logged in", f"CAPABILITY {caps}")])

    def cmd_unauthenticate(self, cmd: ParsedCommand) -> str:
        # RFC 8437 §3: back to the not-authenticated state, as if newly connected.
        self.no_args(cmd)
        self.deselect()
        self.state = State.NOT_AUTHENTICATED
        self.account_id = None
        self.login = ""
        self._enabled = None
        self.bad_commands = 0  # as if newly connected
        return "UNAUTHENTICATE completed"

    def cmd_compress(self, cmd: ParsedCommand) -> Outcome:
        # RFC 4978 §3: DEFLATE, once per connection.
        if len(cmd.args) != 1 or not isinstance(cmd.args[0], Atom):
            raise bad("COMPRESS takes a mechanism")
        if cmd.args[0].upper() != "DEFLATE":
            raise no("unknown compression mechanism")
        if self.compressed:
            raise no("compression is already active", "COMPRESSIONACTIVE")
        self.compressed = True
        return Outcome([r.tagged(cmd.tag.encode(), "OK", "DEFLATE active")], compress=True)

    # -- IDLE: RFC 2177 / RFC 9051 §6.3.13 ----------------------------------------------

    def cmd_idle(self, cmd: ParsedCommand) -> Outcome:
        self.no_args(cmd)
        self.idling_tag = cmd.tag.encode()
        self.report_updates(expunge_allowed=True)
        return Outcome([b"+ idling\r\n"], idle=True)

    def idle_updates(self) -> list[bytes]:
        """Called by the server while IDLE: whatever changed, as untagged responses."""
        self.out = []
        try:
            self.report_updates(expunge_allowed=True)
        except Exception:  # noqa: BLE001 - the next wake-up tries again
            log.warning("IMAP IDLE refresh failed", exc_info=True)
        lines, self.out = self.out, []
        return lines

    def end_idle(self, line: bytes) -> Outcome:
        tag, self.idling_tag = self.idling_tag, b""
        if line.strip().upper() != b"DONE":
            return self._bad_command(tag, "expected DONE")
        self.out = []
        self.report_updates(expunge_allowed=True)
        lines, self.out = self.out, []
        return Outcome(lines + [r.tagged(tag, "OK", "IDLE terminated")])

    # -- helpers shared by the command modules -------------------------------------------

    @staticmethod
    def no_args(cmd: ParsedCommand) -> None:
        if cmd.args:
            raise bad(f"{cmd.name} takes no arguments")

    @staticmethod
    def astring(token: Token) -> str:
        if isinstance(token, Atom):
            return token.value
        if isinstance(token, String):
            try:
                return token.value.decode("utf-8")
            except UnicodeDecodeError:
                raise bad("strings must be UTF-8") from None
        raise bad("a string was expected")

    def require_account(self) -> uuid.UUID:
        assert self.account_id is not None
        return self.account_id

    def settle(self, position: int) -> None:
        """Read-your-writes: wait until the views hold this session's own change."""
        if position > 0:
            self.wait_for(position)


#: RFC 9051 §7.1 response codes for the domain's refusals.
_CODES: tuple[tuple[type[DomainError], str], ...] = (
    (MailboxNotFound, "NONEXISTENT"), (MailboxExists, "ALREADYEXISTS"),
    (MailboxHasChildren, "HASCHILDREN"), (InvalidMailboxName, "CANNOT"),
    (MailboxProtected, "CANNOT"), (MessageTooLarge, "TOOBIG"), (LegalHoldActive, "CANNOT"),
)


def response_code(error: DomainError) -> str | None:
    return next((code for kind, code in _CODES if isinstance(error, kind)), None)


COMMANDS: dict[str, tuple[Callable[[Any, ParsedCommand], Any], frozenset[State]]] = {
    "CAPABILITY": (ImapSession.cmd_capability, ANY),
    "NOOP": (ImapSession.cmd_noop, ANY),
    "LOGOUT": (ImapSession.cmd_logout, ANY),
    "ID": (ImapSession.cmd_id, ANY),
    "STARTTLS": (ImapSession.cmd_starttls, NOT_AUTH),
    "LOGIN": (ImapSession.cmd_login, NOT_AUTH),
    "AUTHENTICATE": (ImapSession.cmd_authenticate, NOT_AUTH),
    "ENABLE": (ImapSession.cmd_enable, AUTH),
    "UNAUTHENTICATE": (ImapSession.cmd_unauthenticate, AUTH),
    "COMPRESS": (ImapSession.cmd_compress, AUTH),
    "IDLE": (ImapSession.cmd_idle, AUTH),
    "SELECT": (ImapSession.cmd_select, AUTH),
    "EXAMINE": (ImapSession.cmd_examine, AUTH),
    "CREATE": (ImapSession.cmd_create, AUTH),
    "DELETE": (ImapSession.cmd_delete, AUTH),
    "RENAME": (ImapSession.cmd_rename, AUTH),
    "SUBSCRIBE": (ImapSession.cmd_subscribe, AUTH),
    "UNSUBSCRIBE": (ImapSession.cmd_unsubscribe, AUTH),
    "LIST": (ImapSession.cmd_list, AUTH),
    "LSUB": (ImapSession.cmd_lsub, AUTH),
    "NAMESPACE": (ImapSession.cmd_namespace, AUTH),
    "STATUS": (ImapSession.cmd_status, AUTH),
    "APPEND": (ImapSession.cmd_append, AUTH),
    "GETQUOTA": (ImapSession.cmd_getquota, AUTH),
    "GETQUOTAROOT": (ImapSession.cmd_getquotaroot, AUTH),
    "SETQUOTA": (ImapSession.cmd_setquota, AUTH),
    "CHECK": (ImapSession.cmd_check, SELECTED),
    "CLOSE": (ImapSession.cmd_close, SELECTED),
    "UNSELECT": (ImapSession.cmd_unselect, SELECTED),
    "EXPUNGE": (ImapSession.cmd_expunge, SELECTED),
    "SEARCH": (ImapSession.cmd_search, SELECTED),
    "SORT": (ImapSession.cmd_sort, SELECTED),
    "THREAD": (ImapSession.cmd_thread, SELECTED),
    "FETCH": (ImapSession.cmd_fetch, SELECTED),
    "STORE": (ImapSession.cmd_store, SELECTED),
    "COPY": (ImapSession.cmd_copy, SELECTED),
    "MOVE": (ImapSession.cmd_move, SELECTED),
    "UID": (ImapSession.cmd_uid, SELECTED),
}
