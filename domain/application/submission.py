"""Submission (RFC 6409): a user's message for local and remote recipients at once.

Local recipients get their copies now; remote recipients become one queued
``OutboundMessage`` per remote domain in the sender's outbox, for the outbound worker.
All are written in one transaction, so the message is accepted whole or not at all. The
queued messages share a body of their own (see ``submit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from domain.application.consent import ConsentUseCases
from domain.application.mail import DeliveryResult, MailUseCases, format_internal_date
from domain.model.account import Account
from domain.model.errors import InvalidAddress
from domain.model.outbound import OutboundMessage, Outbox, outbox_id_for
from domain.model.summary import summarize


@dataclass(frozen=True)
class RemoteRecipient:
    """A remote RCPT with its RFC 3461 §4 parameters (NOTIFY, ORCPT), kept for DSNs."""

    address: str
    notify: list[str] = field(default_factory=list)
    orcpt: str | None = None


@dataclass(frozen=True)
class OutboundOptions:
    """What the submission says about how to send: RFC 6531 SMTPUTF8, RFC 8689
    REQUIRETLS and "TLS-Required: No", and the DESIGN §4 purpose (consent gate)."""

    smtp_utf8: bool = False
    requiretls: bool = False
    tls_optional: bool = False
    purpose: str | None = None


@dataclass(frozen=True)
class SubmissionResult:
    delivery: DeliveryResult | None
    outbound_ids: list[UUID]
    position: int
    #: Local recipients not delivered to: no valid consent for the purpose.
    suppressed: list[str] = field(default_factory=list)

    @property
    def outbound_id(self) -> UUID | None:
        return self.outbound_ids[0] if self.outbound_ids else None


class SubmissionUseCases(MailUseCases, ConsentUseCases):
    """Submission asks the consent ledger (``has_consent``) for mail with a purpose."""

    def sender_addresses(self, account_id: UUID) -> list[str]:
        """The addresses a user may send as (RFC 6409 §6.1 says the MSA may check)."""
        account: Account = self.load(account_id, what="the sender")
        return list(account.addresses)

    def submit(
        self,
        account_id: UUID,
        mail_from: str,
        local_recipients: list[str],
        remote_recipients: list[RemoteRecipient],
        raw: bytes,
        *,
        ret: str | None = None,
        envid: str | None = None,
        channel: str = "submission",
        options: OutboundOptions = OutboundOptions(),
    ) -> SubmissionResult:
        """Deliver to the local recipients and queue the remote ones, in one commit.

        Mail with a purpose (DESIGN §4) reaches only recipients with valid consent for
        it: local ones are checked here, remote ones again when the worker sends (consent
        may be withdrawn while the message waits). Local recipients without consent are
        queued already settled as suppressed, so the worker reports them to the sender
        like any other failure.
        """
        self.check_size(raw)
        if not local_recipients and not remote_recipients:
            raise ValueError("a submission needs at least one recipient")
        for recipient in remote_recipients:
            if not recipient.address or any(ord(ch) < 0x21 for ch in recipient.address):
                raise InvalidAddress(recipient.address, "not a deliverable address")
        # A recipient named twice gets the message once (as local recipients do), with
        # the RFC 3461 parameters of its first RCPT. Addresses compare exactly, as the
        # local part is case-sensitive (RFC 5321 §2.4); the SMTP adapter lower-cases
        # ASCII domains.
        unique: dict[str, RemoteRecipient] = {}
        for recipient in remote_recipients:
            unique.setdefault(recipient.address, recipient)
        remote_recipients = list(unique.values())
        sender: Account = self.load(account_id, what="the sender")
        suppressed: list[str] = []
        if options.purpose is not None:
            suppressed = [a for a in local_recipients if not self.has_consent(a, options.purpose)]
            local_recipients = [a for a in local_recipients if a not in suppressed]
        groups = _by_domain(remote_recipients)
        if suppressed:
            groups.append((suppressed[0].rpartition("@")[2].lower(),
                           [RemoteRecipient(address) for address in suppressed]))
        account_ids = self.recipient_accounts(local_recipients)
        inbox_ids = {aid: self._inbox_id(aid) for aid in account_ids}
        outbox_id = outbox_id_for(account_id)
        summary = summarize(raw)
        now = self.ports.clock.now()
        internal_date = format_internal_date(now)
        sealed = self.ports.blobs.put(raw)
        # The queued message gets a body of its own: it is the sender's data and lives
        # and dies with the sender's key, while the local copies' body is deleted when
        # the last of its recipients is erased. Shared, erasing a local recipient would
        # take the body from under the sender's queued message.
        queued_body = self.ports.blobs.put(raw) if inbox_ids and groups else sealed

        def body() -> SubmissionResult:
            objs: list[object] = []
            delivery: DeliveryResult | None = None
            if inbox_ids:
                objs, delivery = self._delivery_objects(inbox_ids, raw, sealed, summary,
                                                        internal_date, channel)
            outbound_ids: list[UUID] = []
            if groups:
                outbox = self.load_or_none(outbox_id)
                if outbox is None:
                    outbox = Outbox(subject_id=sender.subject_id, account_id=account_id)
                objs.append(outbox)
                now = self.now_iso()
                for domain, recipients in groups:
                    number = outbox.next_number
                    outbox.take_number()
                    message = OutboundMessage(
                        subject_id=sender.subject_id, outbox_id=outbox_id, number=number,
                        account_id=account_id, mail_from=mail_from,
                        recipients=[{"address": r.address, "notify": list(r.notify), "orcpt": r.orcpt}
                                    for r in recipients],
                        ret=ret, envid=envid, size=len(raw), blob_id=queued_body.blob_id,
                        data_key=queued_body.data_key, queued_at=now, domain=domain,
                        smtp_utf8=options.smtp_utf8, requiretls=options.requiretls,
                        purpose=options.purpose, tls_optional=options.tls_optional)
                    if options.purpose is not None and recipients[0].address in suppressed:
                        message.suppress([r.address for r in recipients], options.purpose, now)
                    objs.append(message)
                    outbound_ids.append(message.id)
            position = self.save_with_envelope(*objs)
            if delivery is not None:
                delivery = DeliveryResult(delivery.delivery_id, delivery.copies, position)
            return SubmissionResult(delivery, outbound_ids, position, suppressed)

        with self._body_released_on_refusal(sealed.blob_id, queued_body.blob_id):
            return self.retrying("the sender's outbox", lambda: [*inbox_ids.values(), outbox_id], body)


def _by_domain(recipients: list[RemoteRecipient]) -> list[tuple[str, list[RemoteRecipient]]]:
    """Recipients grouped by domain (compared case-insensitively, RFC 5321 §2.4), in
    the order each domain first appears: one queued message per group."""
    groups: dict[str, list[RemoteRecipient]] = {}
    for recipient in recipients:
        groups.setdefault(recipient.address.rpartition("@")[2].lower(), []).append(recipient)
    return list(groups.items())
