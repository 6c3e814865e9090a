"""Legal holds (GDPR Art. 17(3)(e)): data kept for a legal claim, whatever retention or
an erasure request would otherwise do.

A ``LegalHold`` is one account's holds, keyed by case id, each with the reason it was
ordered, its scope (``"all"``: the whole account; else one mailbox) and when it was
placed. A mailbox-scoped hold follows the mailbox, not its name: it keeps the mailbox
id, so renaming the mailbox does not lift the hold. Any active hold blocks erasure; a
hold blocks retention for what it covers. Reasons and mailbox names can be personal, so
the aggregate is sealed with the account's key; its id derives from the account id, so
erasure finds it from the account alone.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate
from domain.model.errors import InvalidLegalHold, LegalHoldExists

#: The scope that holds the whole account.
ALL = "all"
#: The case id the one hold of the older ``Account.LegalHoldPlaced`` event is shown
#: under; reserved, so a new hold cannot be confused with it.
LEGACY_CASE_ID = "legacy"
#: A case id is a reference from a court or a ticket system: short, no spaces.
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}\Z")
MAX_REASON = 1000


def legal_hold_id_for(account_id: UUID) -> UUID:
    return uuid5(account_id, "legal-hold")


def check_case_id(case_id: object) -> str:
    if not isinstance(case_id, str) or not CASE_ID.match(case_id):
        raise InvalidLegalHold(f"case id {str(case_id)[:140]!r} must be 1-128 characters of letters, "
                               "digits and . _ : / # -, starting with a letter or digit")
    if case_id == LEGACY_CASE_ID:
        raise InvalidLegalHold(f"case id {LEGACY_CASE_ID!r} is reserved for holds placed before case ids")
    return case_id


def check_reason(reason: object) -> str:
    """A hold without a reason cannot be justified later; ValueError, as before case ids."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a legal hold needs a reason")
    if len(reason.strip()) > MAX_REASON:
        raise InvalidLegalHold(f"the reason is longer than {MAX_REASON} characters")
    return reason.strip()


class LegalHold(PersonalAggregate):
    """``holds`` maps each active case id to ``{"reason", "scope", "mailbox_id",
    "placed_at"}`` (``mailbox_id`` None for scope ``all``)."""

    @staticmethod
    def create_id(account_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        return legal_hold_id_for(account_id)

    @event("Opened")
    def __init__(self, subject_id: str, account_id: UUID) -> None:
        self.subject_id = subject_id
        self.account_id = account_id
        self.holds: dict[str, dict[str, Any]] = {}

    def check_new(self, case_id: str) -> None:
        if case_id in self.holds:
            raise LegalHoldExists(case_id)

    @event("Placed")
    def place(self, case_id: str, reason: str, scope: str, mailbox_id: str | None,
              placed_at: str) -> None:
        self.holds[case_id] = {"reason": reason, "scope": scope, "mailbox_id": mailbox_id,
                               "placed_at": placed_at}

    @event("Released")
    def release(self, case_id: str, released_at: str) -> None:
        self.holds.pop(case_id, None)

    def holds_account(self) -> bool:
        return any(hold["mailbox_id"] is None for hold in self.holds.values())

    def held_mailboxes(self) -> set[str]:
        return {hold["mailbox_id"] for hold in self.holds.values() if hold["mailbox_id"] is not None}
