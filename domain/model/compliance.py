"""The erasure request: a resumable, recorded workflow (DESIGN §3), system scope.

Every step is an event, so a crash mid-way resumes where it stopped and a second request
for the same person returns the first receipt. Nothing here names the person: the
account is a random id and the subject appears only as a keyed pseudonym.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.model.base import SystemAggregate


class ErasureRequest(SystemAggregate):
    @event("Requested")
    def __init__(self, account_id: UUID, index_ids: list[UUID], subject_pseudonym: str,
                 reason: str, requested_at: str) -> None:
        self.account_id = account_id
        self.index_ids = index_ids
        self.subject_pseudonym = subject_pseudonym
        self.reason = reason
        self.requested_at = requested_at
        self.blocked_by: str | None = None
        self.stream_ids: list[str] = []
        self.blob_ids: list[str] = []
        self.marker_position: int | None = None
        self.projection_positions: dict[str, int] = {}
        self.key_ids: list[str] = []
        self.blobs_deleted: list[str] = []
        self.receipt: dict[str, Any] | None = None

    @property
    def step(self) -> str:
        if self.receipt is not None:
            return "completed"
        if self.blocked_by is not None:
            return "blocked"
        if self.key_ids:
            return "shredded"
        if self.projection_positions:
            return "purged"
        if self.marker_position is not None:
            return "marked"
        return "requested"

    @event("Blocked")
    def block(self, hold_placed_at: str) -> None:
        """The hold's reason stays in the person's own (shreddable) account events; the
        system-scope request records only that, and since when, a hold applied."""
        self.blocked_by = hold_placed_at

    @event("MarkersWritten")
    def markers_written(self, stream_ids: list[str], blob_ids: list[str], position: int) -> None:
        self.stream_ids = stream_ids
        self.blob_ids = blob_ids
        self.marker_position = position

    @event("ProjectionsPurged")
    def projections_purged(self, positions: dict[str, int]) -> None:
        self.projection_positions = positions

    @event("KeysShredded")
    def keys_shredded(self, key_ids: list[str]) -> None:
        self.key_ids = key_ids

    @event("Completed")
    def complete(self, receipt: dict[str, Any]) -> None:
        self.blobs_deleted = receipt.get("blobs_deleted", [])
        self.receipt = receipt
