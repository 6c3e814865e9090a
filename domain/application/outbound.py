"""The outbound queue's write side: lease due messages, record what each attempt got.

The worker (``adapters/smtp/queue_worker.py``) does the network part between the two
calls. Both take many messages at once, so a busy queue costs two commits per batch,
not two per message. Every attempt is an event; so are the outcome (Delivered,
Deferred, Bounced, Expired) and the delivery status notification (RFC 3464) put in the
sender's INBOX, which commits in the same transaction as the outcome it reports: a
bounce is neither lost nor sent twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from domain.application.base import iso_time, parse_iso_time
from domain.application.mail import MailUseCases, _UidSlots, format_internal_date
from domain.model.errors import DomainError, SubjectErased
from domain.model.mailbox import Mailbox
from domain.model.outbound import OutboundMessage
from domain.model.summary import summarize
from domain.ports import SealedBlob


@dataclass(frozen=True)
class RetryPolicy:
    """Seconds. Postfix's defaults: backoff from 300 s doubling to 4000 s, bounce after
    5 days, warn the sender after 4 hours (0 = never)."""

    min_backoff: float = 300.0
    max_backoff: float = 4000.0
    max_age: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0

    def backoff(self, attempts: int) -> float:
        return min(self.max_backoff, self.min_backoff * (2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class OutboundJob:
    """A leased message, as the worker needs it: the pending recipients and the body."""

    message_id: UUID
    account_id: UUID
    domain: str
    mail_from: str
    recipients: list[dict[str, Any]]
    ret: str | None
    envid: str | None
    smtp_utf8: bool
    requiretls: bool
    tls_optional: bool
    purpose: str | None
    attempts: int
    queued_at: str
    body: bytes


@dataclass
class AttemptRecord:
    """What one attempt got: per-recipient results (``{"address", "code", "status",
    "text", "host"}``) and the recipients the consent gate held back."""

    message_id: UUID
    account_id: UUID
    results: list[dict[str, Any]]
    suppressed: list[str] = field(default_factory=list)


#: Builds the RFC 3464 report for ``rows`` (each a recipient dict with ``action``:
#: failed, delayed or delivered, and its outcome), or None when nobody asked for one.
#: Arguments: the message, the rows, the original bytes, the time of arrival.
ReportWriter = Callable[[OutboundMessage, list[dict[str, Any]], bytes], bytes | None]


class QueueUseCases(MailUseCases):
    def lease_outbound(self, message_ids: list[UUID], node: str, seconds: float) -> list[OutboundJob]:
        """Lease the messages that are still due (the view that listed them may lag) for
        ``seconds``; return them with their bodies. A message another node leased first
        is skipped: its lease event won the version."""
        now = self.ports.clock.now()
        now_iso, until = iso_time(now), iso_time(now + timedelta(seconds=seconds))

        def body() -> list[OutboundMessage]:
            leased = []
            for message_id in message_ids:
                message = self._queued(message_id)
                if message is None or not message.is_due(now_iso):
                    continue
                message.lease(node, until)
                leased.append(message)
            if leased:
                self.save_with_envelope(*leased)
            return leased

        leased = self.retrying("the outbound queue", lambda: message_ids, body)
        jobs = []
        for message in leased:
            jobs.append(OutboundJob(
                message_id=message.id, account_id=message.account_id, domain=message.domain,
                mail_from=message.mail_from, recipients=message.pending(), ret=message.ret,
                envid=message.envid, smtp_utf8=message.smtp_utf8, requiretls=message.requiretls,
                tls_optional=message.tls_optional, purpose=message.purpose,
                attempts=message.attempts, queued_at=message.queued_at,
                body=self.ports.blobs.get(message.blob_id, message.data_key)))
        return jobs

    def queue_listing(self, message_ids: list[UUID]) -> list[dict[str, Any]]:
        """What an operator sees of each queued message (``ledgermail queue``): no
        addresses, only the destination domain, counts and times."""
        rows = []
        for message_id in message_ids:
            message = self._queued(message_id)
            if message is None:
                continue
            rows.append({"id": str(message.id), "status": message.status, "domain": message.domain,
                         "attempts": message.attempts, "pending": len(message.pending()),
                         "queued_at": message.queued_at,
                         "due_at": message.lease_until if message.lease_until else message.due_at})
        return rows

    def _queued(self, message_id: UUID) -> OutboundMessage | None:
        try:
            message = self.load_or_none(message_id)
        except SubjectErased:
            return None
        if message is None or message.erased:
            return None
        return message

    def record_attempts(self, records: list[AttemptRecord], policy: RetryPolicy,
                        report: ReportWriter) -> int:
        """Record each attempt and decide each message's fate, in one transaction:
        every recipient settled -> Delivered (all 2xx) or Bounced; still pending past
        ``policy.max_age`` -> Expired; else Deferred with the next retry time. Newly
        settled recipients, expiries and the one delay warning are reported to the
        sender's INBOX by ``report``. Returns the log position."""
        message_ids = [r.message_id for r in records]
        inbox_ids = {}
        for record in records:
            try:
                inbox_ids[record.account_id] = self._inbox_id(record.account_id)
            except SubjectErased:
                continue  # the sender is gone: record the facts, report to no one
        reports: list[SealedBlob] = []

        def body() -> int:
            self.ports.blobs.delete_many([sealed.blob_id for sealed in reports])
            reports.clear()
            now = self.ports.clock.now()
            objs: list[object] = []
            mailboxes: dict[UUID, Mailbox] = {}
            slots = _UidSlots()
            for record in records:
                message = self._queued(record.message_id)
                if message is None or message.is_final:
                    continue
                rows = self._settle(message, record, now, policy)
                objs.append(message)
                if not rows or message.account_id not in inbox_ids:
                    continue
                dsn = report(message, rows, self.ports.blobs.get(message.blob_id, message.data_key))
                if dsn is None:
                    continue
                sealed = self.ports.blobs.put(dsn)
                reports.append(sealed)
                inbox_id = inbox_ids[message.account_id]
                if inbox_id not in mailboxes:
                    mailboxes[inbox_id] = self.load(inbox_id, what="the sender")
                copies, _ = self._delivery_objects(
                    {message.account_id: inbox_id}, dsn, sealed, summarize(dsn),
                    format_internal_date(now), "dsn", mailboxes, slots)
                objs += [o for o in copies if not isinstance(o, Mailbox)]
            slots.assign(mailboxes.values())
            return self.save_with_envelope(*mailboxes.values(), *objs)

        try:
            return self.retrying("the outbound queue",
                                 lambda: [*message_ids, *inbox_ids.values()], body)
        except DomainError:
            # Raised before the save: nothing refers to the reports' bodies.
            self.ports.blobs.delete_many([sealed.blob_id for sealed in reports])
            raise

    def _settle(self, message: OutboundMessage, record: AttemptRecord, now: datetime,
                policy: RetryPolicy) -> list[dict[str, Any]]:
        """Apply one attempt to ``message``; return the rows to report (maybe none)."""
        at = iso_time(now)
        # Recipients settled before the first attempt (held back at submission) are
        # reported with it, as if settled now.
        before = set(message.outcomes) if message.attempts else set()
        if record.suppressed and message.purpose is not None:
            message.suppress(record.suppressed, message.purpose, at)
        message.attempted(at, record.results)
        age = (now - parse_iso_time(message.queued_at)).total_seconds()
        pending = message.pending()
        if pending and age >= policy.max_age:
            message.expire(at, {r["address"]: r for r in record.results})
            pending = []
        rows = [_row(r, message.outcomes[r["address"]]) for r in message.recipients
                if r["address"] in message.outcomes and r["address"] not in before]
        if not pending:
            if all(200 <= o["code"] < 300 for o in message.outcomes.values()):
                message.delivered()
            elif message.status != "expired":
                message.bounced()
            return rows
        last = {r["address"]: r for r in record.results}
        if policy.delay_warning and not message.delay_reported and age >= policy.delay_warning:
            message.report_delay()
            rows += [_row(r, {**last.get(r["address"], {}), "action": "delayed"}) for r in pending]
        # The next try, but never after the message's expiry: the last attempt comes
        # at the maximum age, and its failure expires the message (as Postfix does).
        expiry = parse_iso_time(message.queued_at) + timedelta(seconds=policy.max_age)
        next_try = min(now + timedelta(seconds=policy.backoff(message.attempts)), expiry)
        message.defer(iso_time(max(next_try, now)))
        return rows


def _row(recipient: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    code = int(outcome.get("code") or 450)
    action = outcome.get("action") or ("delivered" if 200 <= code < 300 else "failed")
    return {**recipient, "action": action, "code": code, "status": outcome.get("status") or "4.0.0",
            "text": outcome.get("text") or "", "host": outcome.get("host") or ""}

