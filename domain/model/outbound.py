"""Messages a user submitted for remote recipients, waiting for the outbound worker.

Everything here is the sender's personal data (their message, their correspondents'
addresses), so both aggregates are sealed with the sender's key and shredded with it.
The outbox numbers its messages the way a mailbox numbers UIDs: message ids derive from
the outbox id and that number, so erasure enumerates every queued message from the
outbox's counter alone.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate


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
    """One submitted message and its remote recipients with their RFC 3461 parameters.

    ``recipients`` are dicts ``{"address", "notify", "orcpt"}``; ``ret`` and ``envid``
    are the MAIL FROM parameters. The outbound issue adds attempts, deliveries, bounces.
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
        self.status = "queued"


def outbox_id_for(account_id: UUID) -> UUID:
    return uuid5(account_id, "outbox")


def outbound_message_id_for(outbox_id: UUID, number: int) -> UUID:
    return uuid5(outbox_id, f"outbound:{number}")
