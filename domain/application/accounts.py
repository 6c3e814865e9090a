"""Use cases for domains, accounts and credentials."""

from __future__ import annotations

import re
import time
from typing import Any
from uuid import UUID

from domain.application.base import LedgerApplication
from domain.model.account import MAIL_DOMAINS_ID, Account, AddressIndex, MailDomains
from domain.model.base import new_subject_id
from domain.model.errors import (
    AuthenticationFailed,
    DomainError,
    InvalidProfile,
    SubjectErased,
    UnknownAddress,
    UnknownDomain,
    WeakPassword,
)
from domain.model.mailbox import Mailbox
from domain.model.values import (
    DEFAULT_MAILBOXES,
    domain_of,
    normalize_address,
    normalize_domain,
)

#: How long routing answers (local domains, address -> account) are remembered.
ROUTE_CACHE_SECONDS = 2.0
ROUTE_CACHE_SIZE = 100_000
#: RFC 5233 sub-addressing: ``user+tag@`` is delivered to ``user@``.
SUBADDRESS_SEPARATOR = "+"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
#: Verified against when the user is unknown, so both failures cost the same time.
_DUMMY_PASSWORD = "ledgermail-timing-equaliser"


#: Profile fields a person may have corrected (Art. 16) and their longest values.
PROFILE_FIELDS = {"display_name": 200, "organization": 200, "locale": 35, "time_zone": 64}
_LOCALE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")  # a BCP 47 language tag
_TIME_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")  # an IANA zone name


