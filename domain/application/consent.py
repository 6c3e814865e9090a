"""Use cases of the consent ledger (DESIGN §4): give, withdraw, ask, list.

Which record an address uses: the address as given (normalised), except that a local
sub-address (``alice+news@example.test``) is its account's address (``alice@...``), so
every record of a local person is one erasure can find from the account alone. The
record's subject is the local account's (main address or alias), else a new random
subject for the external correspondent.
"""

from __future__ import annotations

from uuid import UUID

from domain.application.accounts import SUBADDRESS_SEPARATOR, AccountUseCases
from domain.application.context import acting
from domain.model.account import Account, AddressIndex
from domain.model.base import new_subject_id
from domain.model.consent import (
    ConsentRecord,
    check_basis,
    check_purpose,
    check_source,
    consent_record_id_for,
)
from domain.model.errors import DomainError, SubjectErased, UnknownConsentRecord
from domain.model.values import domain_of, normalize_address

#: How many erased generations of one address's record are skipped before giving up
#: (each erasure of the address's holder retires one).
MAX_RECORD_GENERATIONS = 1000
#: The audit envelope's purpose for changes to the consent ledger.
CONSENT_PURPOSE = "consent"


class ConsentUseCases(AccountUseCases):
    # -- commands ----------------------------------------------------------------------

    def give_consent(self, address: str, purpose: str, *, basis: str = "consent", source: str) -> None:
        """Record that the holder of ``address`` consents to ``purpose``."""
        check_purpose(purpose)
        check_basis(basis)
        check_source(source)
        address, account = self._consent_holder(address)
        record_id = self._record_id(address)

        def body() -> None:
            record = self._live_record(record_id, address)
            if record is None:
                subject_id = account.subject_id if account is not None else new_subject_id()
                record = ConsentRecord(record_id=record_id, subject_id=subject_id, address=address)
            record.give(purpose, basis, source, self.now_iso())
            self.save_with_envelope(record)

        with acting(purpose=CONSENT_PURPOSE):
            self.retrying(f"the consent of {address}", lambda: [record_id], body)

    def withdraw_consent(self, address: str, purpose: str, *, source: str) -> bool:
        """Withdraw the consent of ``address`` to ``purpose``. True if that changed
        anything; withdrawing what is not given records nothing and returns False."""
        check_purpose(purpose)
        check_source(source)
        address, _ = self._consent_address(address)
        record_id = self._record_id(address)
        if self.load_or_none(record_id) is None:
            return False
        return self._withdraw(record_id, purpose, source)

    def withdraw_consent_by_record(self, record_id: UUID, purpose: str, *, source: str) -> bool:
        """The one-click path: the record is named by its (keyed, opaque) id.

        Raises ``UnknownConsentRecord`` when no such record was ever written. A record
        erased with its person holds no consent any more: False, nothing recorded.
        """
        check_purpose(purpose)
        check_source(source)
        try:
            if self.load_or_none(record_id) is None:
                raise UnknownConsentRecord()
            return self._withdraw(record_id, purpose, source)
        except SubjectErased:
            return False

    def _withdraw(self, record_id: UUID, purpose: str, source: str) -> bool:
        def body() -> bool:
            record: ConsentRecord = self.load(record_id, what="the holder of this address")
            changed = record.withdraw(purpose, source, self.now_iso())
            if changed:
                self.save_with_envelope(record)
            return changed

        with acting(purpose=CONSENT_PURPOSE):
            return self.retrying("a consent record", lambda: [record_id], body)

    # -- queries -----------------------------------------------------------------------

    def has_consent(self, address: str, purpose: str) -> bool:
        """Whether ``address`` holds valid consent to ``purpose`` (its most recent change
        is a give). An address that cannot hold any (not an address, erased) has none."""
        check_purpose(purpose)
        record = self._current_record(address)
        return record is not None and record.has_consent(purpose)

    def consents_of(self, address: str) -> list[dict[str, str]]:
        """Every purpose the address ever named: purpose, state, basis, source, at."""
        address, _ = self._consent_address(address)
        record = self._current_record(address)
        return record.listing() if record is not None else []

    def consent_record_id(self, address: str) -> UUID:
        """The id of the record ``address`` uses now (also before its first consent):
        what a one-click unsubscribe token names."""
        address, _ = self._consent_address(address)
        return self._record_id(address)

    def consent_record_ids_of(self, account: Account) -> list[UUID]:
        """The existing consent records sealed under the account's subject, one per
        address of the account at most: what its erasure must mark."""
        found = []
        for address in account.addresses:
            record = self._current_record(address)
            if record is not None and record.subject_id == account.subject_id:
                found.append(record.id)
        return found

    # -- helpers -----------------------------------------------------------------------

    def _consent_address(self, address: str) -> tuple[str, AddressIndex | None]:
        """The address whose record to use, and its index if it is a local account's."""
        address = normalize_address(address)
        index = self.index_for(address)
        if index is not None and index.account_id is not None:
            return address, index
        local, _, domain = address.rpartition("@")
        base, plus, _tag = local.partition(SUBADDRESS_SEPARATOR)
        if plus and base and self.is_local_domain(domain_of(address)):
            base_index = self.index_for(f"{base}@{domain}")
            if base_index is not None and base_index.account_id is not None:
                return f"{base}@{domain}", base_index  # RFC 5233: the account's address
        return address, None

    def _consent_holder(self, address: str) -> tuple[str, Account | None]:
        """The address to record under and its local account, if any. An account whose
        erasure has begun takes no new consent."""
        address, index = self._consent_address(address)
        if index is None or index.account_id is None:
            return address, None
        if index.erasure_id is not None:
            raise SubjectErased(f"the owner of {address}")
        account: Account = self.load(index.account_id, what=f"the owner of {address}")
        return address, account

    def _record_id(self, address: str) -> UUID:
        """The id of the address's newest record generation that is not erased."""
        index_id = self.ports.pseudonyms.address_index_id(address)
        for generation in range(1, MAX_RECORD_GENERATIONS + 1):
            record_id = consent_record_id_for(index_id, generation)
            try:
                record = self.load_or_none(record_id)
            except SubjectErased:
                continue
            if record is None or not record.erased:
                return record_id
        raise SubjectErased(address)

    def _live_record(self, record_id: UUID, address: str) -> ConsentRecord | None:
        """The record to add to, or None for a new one. Erased between finding its id
        and now: the person is gone, and the caller is told so."""
        try:
            record: ConsentRecord | None = self.load_or_none(record_id)
        except SubjectErased:
            record = None
            erased = True
        else:
            erased = record is not None and record.erased
        if erased:
            self.evict(record_id)
            raise SubjectErased(f"the holder of {address}")
        return record

    def _current_record(self, address: str) -> ConsentRecord | None:
        try:
            address, _ = self._consent_address(address)
            return self.load_or_none(self._record_id(address))
        except (DomainError, ValueError):
            return None

