"""IMAP commands on the messages of the selected mailbox (RFC 9051 §6.4): FETCH, STORE,
SEARCH, COPY, MOVE (RFC 6851), EXPUNGE, CLOSE, UNSELECT (RFC 3691), CHECK, their UID
forms, SORT and THREAD (RFC 5256), with CONDSTORE/QRESYNC (RFC 7162), ESEARCH (RFC
4731), SEARCHRES (RFC 5182), BINARY (RFC 3516) and PREVIEW (RFC 8970).

A mixin of ``ImapSession``. Flags, UIDs and MODSEQs come from the session's own view of
the mailbox (``SelectedMailbox``); sizes, dates and envelopes from the mailbox view;
bodies are opened through the use case that records who read them.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
from collections.abc import Callable
from typing import Any

from adapters.imap import mime
from adapters.imap import responses as r
from adapters.imap.binary import UnknownCte, binary_section
from adapters.imap.bodystructure import body_structure
from adapters.imap.charsets import decode_words
from adapters.imap.dates import format_date_time
from adapters.imap.envelope import envelope_of_fields, unfolded
from adapters.imap.esearch import (
    compress_in_order,
    esearch_response,
    parse_return_options,
    saved_result,
    search_response,
)
from adapters.imap.fetch_items import FetchItem, Section, parse_fetch_items, section_bytes
from adapters.imap.message_text import body_text, header_value
from adapters.imap.preview import preview
from adapters.imap.search import Key, Matcher, parse_search, uses_modseq
from adapters.imap.selected import SelectedMailbox, compress_uids
from adapters.imap.sorting import SortInput, parse_sort_criteria, sort_messages
from adapters.imap.states import bad, no
from adapters.imap.threads import ThreadInput, format_threads, thread_orderedsubject, thread_references
from adapters.imap.tokens import (
    MAX_NUMBER,
    Atom,
    ParsedCommand,
    ParseError,
    SequenceSet,
    Token,
    parse_sequence_set,
)
from domain.model.errors import InvalidMailboxName, MailboxNotFound
from domain.model.values import normalize_flags
from projections.mailbox_view.view import MessageRow

#: Commands during which EXPUNGE responses may not be sent (RFC 9051 §7.5.1).
NO_EXPUNGE_DURING = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})
_ROW_ITEMS = {"ENVELOPE", "INTERNALDATE", "RFC822.SIZE", "EMAILID", "SAVEDATE"}
_BODY_ITEMS = {"BODY", "BODYSTRUCTURE", "BINARY", "BINARY.SIZE", "RFC822", "RFC822.HEADER",
               "RFC822.TEXT", "PREVIEW"}
_ROW_KEYS = {"SAVEDATESUPPORTED", "LARGER", "SMALLER", "BEFORE", "ON", "SINCE", "SENTBEFORE",
             "SENTON", "SENTSINCE", "FROM", "TO", "CC", "BCC", "SUBJECT", "HEADER", "OLDER", "YOUNGER",
             "EMAILID", "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"}
_SUMMARY_HEADERS = {"from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date",
                    "message-id", "in-reply-to", "references"}


class MessageCommands:
    # -- sets ------------------------------------------------------------------------------

    def sequence_set(self: Any, token: Token) -> SequenceSet:
        if not isinstance(token, Atom):
            raise bad("a sequence set was expected")
        try:
            return parse_sequence_set(token.value)
        except ParseError as error:
            raise bad(str(error)) from None

    def resolve(self: Any, numbers: SequenceSet, uid: bool) -> list[int]:
        """UIDs named by a sequence set, a UID set, or ``$`` (RFC 5182 §2.1)."""
        selected: SelectedMailbox = self.selected
        if numbers.saved:
            return [u for u in (self.saved_uids or []) if selected.seq_of(u) is not None]
        if uid:
            return selected.by_uid(numbers)
        if not selected.seq_in_range(numbers):
            raise bad("invalid message sequence number (RFC 9051 §6.4.5)")
        return selected.by_sequence(numbers)

    def message_rows(self: Any, uids: list[int]) -> dict[int, MessageRow]:
        """View rows of these UIDs: asked for by UID when few, else the whole mailbox in
        one scan (cheaper than thousands of parameters)."""
        if len(uids) <= 200:
            return {row.uid: row for row in self.view.messages(self.selected_id, uids)}
        wanted = set(uids)
        return {row.uid: row for row in self.view.messages(self.selected_id) if row.uid in wanted}

    def writable(self: Any) -> None:
        if self.selected.read_only:
            raise no("the mailbox is read-only (EXAMINE)", "READ-ONLY")

    # -- UID: RFC 9051 §6.4.9 --------------------------------------------------------------

    def cmd_uid(self: Any, cmd: ParsedCommand) -> str:
        if not cmd.args or not isinstance(cmd.args[0], Atom):
            raise bad("UID takes a command")
        name = cmd.args[0].upper()
        inner = ParsedCommand(cmd.tag, name, cmd.args[1:])
        handlers: dict[str, Callable[..., str]] = {
            "FETCH": self.fetch, "STORE": self.store, "COPY": self.copy, "MOVE": self.move,
            "SEARCH": self.search, "SORT": self.sort, "THREAD": self.thread, "EXPUNGE": self.uid_expunge,
        }
        handler = handlers.get(name)
        if handler is None:
            raise bad(f"UID {name[:20]} is not a command")
        return handler(inner, uid=True)

    def cmd_fetch(self: Any, cmd: ParsedCommand) -> str:
        return self.fetch(cmd, uid=False)

    def cmd_store(self: Any, cmd: ParsedCommand) -> str:
        return self.store(cmd, uid=False)

    def cmd_copy(self: Any, cmd: ParsedCommand) -> str:
        return self.copy(cmd, uid=False)

    def cmd_move(self: Any, cmd: ParsedCommand) -> str:
        return self.move(cmd, uid=False)

    def cmd_search(self: Any, cmd: ParsedCommand) -> str:
        return self.search(cmd, uid=False)

    def cmd_sort(self: Any, cmd: ParsedCommand) -> str:
        return self.sort(cmd, uid=False)

    def cmd_thread(self: Any, cmd: ParsedCommand) -> str:
        return self.thread(cmd, uid=False)

    # -- CHECK / CLOSE / UNSELECT / EXPUNGE: RFC 9051 §6.4.1 - §6.4.3 ---------------------

    def cmd_check(self: Any, cmd: ParsedCommand) -> str:
        self.no_args(cmd)
        return "CHECK completed"

    def cmd_close(self: Any, cmd: ParsedCommand) -> str:
        # RFC 9051 §6.4.1: expunge silently, unless the mailbox was opened read-only.
        self.no_args(cmd)
        if not self.selected.read_only:
            _, position = self.app.expunge(self.require_account(), self.selected_id)
            self.settle(position)
        self.deselect()
        return "CLOSE completed"

    def cmd_unselect(self: Any, cmd: ParsedCommand) -> str:
        self.no_args(cmd)  # RFC 3691: like CLOSE, without the expunge
        self.deselect()
        return "UNSELECT completed"

    def cmd_expunge(self: Any, cmd: ParsedCommand) -> str:
        self.no_args(cmd)
        return self._expunge(None)

    def uid_expunge(self: Any, cmd: ParsedCommand, uid: bool = True) -> str:
        # RFC 4315 §2.1 UID EXPUNGE: only the named messages.
        if len(cmd.args) != 1:
            raise bad("UID EXPUNGE takes a UID set")
        return self._expunge(self.resolve(self.sequence_set(cmd.args[0]), True))

    def _expunge(self: Any, uids: list[int] | None) -> str:
        self.writable()
        if uids == []:
            return "EXPUNGE completed"
        _, position = self.app.expunge(self.require_account(), self.selected_id, uids)
        self.settle(position)
        self.report_updates(expunge_allowed=True)
        if self.condstore:  # RFC 7162 §3.2.10 (the expunges' MODSEQ, from the view)
            row = self.view.mailbox(self.selected_id)
            highest = max(self.selected.known_modseq, row.highestmodseq if row else 0, 1)
            return f"[HIGHESTMODSEQ {highest}] EXPUNGE completed"
        return "EXPUNGE completed"

    # -- FETCH: RFC 9051 §6.4.5; RFC 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED -------------

    def fetch(self: Any, cmd: ParsedCommand, uid: bool) -> str:
        if len(cmd.args) not in (2, 3):
            raise bad("FETCH takes a sequence set, items and optional modifiers")
        numbers = self.sequence_set(cmd.args[0])
        try:
            items = parse_fetch_items(cmd.args[1])
        except ParseError as error:
            raise bad(str(error)) from None
        changed_since, want_vanished = self._fetch_modifiers(cmd.args[2] if len(cmd.args) == 3 else None, uid)
        selected: SelectedMailbox = self.selected
        uids = self.resolve(numbers, uid)
        names = {item.name for item in items}
        if uid:
            names.add("UID")
        if "MODSEQ" in names or changed_since is not None:
            self.enabled.add("CONDSTORE")  # RFC 7162 §3.1: MODSEQ in FETCH enables it
            names.add("MODSEQ")
        if want_vanished:
            vanished = [u for u in self.view.vanished_since(self.selected_id, changed_since)
                        if in_ranges(numbers, u)] if not numbers.saved else []
            if vanished:
                self.untagged(b"* VANISHED (EARLIER) " + compress_uids(vanished).encode())
        if changed_since is not None:
            uids = [u for u in uids if selected.modseqs.get(u, 0) > changed_since]
        if not uids:
            return "FETCH completed"
        live = [u for u in uids if not selected.is_gone(u)]
        rows: dict[int, MessageRow] = {}
        if names & _ROW_ITEMS:
            rows = self.message_rows(live)
        bodies: dict[int, bytes] = {}
        if names & _BODY_ITEMS:
            bodies = self.open_bodies(live, "imap fetch")
        seen_now = self._mark_seen(items, [u for u in live if u in bodies or not names & _BODY_ITEMS])
        issued = False
        for message_uid in uids:
            seq = selected.seq_of(message_uid)
            missing_row = bool(names & _ROW_ITEMS) and message_uid not in rows
            if missing_row or (names & _BODY_ITEMS and message_uid not in bodies):
                issued = True
                continue
            parts = self._fetch_parts(items, names, message_uid, rows.get(message_uid),
                                      bodies.get(message_uid), message_uid in seen_now)
            self.out.append(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
        if issued:
            return "[EXPUNGEISSUED] some messages were expunged meanwhile; FETCH completed"
        return "FETCH completed"

    def _fetch_modifiers(self: Any, token: Token | None, uid: bool) -> tuple[int | None, bool]:
        if token is None:
            return None, False
        if not isinstance(token, tuple) or not token:
            raise bad("FETCH modifiers are a parenthesized list")
        changed_since, vanished = None, False
        position = 0
        while position < len(token):
            name = token[position].upper() if isinstance(token[position], Atom) else ""  # type: ignore[union-attr]
            if name == "CHANGEDSINCE" and position + 1 < len(token):
                changed_since = self.number(token[position + 1])
                position += 2
            elif name == "VANISHED":
                # RFC 7162 §3.2.6: UID FETCH only, with QRESYNC enabled and CHANGEDSINCE.
                if not uid or not self.qresync:
                    raise bad("VANISHED needs UID FETCH and QRESYNC enabled")
                vanished = True
                position += 1
            else:
                raise bad("unknown FETCH modifier")
        if vanished and changed_since is None:
            raise bad("VANISHED needs CHANGEDSINCE")
        return changed_since, vanished

    @staticmethod
    def number(token: Token) -> int:
        if not isinstance(token, Atom) or not token.value.isdigit() or len(token.value) > 20:
            raise bad("a number was expected")
        return int(token.value)

    def _mark_seen(self: Any, items: list[FetchItem], uids: list[int]) -> set[int]:
        """RFC 9051 §6.4.5: BODY[...] (not .PEEK) sets \\Seen; the new flags are sent."""
        selected: SelectedMailbox = self.selected
        if selected.read_only or not any(sets_seen(item) for item in items):
            return set()
        unseen = [u for u in uids if "\\Seen" not in selected.flags.get(u, ())]
        if not unseen:
            return set()
        result = self.app.store_flags(self.require_account(), self.selected_id, unseen, ["\\Seen"], "add")
        self.settle(result.position)
        for change in result.changes:
            selected.told(change.uid, frozenset(change.flags), change.modseq)
        return {change.uid for change in result.changes}

    def _fetch_parts(self: Any, items: list[FetchItem], names: set[str], uid: int, row: MessageRow | None,
                     raw: bytes | None, flags_changed: bool) -> list[bytes]:
        selected: SelectedMailbox = self.selected
        parts: list[bytes] = []
        # The MIME tree only when an item needs it (BODY[] and RFC822 are the bytes as
        # stored): parsed once, on first use.
        parsed: list[mime.Part] = []

        def tree_of() -> mime.Part:
            if not parsed:
                parsed.append(mime.parse(raw or b""))
            return parsed[0]

        if "UID" in names:
            parts.append(b"UID %d" % uid)
        if "FLAGS" in names or flags_changed:
            parts.append(b"FLAGS (" + " ".join(sorted(selected.flags[uid])).encode() + b")")
        if "MODSEQ" in names:
            parts.append(b"MODSEQ (%d)" % selected.modseqs[uid])
        for item in items:
            name = item.name
            if name in ("UID", "FLAGS", "MODSEQ"):
                continue
            if name == "INTERNALDATE":
                parts.append(b'INTERNALDATE "' + format_date_time(internal_datetime(row)).encode() + b'"')
            elif name == "RFC822.SIZE":
                parts.append(b"RFC822.SIZE %d" % row.size)  # type: ignore[union-attr]
            elif name == "ENVELOPE":
                fields = {name.encode(): unfolded(value.encode("utf-8", "replace"))
                          for name, value in row.summary.items()}  # type: ignore[union-attr]
                parts.append(b"ENVELOPE " + envelope_of_fields(fields, utf8=self.utf8))
            elif name == "EMAILID":
                parts.append(b"EMAILID (" + email_object_id(row).encode() + b")")
            elif name == "THREADID":
                parts.append(b"THREADID NIL")  # RFC 8474 §5.2: threads are not tracked
            elif name == "SAVEDATE":  # RFC 8514 §4: NIL for a copy saved before it was kept
                saved = saved_datetime(row)
                parts.append(b'SAVEDATE "' + format_date_time(saved).encode() + b'"' if saved
                             else b"SAVEDATE NIL")
            elif name in ("BODYSTRUCTURE", "BODY") and item.section is None:
                structure = body_structure(raw, tree_of(), extensible=name == "BODYSTRUCTURE",  # type: ignore[arg-type]
                                           utf8=self.utf8)
                parts.append(name.encode() + b" " + structure)
            elif name == "PREVIEW":
                parts.append(b"PREVIEW " + r.string(preview(raw, tree_of()), utf8=self.utf8))  # type: ignore[arg-type]
            elif name == "RFC822":
                parts.append(b"RFC822 " + literal(raw.replace(b"\x00", b"\x80")))  # type: ignore[union-attr]
            elif name == "RFC822.HEADER":
                parts.append(b"RFC822.HEADER " + literal(tree_of().header(raw)))  # type: ignore[union-attr, arg-type]
            elif name == "RFC822.TEXT":
                parts.append(b"RFC822.TEXT " + literal(tree_of().body(raw)))  # type: ignore[union-attr, arg-type]
            elif name == "BODY":
                whole = item.section is not None and not item.section.part and not item.section.text
                data = raw if whole else section_bytes(raw, tree_of(), item.section)  # type: ignore[arg-type]
                parts.append(self._section_response("BODY", item, data))
            else:  # BINARY, BINARY.SIZE (RFC 3516)
                parts.append(self._binary(item, raw, tree_of()))  # type: ignore[arg-type]
        return parts

    @staticmethod
    def _section_response(kind: str, item: FetchItem, data: bytes | None) -> bytes:
        label = f"{kind}[{section_text(item.section)}]"  # type: ignore[arg-type]
        if data is not None and item.partial is not None:
            origin, length = item.partial
            data = data[origin:origin + length]
            label += f"<{origin}>"
        if data is not None and kind == "BODY":
            # RFC 9051 §4.3: a literal holds no NUL; only BINARY may send one (~{n}).
            # Replaced as Dovecot does, octet for octet, so sizes and offsets hold.
            data = data.replace(b"\x00", b"\x80")
        return label.encode() + b" " + (b"NIL" if data is None else literal(data))

    def _binary(self: Any, item: FetchItem, raw: bytes, tree: mime.Part) -> bytes:
        assert item.section is not None
        try:
            data = binary_section(raw, tree, item.section.part)
        except UnknownCte:
            raise no("unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
        if data is None:
            raise no("no such body part", "NONEXISTENT")
        if item.name == "BINARY.SIZE":
            return f"BINARY.SIZE[{section_text(item.section)}] {len(data)}".encode()
        return self._section_response("BINARY", item, data)

    # -- STORE: RFC 9051 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE ------------------------

    def store(self: Any, cmd: ParsedCommand, uid: bool) -> str:
        args = list(cmd.args)
        if len(args) < 3:
            raise bad("STORE takes a sequence set, an item and flags")
        numbers = self.sequence_set(args.pop(0))
        unchanged_since = None
        if isinstance(args[0], tuple):
            modifier = args.pop(0)
            if (len(modifier) != 2 or not isinstance(modifier[0], Atom)
                    or modifier[0].upper() != "UNCHANGEDSINCE"):
                raise bad("unknown STORE modifier")
            unchanged_since = self.number(modifier[1])
            self.enabled.add("CONDSTORE")
        if not args or not isinstance(args[0], Atom):
            raise bad("STORE takes FLAGS, +FLAGS or -FLAGS")
        item = args.pop(0).upper()
        silent = item.endswith(".SILENT")
        mode = {"FLAGS": "replace", "+FLAGS": "add", "-FLAGS": "remove"}.get(item.removesuffix(".SILENT"))
        if mode is None:
            raise bad("STORE takes FLAGS, +FLAGS or -FLAGS")
        flag_tokens = args[0] if len(args) == 1 and isinstance(args[0], tuple) else tuple(args)
        if not all(isinstance(f, Atom) for f in flag_tokens):
            raise bad("flags are atoms")
        flags = [f.value for f in flag_tokens]  # type: ignore[union-attr]
        try:
            normalize_flags(flags)
        except ValueError as error:
            raise bad(str(error)) from None
        self.writable()
        selected: SelectedMailbox = self.selected
        uids = [u for u in self.resolve(numbers, uid) if not selected.is_gone(u)]
        if not uids:
            return "STORE completed"
        result = self.app.store_flags(self.require_account(), self.selected_id, uids, flags, mode,
                                      unchanged_since)
        self.settle(result.position)
        for change in result.changes:
            selected.told(change.uid, frozenset(change.flags), change.modseq)
            if silent and unchanged_since is None:
                continue
            seq = selected.seq_of(change.uid)
            items = [b"FLAGS (" + " ".join(change.flags).encode() + b")"]
            if uid:
                items.insert(0, b"UID %d" % change.uid)
            if self.condstore:
                items.append(b"MODSEQ (%d)" % change.modseq)
            if silent:  # RFC 7162 §3.1.3: .SILENT still reports the new MODSEQ
                items = [i for i in items if not i.startswith(b"FLAGS")]
            self.out.append(b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n")
        if result.modified:
            numbers_text = compress_uids(result.modified if uid else
                                         sorted(selected.seq_of(u) for u in result.modified))
            return f"[MODIFIED {numbers_text}] conditional STORE failed for some messages"
        return "STORE completed"

    # -- COPY / MOVE: RFC 9051 §6.4.7, RFC 6851, RFC 4315 COPYUID ------------------------

    def copy(self: Any, cmd: ParsedCommand, uid: bool) -> str:
        return self._transfer(cmd, uid, move=False)

    def move(self: Any, cmd: ParsedCommand, uid: bool) -> str:
        return self._transfer(cmd, uid, move=True)

    def _transfer(self: Any, cmd: ParsedCommand, uid: bool, *, move: bool) -> str:
        if len(cmd.args) != 2:
            raise bad(f"{cmd.name} takes a sequence set and a mailbox name")
        numbers = self.sequence_set(cmd.args[0])
        target = self.mailbox_name(cmd.args[1])
        if move:
            self.writable()
        selected: SelectedMailbox = self.selected
        uids = [u for u in self.resolve(numbers, uid) if not selected.is_gone(u)]
        account_id = self.require_account()
        try:
            self.app.mailbox_id_of(account_id, target)
        except (MailboxNotFound, InvalidMailboxName):
            raise no(f"no mailbox named {target!r}", "TRYCREATE") from None
        if not uids:
            return f"{cmd.name} completed"
        if not move:
            self.check_quota(sum(row.size for row in self.message_rows(uids).values()))
        pairs, uidvalidity, position = self.app.copy_messages(account_id, self.selected_id, uids, target,
                                                              move=move)
        self.settle(position)
        code = ""
        if pairs:
            code = (f"COPYUID {uidvalidity} {compress_in_order([p[0] for p in pairs])} "
                    f"{compress_in_order([p[1] for p in pairs])}")
        if move:
            # RFC 6851 §4.3: COPYUID in an untagged OK, then the expunges.
            if code:
                self.untagged(f"* OK [{code}] moved")
            self.report_updates(expunge_allowed=True)
            return f"{cmd.name} completed"
        return f"[{code}] {cmd.name} completed" if code else f"{cmd.name} completed"

    # -- SEARCH: RFC 9051 §6.4.4; RFC 4731 ESEARCH; RFC 5182 SEARCHRES; RFC 7162 MODSEQ ---

    def _criteria(self: Any, tokens: tuple[Token, ...], *, charset_first: bool) -> Key:
        tokens = tuple(tokens)
        if charset_first:
            if not tokens:
                raise bad("a charset was expected")
            self._charset(tokens[0])
            tokens = tokens[1:]
        elif tokens and isinstance(tokens[0], Atom) and tokens[0].upper() == "CHARSET":
            if len(tokens) < 2:
                raise bad("CHARSET takes a name")
            self._charset(tokens[1])
            tokens = tokens[2:]
        try:
            return parse_search(tokens)
        except ParseError as error:
            raise bad(str(error)) from None

    def _charset(self: Any, token: Token) -> None:
        name = self.astring(token).upper()
        if name not in ("UTF-8", "US-ASCII"):
            raise no("unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")

    def matching(self: Any, key: Key) -> list[int]:
        """UIDs of the messages matching ``key``, ascending; loads only what the key needs."""
        selected: SelectedMailbox = self.selected
        names = key_names(key)
        uids = [u for u in selected.uids if not selected.is_gone(u)]
        rows: dict[int, MessageRow] = {}
        if names & _ROW_KEYS:
            rows = {row.uid: row for row in self.view.messages(self.selected_id)}
        bodies: dict[int, bytes] = {}
        needs_body = bool(names & {"BODY", "TEXT"}) or any(
            k.name == "HEADER" and k.arg[0].lower() not in _SUMMARY_HEADERS for k in walk(key))  # type: ignore[index]
        if needs_body:
            bodies = self.open_bodies(uids, "imap search")
        saved = set(self.saved_uids) if self.saved_uids is not None else None
        matcher = Matcher(key, largest_seq=selected.exists,
                          largest_uid=selected.uids[-1] if selected.uids else 0, saved=saved)
        found = []
        for uid in uids:
            message = SearchMessage(uid, selected.seq_of(uid) or 0, selected.flags[uid],
                                    selected.modseqs[uid], rows.get(uid), bodies.get(uid))
            if matcher(message):
                found.append(uid)
        return found

    def search(self: Any, cmd: ParsedCommand, uid: bool) -> str:
        try:
            options, rest = parse_return_options(cmd.args)
        except ParseError as error:
            raise bad(str(error)) from None
        key = self._criteria(rest, charset_first=False)
        found = self.matching(key)
        return self._search_result(cmd, found, options, uid, key, verb="SEARCH")

    def _search_result(self: Any, cmd: ParsedCommand, found: list[int], options: set[str] | None, uid: bool,
                       key: Key, *, verb: str) -> str:
        selected: SelectedMailbox = self.selected
        numbers = found if uid else [selected.seq_of(u) for u in found]
        modseq = None
        if uses_modseq(key) and found:
            modseq = max(selected.modseqs[u] for u in found)  # RFC 7162 §3.1.5
        if options is None and not self.rev2:
            self.out.append(search_response(numbers, modseq))
            return f"{verb} completed"
        if options is None:
            options = {"ALL"}  # RFC 9051 §7.3.4: IMAP4rev2 answers SEARCH with ESEARCH
        if "SAVE" in options:  # RFC 5182 §2.4
            self.saved_uids = saved_result(found, options - {"SAVE"})
        self.out.append(esearch_response(cmd.tag, numbers, options - {"SAVE"}, uid, modseq))
        return f"{verb} completed"

    # -- SORT and THREAD: RFC 5256, RFC 5267 ESORT, RFC 5957 DISPLAY ------------------

    def sort(self: Any, cmd: ParsedCommand, uid: bool) -> str:
        args = tuple(cmd.args)
        options: set[str] | None = None
        if args and isinstance(args[0], Atom) and args[0].upper() == "RETURN":
            options, args = parse_return_options(args)
        if len(args) < 3 or not isinstance(args[0], tuple):
            raise bad("SORT takes (criteria) charset search-keys")
        try:
            criteria = parse_sort_criteria(args[0])
        except ParseError as error:
            raise bad(str(error)) from None
        key = self._criteria(args[1:], charset_first=True)
        found = self.matching(key)
        rows = self.message_rows(found)
        selected: SelectedMailbox = self.selected
        inputs = [SortInput(number=u, arrival=internal_datetime(rows[u]), sent=sent_datetime(rows[u]),
                            size=rows[u].size, subject=rows[u].summary.get("subject", ""),
                            from_=rows[u].summary.get("from", ""), to=rows[u].summary.get("to", ""),
                            cc=rows[u].summary.get("cc", ""))
                  for u in sorted(found, key=lambda u: selected.seq_of(u) or 0) if u in rows]
        ordered = sort_messages(inputs, criteria)
        numbers = ordered if uid else [selected.seq_of(u) for u in ordered]
        if options is None:
            self.untagged("* SORT" + "".join(f" {n}" for n in numbers))
            return "SORT completed"
        if "SAVE" in options:
            self.saved_uids = sorted(ordered)
        self.out.append(esearch_response(cmd.tag, numbers, options - {"SAVE"}, uid, sort_order=True))
        return "SORT completed"

    def thread(self: Any, cmd: ParsedCommand, uid: bool) -> str:
        if len(cmd.args) < 3 or not isinstance(cmd.args[0], Atom):
            raise bad("THREAD takes an algorithm, a charset and search keys")
        algorithm = cmd.args[0].upper()
        if algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
            raise bad("unknown threading algorithm")
        key = self._criteria(cmd.args[1:], charset_first=True)
        found = self.matching(key)
        selected: SelectedMailbox = self.selected
        rows = self.message_rows(found)
        inputs = []
        for u in found:
            row = rows.get(u)
            if row is None:
                continue
            summary = row.summary
            inputs.append(ThreadInput(number=u if uid else selected.seq_of(u) or 0,
                                      message_id=summary.get("message-id", ""),
                                      in_reply_to=summary.get("in-reply-to", ""),
                                      references=summary.get("references", ""),
                                      subject=summary.get("subject", ""),
                                      sent=sent_datetime(row) or internal_datetime(row)))
        threads = (thread_references if algorithm == "REFERENCES" else thread_orderedsubject)(inputs)
        body = format_threads(threads)
        self.out.append(b"* THREAD" + (b" " + body if body else b"") + b"\r\n")
        return "THREAD completed"


# -- helpers -------------------------------------------------------------------------------

def literal(data: bytes) -> bytes:
    """Message data always goes as a literal (``~{n}`` when it holds NUL, RFC 3516)."""
    return (b"~" if b"\x00" in data else b"") + b"{%d}\r\n" % len(data) + data


def section_text(section: Section) -> str:
    parts = ".".join(str(n) for n in section.part)
    text = section.text
    if section.fields:
        text += " (" + " ".join(section.fields) + ")"
    return ".".join(p for p in (parts, text) if p)


def internal_datetime(row: MessageRow | None) -> dt.datetime:
    assert row is not None
    return dt.datetime.strptime(row.internal_date, "%Y-%m-%dT%H:%M:%S%z")


def saved_datetime(row: MessageRow | None) -> dt.datetime | None:
    if row is None or not row.saved_at:
        return None
    return dt.datetime.fromisoformat(row.saved_at)


def sent_datetime(row: MessageRow) -> dt.datetime | None:
    value = row.summary.get("date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def email_object_id(row: MessageRow | None) -> str:
    """RFC 8474 §5.1 EMAILID: the same for every copy of one message (copies share the
    stored body) and different for different messages; a digest of the body's id, so
    it says nothing about the person."""
    assert row is not None
    return "E" + hashlib.sha256(("emailid|" + row.blob_id).encode()).hexdigest()[:24]


def sets_seen(item: FetchItem) -> bool:
    """RFC 9051 §6.4.5: BODY[section], BINARY[section], RFC822 and RFC822.TEXT set
    \\Seen (not .PEEK, and not BODY without a section, which is the structure)."""
    if item.peek:
        return False
    return item.name in ("RFC822", "RFC822.TEXT") or (item.name in ("BODY", "BINARY")
                                                      and item.section is not None)


def in_ranges(numbers: SequenceSet, uid: int) -> bool:
    """Whether a UID set names ``uid`` (an expunged one: "*" is taken as the largest
    possible UID), without enumerating the set (1:4294967295 is a common argument)."""
    for first, last in numbers.ranges:
        low = MAX_NUMBER if first is None else first
        high = MAX_NUMBER if last is None else last
        if min(low, high) <= uid <= max(low, high):
            return True
    return False


def walk(key: Key) -> list[Key]:
    out, pending = [], [key]
    while pending:
        current = pending.pop()
        out.append(current)
        if current.name in ("AND", "OR"):
            pending.extend(current.arg)  # type: ignore[arg-type]
        elif current.name == "NOT":
            pending.append(current.arg)  # type: ignore[arg-type]
    return out


def key_names(key: Key) -> set[str]:
    return {k.name for k in walk(key)}


class SearchMessage:
    """One message as SEARCH sees it (the ``Searchable`` protocol of ``search.py``)."""

    def __init__(self, uid: int, seq: int, flags: frozenset[str], modseq: int, row: MessageRow | None,
                 raw: bytes | None) -> None:
        self.uid = uid
        self.seq = seq
        self.flags = flags
        self.modseq = modseq
        self._row = row
        self._raw = raw
        self._tree: mime.Part | None = None

    @property
    def size(self) -> int:
        return self._row.size if self._row else 0

    @property
    def internal_datetime(self) -> dt.datetime:
        return internal_datetime(self._row)

    @property
    def internal_date(self) -> dt.date:
        return self.internal_datetime.date()

    @property
    def sent_date(self) -> dt.date | None:
        sent = sent_datetime(self._row) if self._row else None
        return sent.date() if sent else None

    @property
    def save_date(self) -> dt.date | None:
        saved = saved_datetime(self._row) if self._row else None
        return saved.date() if saved else None

    @property
    def email_id(self) -> str:
        return email_object_id(self._row) if self._row else ""

    @property
    def thread_id(self) -> str:
        return ""

    def _parsed(self) -> mime.Part:
        if self._tree is None:
            self._tree = mime.parse(self._raw or b"")
        return self._tree

    def header(self, name: str) -> str:
        lowered = name.lower()
        if self._raw is None or (self._row is not None and lowered in _SUMMARY_HEADERS):
            return decode_words(self._row.summary.get(lowered, "")) if self._row else ""
        return header_value(self._parsed().header(self._raw), lowered)

    def header_text(self) -> str:
        if self._raw is None:
            return ""
        return decode_words(self._parsed().header(self._raw).decode("utf-8", "replace"))

    def body_text(self) -> str:
        if self._raw is None:
            return ""
        return body_text(self._raw, self._parsed())
