"""Right to erasure (GDPR Art. 17) by crypto-shredding, and export (Art. 15/20).

The workflow (DESIGN §3) is recorded step by step on an ``ErasureRequest``, so it is
idempotent and resumable: request -> legal hold check -> erasure markers on every stream
-> every projection confirms the purge -> shred the key -> evict caches -> delete
unreferenced bodies -> verify -> completed, with a receipt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.utils import get_topic

from domain.application.base import iso_time
from domain.application.consent import ConsentUseCases
from domain.application.context import acting
from domain.application.mail import StoredMessage
from domain.application.submission import SubmissionUseCases
from domain.model.account import Account, AddressIndex
from domain.model.base import ENVELOPE, Erased, ShreddedEvent
from domain.model.compliance import ErasureRequest
from domain.model.errors import (
    DomainError,
    LegalHoldActive,
    SubjectErased,
    UnknownAddress,
    UnknownErasureRequest,
)
from domain.model.legal_hold import LegalHold, legal_hold_id_for
from domain.model.message import access_ledger_id_for, copy_id_for
from domain.model.outbound import Outbox, outbound_message_id_for, outbox_id_for
from domain.model.retention import retention_policy_id_for
from domain.model.spam_filter import spam_filter_id_for
from domain.model.values import normalize_address
from domain.ports import StreamScanner

#: How long the workflow waits for projections to confirm a purge.
PURGE_TIMEOUT_SECONDS = 120.0
#: How many of the person's streams the verification step tries to decrypt.
VERIFY_SAMPLE = 5


class ErasureIncomplete(Exception):
    """A step could not be confirmed; the request stays open and a rerun resumes it."""


class _BodyDeletion:
    """``delete(blob_ids)`` on a thread of its own; ``join`` waits and re-raises its error.

    Deleting 10,000 bodies is mostly the database zeroing freed pages and syncing them,
    which does not need this thread: it runs beside the purge check, the key shred and
    the verification (issue 9).
    """

    def __init__(self, delete: Callable[[list[str]], object], blob_ids: list[str], kept: int) -> None:
        self.blob_ids, self.kept = blob_ids, kept
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if blob_ids:
            self._thread = threading.Thread(target=self._run, args=(delete,), name="erasure-bodies",
                                            daemon=True)
            self._thread.start()

    def _run(self, delete: Callable[[list[str]], object]) -> None:
        try:
            delete(self.blob_ids)
        except BaseException as error:  # noqa: BLE001 - re-raised by join()
            self._error = error

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def join(self) -> None:
        self.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


@dataclass
class MailboxExport:
    name: str
    special_use: str | None
    uidvalidity: int
    messages: list[StoredMessage] = field(default_factory=list)


@dataclass
class SubjectExport:
    account: dict[str, Any]
    subject_pseudonym: str
    mailboxes: list[MailboxExport]


class ErasureUseCases(SubmissionUseCases, ConsentUseCases):
    def erase_subject(self, address: str, reason: str) -> dict[str, Any]:
        """Erase the person who owns ``address``; return the erasure receipt.

        Erasing again returns the same receipt. A legal hold raises ``LegalHoldActive``
        after recording the blocked request.
        """
        request_id, _step = self.request_erasure(address, reason)
        return self.run_erasure(request_id)

    def request_erasure(self, address: str, reason: str) -> tuple[str, str]:
        """Record an erasure request without running it; return (request id, step).

        For an address already being (or already) erased, the existing request. A legal
        hold raises ``LegalHoldActive`` after recording the blocked request. Run the
        remaining steps with ``run_erasure`` (the HTTP API does, in the background).
        """
        if not reason.strip():
            raise ValueError("an erasure needs a reason (it is recorded in the receipt)")
        address = normalize_address(address)
        index: AddressIndex | None = self.index_for(address)
        if index is None:
            raise UnknownAddress(address)
        if index.erasure_id is not None:
            request: ErasureRequest = self.repository.get(index.erasure_id)
            if (request.receipt is not None and index.account_id is None) or (
                    request.receipt is None and request.blocked_by is None):
                return str(request.id), request.step
        if index.account_id is None:
            raise UnknownAddress(address)
        request = self._record_request(index.account_id, reason.strip())
        return str(request.id), request.step

    def run_erasure(self, request_id: str) -> dict[str, Any]:
        """Run (or resume) the recorded request's remaining steps; return the receipt."""
        request = self._request(request_id)
        if request.blocked_by is not None:
            raise LegalHoldActive("the request was refused when it was made")
        return self._run(request)

    def erasure_status(self, request_id: str) -> dict[str, Any]:
        """``{request_id, status, receipt}``; the receipt is ``None`` until completed."""
        request = self._request(request_id)
        return {"request_id": str(request.id), "status": request.step, "receipt": request.receipt}

    def _request(self, request_id: str) -> ErasureRequest:
        try:
            request_uuid = UUID(request_id)
        except (ValueError, AttributeError, TypeError):
            raise UnknownErasureRequest(request_id) from None
        try:
            request = self.load_or_none(request_uuid)
        except DomainError:  # another aggregate's id, e.g. an erased person's stream
            raise UnknownErasureRequest(request_id) from None
        if not isinstance(request, ErasureRequest):
            raise UnknownErasureRequest(request_id)
        return request

    def _record_request(self, account_id: UUID, reason: str) -> ErasureRequest:
        account: Account = self.load(account_id, what="this person")
        pseudonym = self.pseudonym_of(account.subject_id)
        index_ids = [self.ports.pseudonyms.address_index_id(a) for a in account.addresses]
        request = ErasureRequest(account_id=account.id, index_ids=index_ids,
                                 subject_pseudonym=pseudonym, reason=reason,
                                 requested_at=self.now_iso())
        hold = self._active_hold(account)
        if hold is not None:
            reason, placed_at = hold
            request.block(placed_at or "unknown")
            self.save_with_envelope(request, subject=pseudonym)
            raise LegalHoldActive(reason)
        indexes = self._indexes_of(request)
        for index in indexes:
            index.start_erasure(request.id)
        self.save_with_envelope(request, *indexes, subject=pseudonym)
        return request

    def _active_hold(self, account: Account) -> tuple[str, str] | None:
        """(reason, placed at) of a hold on the account, any scope, or None: one placed
        before case ids (on the account itself) first, then the oldest of its
        ``LegalHold`` record. Any hold blocks erasure (GDPR Art. 17(3)(e))."""
        if account.legal_hold is not None:
            return account.legal_hold, account.legal_hold_since or ""
        holds: LegalHold | None = self.load_or_none(legal_hold_id_for(account.id))
        if holds is None or holds.erased or not holds.holds:
            return None
        oldest = min(holds.holds.values(), key=lambda hold: hold["placed_at"])
        return oldest["reason"], oldest["placed_at"]

    def _run(self, request: ErasureRequest) -> dict[str, Any]:
        with acting(purpose="erasure"):
            if request.step == "requested":
                self._write_markers(request)
            if request.receipt is not None:
                return request.receipt
            # Once the views have applied the markers, the bodies only the person held
            # are deleted in the background while the purge is confirmed, the key
            # shredded and the result verified (issue 9); the receipt waits for them.
            bodies: _BodyDeletion | None = None
            try:
                if request.step == "marked":
                    positions = self._await_purge(request)
                    bodies = self._delete_bodies(request)
                    self._confirm_purge(request, positions)
                if bodies is None:
                    bodies = self._delete_bodies(request)
                if request.step == "purged":
                    self._shred(request)
                return self._finish(request, bodies)
            except BaseException:
                if bodies is not None:
                    bodies.wait()  # not left running; the first error is the one reported
                raise

    # -- step 1: markers on every stream of the person ---------------------------------

    def _scanner(self) -> StreamScanner:
        if not isinstance(self.recorder, StreamScanner):
            raise TypeError("erasure needs an event recorder with bulk stream reads")
        return self.recorder

    def _streams_of(self, account: Account) -> tuple[dict[UUID, tuple[str, int]], list[str]]:
        """Every stream of the person with its kind and current version, and the bodies
        their message copies refer to. Copy ids derive from mailbox id and UID, so the
        mailboxes' UIDNEXT bounds them; two bulk reads find which exist."""
        scanner = self._scanner()
        kinds: dict[UUID, str] = {account.id: "Account", access_ledger_id_for(account.id): "AccessLedger"}
        candidates: list[UUID] = []
        for mailbox_id in map(UUID, account.mailbox_ids_ever):
            kinds[mailbox_id] = "Mailbox"
            mailbox = self.repository.get(mailbox_id)
            candidates += [copy_id_for(mailbox_id, uid) for uid in range(1, mailbox.uidnext)]
        outbox_id = outbox_id_for(account.id)
        outbox: Outbox | None = self.load_or_none(outbox_id)
        queued: list[UUID] = []
        if outbox is not None:
            kinds[outbox_id] = "Outbox"
            queued = [outbound_message_id_for(outbox_id, n) for n in range(1, outbox.next_number)]
            kinds.update((message_id, "OutboundMessage") for message_id in queued)
        # DESIGN §4: the consent records of the account's addresses, sealed under its key.
        kinds.update((record_id, "ConsentRecord") for record_id in self.consent_record_ids_of(account))
        # Issue 7: the retention rules and legal holds (sealed under the account's key).
        kinds[retention_policy_id_for(account.id)] = "RetentionPolicy"
        kinds[legal_hold_id_for(account.id)] = "LegalHold"
        # Issue 8: the learning spam filter's statistics (derived from the person's mail).
        kinds[spam_filter_id_for(account.id)] = "SpamFilter"
        versions = scanner.last_versions(list(kinds) + candidates)
        copies = [c for c in candidates if c in versions]
        kinds.update((copy_id, "MessageCopy") for copy_id in copies)
        # Live copies' bodies are listed by the mailbox view; only copies it no longer
        # shows (expunged) are opened to find theirs.
        live = self.ports.read_models.blobs_of_copies([str(c) for c in copies])
        blob_ids: set[str] = set(live.values())
        unlisted = [c for c in copies if str(c) not in live] + [q for q in queued if q in versions]
        for stored in scanner.first_events(unlisted):
            first = self.mapper.to_domain_event(stored)
            if not isinstance(first, ShreddedEvent):
                blob_ids.add(first.blob_id)
        streams = {stream_id: (kinds[stream_id], version) for stream_id, version in versions.items()}
        return streams, sorted(blob_ids)

    def _write_markers(self, request: ErasureRequest) -> None:
        """Mark every stream in one transaction. A message arriving meanwhile moves a
        mailbox's version, the markers conflict, and the streams are listed again."""
        account: Account = self.repository.get(request.account_id)
        # The outbox is locked too: a submission racing the erasure conflicts and retries.
        mailbox_ids = [UUID(m) for m in account.mailbox_ids_ever] + [outbox_id_for(account.id)]
        # And the retention rules and holds: a rule set meanwhile is marked too.
        mailbox_ids += [retention_policy_id_for(account.id), legal_hold_id_for(account.id)]
        # And the spam filter: training racing the erasure conflicts and sees the marker.
        mailbox_ids.append(spam_filter_id_for(account.id))

        def body() -> tuple[dict[UUID, tuple[str, int]], list[str], int]:
            # The view must show every copy made so far (it lists their bodies).
            self.ports.read_models.wait_for(self.log_position(),
                                            PURGE_TIMEOUT_SECONDS)
            streams, blob_ids = self._streams_of(self.repository.get(request.account_id))
            ref = str(request.id)
            markers = [Erased(originator_id=stream_id, originator_version=version + 1,
                              timestamp=Erased.create_timestamp(), erasure_ref=ref, stream_kind=kind)
                       for stream_id, (kind, version) in streams.items()]
            return streams, blob_ids, self._save_markers(markers, request.subject_pseudonym)

        streams, blob_ids, position = self.retrying("the person's mailboxes", lambda: mailbox_ids, body)
        request.markers_written([str(s) for s in streams], blob_ids, position)
        self.save_with_envelope(request, subject=request.subject_pseudonym)

    def _save_markers(self, markers: list[Erased], subject: str) -> int:
        """``save_with_envelope(*markers, subject=subject)``, one transaction, without the
        library's per-object runtime ``Protocol`` check in ``collect_events`` (75 ms for
        10,000 markers): they are loose events, so they go straight into the batch."""
        envelope = self.envelope(subject)
        for marker in markers:
            object.__setattr__(marker, ENVELOPE, envelope)
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        processing_event.events.extend(markers)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return recordings[-1].notification.id if recordings else self.log_position()

    # -- step 2: projections confirm ----------------------------------------------------

    def _await_purge(self, request: ErasureRequest) -> dict[str, int]:
        """Wait until every projection has processed the markers; their positions."""
        assert request.marker_position is not None
        return self.ports.read_models.wait_for(request.marker_position, PURGE_TIMEOUT_SECONDS)

    def _confirm_purge(self, request: ErasureRequest, positions: dict[str, int]) -> None:
        read_models = self.ports.read_models
        left = read_models.rows_for_streams(request.stream_ids)
        if left:
            raise ErasureIncomplete(f"{left} view rows still derive from the person's streams")
        read_models.compact()
        request.projections_purged(positions)
        self.save_with_envelope(request, subject=request.subject_pseudonym)

    # -- step 3: shred ------------------------------------------------------------------

    def _shred(self, request: ErasureRequest) -> None:
        keys = self.ports.keys
        try:
            account: Account = self.repository.get(request.account_id)
        except SubjectErased:
            key_ids = keys.shredded_key_ids(str(request.id))  # shredded before a crash
        else:
            key_ids = keys.shred_subject(account.subject_id, str(request.id))
        for stream_id in request.stream_ids:
            self.evict(UUID(stream_id))
        request.keys_shredded(key_ids)
        self.save_with_envelope(request, subject=request.subject_pseudonym)

    # -- step 4: bodies, verification, receipt ------------------------------------------

    def _delete_bodies(self, request: ErasureRequest) -> _BodyDeletion:
        """Start deleting the bodies no other person holds: the views have applied the
        markers, so a copy the mailbox view still shows is another person's (or, if the
        purge is found incomplete, one of the person's, whose body is then kept for the
        rerun). Already gone on a resumed run is fine."""
        still_held = self.ports.read_models.referenced_blobs(request.blob_ids)
        unheld = [b for b in request.blob_ids if b not in still_held]
        return _BodyDeletion(self.ports.blobs.delete_many, unheld, len(still_held))

    def _finish(self, request: ErasureRequest, bodies: _BodyDeletion) -> dict[str, Any]:
        files = self.ports.personal_files
        files_deleted = files.purge(request.account_id) if files is not None else 0
        verification = self._verify(request)
        bodies.join()  # the receipt is issued only once the bodies are gone
        if not verification["passed"]:
            raise ErasureIncomplete(f"verification failed: {verification}")
        completed_at = self.ports.clock.now()
        receipt = {
            "erasure_id": str(request.id),
            "subject_pseudonym": request.subject_pseudonym,
            "reason": request.reason,
            "requested_at": request.requested_at,
            "completed_at": iso_time(completed_at),
            "destroyed_key_ids": request.key_ids,
            "streams_marked": len(request.stream_ids),
            "marker_position": request.marker_position,
            "projection_positions": request.projection_positions,
            "blobs_deleted": sorted(bodies.blob_ids),
            "blobs_kept_for_other_recipients": bodies.kept,
            "export_files_deleted": files_deleted,
            "verification": verification,
            "backups_expire_by": (completed_at + timedelta(days=self.ports.backup_retention_days))
            .date().isoformat(),
        }
        request.complete(receipt)
        objs: list[object] = [request]
        for index in self._indexes_of(request):
            if index.account_id == request.account_id:
                index.release()
                objs.append(index)
        self.save_with_envelope(*objs, subject=request.subject_pseudonym)
        return receipt

    def _indexes_of(self, request: ErasureRequest) -> list[AddressIndex]:
        return [self.repository.get(index_id) for index_id in request.index_ids]

    def _verify(self, request: ErasureRequest) -> dict[str, Any]:
        sample = request.stream_ids[:VERIFY_SAMPLE]
        unreadable = 0
        for stream_id in sample:
            self.evict(UUID(stream_id))
            try:
                self.repository.get(UUID(stream_id))
            except SubjectErased:
                unreadable += 1
        rows = self.ports.read_models.rows_for_streams(request.stream_ids)
        return {
            "passed": unreadable == len(sample) and rows == 0,
            "sampled_streams": len(sample),
            "sampled_unreadable": unreadable,
            "view_rows_remaining": rows,
        }

    # -- export -------------------------------------------------------------------------

    def export_subject(self, address: str) -> SubjectExport:
        """Everything stored about the owner of ``address`` (records the access)."""
        account = self.account_for(address)
        mailboxes = []
        copy_ids: list[UUID] = []
        for name, mailbox_id in sorted(account.mailboxes.items()):
            mailbox = self.load(UUID(mailbox_id), what=address)
            export = MailboxExport(name, mailbox.special_use, mailbox.uidvalidity)
            for copy in self.live_copies(mailbox):
                body = self.ports.blobs.get(copy.blob_id, copy.data_key)
                export.messages.append(StoredMessage(copy.id, copy.uid, list(copy.flags),
                                                     copy.internal_date, body))
                copy_ids.append(copy.id)
            mailboxes.append(export)
        self.record_access(account, copy_ids, purpose="export")
        data = {
            "account_id": str(account.id),
            "address": account.address,
            "aliases": list(account.aliases),
            "quota_bytes": account.quota_bytes,
            "mailboxes": {name: str(mid) for name, mid in sorted(account.mailboxes.items())},
            "legal_hold": account.legal_hold,
            "profile": dict(account.profile),
            "created_at": account.created_on.isoformat(),
        }
        return SubjectExport(data, self.pseudonym_of(account.subject_id), mailboxes)

    def subject_pseudonym_for(self, address: str) -> str:
        """The pseudonym the audit trail names this address's owner by, also after erasure."""
        index = self.index_for(address)
        if index is None:
            raise UnknownAddress(address)
        if index.account_id is not None:
            account: Account = self.load(index.account_id, what=address)
            return self.pseudonym_of(account.subject_id)
        if index.erasure_id is not None:
            request: ErasureRequest = self.repository.get(index.erasure_id)
            return request.subject_pseudonym
        raise UnknownAddress(address)

    def shredded_keys_by_erasure(self) -> list[tuple[str, list[str]]]:
        """Every (erasure id, destroyed key ids) in the log: what a restored key store
        must be made to forget again."""
        topic = get_topic(ErasureRequest.KeysShredded)
        found: list[tuple[str, list[str]]] = []
        start = 1
        while True:
            notifications = self.recorder.select_notifications(start=start, limit=1000, topics=[topic])
            if not notifications:
                return found
            for notification in notifications:
                event = self.mapper.to_domain_event(notification)
                found.append((str(event.originator_id), list(event.key_ids)))
            start = notifications[-1].id + 1
