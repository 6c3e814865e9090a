"""Retention policies (GDPR Art. 5(1)(e), storage limitation): how long an account's mail
is kept, per mailbox or for the whole account.

A ``RetentionPolicy`` is one account's rules. A rule names a mailbox (``"Trash"``) or
the whole account (``None``) and a maximum age in days; when both apply, the mailbox
rule wins, so "Trash after 30 days" can sit beside "everything after 2 years". Rules
are sealed with the account's key (mailbox names can be personal) and shredded with
it; the policy id derives from the account id, so erasure finds it from the account
alone, as it finds the outbox.

The ``RetentionRegistry`` is the one system-scope list of accounts that ever had a
policy or a hold: random account ids only, no personal data, so a retention run and a
listing of every hold find their accounts without scanning the log or every account.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate, SystemAggregate
from domain.model.errors import InvalidRetentionRule

#: A hundred years: a rule longer than that is a typo, not a policy.
MAX_AGE_DAYS = 36500
#: The kinds of enrolment the registry keeps.
POLICY, HOLD = "policy", "hold"
RETENTION_REGISTRY_ID = uuid5(NAMESPACE_URL, "ledgermail:retention-registry")


def retention_policy_id_for(account_id: UUID) -> UUID:
    return uuid5(account_id, "retention-policy")


def check_max_age(days: object) -> int:
    """Whole days, 1 to ``MAX_AGE_DAYS``: 0 would delete mail as it arrives."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_AGE_DAYS:
        raise InvalidRetentionRule(f"max age must be a whole number of days from 1 to {MAX_AGE_DAYS}, "
                                   f"not {days!r}")
    return days


class RetentionPolicy(PersonalAggregate):
    """``rules`` maps a mailbox name (``None``: the whole account) to
    ``{"max_age_days", "set_at"}``; the events are the history of the policy."""

    @staticmethod
    def create_id(account_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        return retention_policy_id_for(account_id)

    @event("Opened")
    def __init__(self, subject_id: str, account_id: UUID) -> None:
        self.subject_id = subject_id
        self.account_id = account_id
        self.rules: dict[str | None, dict[str, Any]] = {}

    @event("RuleSet")
    def set_rule(self, mailbox: str | None, max_age_days: int, set_at: str) -> None:
        self.rules[mailbox] = {"max_age_days": max_age_days, "set_at": set_at}

    @event("RuleCleared")
    def clear_rule(self, mailbox: str | None) -> None:
        self.rules.pop(mailbox, None)

    def max_age_for(self, mailbox: str) -> int | None:
        """The days a message may stay in ``mailbox``: its own rule, else the account's."""
        rule = self.rules.get(mailbox) or self.rules.get(None)
        return None if rule is None else int(rule["max_age_days"])


class RetentionRegistry(SystemAggregate):
    """Which accounts have (or had) a retention policy or a legal hold. Only grows: an
    entry whose policy was cleared or whose person was erased is skipped when read."""

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        return RETENTION_REGISTRY_ID

    @event("Created")
    def __init__(self) -> None:
        self.policies: list[str] = []
        self.holds: list[str] = []

    def has(self, kind: str, account_id: UUID) -> bool:
        return str(account_id) in (self.policies if kind == POLICY else self.holds)

    @event("Enrolled")
    def enroll(self, kind: str, account_id: str) -> None:
        (self.policies if kind == POLICY else self.holds).append(account_id)
