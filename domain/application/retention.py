"""Retention policies and legal holds (GDPR Art. 5(1)(e) and Art. 17(3)(e)), issue 7.

A retention run deletes what the policies say is too old and nothing a hold covers. It
is made of the same acts IMAP EXPUNGE and POP3 UPDATE are (``_expunge_copies``), so the
mailbox view, the quotas and the audit trail follow it as they follow a user's delete,
and it is recorded under the actor ``retention`` with the purpose ``retention``.

Where to look is read from the mailbox view (UIDs and internal dates, one query per
mailbox with a rule), what to delete is decided again from the write model under the
mailbox's lock, so a stale view can only delay a deletion, never widen it. The run is
idempotent: what it expunged is gone, and a second run finds nothing due.

Placing a case id that is already placed on the account raises ``LegalHoldExists``:
a hold's reason and scope are evidence of what was ordered, so it is never silently
rewritten; release it and place it again to change it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from domain.application.context import acting
from domain.application.mail import MailUseCases
from domain.model.account import Account
from domain.model.errors import InvalidLegalHold, SubjectErased
from domain.model.legal_hold import (
    ALL,
    LEGACY_CASE_ID,
    LegalHold,
    check_case_id,
    check_reason,
    legal_hold_id_for,
)
from domain.model.mailbox import Mailbox
from domain.model.retention import (
    HOLD,
    POLICY,
    RETENTION_REGISTRY_ID,
    RetentionPolicy,
    RetentionRegistry,
    check_max_age,
    retention_policy_id_for,
)
from domain.model.values import normalize_mailbox_name

#: The actor and purpose every retention deletion is recorded under.
RETENTION_ACTOR = "retention"
RETENTION_PURPOSE = "retention"
#: How internal dates are written (``mail.format_internal_date``).
_INTERNAL_DATE = "%Y-%m-%dT%H:%M:%S%z"


def _date(text: str) -> datetime | None:
    """An internal date, or None when it cannot be read: what cannot be dated is kept."""
    try:
        return datetime.strptime(text, _INTERNAL_DATE)
    except (TypeError, ValueError):
        try:
            moment = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            return None
        return moment if moment.tzinfo is not None else None


def _older(text: str, cutoff: datetime) -> bool:
    moment = _date(text)
    return moment is not None and moment < cutoff


class RetentionUseCases(MailUseCases):
    # -- legal holds ---------------------------------------------------------------------

    def place_legal_hold(self, address: str, reason: str, *, case_id: str | None = None,
                         scope: str = ALL) -> str:
        """Place a hold (it blocks erasure, and retention for what it covers) until it is
        released; return its case id (``case-<random>`` when none is given). ``scope`` is
        ``all`` or the name of one of the account's mailboxes. An already placed case id
        raises ``LegalHoldExists``."""
        reason = check_reason(reason)
        case = check_case_id(case_id) if case_id is not None else f"case-{secrets.token_hex(6)}"
        if not isinstance(scope, str) or not scope:
            raise InvalidLegalHold("the scope is 'all' or a mailbox name")
        account_id = self.account_id_for(address)
        hold_id = legal_hold_id_for(account_id)

        def body() -> str:
            account: Account = self.load(account_id, what=address)
            mailbox_id: str | None = None
            scope_name = ALL
            if scope != ALL:
                scope_name = normalize_mailbox_name(scope)
                mailbox_id = str(account.mailbox_id(scope_name))
            holds: LegalHold | None = self.load_or_none(hold_id)
            if holds is None:
                holds = LegalHold(subject_id=account.subject_id, account_id=account.id)
            holds.check_not_erased(address)
            holds.check_new(case)
            holds.place(case, reason, scope_name, mailbox_id, self.now_iso())
            self.save_with_envelope(holds, *self._enrolment(HOLD, account.id), subject=None)
            return case

        return self.retrying(address, lambda: [account_id, hold_id, RETENTION_REGISTRY_ID], body)

    def release_legal_hold(self, address: str, case_id: str | None = None) -> int:
        """Release one hold (``case_id``) or every hold of the account (None, including
        one placed before case ids, shown as case ``legacy``); return how many were
        released. Releasing what is not placed releases nothing (idempotent)."""
        account_id = self.account_id_for(address)
        hold_id = legal_hold_id_for(account_id)

        def body() -> int:
            account: Account = self.load(account_id, what=address)
            holds: LegalHold | None = self.load_or_none(hold_id)
            objs: list[Any] = []
            released = 0
            if holds is not None and not holds.erased:
                cases = list(holds.holds) if case_id is None else [c for c in holds.holds if c == case_id]
                at = self.now_iso()
                for case in cases:
                    holds.release(case, at)
                if cases:
                    objs.append(holds)
                    released += len(cases)
            if account.legal_hold is not None and case_id in (None, LEGACY_CASE_ID):
                account.release_legal_hold()
                objs.append(account)
                released += 1
            if objs:
                self.save_with_envelope(*objs)
            return released

        return self.retrying(address, lambda: [account_id, hold_id], body)

    def legal_holds(self, address: str | None = None) -> list[dict[str, Any]]:
        """The active holds of one account, or of every account (None), each
        ``{"address", "case_id", "reason", "scope", "placed_at"}``. A mailbox scope
        shows the mailbox's current name (a hold follows its mailbox through renames)."""
        accounts = [self.account_for(address)] if address is not None else self._enrolled(HOLD)
        rows: list[dict[str, Any]] = []
        for account in accounts:
            rows += self._holds_of(account)
        return sorted(rows, key=lambda row: (row["address"], row["placed_at"], row["case_id"]))

    def _holds_of(self, account: Account) -> list[dict[str, Any]]:
        rows = []
        if account.legal_hold is not None:
            rows.append({"address": account.address, "case_id": LEGACY_CASE_ID,
                         "reason": account.legal_hold, "scope": ALL,
                         "placed_at": account.legal_hold_since or ""})
        holds = self._holds_record(account)
        if holds is not None:
            names = {mailbox_id: name for name, mailbox_id in account.mailboxes.items()}
            for case, hold in holds.holds.items():
                scope = names.get(hold["mailbox_id"], hold["scope"]) if hold["mailbox_id"] else ALL
                rows.append({"address": account.address, "case_id": case, "reason": hold["reason"],
                             "scope": scope, "placed_at": hold["placed_at"]})
        return rows

    def _holds_record(self, account: Account) -> LegalHold | None:
        holds: LegalHold | None = self.load_or_none(legal_hold_id_for(account.id))
        return None if holds is None or holds.erased else holds

    # -- retention policies --------------------------------------------------------------

    def set_retention(self, address: str, mailbox: str | None, max_age_days: int) -> None:
        """Keep mail in ``mailbox`` (None: anywhere in the account) at most
        ``max_age_days`` days; a mailbox rule wins over the account rule. The mailbox must
        exist. Setting the rule a mailbox already has records nothing."""
        days = check_max_age(max_age_days)
        name = None if mailbox is None else normalize_mailbox_name(mailbox)
        account_id = self.account_id_for(address)
        policy_id = retention_policy_id_for(account_id)

        def body() -> None:
            account: Account = self.load(account_id, what=address)
            if name is not None:
                account.mailbox_id(name)  # MailboxNotFound for a typo
            policy: RetentionPolicy | None = self.load_or_none(policy_id)
            if policy is None:
                policy = RetentionPolicy(subject_id=account.subject_id, account_id=account.id)
            policy.check_not_erased(address)
            current = policy.rules.get(name)
            if current is not None and current["max_age_days"] == days:
                return
            policy.set_rule(name, days, self.now_iso())
            self.save_with_envelope(policy, *self._enrolment(POLICY, account.id), subject=None)

        self.retrying(address, lambda: [account_id, policy_id, RETENTION_REGISTRY_ID], body)

    def clear_retention(self, address: str, mailbox: str | None) -> bool:
        """Remove the rule for ``mailbox`` (None: the account rule); False when there was
        none (nothing is recorded then)."""
        name = None if mailbox is None else normalize_mailbox_name(mailbox)
        account_id = self.account_id_for(address)
        policy_id = retention_policy_id_for(account_id)

        def body() -> bool:
            self.load(account_id, what=address)
            policy: RetentionPolicy | None = self.load_or_none(policy_id)
            if policy is None or policy.erased or name not in policy.rules:
                return False
            policy.clear_rule(name)
            self.save_with_envelope(policy)
            return True

        return self.retrying(address, lambda: [account_id, policy_id], body)

    def retention_policies(self, address: str | None = None) -> list[dict[str, Any]]:
        """The rules of one account, or of every account (None), each ``{"address",
        "mailbox", "max_age_days", "set_at"}`` (``mailbox`` None: the whole account)."""
        accounts = [self.account_for(address)] if address is not None else self._enrolled(POLICY)
        rows = []
        for account in accounts:
            policy = self._policy_of(account)
            if policy is None:
                continue
            for mailbox, rule in policy.rules.items():
                rows.append({"address": account.address, "mailbox": mailbox,
                             "max_age_days": rule["max_age_days"], "set_at": rule["set_at"]})
        return sorted(rows, key=lambda row: (row["address"], row["mailbox"] is not None,
                                             row["mailbox"] or ""))

    def _policy_of(self, account: Account) -> RetentionPolicy | None:
        policy: RetentionPolicy | None = self.load_or_none(retention_policy_id_for(account.id))
        return None if policy is None or policy.erased else policy

    # -- the run -------------------------------------------------------------------------

    def apply_retention(self, now: datetime | None = None) -> dict[str, int]:
        """Expunge every message older than its rule, except what a hold covers; return
        ``{"accounts": accounts with rules, "deleted": messages expunged, "held": due
        messages kept because of a hold}``. ``now`` is for tests and replays."""
        moment = now or self.ports.clock.now()
        counts = {"accounts": 0, "deleted": 0, "held": 0}
        # The view says which messages are due: let it see everything committed so far,
        # or a message saved a moment ago would wait for the next run (and a busy
        # leader would make the counts of this one depend on timing).
        self.ports.read_models.wait_for(self.log_position(), timeout=30)
        with acting(RETENTION_ACTOR, purpose=RETENTION_PURPOSE):
            for account in self._enrolled(POLICY):
                policy = self._policy_of(account)
                if policy is None or not policy.rules:
                    continue
                counts["accounts"] += 1
                deleted, held = self._apply_to(account, policy, moment)
                counts["deleted"] += deleted
                counts["held"] += held
        return counts

    def _apply_to(self, account: Account, policy: RetentionPolicy, now: datetime) -> tuple[int, int]:
        deleted = held = 0
        for name, mailbox_id in sorted(account.mailboxes.items()):
            days = policy.max_age_for(name)
            if days is None:
                continue
            cutoff = now - timedelta(days=days)
            due = [uid for uid, date in self.ports.read_models.message_dates(UUID(mailbox_id))
                   if _older(date, cutoff)]
            if not due:
                continue
            if self._is_held(account, mailbox_id):
                held += len(due)
                continue
            try:
                deleted += self._expire(account, UUID(mailbox_id), due, cutoff)
            except SubjectErased:  # erased while the run went on: nothing left to keep short
                break
        return deleted, held

    def _is_held(self, account: Account, mailbox_id: str) -> bool:
        if account.legal_hold is not None:
            return True
        holds = self._holds_record(account)
        return holds is not None and (holds.holds_account() or mailbox_id in holds.held_mailboxes())

    def _expire(self, account: Account, mailbox_id: UUID, uids: list[int], cutoff: datetime) -> int:
        """Expunge those of ``uids`` the write model says are older than ``cutoff``. The
        hold is checked again under the lock, so a hold placed since the listing wins."""
        hold_id = legal_hold_id_for(account.id)

        def body() -> int:
            current: Account = self.load(account.id, what="the account")
            if self._is_held(current, str(mailbox_id)):
                return 0
            mailbox: Mailbox = self.load(mailbox_id, what="the mailbox owner")
            doomed = [copy for copy in self._copies(mailbox, uids) if _older(copy.internal_date, cutoff)]
            expunged, _position = self._expunge_copies(mailbox, doomed)
            return len(expunged)

        return self.retrying("the mailbox", lambda: [account.id, hold_id, mailbox_id], body)

    # -- which accounts ------------------------------------------------------------------

    def _enrolment(self, kind: str, account_id: UUID) -> list[RetentionRegistry]:
        """The registry, with ``account_id`` enrolled, when it is not yet: to save along."""
        registry: RetentionRegistry | None = self.load_or_none(RETENTION_REGISTRY_ID)
        if registry is None:
            registry = RetentionRegistry()
        elif registry.has(kind, account_id):
            return []
        registry.enroll(kind, str(account_id))
        return [registry]

    def _enrolled(self, kind: str) -> list[Account]:
        """The live accounts enrolled for ``kind``; erased ones are skipped."""
        registry: RetentionRegistry | None = self.load_or_none(RETENTION_REGISTRY_ID)
        if registry is None:
            return []
        accounts = []
        for account_id in registry.policies if kind == POLICY else registry.holds:
            try:
                account = self.load(UUID(account_id), what="the account")
            except SubjectErased:
                continue
            accounts.append(account)
        return accounts
