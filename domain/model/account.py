"""Accounts, the address index and the registry of local domains."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate, SystemAggregate
from domain.model.errors import AddressTaken, DomainExists, MailboxExists, MailboxNotFound


class Account(PersonalAggregate):
    """A person with a login: their addresses, credential, quota and mailboxes.

    The account is its own data subject; ``subject_id`` is random and chosen at creation.
    ``mailbox_ids_ever`` keeps every mailbox the account ever had, so erasure can find
    streams of deleted mailboxes too.
    """

    @event("Created")
    def __init__(self, subject_id: str, address: str, password_hash: str, quota_bytes: int) -> None:
        self.subject_id = subject_id
        self.address = address
        self.aliases: list[str] = []
        self.password_hash = password_hash
        self.quota_bytes = quota_bytes
        self.mailboxes: dict[str, str] = {}
        self.mailbox_ids_ever: list[str] = []
        self.last_uidvalidity = 0
        self.legal_hold: str | None = None
        self.legal_hold_since: str | None = None
        #: Profile data the person may have corrected (GDPR Art. 16), e.g. ``display_name``.
        self.profile: dict[str, str] = {}

    @property
    def addresses(self) -> list[str]:
        return [self.address, *self.aliases]

    @event("PasswordChanged")
    def change_password(self, password_hash: str) -> None:
        self.password_hash = password_hash

    @event("AliasAdded")
    def add_alias(self, address: str) -> None:
        self.aliases.append(address)

    @event("AliasRemoved")
    def remove_alias(self, address: str) -> None:
        self.aliases.remove(address)

    @event("ProfileRectified")
    def rectify_profile(self, changes: dict[str, str | None]) -> None:
        """Art. 16: the new values replace the old; ``None`` removes a field. The old
        values stay in earlier events, sealed under the same key, until erasure."""
        for field_name, value in changes.items():
            if value is None:
                self.profile.pop(field_name, None)
            else:
                self.profile[field_name] = value

    @event("QuotaChanged")
    def change_quota(self, quota_bytes: int) -> None:
        self.quota_bytes = quota_bytes

    def mailbox_id(self, name: str) -> UUID:
        try:
            return UUID(self.mailboxes[name])
        except KeyError:
            raise MailboxNotFound(name) from None

    def check_mailbox_absent(self, name: str) -> None:
        if name in self.mailboxes:
            raise MailboxExists(name)

    def next_uidvalidity(self, now_seconds: int) -> int:
        """RFC 9051 §2.3.1.1: a name reused for a new mailbox must get a new, higher
        UIDVALIDITY; the clock gives a good start, the account's counter the order."""
        return max(now_seconds & 0xFFFFFFFF, self.last_uidvalidity + 1)

    @event("MailboxAttached")
    def attach_mailbox(self, name: str, mailbox_id: str, uidvalidity: int) -> None:
        self.mailboxes[name] = mailbox_id
        self.mailbox_ids_ever.append(mailbox_id)
        self.last_uidvalidity = max(self.last_uidvalidity, uidvalidity)

    @event("MailboxNamesChanged")
    def change_mailbox_names(self, renames: list[list[str]]) -> None:
        """Several names at once: renaming a parent renames its children (RFC 9051 §6.3.6)."""
        moved = {old: self.mailboxes.pop(old) for old, _ in renames}
        for old, new in renames:
            self.mailboxes[new] = moved[old]

    @event("MailboxDetached")
    def detach_mailbox(self, name: str) -> None:
        del self.mailboxes[name]

    @event("LegalHoldPlaced")
    def place_legal_hold(self, reason: str, placed_at: str) -> None:
        self.legal_hold = reason
        self.legal_hold_since = placed_at

    @event("LegalHoldReleased")
    def release_legal_hold(self) -> None:
        self.legal_hold = None
        self.legal_hold_since = None


class AddressIndex(SystemAggregate):
    """Maps one address to its account, so addresses stay unique.

    Its id is a keyed HMAC of the address (made by the ``Pseudonymizer`` port), so the
    stream id does not reveal the address; its events hold only random ids, so the
    index survives erasure and an erased address can be claimed again.
    """

    @staticmethod
    def create_id(index_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        return index_id

    @event("Claimed")
    def __init__(self, index_id: UUID, account_id: UUID) -> None:
        self.account_id: UUID | None = account_id
        self.erasure_id: UUID | None = None

    def check_free(self, address: str) -> None:
        if self.account_id is not None:
            raise AddressTaken(address)

    @event("Reclaimed")
    def reclaim(self, account_id: UUID) -> None:
        self.account_id = account_id
        self.erasure_id = None

    @event("ErasureStarted")
    def start_erasure(self, erasure_id: UUID) -> None:
        self.erasure_id = erasure_id

    @event("Released")
    def release(self) -> None:
        self.account_id = None


class MailDomains(SystemAggregate):
    """The registry of domains this server receives mail for (one aggregate)."""

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        return MAIL_DOMAINS_ID

    @event("Created")
    def __init__(self) -> None:
        self.names: list[str] = []

    def check_new(self, name: str) -> None:
        if name in self.names:
            raise DomainExists(name)

    @event("DomainAdded")
    def add(self, name: str) -> None:
        self.names.append(name)


MAIL_DOMAINS_ID = uuid5(NAMESPACE_URL, "ledgermail:mail-domains")
