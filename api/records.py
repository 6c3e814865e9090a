"""The records-of-processing summary (GDPR Art. 30(1)), ``GET /api/v1/records-of-processing``.

Art. 30(1) asks a controller to keep: the purposes of processing, the categories of data
subjects and of personal data, the recipients, the time limits for erasure and a
description of the security measures. The categories and measures below are what this
server's code stores and does; the counts, purposes and times come from the audit trail
(counted by the database) and the mailbox view; the time limits from the retention
policies and settings. Nothing names a person, so the summary can go to an auditor as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from adapters import bootstrap


class DataCategoryPublic(BaseModel):
    category: str
    data: str
    stored_as: str


class PurposePublic(BaseModel):
    purpose: str
    events: int
    first_at: str
    last_at: str


class ActivityPublic(BaseModel):
    event_type: str
    purpose: str
    count: int
    first_at: str
    last_at: str


class RetentionRulePublic(BaseModel):
    applies_to: str
    rule: str


class SubjectCountsPublic(BaseModel):
    accounts: int
    erasures_completed: int
    stored_bytes: int
    queued_outbound: int


class RecordsOfProcessingPublic(BaseModel):
    generated_at: str
    controller_host: str
    data_subjects: SubjectCountsPublic
    categories: list[DataCategoryPublic]
    purposes: list[PurposePublic]
    activity: list[ActivityPublic]
    retention: list[RetentionRulePublic]
    recipients: list[str]
    security_measures: list[str]


#: What the server stores about people, and how (DESIGN §2-§4).
CATEGORIES = [
    DataCategoryPublic(category="account", data="address, aliases, password hash (Argon2id), "
                       "quota, profile (display name, organization, locale, time zone), legal holds, "
                       "retention rules", stored_as="events sealed under the person's key"),
    DataCategoryPublic(category="message content", data="messages received, sent and stored, with "
                       "their headers and attachments", stored_as="bodies sealed under the person's key"),
    DataCategoryPublic(category="message metadata", data="mailboxes, flags, sizes, dates, envelope "
                       "summaries", stored_as="events sealed under the person's key; mailbox view rows "
                       "purged on erasure"),
    DataCategoryPublic(category="outbound queue", data="recipients, delivery attempts and remote "
                       "answers of mail being sent", stored_as="events sealed under the sender's key"),
    DataCategoryPublic(category="consent", data="purposes consented to or withdrawn, legal basis and "
                       "source of each change", stored_as="events sealed under the person's key"),
    DataCategoryPublic(category="access records", data="who read which of the person's data, when "
                       "and why", stored_as="the person's access ledger, sealed under their key"),
    DataCategoryPublic(category="audit trail", data="time, event type, actor, protocol and purpose "
                       "of every change, the person named by a keyed pseudonym only",
                       stored_as="a hash-chained projection without plaintext personal data"),
]

SECURITY_MEASURES = [
    "every person's events and message bodies are encrypted with AES-256-GCM under their own key",
    "erasure destroys the person's key (crypto-shredding) and purges every view row derived from them",
    "the audit trail is hash-chained; GET /api/v1/audit/verify checks it against the event log",
    "authentication only over TLS except on loopback; failed logins are throttled across protocols",
    "admin tokens are stored hashed, scoped and revocable; every API read of personal data is recorded",
]


def records_summary(store: bootstrap.Container) -> RecordsOfProcessingPublic:
    """Build the summary from the views and settings (reads no personal data)."""
    activity = store.audit_trail.activity()
    purposes: dict[str, PurposePublic] = {}
    for row in activity:
        name = row.purpose or "(none)"
        known = purposes.get(name)
        if known is None:
            purposes[name] = PurposePublic(purpose=name, events=row.count,
                                           first_at=row.first_at, last_at=row.last_at)
        else:
            known.events += row.count
            known.first_at = min(known.first_at, row.first_at)
            known.last_at = max(known.last_at, row.last_at)
    view = store.mailbox_view
    accounts = view.accounts()
    stored = sum((view.storage_of(row.account_id) or (0, 0))[0] for row in accounts)
    completed = sum(row.count for row in activity if row.event_type == "ErasureRequest.Completed")
    settings = store.settings
    retention = [RetentionRulePublic(applies_to="mail in mailboxes",
                                     rule="kept until the person deletes it, a retention policy "
                                          "deletes it, or the person is erased")]
    for policy in store.app.retention_policies():
        where = policy["mailbox"] or "every mailbox"
        retention.append(RetentionRulePublic(applies_to=f"one account, {where}",
                                             rule=f"deleted after {policy['max_age_days']} days "
                                                  "unless under a legal hold"))
    retention.append(RetentionRulePublic(
        applies_to="outbound queue", rule=f"expires after {settings.outbound.max_age / 86400:g} days"))
    retention.append(RetentionRulePublic(
        applies_to="backups", rule=f"hold erased people's keys for at most "
                                   f"{settings.compliance.backup_retention_days} days after their erasure"))
    return RecordsOfProcessingPublic(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        controller_host=settings.hostname,
        data_subjects=SubjectCountsPublic(accounts=len(accounts), erasures_completed=completed,
                                          stored_bytes=stored, queued_outbound=view.queue_size()),
        categories=CATEGORIES,
        purposes=sorted(purposes.values(), key=lambda p: p.purpose),
        activity=[ActivityPublic(**row.__dict__) for row in activity],
        retention=retention,
        recipients=["the remote mail servers of the recipients a person writes to",
                    "the person themself (IMAP, POP3, exports)"],
        security_measures=SECURITY_MEASURES,
    )
