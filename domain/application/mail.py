"""Use cases on mail: delivery, append, flags, copy, move, expunge, mailboxes, reads.

Each command loads the aggregates it changes, holds their in-process locks, saves once
(one transaction) and returns the log position, so a caller can wait for the views to
reach it (read-your-writes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from domain.application.accounts import AccountUseCases
from domain.model.account import Account
from domain.model.errors import (
    DomainError,
    InvalidMailboxName,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxProtected,
    MessageNotFound,
    MessageTooLarge,
    SubjectErased,
)
from domain.model.mailbox import Mailbox
from domain.model.message import AccessLedger, Delivery, MessageCopy, access_ledger_id_for, copy_id_for
from domain.model.summary import summarize
from domain.model.values import (
    MAILBOX_DELIMITER,
    SPECIAL_USE,
    normalize_flags,
    normalize_mailbox_name,
)
from domain.ports import SealedBlob

#: Default ceiling for one message; the SMTP SIZE limit is configured below it.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

FlagMode = Literal["replace", "add", "remove"]


@dataclass(frozen=True)
class CopyRef:
    account_id: UUID
    mailbox_id: UUID
    uidvalidity: int
    uid: int
    copy_id: UUID


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: UUID
    copies: list[CopyRef]
    position: int


@dataclass(frozen=True)
class FlagChange:
    uid: int
    flags: list[str]
    modseq: int


@dataclass(frozen=True)
class StoreResult:
    changes: list[FlagChange]
    modified: list[int]
    position: int


@dataclass(frozen=True)
class AppendItem:
    raw: bytes
    flags: list[str]
    internal_date: datetime | None = None


@dataclass(frozen=True)
class StoredMessage:
    copy_id: UUID
    uid: int
    flags: list[str]
    internal_date: str
    body: bytes


def format_internal_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class _PendingDelivery:
    raw: bytes
    sealed: SealedBlob
    summary: dict[str, str]
    internal_date: str
    channel: str
    scan: dict[str, Any] | None = None
    result: DeliveryResult | None = None
    error: BaseException | None = None


class _UidSlots:
    """UIDs and mod-sequences handed out for a batch of deliveries, assigned to each
    mailbox in one ``UidsAssigned`` event: every copy still gets its own, higher UID and
    MODSEQ (RFC 9051 §2.3.1.1, RFC 7162 §3.1), for one mailbox event per batch instead
    of one per message."""

    def __init__(self) -> None:
        self._taken: dict[UUID, int] = {}

    def take(self, mailbox: Mailbox) -> tuple[int, int]:
        count = self._taken.get(mailbox.id, 0)
        self._taken[mailbox.id] = count + 1
        return mailbox.uidnext + count, mailbox.highestmodseq + count + 1

    def assign(self, mailboxes: Iterable[Mailbox]) -> None:
        for mailbox in mailboxes:
            count = self._taken.get(mailbox.id, 0)
            if count:
                mailbox.assign_uids(count, mailbox.highestmodseq + count)


class _WaitingDeliveries:
    """Deliveries queued per set of inboxes until one of them holds the inboxes' locks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[tuple[UUID, ...], list[_PendingDelivery]] = {}

    def add(self, key: tuple[UUID, ...], item: _PendingDelivery) -> None:
        with self._lock:
            self._queues.setdefault(key, []).append(item)

    def take(self, key: tuple[UUID, ...]) -> list[_PendingDelivery]:
        with self._lock:
            return self._queues.pop(key, [])

    def put_back(self, key: tuple[UUID, ...], batch: list[_PendingDelivery]) -> None:
        with self._lock:
            self._queues[key] = batch + self._queues.get(key, [])


