"""What every aggregate shares: the scope its events are sealed under, the audit envelope
stamped on them, and the erasure marker.

Two scopes exist (DESIGN §3). An event that carries a ``subject_id`` is sealed with that
person's key; every other event is sealed with the system key and survives erasure, so
system events must never hold personal data. ``PersonalAggregate`` stamps its subject id
on every event it emits (except erasure markers), so no personal event can be sealed
with the system key by omission.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.model.errors import SubjectErased

#: The attribute the audit envelope travels in. The mapper seals it with the system key,
#: apart from the event body, so the record of processing outlives the person's key.
ENVELOPE = "envelope"


def new_subject_id() -> str:
    """A fresh, random subject id (DESIGN §3): nothing about the person is derived into it."""
    return uuid4().hex


class SystemScoped:
    """Marks an event class whose state is sealed with the system key (no personal data)."""

    key_scope: ClassVar[str] = "system"


class Erased(SystemScoped, Aggregate.Event):
    """Written on every stream of a person before their key is destroyed (DESIGN §3).

    It carries only the erasure reference, so it stays readable and tells every
    projection to drop what it derived from the stream.
    """

    erasure_ref: str
    #: The aggregate class of the stream (Account, Mailbox, MessageCopy, ...), so
    #: projections drop just what that kind of stream produced.
    stream_kind: str = ""

    def apply(self, aggregate: Any) -> None:
        aggregate.erased = True


class LedgerAggregate(Aggregate):
    """Base of all ledgermail aggregates: lets the use case layer stamp audit envelopes."""

    # Class attributes without annotations: the library turns annotations into fields.
    erased = False

    def stamp_envelope(self, envelope: dict[str, Any]) -> None:
        """Attach the audit envelope (actor, protocol, session, subject pseudonym) to
        every pending event. Events are frozen dataclasses; the stamp is part of the
        stored state, so it is set like the library sets restored state."""
        for pending in self._pending_events:
            object.__setattr__(pending, ENVELOPE, envelope)

    def check_not_erased(self, what: str = "this person") -> None:
        if self.erased:
            raise SubjectErased(what)


class PersonalAggregate(LedgerAggregate):
    """An aggregate holding one person's data: every event is sealed with their key."""

    subject_id = ""

    def collect_events(self) -> list[Any]:
        events = list(super().collect_events())
        for pending in events:
            if getattr(type(pending), "key_scope", "subject") != "system":
                object.__setattr__(pending, "subject_id", self.subject_id)
        return events


class SystemAggregate(LedgerAggregate):
    """An aggregate with no personal data; its events are sealed with the system key."""


@dataclass(frozen=True)
class ShreddedEvent:
    """What the mapper returns for an event whose person was erased.

    Aggregates cannot be rebuilt from it (``mutate`` raises ``SubjectErased``);
    projections dispatch on it and keep only what the envelope says.
    """

    originator_id: UUID
    originator_version: int
    original_topic: str
    key_id: str
    envelope: dict[str, Any] = field(default_factory=dict)

    def mutate(self, aggregate: Any) -> Any:
        raise SubjectErased()

    @property
    def event_type(self) -> str:
        return self.original_topic.rpartition(":")[2]
