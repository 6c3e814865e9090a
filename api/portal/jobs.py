"""Background work the portal starts for a person: their export and their erasure.

The export is the zip ``ledgermail export`` and ``POST /api/v1/exports`` build
(``bootstrap.write_subject_export``), written to the same per-account folder
(``bootstrap.export_files``), so erasing the person deletes it too. Jobs are named by a
random id (never an address, which would end up in URLs) and live in this process.
Erasures run through ``api.erasure.ErasureRunner``, as the API's do.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from uuid import UUID

from adapters import bootstrap
from api.portal.web import as_person

log = logging.getLogger(__name__)

ExportStatus = Literal["running", "done", "failed"]
#: Export jobs remembered per process; beyond it the oldest finished ones (and their
#: zips) go, so the table and the disk stay bounded (checklist A4).
MAX_EXPORT_JOBS = 1000


@dataclass
class ExportJob:
    export_id: str
    account_id: UUID
    path: Path
    status: ExportStatus = "running"


class ExportJobs:
    def __init__(self, store: bootstrap.Container) -> None:
        self.store = store
        self.files = bootstrap.export_files(store)
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()

    def start(self, account_id: UUID, address: str) -> str:
        """Build the account's export in a thread acting as the person (purpose
        ``access-request``: the use case records the read); return its id. While one is
        being built for the account, that one's id: asking again starts nothing."""
        with self._lock:
            for job in self._jobs.values():
                if job.account_id == account_id and job.status == "running":
                    return job.export_id
            export_id = secrets.token_urlsafe(24)
            job = ExportJob(export_id, account_id, self.files.folder_of(account_id) / f"{export_id}.zip")
            self._jobs[export_id] = job
            self._make_room()
        threading.Thread(target=self._work, args=(job, address), name=f"portal-export-{export_id[:8]}",
                         daemon=True).start()
        return export_id

    def _work(self, job: ExportJob, address: str) -> None:
        status: ExportStatus = "failed"
        try:
            with as_person(job.account_id, purpose="access-request"):
                bootstrap.write_subject_export(self.store, address, job.path)
            os.chmod(job.path, 0o600)
            status = "done"
        except Exception as error:  # the page shows "failed"; the person can ask again
            # The type only: a domain error's message or a traceback may name the address.
            log.warning("portal export %s failed: %s", job.export_id[:8], type(error).__name__)
            job.path.unlink(missing_ok=True)
        with self._lock:
            job.status = status

    def _make_room(self) -> None:
        finished = [job for job in self._jobs.values() if job.status != "running"]
        while len(self._jobs) > MAX_EXPORT_JOBS and finished:
            job = finished.pop(0)
            job.path.unlink(missing_ok=True)
            del self._jobs[job.export_id]

    def of(self, export_id: str, account_id: UUID) -> ExportJob | None:
        """The job, only for the account it belongs to (anyone else: None, as if unknown)."""
        with self._lock:
            job = self._jobs.get(export_id)
        return job if job is not None and job.account_id == account_id else None
