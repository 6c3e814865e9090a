"""Messages a user submitted for remote recipients, one per (message, remote domain).

Everything here is the sender's personal data (their message, their correspondents'
addresses), so both aggregates are sealed with the sender's key and shredded with it.
The outbox numbers its messages the way a mailbox numbers UIDs: message ids derive from
the outbox id and that number, so erasure enumerates every queued message from the
outbox's counter alone.

An ``OutboundMessage`` moves through Queued -> (Leased -> Attempted ->) Delivered |
Deferred | Bounced | Expired. The lease is an event too: two nodes that lease the same
message at once both append version N+1, the event store takes one, so only one of them
delivers that attempt (a crashed node's lease simply runs out).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate

#: Statuses after which nothing more happens to the message.
FINAL = frozenset({"delivered", "bounced", "expired"})


class Outbox(PersonalAggregate):
    @staticmethod
    def create_id(account_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        return outbox_id_for(account_id)

    @event("Opened")
    def __init__(self, subject_id: str, account_id: UUID) -> None:
        self.subject_id = subject_id
        self.account_id = account_id
        self.next_number = 1

    @event("NumberTaken")
    def take_number(self) -> None:
        self.next_number += 1


class OutboundMessage(PersonalAggregate):
    """One submitted message for the recipients at one remote domain.

    ``recipients`` are dicts ``{"address", "notify", "orcpt"}`` (RFC 3461 parameters);
    ``ret`` and ``envid`` are the MAIL FROM ones. ``outcomes`` maps each recipient that
    has a final answer to it: ``{"code", "status", "text", "host", "at"}``; a recipient
    without one is still pending.
    """

    @staticmethod
    def create_id(outbox_id: UUID, number: int, **_: Any) -> UUID:  # type: ignore[override]
        return outbound_message_id_for(outbox_id, number)

    @event("Queued")
    def __init__(
        self,
        subject_id: str,
        outbox_id: UUID,
        number: int,
        account_id: UUID,
        mail_from: str,
        recipients: list[dict[str, Any]],
        ret: str | None,
        envid: str | None,
        size: int,
        blob_id: str,
        data_key: bytes,
        queued_at: str,
        domain: str = "",
        smtp_utf8: bool = False,
        requiretls: bool = False,
        purpose: str | None = None,
        tls_optional: bool = False,
    ) -> None:
        self.subject_id = subject_id
        self.outbox_id = outbox_id
        self.number = number
        self.account_id = account_id
        self.mail_from = mail_from
        self.recipients = recipients
        self.ret = ret
        self.envid = envid
        self.size = size
        self.blob_id = blob_id
        self.data_key = data_key
        self.queued_at = queued_at
        if not domain and recipients:  # queued before messages were split per domain
            domain = _domain_of(recipients[0]["address"])
        self.domain = domain
        self.smtp_utf8 = smtp_utf8
        self.requiretls = requiretls
        self.purpose = purpose
        #: RFC 8689 §5 "TLS-Required: No": the sender waives MTA-STS enforcement.
        self.tls_optional = tls_optional
        self.status = "queued"
        self.due_at = queued_at
        self.attempts = 0
        self.lease_node: str | None = None
        self.lease_until: str | None = None
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.delay_reported = False

    # -- reading -----------------------------------------------------------------------

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def pending(self) -> list[dict[str, Any]]:
        """The recipients still waiting for a final answer, in submission order."""
        return [r for r in self.recipients if r["address"] not in self.outcomes]

    def is_due(self, now: str) -> bool:
        """Due for an attempt at ``now`` (ISO times compare as strings): not final, its
        retry time reached, and no live lease."""
        if self.is_final or self.due_at > now:
            return False
        return self.lease_until is None or self.lease_until <= now

    # -- the lifecycle -------------------------------------------------------------------

    @event("Leased")
    def lease(self, node: str, until: str) -> None:
        self.lease_node = node
        self.lease_until = until

    @event("Attempted")
    def attempted(self, at: str, results: list[dict[str, Any]]) -> None:
        """One delivery attempt's answers, per recipient: ``{"address", "code",
        "status", "text", "host"}``. 2xx and 5xx answers are final; 4xx leave the
        recipient pending. Ends the lease."""
        self.attempts += 1
        for result in results:
            if result["code"] < 400 or result["code"] >= 500:
                self.outcomes[result["address"]] = {**result, "at": at}
        self.lease_node = self.lease_until = None

    @event("RecipientsSuppressed")
    def suppress(self, addresses: list[str], purpose: str, at: str) -> None:
        """DESIGN §4: recipients without valid consent for the message's purpose are
        not sent to; they count as failed (RFC 3463 X.7.1: delivery not authorized)."""
        for address in addresses:
            self.outcomes[address] = {"address": address, "code": 550, "status": "5.7.1",
                                      "text": f"No valid consent for purpose {purpose}; not sent",
                                      "host": "", "at": at, "suppressed": True}

    @event("Deferred")
    def defer(self, next_attempt_at: str) -> None:
        self.status = "deferred"
        self.due_at = next_attempt_at
        self.lease_node = self.lease_until = None

    @event("DelayReported")
    def report_delay(self) -> None:
        self.delay_reported = True

    @event("Delivered")
    def delivered(self) -> None:
        self.status = "delivered"

    @event("Bounced")
    def bounced(self) -> None:
        """Final with at least one recipient failed (the report to the sender, if they
        asked for one, is a message copy in their INBOX saved with this event)."""
        self.status = "bounced"

    @event("Expired")
    def expire(self, at: str, last: dict[str, dict[str, Any]]) -> None:
        """The maximum queue age passed: every pending recipient fails with RFC 3463
        4.4.7 (message expired), the last temporary answer (``last``) kept in the text."""
        for recipient in self.pending():
            address = recipient["address"]
            answer = last.get(address) or {}
            text = "Message expired in the queue"
            if answer.get("text"):
                text += f"; last answer: {answer.get('code')} {answer['text']}"
            self.outcomes[address] = {"address": address, "code": 450, "status": "4.4.7",
                                      "text": text, "host": answer.get("host") or "", "at": at}
        self.status = "expired"


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def outbox_id_for(account_id: UUID) -> UUID:
    return uuid5(account_id, "outbox")


def outbound_message_id_for(outbox_id: UUID, number: int) -> UUID:
    return uuid5(outbox_id, f"outbound:{number}")