class MailUseCases(AccountUseCases):
    max_message_bytes = MAX_MESSAGE_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting_deliveries = _WaitingDeliveries()
        self._inbox_ids: dict[UUID, UUID] = {}

    def check_size(self, raw: bytes) -> None:
        if len(raw) > self.max_message_bytes:
            raise MessageTooLarge(len(raw), self.max_message_bytes)

    # -- delivery ----------------------------------------------------------------------

    def deliver(self, recipients: list[str], raw: bytes, channel: str = "lmtp",
                folder: Literal["inbox", "junk"] = "inbox",
                scan: dict[str, Any] | None = None,
                folders: dict[str, Literal["inbox", "junk"]] | None = None) -> DeliveryResult:
        """Store one message for N local recipients: one blob, one copy per person.

        ``folder="junk"`` puts the copies in each recipient's \\Junk mailbox (the
        scanners' verdict); ``scan`` is that verdict's summary, recorded on the Delivery
        in the same transaction (results and numbers only: it is system-scoped).
        ``folders`` overrides ``folder`` per recipient address (a recipient's own
        learning spam filter decides for them alone; one body, one transaction still).

        The blob is durable before the events; the events of all recipients commit in
        one transaction, so the delivery is all or nothing. Unknown recipients raise
        before anything is written.

        Deliveries to the same inboxes that wait for each other's lock are combined:
        whoever gets the lock stores every waiting one in the same transaction (UIDs
        in arrival order), so a busy mailbox costs one commit per batch, not per message.
        """
        self.check_size(raw)
        if not recipients:
            raise ValueError("a delivery needs at least one recipient")
        account_ids = self.recipient_accounts(recipients)
        target = self._junk_id if folder == "junk" else self._inbox_id
        inbox_ids = {account_id: target(account_id) for account_id in account_ids}
        for address, wanted in (folders or {}).items():
            if address in recipients:
                account_id = self.delivery_account_id(address)
                inbox_ids[account_id] = (self._junk_id if wanted == "junk" else self._inbox_id)(account_id)
        sealed = self.ports.blobs.put(raw)
        pending = _PendingDelivery(raw, sealed, summarize(raw),
                                   format_internal_date(self.ports.clock.now()), channel, scan)
        key = tuple(inbox_ids.values())
        self._waiting_deliveries.add(key, pending)

        def body() -> None:
            batch = self._waiting_deliveries.take(key)
            if batch:
                self._store_batch(inbox_ids, batch)

        with self._body_released_on_refusal(sealed.blob_id):
            self.retrying("the recipients' inboxes", lambda: inbox_ids.values(), body)
            if pending.error is not None:
                raise pending.error
            assert pending.result is not None, "a delivery left its batch unstored"
            return pending.result

    def _store_batch(self, inbox_ids: dict[UUID, UUID], batch: list[_PendingDelivery]) -> None:
        """Save every delivery of the batch in one transaction (under the inboxes' locks).
        On a version conflict the batch goes back to the queue and ``retrying`` runs
        again; any other failure is every member's failure."""
        try:
            mailboxes = {inbox_id: self.load(inbox_id, what="the recipient")
                         for inbox_id in inbox_ids.values()}
            objs: list[object] = list(mailboxes.values())
            results = []
            slots = _UidSlots()
            for item in batch:
                item_objs, result = self._delivery_objects(inbox_ids, item.raw, item.sealed, item.summary,
                                                           item.internal_date, item.channel, mailboxes, slots,
                                                           scan=item.scan)
                objs += [o for o in item_objs if not isinstance(o, Mailbox)]
                results.append(result)
            slots.assign(mailboxes.values())
            position = self.save_with_envelope(*objs)
        except IntegrityError:
            self._waiting_deliveries.put_back(tuple(inbox_ids.values()), batch)
            raise
        except BaseException as error:
            for item in batch:
                item.error = error
            if isinstance(error, DomainError):
                return  # each member raises it in its own thread (and frees its body)
            raise
        for item, result in zip(batch, results, strict=True):
            item.result = DeliveryResult(result.delivery_id, result.copies, position)

    def recipient_accounts(self, recipients: list[str]) -> list[UUID]:
        """The accounts the addresses deliver to, each once, in order (sub-addresses
        ``user+tag@`` included); raises ``UnknownAddress`` before anything is written."""
        account_ids: list[UUID] = []
        for address in recipients:
            account_id = self.delivery_account_id(address)
            if account_id not in account_ids:
                account_ids.append(account_id)
        return account_ids

    def _delivery_objects(self, inbox_ids: dict[UUID, UUID], raw: bytes, sealed: SealedBlob,
                          summary: dict[str, str], internal_date: str, channel: str,
                          mailboxes: dict[UUID, Mailbox] | None = None,
                          slots: _UidSlots | None = None, *,
                          scan: dict[str, Any] | None = None,
                          ) -> tuple[list[object], DeliveryResult]:
        """A new copy in each recipient's INBOX and the Delivery that links them
        (loaded under the caller's locks, or taken from ``mailboxes``; nothing saved yet).
        With ``slots`` the UIDs are reserved there and assigned for the whole batch."""
        delivery_id = uuid4()
        objs: list[object] = []
        refs: list[CopyRef] = []
        for account_id, inbox_id in inbox_ids.items():
            mailbox = mailboxes[inbox_id] if mailboxes else self.load(inbox_id, what="the recipient")
            copy = self._new_copy(mailbox, [], internal_date, len(raw), sealed.blob_id,
                                  sealed.data_key, summary, delivery_id,
                                  slots.take(mailbox) if slots is not None else None)
            objs += [mailbox, copy]
            refs.append(CopyRef(account_id, mailbox.id, mailbox.uidvalidity, copy.uid, copy.id))
        delivery = Delivery(delivery_id=delivery_id, blob_id=sealed.blob_id, size=len(raw),
                            copy_ids=[ref.copy_id for ref in refs], channel=channel)
        if scan:
            delivery.record_scan(scan)
        objs.append(delivery)
        return objs, DeliveryResult(delivery_id, refs, 0)

    @contextmanager
    def _body_released_on_refusal(self, *blob_ids: str) -> Iterator[None]:
        """A body stored for a message that was then refused is deleted. Only domain
        errors count: they are raised before the save, so nothing refers to the body
        (any other error might come after the commit, and the body must stay)."""
        try:
            yield
        except DomainError:
            self.ports.blobs.delete_many(sorted(set(blob_ids)))
            raise

    def _inbox_id(self, account_id: UUID) -> UUID:
        """INBOX can be neither renamed nor deleted, so its id is the account's for
        life and is remembered (an erased account fails on its mailbox instead)."""
        inbox_id = self._inbox_ids.get(account_id)
        if inbox_id is None:
            account: Account = self.load(account_id, what="the recipient")
            inbox_id = self._inbox_ids[account_id] = account.mailbox_id("INBOX")
        return inbox_id

    def _junk_id(self, account_id: UUID) -> UUID:
        """RFC 6154 §2: the account's \\Junk mailbox under whatever name the user gave
        it; INBOX when there is none (the X-Spam-Flag field still marks the message).
        Looked up each time, since the user may rename, delete or create it."""
        account: Account = self.load(account_id, what="the recipient")
        for _, mailbox_id in sorted(account.mailboxes.items()):
            mailbox = self.peek(UUID(mailbox_id))
            if mailbox is not None and not mailbox.deleted and mailbox.special_use == "\\Junk":
                return mailbox.id
        return self._inbox_id(account_id)

    @staticmethod
    def _new_copy(mailbox: Mailbox, flags: list[str], internal_date: str, size: int,
                  blob_id: str, data_key: bytes, summary: dict[str, str],
                  delivery_id: UUID | None, slot: tuple[int, int] | None = None) -> MessageCopy:
        if slot is None:
            uid, modseq = mailbox.uidnext, mailbox.next_modseq()
            mailbox.assign_uids(1, modseq)
        else:
            uid, modseq = slot
        return MessageCopy(subject_id=mailbox.subject_id, mailbox_id=mailbox.id, uid=uid,
                           modseq=modseq, flags=flags, internal_date=internal_date, size=size,
                           blob_id=blob_id, data_key=data_key, summary=summary,
                           delivery_id=delivery_id)

    def append(self, account_id: UUID, mailbox_name: str, raw: bytes,
               flags: list[str] | None = None, internal_date: datetime | None = None) -> tuple[CopyRef, int]:
        """RFC 9051 §6.3.12 APPEND: returns the APPENDUID parts (RFC 4315) and the position."""
        refs, position = self.append_many(account_id, mailbox_name,
                                          [AppendItem(raw, flags or [], internal_date)])
        return refs[0], position

    def append_many(self, account_id: UUID, mailbox_name: str,
                    items: list[AppendItem]) -> tuple[list[CopyRef], int]:
        """RFC 3502 MULTIAPPEND: every message is stored, in order, in one transaction,
        or none is."""
        for item in items:
            self.check_size(item.raw)
        clean = [normalize_flags(item.flags) for item in items]
        mailbox_id = self.mailbox_id_of(account_id, mailbox_name)
        sealed = [self.ports.blobs.put(item.raw) for item in items]
        summaries = [summarize(item.raw) for item in items]
        dates = [format_internal_date(item.internal_date or self.ports.clock.now()) for item in items]

        def body() -> tuple[list[CopyRef], int]:
            mailbox = self.load(mailbox_id, what="the mailbox owner")
            objs: list[object] = [mailbox]
            refs = []
            for item, flags, blob, summary, date in zip(items, clean, sealed, summaries, dates, strict=True):
                delivery_id = uuid4()
                copy = self._new_copy(mailbox, flags, date, len(item.raw), blob.blob_id,
                                      blob.data_key, summary, delivery_id)
                objs += [copy, Delivery(delivery_id=delivery_id, blob_id=blob.blob_id, size=len(item.raw),
                                        copy_ids=[copy.id], channel="append")]
                refs.append(CopyRef(account_id, mailbox.id, mailbox.uidvalidity, copy.uid, copy.id))
            return refs, self.save_with_envelope(*objs)

        with self._body_released_on_refusal(*(blob.blob_id for blob in sealed)):
            return self.retrying("the mailbox", lambda: [mailbox_id], body)

    # -- message state -----------------------------------------------------------------

    def _copies(self, mailbox: Mailbox, uids: list[int]) -> list[MessageCopy]:
        copies = []
        for uid in sorted(set(uids)):
            if not 0 < uid < mailbox.uidnext:
                continue
            copy = self.load_or_none(copy_id_for(mailbox.id, uid))
            if copy is not None and not copy.expunged:
                copies.append(copy)
        return copies

    def set_flags(self, account_id: UUID, mailbox_id: UUID, uids: list[int], flags: list[str],
                  mode: FlagMode = "replace") -> tuple[list[FlagChange], int]:
        """RFC 9051 §6.4.6 STORE. One new MODSEQ for the command (RFC 7162 §3.2)."""
        result = self.store_flags(account_id, mailbox_id, uids, flags, mode)
        return result.changes, result.position

    def store_flags(self, account_id: UUID, mailbox_id: UUID, uids: list[int], flags: list[str],
                    mode: FlagMode = "replace", unchanged_since: int | None = None) -> StoreResult:
        """STORE with RFC 7162 §3.1.3 UNCHANGEDSINCE: a message whose MODSEQ is above it
        is left alone and reported in ``modified``, decided under the mailbox's lock."""
        wanted = set(normalize_flags(flags))
        self._check_owner(account_id, mailbox_id)

        def body() -> StoreResult:
            mailbox = self.load(mailbox_id, what="the mailbox owner")
            modseq = mailbox.next_modseq()
            changed: list[MessageCopy] = []
            results: list[FlagChange] = []
            modified: list[int] = []
            for copy in self._copies(mailbox, uids):
                if unchanged_since is not None and copy.modseq > unchanged_since:
                    modified.append(copy.uid)
                    continue
                current = set(copy.flags)
                new = {"replace": wanted, "add": current | wanted, "remove": current - wanted}[mode]
                if new != current:
                    copy.change_flags(sorted(new), modseq)
                    changed.append(copy)
                results.append(FlagChange(copy.uid, copy.flags, copy.modseq))
            if not changed:
                return StoreResult(results, modified, self.log_position())
            mailbox.advance_modseq(modseq)
            return StoreResult(results, modified, self.save_with_envelope(mailbox, *changed))

        return self.retrying("the mailbox", lambda: [mailbox_id], body)

    def copy_messages(self, account_id: UUID, source_id: UUID, uids: list[int],
                      target_name: str, *, move: bool = False) -> tuple[list[tuple[int, int]], int, int]:
        """RFC 9051 §6.4.7 COPY and RFC 6851 MOVE: returns (source uid, target uid) pairs
        for COPYUID (RFC 4315), the target UIDVALIDITY and the position. A move expunges
        the sources in the same transaction, so no message is ever in both or neither."""
        self._check_owner(account_id, source_id)
        target_id = self.mailbox_id_of(account_id, target_name)
        if target_id == source_id and move:
            raise MailboxProtected(target_name, "cannot move messages into their own mailbox")

        def body() -> tuple[list[tuple[int, int]], int, int]:
            source = self.load(source_id, what="the mailbox owner")
            target = source if target_id == source_id else self.load(target_id, what="the mailbox owner")
            sources = self._copies(source, uids)
            if not sources:
                return [], target.uidvalidity, self.log_position()
            objs: list[object] = []
            pairs = []
            source_modseq = source.next_modseq()
            for original in sources:
                # Each new copy gets its own UID and MODSEQ from the target (RFC 7162 §3.1).
                copy = self._new_copy(target, list(original.flags), original.internal_date,
                                      original.size, original.blob_id, original.data_key,
                                      original.summary, original.delivery_id)
                pairs.append((original.uid, copy.uid))
                objs.append(copy)
                if move:
                    original.expunge(source_modseq)
                    objs.append(original)
            if move:
                source.advance_modseq(source_modseq)
                objs.append(source)
            objs.append(target)
            return pairs, target.uidvalidity, self.save_with_envelope(*objs)

        return self.retrying("the mailboxes", lambda: [source_id, target_id], body)

    def expunge(self, account_id: UUID, mailbox_id: UUID,
                uids: list[int] | None = None) -> tuple[list[int], int]:
        """RFC 9051 §6.4.3 EXPUNGE / §6.4.9 UID EXPUNGE: removes messages flagged
        \\Deleted (among ``uids`` when given); returns the expunged UIDs."""
        self._check_owner(account_id, mailbox_id)

        def body() -> tuple[list[int], int]:
            mailbox = self.load(mailbox_id, what="the mailbox owner")
            candidates = uids if uids is not None else list(range(1, mailbox.uidnext))
            return self._expunge_copies(mailbox, [c for c in self._copies(mailbox, candidates)
                                                  if "\\Deleted" in c.flags])

        return self.retrying("the mailbox", lambda: [mailbox_id], body)

    def _expunge_copies(self, mailbox: Mailbox, doomed: list[MessageCopy]) -> tuple[list[int], int]:
        """Expunge these copies with one new MODSEQ (RFC 7162 §3.1), in one transaction."""
        if not doomed:
            return [], self.log_position()
        modseq = mailbox.next_modseq()
        for copy in doomed:
            copy.expunge(modseq)
        mailbox.advance_modseq(modseq)
        return [c.uid for c in doomed], self.save_with_envelope(mailbox, *doomed)

    def remove(self, account_id: UUID, mailbox_id: UUID, uids: list[int]) -> tuple[list[int], int]:
        """RFC 1939 §6 (POP3 UPDATE): the messages a session marked are expunged together,
        whatever their flags, in one transaction; already gone ones are skipped."""
        self._check_owner(account_id, mailbox_id)

        def body() -> tuple[list[int], int]:
            mailbox = self.load(mailbox_id, what="the mailbox owner")
            return self._expunge_copies(mailbox, self._copies(mailbox, uids))

        return self.retrying("the mailbox", lambda: [mailbox_id], body)

    # -- mailboxes ---------------------------------------------------------------------

    def mailbox_id_of(self, account_id: UUID, name: str) -> UUID:
        account: Account = self.load(account_id, what="the account")
        return account.mailbox_id(normalize_mailbox_name(name))

    def _check_owner(self, account_id: UUID, mailbox_id: UUID) -> None:
        account: Account = self.load(account_id, what="the account")
        if str(mailbox_id) not in account.mailboxes.values():
            raise MailboxNotFound(str(mailbox_id))

    def create_mailbox(self, account_id: UUID, name: str, special_use: str | None = None) -> UUID:
        """RFC 9051 §6.3.4 CREATE (with RFC 6154 §3 USE)."""
        name = normalize_mailbox_name(name)
        if special_use is not None and special_use not in SPECIAL_USE:
            raise InvalidMailboxName(name, f"unknown special-use attribute {special_use!r}")

        def body() -> UUID:
            account: Account = self.load(account_id, what="the account")
            account.check_mailbox_absent(name)
            objs: list[object] = [account]
            # RFC 9051 §6.3.4: the superior names a CREATE needs are created with it.
            levels = name.split(MAILBOX_DELIMITER)
            parents = [MAILBOX_DELIMITER.join(levels[:n]) for n in range(1, len(levels))]
            for level_name, use in [(p, None) for p in parents if p not in account.mailboxes] + [
                    (name, special_use)]:
                uidvalidity = account.next_uidvalidity(int(self.ports.clock.now().timestamp()))
                mailbox = Mailbox(subject_id=account.subject_id, account_id=account.id,
                                  name=level_name, special_use=use, uidvalidity=uidvalidity)
                account.attach_mailbox(level_name, str(mailbox.id), uidvalidity)
                objs.append(mailbox)
            self.save_with_envelope(*objs)
            return mailbox.id

        return self.retrying("the account", lambda: [account_id], body)

    def rename_mailbox(self, account_id: UUID, old: str, new: str) -> None:
        """RFC 9051 §6.3.6 RENAME: children move with the parent; INBOX cannot be renamed
        here (renaming INBOX moves its messages, a later protocol issue)."""
        old, new = normalize_mailbox_name(old), normalize_mailbox_name(new)
        if old == "INBOX":
            raise MailboxProtected(old, "renaming INBOX is not supported")

        def body() -> None:
            account: Account = self.load(account_id, what="the account")
            account.mailbox_id(old)
            prefix = old + MAILBOX_DELIMITER
            renames = [[name, new + name[len(old):]] for name in sorted(account.mailboxes)
                       if name == old or name.startswith(prefix)]
            for _, target in renames:
                account.check_mailbox_absent(target)
            account.change_mailbox_names(renames)
            objs: list[object] = [account]
            for _, target in renames:
                mailbox = self.load(UUID(account.mailboxes[target]), what="the account")
                mailbox.rename(target)
                objs.append(mailbox)
            self.save_with_envelope(*objs)

        self.retrying("the account", lambda: [account_id], body)

    def delete_mailbox(self, account_id: UUID, name: str) -> None:
        """RFC 9051 §6.3.5 DELETE: the mailbox's messages are expunged with it. Its
        inferior mailboxes stay: the name lives on as a level above them (LIST shows it
        \\NonExistent), and deleting that level alone is refused (HASCHILDREN)."""
        name = normalize_mailbox_name(name)
        if name == "INBOX":
            raise MailboxProtected(name, "INBOX cannot be deleted")

        def body() -> None:
            account: Account = self.load(account_id, what="the account")
            if name not in account.mailboxes and any(
                    other.startswith(name + MAILBOX_DELIMITER) for other in account.mailboxes):
                # RFC 9051 §6.3.5: a name that is only a level above others cannot go.
                raise MailboxHasChildren(name)
            mailbox_id = account.mailbox_id(name)
            mailbox = self.load(mailbox_id, what="the account")
            modseq = mailbox.next_modseq()
            copies = self._copies(mailbox, list(range(1, mailbox.uidnext)))
            for copy in copies:
                copy.expunge(modseq)
            mailbox.delete(modseq)
            account.detach_mailbox(name)
            self.save_with_envelope(account, mailbox, *copies)

        self.retrying("the account", lambda: [account_id], body)

    def set_subscription(self, account_id: UUID, name: str, subscribed: bool) -> None:
        """RFC 9051 §6.3.7 SUBSCRIBE / §6.3.8 UNSUBSCRIBE."""
        mailbox_id = self.mailbox_id_of(account_id, name)

        def body() -> None:
            mailbox = self.load(mailbox_id, what="the account")
            if mailbox.subscribed != subscribed:
                mailbox.set_subscribed(subscribed)
                self.save_with_envelope(mailbox)

        self.retrying("the mailbox", lambda: [mailbox_id], body)

    # -- reads -------------------------------------------------------------------------

    def read_messages(self, account_id: UUID, copy_ids: list[UUID], purpose: str) -> list[StoredMessage]:
        """Open message bodies for their owner, recording one MessagesAccessed event."""
        account: Account = self.load(account_id, what="the account")
        owned = set(account.mailbox_ids_ever)
        out = []
        for copy_id in copy_ids:
            copy = self.load_or_none(copy_id)
            if copy is None or copy.expunged or str(copy.mailbox_id) not in owned:
                raise MessageNotFound(str(copy_id))
            body = self.ports.blobs.get(copy.blob_id, copy.data_key)
            out.append(StoredMessage(copy.id, copy.uid, list(copy.flags), copy.internal_date, body))
        self.record_access(account, [m.copy_id for m in out], purpose)
        return out

    def open_bodies(self, account_id: UUID, mailbox_id: UUID, uids: list[int],
                    purpose: str) -> dict[int, bytes]:
        """The bodies of a mailbox's messages by UID, for their owner; UIDs expunged
        meanwhile are left out. One MessagesAccessed event records what was opened
        (DESIGN §2: reads are processing too), before anything is returned."""
        bodies, opened = self.read_bodies(account_id, mailbox_id, uids)
        if opened:
            self.record_accesses(account_id, [(opened, purpose)])
        return bodies

    def read_bodies(self, account_id: UUID, mailbox_id: UUID,
                    uids: list[int]) -> tuple[dict[int, bytes], list[UUID]]:
        """``open_bodies`` without the record: the caller must ``record_accesses`` the
        returned copy ids before the bodies leave the process.

        The account is read up to date (an erasure anywhere stops this at once); each
        copy is taken as cached, without asking the log for newer events: the blob and
        its key never change, and a copy expunged by another session since may still be
        read, as RFC 2180 §4.1.1 allows (Dovecot does the same). That query per message
        was most of the time of a SEARCH TEXT or a FETCH of bodies (docs/performance.md)."""
        account: Account | None = self.peek(account_id)
        if account is None or account.erased:
            raise SubjectErased("the account")
        if str(mailbox_id) not in account.mailbox_ids_ever:
            raise MailboxNotFound(str(mailbox_id))
        bodies: dict[int, bytes] = {}
        opened: list[UUID] = []
        for uid in uids:
            copy = self.peek_settled(copy_id_for(mailbox_id, uid))
            if copy is None or copy.expunged or copy.erased:
                continue
            bodies[uid] = self.ports.blobs.get(copy.blob_id, copy.data_key)
            opened.append(copy.id)
        return bodies, opened

    def record_accesses(self, account_id: UUID, reads: list[tuple[list[UUID], str]]) -> int:
        """One MessagesAccessed event per read (per protocol command), all saved in one
        transaction: pipelined commands cost one commit, not one each."""

        def record(ledger: AccessLedger) -> None:
            for copy_ids, purpose in reads:
                ledger.record(copy_ids=list(copy_ids), purpose=purpose)

        return self._in_access_ledger(account_id, record)

    def record_data_access(self, account_id: UUID, what: str, purpose: str) -> int:
        """Record that the account holder's data (``what``: e.g. "subject summary",
        "consents") was read, before it is shown (DESIGN §2, issue 7)."""
        return self._in_access_ledger(account_id,
                                      lambda ledger: ledger.record_data(what=what, purpose=purpose))

    def _in_access_ledger(self, account_id: UUID, record: Callable[[AccessLedger], None]) -> int:
        """Append to the account's access ledger (opened on first use); the position."""
        account: Account | None = self.peek(account_id)
        if account is None or account.erased:
            raise SubjectErased("the account")
        ledger_id = access_ledger_id_for(account.id)

        def body() -> int:
            ledger = self.load_or_none(ledger_id)
            if ledger is None:
                ledger = AccessLedger(subject_id=account.subject_id, account_id=account.id)
            ledger.check_not_erased()
            record(ledger)
            return self.save_with_envelope(ledger)

        return self.retrying("the access ledger", lambda: [ledger_id], body)

    def record_access(self, account: Account, copy_ids: list[UUID], purpose: str) -> int:
        return self.record_accesses(account.id, [(copy_ids, purpose)])

    def live_copies(self, mailbox: Mailbox) -> list[MessageCopy]:
        return self._copies(mailbox, list(range(1, mailbox.uidnext)))
