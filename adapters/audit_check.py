"""``ledgermail audit --verify``: the audit trail is intact and agrees with the event log.

The hash chain catches a changed, removed or inserted row. Comparing every row with the
envelope sealed in its event (which only the master key can forge) also catches a
chain rewritten from some row onward; and since every event gets exactly one row, a
row without an event (a deleted event) or an event without a row (a deleted row, the
last one included: the trail's tracking position says how far it got) is caught too.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.bootstrap import APP_NAME, Container, notifications
from projections.audit_trail.projection import event_type_of
from projections.audit_trail.view import AuditEntry, check_chain


@dataclass(frozen=True)
class AuditVerdict:
    intact: bool
    rows: int
    events: int
    reason: str


def _matches(entry: AuditEntry, event: object) -> bool:
    envelope = getattr(event, "envelope", None) or {}
    expected = {
        "event_type": event_type_of(event),
        "stream_id": str(getattr(event, "originator_id", "")),
        "subject": envelope.get("subject"),
        "actor": envelope.get("actor", "system"),
        "protocol": envelope.get("protocol", "internal"),
        "session": envelope.get("session", ""),
        "purpose": envelope.get("purpose", ""),
    }
    if any(getattr(entry, name) != value for name, value in expected.items()):
        return False
    return not envelope.get("at") or entry.at == envelope["at"]


def verify_audit(container: Container) -> AuditVerdict:
    rows = container.audit_trail.rows()
    chain = check_chain(rows)
    if not chain.intact:
        return AuditVerdict(False, len(rows), 0, f"hash chain broken at position "
                                                  f"{chain.first_bad_position}: {chain.reason}")
    tracked = container.audit_trail.max_tracking_id(APP_NAME) or 0
    by_position = {row.entry.position: row.entry for row in rows}
    if rows and rows[-1].entry.position != tracked:
        return AuditVerdict(False, len(rows), 0, f"the trail processed position {tracked} but its "
                                                  f"last row is {rows[-1].entry.position}")
    mapper = container.app.mapper
    seen: set[int] = set()
    for notification in notifications(container, stop=tracked):
        seen.add(notification.id)
        entry = by_position.get(notification.id)
        if entry is None:
            return AuditVerdict(False, len(rows), len(seen), f"event {notification.id} has no audit row")
        if not _matches(entry, mapper.to_domain_event(notification)):
            return AuditVerdict(False, len(rows), len(seen),
                                f"audit row {notification.id} does not match its event")
    orphans = sorted(set(by_position) - seen)
    if orphans:
        return AuditVerdict(False, len(rows), len(seen),
                            f"audit row {orphans[0]} has no event in the log (an event was removed)")
    return AuditVerdict(True, len(rows), len(seen), "intact")
