"""``ledgermail audit --verify``: the audit trail is intact and agrees with the event log.

The hash chain catches a changed, removed or inserted row; comparing each row with the
envelope sealed in its event (which only the master key can forge) also catches a chain
rewritten from some row onward.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.bootstrap import Container
from projections.audit_trail.projection import event_type_of
from projections.audit_trail.view import check_chain


@dataclass(frozen=True)
class AuditVerdict:
    intact: bool
    rows: int
    events: int
    reason: str


def verify_audit(container: Container, batch: int = 2000) -> AuditVerdict:
    rows = container.audit_trail.rows()
    chain = check_chain(rows)
    if not chain.intact:
        return AuditVerdict(False, len(rows), 0, f"hash chain broken at position "
                                                  f"{chain.first_bad_position}: {chain.reason}")
    by_position = {row.entry.position: row.entry for row in rows}
    recorder, mapper = container.app.recorder, container.app.mapper
    start, events = 1, 0
    while True:
        notifications = recorder.select_notifications(start=start, limit=batch)
        if not notifications:
            break
        for notification in notifications:
            events += 1
            entry = by_position.get(notification.id)
            if entry is None:
                if notification.id <= (rows[-1].entry.position if rows else 0):
                    return AuditVerdict(False, len(rows), events,
                                        f"event {notification.id} has no audit row")
                continue  # not yet projected
            event = mapper.to_domain_event(notification)
            envelope = getattr(event, "envelope", None) or {}
            if (entry.event_type != event_type_of(event)
                    or entry.stream_id != str(event.originator_id)
                    or entry.subject != envelope.get("subject")
                    or entry.actor != envelope.get("actor", "system")
                    or (envelope.get("at") and entry.at != envelope.get("at"))):
                return AuditVerdict(False, len(rows), events,
                                    f"audit row {notification.id} does not match its event")
        start = notifications[-1].id + 1
    return AuditVerdict(True, len(rows), events, "intact")
