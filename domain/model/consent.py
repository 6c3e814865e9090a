"""The consent ledger (DESIGN §4): per person and address, who agreed to what, and when.

A ``ConsentRecord`` is one address's history of ``ConsentGiven`` and ``ConsentWithdrawn``
events, one purpose at a time. Consent for a purpose is valid while its most recent
change is a give. The record is personal data (it names the address), so it is sealed
with the subject's key: a local account's own subject (erasing the account shreds the
record too), or, for an external correspondent, a random subject of its own.

The record id derives from the keyed address-index id (``consent_record_id_for``), so
the id reveals nothing about the address, and a one-click unsubscribe link can carry it.
An erased record is dead for good; the address's next record is a new generation, with
an id derived the same way.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate
from domain.model.errors import InvalidLegalBasis, InvalidPurpose

#: What a purpose looks like: a short token (``newsletter``, ``list.announce``).
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
MAX_PURPOSE = 64
#: GDPR Art. 6(1): the lawful bases of processing. Consent (a) is the usual one here.
LEGAL_BASES = ("consent", "contract", "legal-obligation", "vital-interests",
               "public-task", "legitimate-interests")
#: Where a change came from (the command line, the API, a one-click POST, an import).
_SOURCE = _PURPOSE

GIVEN, WITHDRAWN = "given", "withdrawn"


def is_valid_purpose(purpose: object) -> bool:
    return isinstance(purpose, str) and _PURPOSE.match(purpose) is not None


def check_purpose(purpose: str) -> str:
    if not is_valid_purpose(purpose):
        raise InvalidPurpose(str(purpose))
    return purpose


def check_basis(basis: str) -> str:
    if basis not in LEGAL_BASES:
        raise InvalidLegalBasis(str(basis), LEGAL_BASES)
    return basis


def check_source(source: str) -> str:
    """Sources come from code, not from people: a bad one is a programming error."""
    if not isinstance(source, str) or _SOURCE.match(source) is None:
        raise ValueError(f"invalid consent source {source!r}")
    return source


def consent_record_id_for(index_id: UUID, generation: int = 1) -> UUID:
    """The id of an address's consent record, from the keyed address-index id.

    Generation 1 is the first record; an erased record's address gets the next one.
    """
    if generation < 1:
        raise ValueError("generations start at 1")
    name = "consent-record" if generation == 1 else f"consent-record:{generation}"
    return uuid5(index_id, name)


class ConsentRecord(PersonalAggregate):
    """One address's consents: ``purposes`` maps each purpose ever named to its current
    state ``{"state", "basis", "source", "at"}``; the events are the history."""

    @staticmethod
    def create_id(record_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        return record_id

    @event("Opened")
    def __init__(self, record_id: UUID, subject_id: str, address: str) -> None:
        self.subject_id = subject_id
        self.address = address
        self.purposes: dict[str, dict[str, str]] = {}

    def has_consent(self, purpose: str) -> bool:
        entry = self.purposes.get(purpose)
        return entry is not None and entry["state"] == GIVEN

    def give(self, purpose: str, basis: str, source: str, at: str) -> None:
        """Record consent for ``purpose``. Giving again is recorded too: it renews the
        consent (a re-confirmation is evidence worth keeping)."""
        self.check_not_erased("the holder of this address")
        self._given(check_purpose(purpose), check_basis(basis), check_source(source), at)

    def withdraw(self, purpose: str, source: str, at: str) -> bool:
        """Withdraw consent for ``purpose``; False (nothing recorded) when there is no
        valid consent to withdraw, so withdrawing twice records one event."""
        self.check_not_erased("the holder of this address")
        check_purpose(purpose)
        check_source(source)
        if not self.has_consent(purpose):
            return False
        self._withdrawn(purpose, source, at)
        return True

    @event("ConsentGiven")
    def _given(self, purpose: str, basis: str, source: str, at: str) -> None:
        self.purposes[purpose] = {"state": GIVEN, "basis": basis, "source": source, "at": at}

    @event("ConsentWithdrawn")
    def _withdrawn(self, purpose: str, source: str, at: str) -> None:
        # The basis stays: it says what the withdrawn consent had rested on.
        basis = self.purposes[purpose]["basis"]
        self.purposes[purpose] = {"state": WITHDRAWN, "basis": basis, "source": source, "at": at}

    def listing(self) -> list[dict[str, str]]:
        return [{"purpose": purpose, **entry} for purpose, entry in sorted(self.purposes.items())]
