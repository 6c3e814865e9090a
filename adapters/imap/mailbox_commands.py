"""IMAP commands on mailboxes (RFC 9051 §6.3): SELECT/EXAMINE, CREATE, DELETE, RENAME,
SUBSCRIBE, LIST (RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE),
LSUB, NAMESPACE, STATUS, APPEND (RFC 3502 MULTIAPPEND), and QUOTA (RFC 9208).

A mixin of ``ImapSession``: ``self`` is the session (``app``, ``view``, ``out``...).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from adapters.imap import responses as r
from adapters.imap import utf7
from adapters.imap.dates import parse_date_time
from adapters.imap.listing import list_matches
from adapters.imap.selected import SelectedMailbox, compress_uids
from adapters.imap.states import State, bad, no
from adapters.imap.tokens import Atom, ParsedCommand, ParseError, String, Token, parse_sequence_set
from domain.application.mail import AppendItem
from domain.model.errors import InvalidMailboxName, MailboxNotFound
from domain.model.values import MAILBOX_DELIMITER, SPECIAL_USE, SYSTEM_FLAGS, normalize_mailbox_name
from projections.mailbox_view.view import MailboxRow

#: RFC 9051 §6.3.11 / RFC 8438 STATUS items.
STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
                "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID", "DELETED-STORAGE")
_LIST_SELECT = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
_LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"}


class MailboxCommands:
    # -- names ---------------------------------------------------------------------------

    def mailbox_name(self: Any, token: Token) -> str:
        """A mailbox name as the client sent it: UTF-8 once UTF8=ACCEPT or IMAP4rev2 is
        enabled, modified UTF-7 otherwise (RFC 3501 §5.1.3); invalid encodings are NO."""
        if isinstance(token, Atom):
            raw = token.value.encode("utf-8", "surrogateescape")
        elif isinstance(token, String):
            raw = token.value
        else:
            raise bad("a mailbox name was expected")
        if self.utf8:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise no("mailbox names must be UTF-8", "CANNOT") from None
        else:
            try:
                name = utf7.decode(raw)
            except ValueError as error:
                raise no(f"invalid mailbox name: {error}", "CANNOT") from None
        if name.upper() == "INBOX":
            return "INBOX"
        return name

    def wire_name(self: Any, name: str) -> bytes:
        return r.mailbox(name, utf8=self.utf8)

    def catch_up(self: Any) -> None:
        """Let the views reach everything committed so far (another session's CREATE,
        a delivery a moment ago) before answering from them."""
        self.settle(self.app.log_position())

    # -- SELECT / EXAMINE: RFC 9051 §6.3.2, §6.3.3; RFC 7162 §3.1.8, §3.2.5 ---------------

    def cmd_select(self: Any, cmd: ParsedCommand) -> str:
        return self.open_mailbox(cmd, read_only=False)

    def cmd_examine(self: Any, cmd: ParsedCommand) -> str:
        return self.open_mailbox(cmd, read_only=True)

    def deselect(self: Any) -> bool:
        was = self.selected is not None
        self.selected = None
        self.selected_id = None
        self.selected_name = ""
        self.saved_uids = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED
        return was

    def open_mailbox(self: Any, cmd: ParsedCommand, *, read_only: bool) -> str:
        if not cmd.args or len(cmd.args) > 2:
            raise bad(f"{cmd.name} takes a mailbox name and optional parameters")
        qresync = self._select_parameters(cmd.args[1]) if len(cmd.args) == 2 else None
        name = self.mailbox_name(cmd.args[0])
        if self.deselect() and (self.qresync or self.rev2):
            self.untagged("* OK [CLOSED] previous mailbox closed")  # RFC 7162 §3.2.11
        account_id = self.require_account()
        try:
            mailbox_id = self.app.mailbox_id_of(account_id, name)
        except InvalidMailboxName:
            raise no(f"no mailbox named {name!r}", "NONEXISTENT") from None
        self.catch_up()
        row: MailboxRow | None = self.view.mailbox(mailbox_id)
        if row is None:
            raise no(f"no mailbox named {name!r}", "NONEXISTENT")
        selected = SelectedMailbox(read_only)
        selected.load(self.view.message_states(mailbox_id, 0, 0))  # MessageState is a Change
        self.selected, self.selected_id, self.selected_name = selected, mailbox_id, row.name
        self.state = State.SELECTED
        keywords = sorted({f for flags in selected.flags.values() for f in flags if not f.startswith("\\")})
        flag_list = " ".join([*SYSTEM_FLAGS, *keywords])
        self.untagged(f"* {selected.exists} EXISTS")
        if not self.rev2:
            self.untagged("* 0 RECENT")  # RFC 3501 §7.3.2; no session claims \Recent
        self.untagged(f"* FLAGS ({flag_list})")
        permanent = "" if read_only else f"{flag_list} \\*"
        self.untagged(f"* OK [PERMANENTFLAGS ({permanent})] flags are kept")
        if not self.rev2:
            unseen = next((seq for seq, uid in enumerate(selected.uids, 1)
                           if "\\Seen" not in selected.flags[uid]), None)
            if unseen is not None:
                self.untagged(f"* OK [UNSEEN {unseen}] first unseen message")
        self.untagged(f"* OK [UIDVALIDITY {row.uidvalidity}] UIDs valid")
        self.untagged(f"* OK [UIDNEXT {row.uidnext}] predicted next UID")
        # RFC 7162 §3.1.2.1. The row counts expunges too; the session keeps asking the
        # view from what its rows showed (known_modseq), so nothing is skipped.
        self.untagged(f"* OK [HIGHESTMODSEQ {max(selected.known_modseq, row.highestmodseq, 1)}] highest")
        self.untagged(f"* OK [MAILBOXID ({mailbox_object_id(mailbox_id)})] mailbox id")  # RFC 8474 §4.1
        if self.rev2:
            self.untagged(b"* LIST () \"/\" " + self.wire_name(row.name))  # RFC 9051 §6.3.2
        if qresync is not None:
            self._qresync_report(row, *qresync)
        return f"[{'READ-ONLY' if read_only else 'READ-WRITE'}] {cmd.name} completed"

    def _select_parameters(self: Any, token: Token) -> tuple[int, int, str | None] | None:
        """``(CONDSTORE)`` or ``(QRESYNC (uidvalidity modseq [known-uids ...]))``."""
        if not isinstance(token, tuple) or not token:
            raise bad("SELECT parameters are a parenthesized list")
        result = None
        position = 0
        while position < len(token):
            item = token[position]
            name = item.upper() if isinstance(item, Atom) else ""
            if name == "CONDSTORE":
                self.enabled.add("CONDSTORE")  # RFC 7162 §3.1.8: enables CONDSTORE
                position += 1
            elif name == "QRESYNC":
                if not self.qresync:
                    raise bad("QRESYNC must be enabled first (RFC 7162 §3.2.3)")
                if position + 1 >= len(token) or not isinstance(token[position + 1], tuple):
                    raise bad("QRESYNC takes (uidvalidity modseq [known-uids])")
                args = token[position + 1]
                if len(args) < 2 or not all(isinstance(a, Atom | tuple) for a in args):
                    raise bad("QRESYNC takes (uidvalidity modseq [known-uids])")
                try:
                    uidvalidity, modseq = (int(a.value) for a in args[:2])  # type: ignore[union-attr]
                except (ValueError, AttributeError):
                    raise bad("QRESYNC takes numbers") from None
                known = args[2].value if len(args) > 2 and isinstance(args[2], Atom) else None
                if known is not None:
                    parse_sequence_set(known)
                result = (uidvalidity, modseq, known)
                position += 2
            else:
                raise bad("unknown SELECT parameter")
        return result

    def _qresync_report(self: Any, row: MailboxRow, uidvalidity: int, modseq: int, known: str | None) -> None:
        """RFC 7162 §3.2.5.2: what changed since the client's MODSEQ, if its UIDVALIDITY
        still holds: expunged UIDs as VANISHED (EARLIER), changed messages as FETCH."""
        if uidvalidity != row.uidvalidity:
            return
        selected: SelectedMailbox = self.selected
        vanished = self.view.vanished_since(row.mailbox_id, modseq)
        if known is not None:
            wanted = set(parse_sequence_set(known).resolve(row.uidnext))
            vanished = [uid for uid in vanished if uid in wanted]
        if vanished:
            self.untagged(b"* VANISHED (EARLIER) " + compress_uids(vanished).encode())
        for seq, uid in enumerate(selected.uids, 1):
            if selected.modseqs[uid] > modseq:
                flags = " ".join(sorted(selected.flags[uid]))
                self.untagged(f"* {seq} FETCH (UID {uid} FLAGS ({flags}) MODSEQ ({selected.modseqs[uid]}))")

    # -- updates for the selected mailbox --------------------------------------------------

    def refresh(self: Any) -> None:
        selected: SelectedMailbox | None = self.selected
        if selected is None:
            return
        states = self.view.message_states(self.selected_id, selected.highest_uid, selected.known_modseq)
        selected.observe(states)

    def report_updates(self: Any, *, expunge_allowed: bool) -> None:
        if self.selected is None:
            return
        self.refresh()
        self.out += self.selected.updates(expunge_allowed=expunge_allowed, vanished=self.qresync,
                                          modseq=self.condstore)

    # -- CREATE / DELETE / RENAME / SUBSCRIBE: RFC 9051 §6.3.4 - §6.3.8 -----------------

    def cmd_create(self: Any, cmd: ParsedCommand) -> str:
        if not cmd.args or len(cmd.args) > 2:
            raise bad("CREATE takes a mailbox name and optional parameters")
        name = self.mailbox_name(cmd.args[0])
        # RFC 9051 §6.3.4: a trailing delimiter only says the name will have children.
        if name.endswith(MAILBOX_DELIMITER) and len(name) > 1:
            name = name[:-1]
        special_use = None
        if len(cmd.args) == 2:  # RFC 6154 §3: (USE (\Sent))
            params = cmd.args[1]
            if (not isinstance(params, tuple) or len(params) != 2 or not isinstance(params[0], Atom)
                    or params[0].upper() != "USE" or not isinstance(params[1], tuple)):
                raise bad("CREATE parameters are (USE (attributes))")
            uses = [a.value for a in params[1] if isinstance(a, Atom)]
            if len(uses) != len(params[1]) or len(uses) > 1:
                raise no("one special-use attribute per mailbox", "USEATTR")
            if uses:
                match = next((u for u in SPECIAL_USE if u.lower() == uses[0].lower()), None)
                if match is None:
                    raise no(f"unknown special-use attribute {uses[0][:30]}", "USEATTR")
                special_use = match
        if name.upper() == "INBOX":
            raise no("INBOX already exists", "ALREADYEXISTS")
        mailbox_id = self.app.create_mailbox(self.require_account(), name, special_use)
        return f"[MAILBOXID ({mailbox_object_id(mailbox_id)})] CREATE completed"  # RFC 8474 §4.1

    def cmd_delete(self: Any, cmd: ParsedCommand) -> str:
        if len(cmd.args) != 1:
            raise bad("DELETE takes a mailbox name")
        name = normalize_mailbox_name(self.mailbox_name(cmd.args[0]))
        if name == "INBOX":
            raise no("INBOX cannot be deleted", "CANNOT")
        account_id = self.require_account()
        try:
            target = self.app.mailbox_id_of(account_id, name)
        except MailboxNotFound:
            target = None  # perhaps a bare level above others: the use case says which
        self.app.delete_mailbox(account_id, name)
        if target == self.selected_id:
            self.deselect()
            self.untagged("* OK [CLOSED] the selected mailbox was deleted")
        return "DELETE completed"

    def cmd_rename(self: Any, cmd: ParsedCommand) -> str:
        if len(cmd.args) != 2:
            raise bad("RENAME takes two mailbox names")
        old = normalize_mailbox_name(self.mailbox_name(cmd.args[0]))
        new = normalize_mailbox_name(self.mailbox_name(cmd.args[1]))
        account_id = self.require_account()
        if old == "INBOX":
            # RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and
            # leaves INBOX empty.
            self.app.create_mailbox(account_id, new)
            inbox = self.app.mailbox_id_of(account_id, "INBOX")
            self.catch_up()
            uids = [s.uid for s in self.view.message_states(inbox, 0, 0) if s.flags is not None]
            if uids:
                _, _, position = self.app.copy_messages(account_id, inbox, uids, new, move=True)
                self.settle(position)
            return "RENAME completed"
        if new == "INBOX":
            raise no("INBOX already exists", "ALREADYEXISTS")
        self.app.rename_mailbox(account_id, old, new)
        if self.selected_name == old:
            self.selected_name = new
        return "RENAME completed"

    def cmd_subscribe(self: Any, cmd: ParsedCommand) -> str:
        return self._subscription(cmd, True)

    def cmd_unsubscribe(self: Any, cmd: ParsedCommand) -> str:
        return self._subscription(cmd, False)

    def _subscription(self: Any, cmd: ParsedCommand, subscribed: bool) -> str:
        if len(cmd.args) != 1:
            raise bad(f"{cmd.name} takes a mailbox name")
        name = self.mailbox_name(cmd.args[0])
        try:
            self.app.set_subscription(self.require_account(), name, subscribed)
        except (MailboxNotFound, InvalidMailboxName):
            if subscribed:
                raise no(f"no mailbox named {name!r}", "NONEXISTENT") from None
        return f"{cmd.name} completed"

    # -- LIST / LSUB / NAMESPACE: RFC 9051 §6.3.9, RFC 5258, RFC 3501 §6.3.9 ------------

    def cmd_namespace(self: Any, cmd: ParsedCommand) -> str:
        self.no_args(cmd)
        self.untagged('* NAMESPACE (("" "/")) NIL NIL')  # RFC 2342 §5: one personal namespace
        return "NAMESPACE completed"

    def cmd_list(self: Any, cmd: ParsedCommand) -> str:
        args = list(cmd.args)
        selection: set[str] = set()
        if args and isinstance(args[0], tuple):
            selection = {self._option(a, _LIST_SELECT) for a in args.pop(0)}
        if len(args) < 2:
            raise bad("LIST takes a reference and a pattern")
        reference = self.mailbox_pattern(args.pop(0))
        raw_patterns = args.pop(0)
        patterns = ([self.mailbox_pattern(p) for p in raw_patterns] if isinstance(raw_patterns, tuple)
                    else [self.mailbox_pattern(raw_patterns)])
        returns: set[str] = set()
        status_items: list[str] = []
        if args:
            if len(args) != 2 or not isinstance(args[0], Atom) or args[0].upper() != "RETURN" \
                    or not isinstance(args[1], tuple):
                raise bad("LIST ends with RETURN (options)")
            options = list(args[1])
            while options:
                option = self._option(options.pop(0), _LIST_RETURN)
                returns.add(option)
                if option == "STATUS":  # RFC 5819
                    if not options or not isinstance(options[0], tuple):
                        raise bad("RETURN STATUS takes a list of items")
                    status_items = self._status_items(options.pop(0))
        if "RECURSIVEMATCH" in selection and not selection & {"SUBSCRIBED"}:
            raise bad("RECURSIVEMATCH needs another selection option (RFC 5258 §3.1)")
        if patterns == [""] and not selection:
            # RFC 9051 §6.3.9: the hierarchy delimiter and root.
            self.untagged(b'* LIST (\\Noselect) "/" ""')
            return "LIST completed"
        self._list(reference, patterns, selection, returns, status_items, verb="LIST")
        return "LIST completed"

    def cmd_lsub(self: Any, cmd: ParsedCommand) -> str:
        if len(cmd.args) != 2:
            raise bad("LSUB takes a reference and a pattern")
        reference, pattern = (self.mailbox_pattern(a) for a in cmd.args)
        self._list(reference, [pattern], {"SUBSCRIBED"}, set(), [], verb="LSUB")
        return "LSUB completed"

    def mailbox_pattern(self: Any, token: Token) -> str:
        if isinstance(token, Atom | String):
            try:
                return self.mailbox_name(token)
            except Exception:  # noqa: BLE001 - an undecodable pattern matches nothing
                return "\x00"
        raise bad("a mailbox pattern was expected")

    @staticmethod
    def _option(token: Token, allowed: set[str]) -> str:
        if not isinstance(token, Atom) or token.upper() not in allowed:
            raise bad(f"unknown LIST option {getattr(token, 'value', '')[:30]}")
        return token.upper()

    def _list(self: Any, reference: str, patterns: list[str], selection: set[str], returns: set[str],
              status_items: list[str], *, verb: str) -> None:
        self.catch_up()
        rows = {row.name: row for row in self.view.mailboxes(self.require_account())}
        names = set(rows)
        # Levels above a mailbox that are not mailboxes themselves (left by a RENAME).
        ghosts = {MAILBOX_DELIMITER.join(n.split(MAILBOX_DELIMITER)[:i]) for n in names
                  for i in range(1, n.count(MAILBOX_DELIMITER) + 1)} - names
        subscribed_only = "SUBSCRIBED" in selection
        show_subscribed = subscribed_only or "SUBSCRIBED" in returns
        for name in sorted(names | ghosts, key=lambda n: (n != "INBOX", n)):
            if not any(list_matches(reference, pattern, name) for pattern in patterns):
                continue
            row = rows.get(name)
            children = [n for n in names if n.startswith(name + MAILBOX_DELIMITER)]
            attributes: list[str] = []
            extra = b""
            if row is None:
                if subscribed_only:
                    if "RECURSIVEMATCH" in selection and any(rows[c].subscribed for c in children):
                        extra = b' ("CHILDINFO" ("SUBSCRIBED"))'  # RFC 5258 §3.5
                        attributes.append("\\NonExistent")
                    else:
                        continue
                else:
                    attributes.append("\\NonExistent" if verb == "LIST" else "\\Noselect")
            else:
                if subscribed_only and not row.subscribed:
                    if "RECURSIVEMATCH" in selection and any(rows[c].subscribed for c in children):
                        extra = b' ("CHILDINFO" ("SUBSCRIBED"))'
                    else:
                        continue
                elif show_subscribed and row.subscribed:
                    attributes.append("\\Subscribed")
                if "SPECIAL-USE" in selection and not row.special_use:
                    continue
                if row.special_use:
                    attributes.append(row.special_use)
            if verb == "LIST":
                attributes.append("\\HasChildren" if children else "\\HasNoChildren")
            line = (f"* {verb} ({' '.join(attributes)}) \"/\" ".encode() + self.wire_name(name) + extra)
            self.untagged(line)
            if status_items and row is not None:
                self.untagged(self._status_line(row, status_items))

    # -- STATUS: RFC 9051 §6.3.11 ---------------------------------------------------------

    def _status_items(self: Any, token: Token) -> list[str]:
        if not isinstance(token, tuple) or not token:
            raise bad("STATUS takes a list of items")
        items = []
        for item in token:
            if not isinstance(item, Atom) or item.upper() not in STATUS_ITEMS:
                raise bad(f"unknown STATUS item {getattr(item, 'value', '')[:30]}")
            items.append(item.upper())
        return items

    def cmd_status(self: Any, cmd: ParsedCommand) -> str:
        if len(cmd.args) != 2:
            raise bad("STATUS takes a mailbox name and a list of items")
        name = self.mailbox_name(cmd.args[0])
        items = self._status_items(cmd.args[1])
        try:
            mailbox_id = self.app.mailbox_id_of(self.require_account(), name)
        except InvalidMailboxName:
            raise no(f"no mailbox named {name!r}", "NONEXISTENT") from None
        self.catch_up()
        row = self.view.mailbox(mailbox_id)
        if row is None:
            raise no(f"no mailbox named {name!r}", "NONEXISTENT")
        self.untagged(self._status_line(row, items))
        return "STATUS completed"

    def _status_line(self: Any, row: MailboxRow, items: list[str]) -> bytes:
        states = None
        if {"UNSEEN", "DELETED", "HIGHESTMODSEQ"} & set(items):
            states = [s for s in self.view.message_states(row.mailbox_id, 0, 0) if s.flags is not None]
        values = []
        for item in items:
            if item == "MESSAGES":
                value = str(row.messages)
            elif item == "UIDNEXT":
                value = str(row.uidnext)
            elif item == "UIDVALIDITY":
                value = str(row.uidvalidity)
            elif item == "UNSEEN":
                value = str(sum(1 for s in states or [] if "\\Seen" not in (s.flags or [])))
            elif item == "DELETED":
                value = str(sum(1 for s in states or [] if "\\Deleted" in (s.flags or [])))
            elif item == "SIZE":
                value = str(sum(m.size for m in self.view.messages(row.mailbox_id)))
            elif item == "DELETED-STORAGE":  # RFC 9208 §4.3: what EXPUNGE would free
                value = str(sum(m.size for m in self.view.messages(row.mailbox_id) if "\\Deleted" in m.flags))
            elif item == "RECENT":
                value = "0"
            elif item == "HIGHESTMODSEQ":
                value = str(max([row.highestmodseq, 1]))
            elif item == "APPENDLIMIT":
                value = str(self.max_message_bytes)
            else:  # MAILBOXID
                value = f"({mailbox_object_id(row.mailbox_id)})"
            values.append(f"{item} {value}")
        return b"* STATUS " + self.wire_name(row.name) + f" ({' '.join(values)})".encode()

    # -- APPEND: RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID ---------------

    def cmd_append(self: Any, cmd: ParsedCommand) -> str:
        if len(cmd.args) < 2:
            raise bad("APPEND takes a mailbox name and a message")
        name = self.mailbox_name(cmd.args[0])
        items = self._append_items(cmd.args[1:])
        account_id = self.require_account()
        try:
            self.app.mailbox_id_of(account_id, name)
        except (MailboxNotFound, InvalidMailboxName):
            raise no(f"no mailbox named {name!r}", "TRYCREATE") from None
        self.check_quota(sum(len(item.raw) for item in items))
        refs, position = self.app.append_many(account_id, name, items)
        if refs[0].mailbox_id == self.selected_id:
            self.settle(position)  # the EXISTS for it rides on this answer
        uids = compress_uids([ref.uid for ref in refs])
        return f"[APPENDUID {refs[0].uidvalidity} {uids}] APPEND completed"

    def _append_items(self: Any, args: tuple[Token, ...]) -> list[AppendItem]:
        items: list[AppendItem] = []
        position = 0
        while position < len(args):
            flags: list[str] = []
            date: dt.datetime | None = None
            if isinstance(args[position], tuple):
                flags = [a.value for a in args[position] if isinstance(a, Atom)]  # type: ignore[union-attr]
                if len(flags) != len(args[position]) or any(f.lower() == "\\recent" for f in flags):
                    raise bad("APPEND flags are flag atoms (not \\Recent)")
                position += 1
            if position < len(args) and isinstance(args[position], String) and not args[position].literal:
                try:
                    date = parse_date_time(args[position].value.decode("ascii", "replace"))  # type: ignore[union-attr]
                except ParseError as error:
                    raise bad(str(error)) from None
                position += 1
            if position >= len(args):
                raise bad("APPEND needs a message literal")
            message = args[position]
            if isinstance(message, Atom) and message.upper() == "UTF8":  # RFC 6855 §4
                position += 1
                inner = args[position] if position < len(args) else None
                if not (isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], String)):
                    raise bad("UTF8 takes a parenthesized literal")
                message = inner[0]
            if not isinstance(message, String) or not message.literal:
                raise bad("the message must be a literal")
            if not message.value:
                raise bad("an empty message")
            items.append(AppendItem(message.value, flags, date))
            position += 1
        return items

    # -- QUOTA: RFC 9208 -------------------------------------------------------------------

    def quota(self: Any) -> tuple[int, int]:
        """(octets used, limit) of the logged-in account."""
        self.catch_up()  # usage includes this session's APPENDs, answered before the view had them
        return self.view.storage_of(self.require_account()) or (0, 0)

    def check_quota(self: Any, adding: int) -> None:
        used, limit = self.quota()
        if limit and used + adding > limit:
            raise no("the mailbox storage quota would be exceeded", "OVERQUOTA")  # RFC 9208 §4.2

    def _quota_line(self: Any) -> str:
        used, limit = self.quota()
        # RFC 9208 §5.1: STORAGE is in units of 1024 octets.
        return f'* QUOTA "" (STORAGE {(used + 1023) // 1024} {limit // 1024})'

    def cmd_getquota(self: Any, cmd: ParsedCommand) -> str:
        if len(cmd.args) != 1:
            raise bad("GETQUOTA takes a quota root")
        if self.astring(cmd.args[0]) != "":
            raise no("no such quota root", "NONEXISTENT")
        self.untagged(self._quota_line())
        return "GETQUOTA completed"

    def cmd_getquotaroot(self: Any, cmd: ParsedCommand) -> str:
        if len(cmd.args) != 1:
            raise bad("GETQUOTAROOT takes a mailbox name")
        name = self.mailbox_name(cmd.args[0])
        self.app.mailbox_id_of(self.require_account(), name)
        self.untagged(b"* QUOTAROOT " + self.wire_name(name) + b' ""')
        self.untagged(self._quota_line())
        return "GETQUOTAROOT completed"

    def cmd_setquota(self: Any, cmd: ParsedCommand) -> str:
        raise no("quotas are set by the administrator (ledgermail CLI)", "NOPERM")


def mailbox_object_id(mailbox_id: UUID) -> str:
    """RFC 8474 §4.1 MAILBOXID: 1-255 characters of [A-Za-z0-9_-]; stable for life."""
    return "M" + mailbox_id.hex
