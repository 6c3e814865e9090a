"""Every event -> one audit row, from its envelope (readable even after erasure)."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from domain.model.base import ENVELOPE, ShreddedEvent
from projections.audit_trail.view import AuditEntry, AuditTrailInterface


def event_type_of(event: Any) -> str:
    if isinstance(event, ShreddedEvent):
        return event.event_type
    return type(event).__qualname__


class AuditTrailProjection(Projection[AuditTrailInterface]):
    name = "audittrail"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        envelope = getattr(domain_event, ENVELOPE, None) or {}
        timestamp = getattr(domain_event, "timestamp", None)
        entry = AuditEntry(
            position=tracking.notification_id,
            at=envelope.get("at") or (timestamp.isoformat() if timestamp else ""),
            event_type=event_type_of(domain_event),
            stream_id=str(domain_event.originator_id),
            subject=envelope.get("subject"),
            actor=envelope.get("actor", "system"),
            protocol=envelope.get("protocol", "internal"),
            session=envelope.get("session", ""),
            purpose=envelope.get("purpose", ""),
        )
        self.view.append(entry, tracking)