def check_profile_changes(changes: dict[str, str | None]) -> dict[str, str | None]:
    """Validated, trimmed changes; ``""`` means remove. Control characters are refused,
    since a display name ends up in headers (RFC 5322 §3.2.3 phrases)."""
    if not changes:
        raise InvalidProfile("nothing to change")
    cleaned: dict[str, str | None] = {}
    for name, value in changes.items():
        if name not in PROFILE_FIELDS:
            raise InvalidProfile(f"unknown field {name!r} (known: {', '.join(PROFILE_FIELDS)})")
        if value is None or not value.strip():
            cleaned[name] = None
            continue
        value = value.strip()
        if len(value) > PROFILE_FIELDS[name]:
            raise InvalidProfile(f"{name} is longer than {PROFILE_FIELDS[name]} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise InvalidProfile(f"{name} holds a control character")
        if name == "locale" and not _LOCALE.match(value):
            raise InvalidProfile(f"locale {value!r} is not a language tag such as en-GB")
        if name == "time_zone" and not _TIME_ZONE.match(value):
            raise InvalidProfile(f"time zone {value!r} is not a zone name such as Europe/Berlin")
        cleaned[name] = value
    return cleaned


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"shorter than {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"longer than {MAX_PASSWORD_LENGTH} characters")
    if any(ord(ch) < 0x20 for ch in password):
        raise WeakPassword("control characters are not allowed")


class AccountUseCases(LedgerApplication):
    _dummy_hash: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routes: dict[str, tuple[float, Any]] = {}

    # -- domains -----------------------------------------------------------------------

    def add_domain(self, name: str) -> str:
        domain = normalize_domain(name)

        def body() -> str:
            registry = self.load_or_none(MAIL_DOMAINS_ID) or MailDomains()
            registry.check_new(domain)
            registry.add(domain)
            self.save_with_envelope(registry)
            return domain

        return self.retrying("the domain registry", lambda: [MAIL_DOMAINS_ID], body)

    def list_domains(self) -> list[str]:
        registry = self.load_or_none(MAIL_DOMAINS_ID)
        return sorted(registry.names) if registry else []

    def check_local_domain(self, domain: str) -> None:
        if domain not in self.list_domains():
            raise UnknownDomain(domain)

    # -- accounts ----------------------------------------------------------------------

    def create_account(self, address: str, password: str, quota_bytes: int | None = None) -> UUID:
        """A new person with INBOX and the RFC 6154 special-use mailboxes."""
        address = normalize_address(address)
        self.check_local_domain(domain_of(address))
        check_password_policy(password)
        password_hash = self.ports.passwords.hash(password)
        index_id = self.ports.pseudonyms.address_index_id(address)

        def body() -> UUID:
            index = self.load_or_none(index_id)
            if index is not None:
                index.check_free(address)
            account = Account(
                subject_id=new_subject_id(),
                address=address,
                password_hash=password_hash,
                quota_bytes=quota_bytes if quota_bytes is not None else self.ports.default_quota_bytes,
            )
            if index is None:
                index = AddressIndex(index_id=index_id, account_id=account.id)
            else:
                index.reclaim(account.id)
            uidvalidity = account.next_uidvalidity(int(self.ports.clock.now().timestamp()))
            mailboxes = []
            for name, special_use in DEFAULT_MAILBOXES:
                mailbox = Mailbox(
                    subject_id=account.subject_id,
                    account_id=account.id,
                    name=name,
                    special_use=special_use,
                    uidvalidity=uidvalidity,
                )
                account.attach_mailbox(name, str(mailbox.id), uidvalidity)
                mailboxes.append(mailbox)
            self.save_with_envelope(account, *mailboxes, index)
            return account.id

        return self.retrying(f"address {address}", lambda: [index_id], body)

    def index_for(self, address: str) -> AddressIndex | None:
        try:
            normalized = normalize_address(address)
        except Exception:
            return None
        return self.load_or_none(self.ports.pseudonyms.address_index_id(normalized))

    def account_id_for(self, address: str) -> UUID:
        index = self.index_for(address)
        if index is None or index.account_id is None:
            raise UnknownAddress(address)
        return index.account_id

    def delivery_account_id(self, address: str) -> UUID:
        """Where mail for ``address`` goes: the address or alias itself, else, for
        ``user+tag@domain``, the owner of ``user@domain`` (sub-addressing, RFC 5233).

        Answers are remembered for ``ROUTE_CACHE_SECONDS`` (unknown addresses too): an
        MX asks twice per recipient, and a change made by another process (a new alias,
        an erasure) is seen that much later at worst. A stale answer is never unsafe: an
        erased person's mailbox refuses the delivery, and the sender retries.
        """
        found, account_id = self.remembered_route(address)
        if not found:
            try:
                account_id = self._route(address)
            except UnknownAddress:
                self._remember(f"route:{address}", None)
                raise
            self._remember(f"route:{address}", account_id)
        if account_id is None:
            raise UnknownAddress(address)
        return account_id

    def remembered_route(self, address: str) -> tuple[bool, UUID | None]:
        """(found, account id or None for unknown) from remembered answers only, never
        the store: lets a caller on an event loop skip a trip to a worker thread."""
        return self._remembered(f"route:{address}")

    def remembered_local_domain(self, domain: str) -> bool | None:
        """Whether ``domain`` (already normalized) is local, if remembered; else None."""
        found, domains = self._remembered("domains")
        return domain in domains if found else None

    def forget_routes(self) -> None:
        """Drop remembered routing answers (after this process changed addresses)."""
        self._routes.clear()

    def _remembered(self, key: str) -> tuple[bool, Any]:
        entry = self._routes.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return False, None
        return True, entry[1]

    def _remember(self, key: str, value: Any) -> None:
        if len(self._routes) >= ROUTE_CACHE_SIZE:  # a flood of random addresses
            self._routes = {}
        self._routes[key] = (time.monotonic() + ROUTE_CACHE_SECONDS, value)

    def save_with_envelope(self, *objs: Any, subject: str | None = None) -> int:
        position = super().save_with_envelope(*objs, subject=subject)
        if any(isinstance(obj, (AddressIndex, MailDomains)) for obj in objs):
            self.forget_routes()  # this process changed who gets which address
        return position

    def _route(self, address: str) -> UUID:
        index = self.index_for(address)
        if index is not None and index.account_id is not None:
            return index.account_id
        local, _, domain = address.rpartition("@")
        base, plus, _tag = local.partition(SUBADDRESS_SEPARATOR)
        if plus and base:
            index = self.index_for(f"{base}@{domain}")
            if index is not None and index.account_id is not None:
                return index.account_id
        raise UnknownAddress(address)

    def is_local_domain(self, domain: str) -> bool:
        try:
            name = normalize_domain(domain)
        except DomainError:
            return False
        local = self.remembered_local_domain(name)
        if local is None:
            domains = set(self.list_domains())
            self._remember("domains", domains)
            local = name in domains
        return local

    def account_for(self, address: str) -> Account:
        account_id = self.account_id_for(address)
        return self.load(account_id, what=f"the owner of {address}")

    def has_room(self, account_id: UUID) -> bool:
        """Whether the account is under its storage quota, as the views show it (a soft
        quota, as Dovecot's: a message that crosses the line is still taken; 0 means no
        quota). Deliveries ask before they take a message for the account."""
        storage = self.ports.read_models.storage_of(account_id)
        if storage is None:
            return True
        used, limit = storage
        return limit <= 0 or used < limit

    def authenticate(self, address: str, password: str) -> UUID:
        """Check a password; unknown users and wrong passwords fail the same way."""
        try:
            account = self.account_for(address)
        except (UnknownAddress, SubjectErased):
            self.ports.passwords.verify(self._dummy(), password)
            raise AuthenticationFailed() from None
        if not self.ports.passwords.verify(account.password_hash, password):
            raise AuthenticationFailed()
        return account.id

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            type(self)._dummy_hash = self.ports.passwords.hash(_DUMMY_PASSWORD)
        assert self._dummy_hash is not None
        return self._dummy_hash

    def change_password(self, address: str, password: str) -> None:
        check_password_policy(password)
        password_hash = self.ports.passwords.hash(password)
        account_id = self.account_id_for(address)

        def body() -> None:
            account = self.load(account_id, what=address)
            account.change_password(password_hash)
            self.save_with_envelope(account)

        self.retrying(address, lambda: [account_id], body)

    def add_alias(self, address: str, alias: str) -> None:
        """Another address for the same person: it gets its own index entry, so it is
        unique across accounts and resolves for delivery and login."""
        alias = normalize_address(alias)
        self.check_local_domain(domain_of(alias))
        account_id = self.account_id_for(address)
        index_id = self.ports.pseudonyms.address_index_id(alias)

        def body() -> None:
            account = self.load(account_id, what=address)
            index = self.load_or_none(index_id)
            if index is None:
                index = AddressIndex(index_id=index_id, account_id=account.id)
            else:
                index.check_free(alias)
                index.reclaim(account.id)
            account.add_alias(alias)
            self.save_with_envelope(account, index)

        self.retrying(alias, lambda: [account_id, index_id], body)

    def remove_alias(self, address: str, alias: str) -> None:
        alias = normalize_address(alias)
        account_id = self.account_id_for(address)
        index_id = self.ports.pseudonyms.address_index_id(alias)

        def body() -> None:
            account = self.load(account_id, what=address)
            if alias not in account.aliases:
                raise UnknownAddress(alias)
            index = self.repository.get(index_id)
            account.remove_alias(alias)
            index.release()
            self.save_with_envelope(account, index)

        self.retrying(alias, lambda: [account_id, index_id], body)

    def rectify_profile(self, address: str, changes: dict[str, str | None]) -> dict[str, str]:
        """Correct the profile data held about a person (GDPR Art. 16); return the
        profile. A value of ``None`` or ``""`` removes the field. Only the fields in
        ``PROFILE_FIELDS`` exist, so an API caller cannot store arbitrary data in the
        account; an unchanged value records nothing."""
        cleaned = check_profile_changes(changes)
        account_id = self.account_id_for(address)

        def body() -> dict[str, str]:
            account = self.load(account_id, what=address)
            effective = {name: value for name, value in cleaned.items()
                         if account.profile.get(name) != value}
            if effective:
                account.rectify_profile(effective)
                self.save_with_envelope(account)
            return dict(account.profile)

        return self.retrying(address, lambda: [account_id], body)
