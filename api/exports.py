"""Access and portability (GDPR Art. 15/20) through the compliance API, ``/api/v1`` (issue 7).

``POST /exports`` answers 202 with an unguessable export id and builds, in a background
thread acting as the token (purpose ``access-request``), the same zip as ``ledgermail
export ADDRESS --out FILE``; the use case ``export_subject`` records the read in the audit
trail. ``GET /exports/{id}`` polls; ``GET /exports/{id}/download`` gives the zip once done
(409 while running); ``DELETE /exports/{id}`` removes the file.

Export jobs live in memory, per process: a restart of ``serve`` forgets them, and the
archives an earlier process left are deleted when the API starts.

The zip holds personal data. It is written to ``<data_dir>/exports/<account id>/``
(directories 0700, file 0600; ``bootstrap.ExportFiles``) and is not removed on download:
DELETE it once handed over. Erasing the person deletes the folder, from whichever
process erases (the ``PersonalFiles`` port of the erasure workflow).
Routes call use cases (through ``adapters.bootstrap``) only (DESIGN §1).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from adapters import bootstrap
from api.v1 import scope_guard
from domain.application.context import acting
from domain.model.errors import DomainError

log = logging.getLogger(__name__)

ExportStatus = Literal["running", "done", "failed"]
ExportIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class ExportCreate(BaseModel):
    address: str = Field(min_length=3, max_length=320)


class ExportPublic(BaseModel):
    export_id: str
    status: ExportStatus


class ExportDeleted(BaseModel):
    export_id: str
    deleted: bool


@dataclass
class _Job:
    path: FilePath
    account_id: UUID
    status: ExportStatus = "running"


def build_exports_router(store: bootstrap.Container) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["exports"])
    require = scope_guard(store)
    jobs: dict[str, _Job] = {}
    lock = threading.Lock()

    files = bootstrap.export_files(store)
    # Jobs live in this process only: archives an earlier process left are nobody's now,
    # and they hold personal data (DESIGN §3), so they go.
    files.purge_all()

    def sweep() -> None:
        """Drop the zips of people erased since their export was made (DESIGN §3)."""
        with lock:
            finished = [(i, j) for i, j in jobs.items() if j.status != "running"]
        for export_id, job in finished:
            try:
                account = store.app.peek(job.account_id)
            except DomainError:  # its events are shredded: erased
                account = None
            if account is None or account.erased:
                job.path.unlink(missing_ok=True)
                with lock:
                    jobs.pop(export_id, None)

    def job_for(export_id: str) -> _Job:
        sweep()
        with lock:
            job = jobs.get(export_id)
        if job is None:
            raise HTTPException(status_code=404, detail="unknown export")
        return job

    def work(export_id: str, job: _Job, address: str, token_id: str) -> None:
        status: ExportStatus = "failed"
        try:
            with acting(f"token:{token_id}", protocol="http", purpose="access-request"):
                bootstrap.write_subject_export(store, address, job.path)
            os.chmod(job.path, 0o600)
            status = "done"
        except Exception:  # the job shows "failed"; POST again for a new one
            log.exception("export %s failed", export_id[:8])
            job.path.unlink(missing_ok=True)
        with lock:
            job.status = status

    @router.post("/exports", status_code=202, response_model=ExportPublic,
                 responses={404: {"description": "unknown subject"}})
    def create_export(body: ExportCreate,
                      token: str = Depends(require("export:write"))) -> ExportPublic:  # noqa: B008
        """Start building the subject's export zip in the background; poll its status."""
        sweep()
        try:
            account_id = store.app.account_id_for(body.address)
        except (DomainError, ValueError):
            raise HTTPException(status_code=404, detail="unknown subject") from None
        export_id = secrets.token_urlsafe(24)
        job = _Job(path=files.folder_of(account_id) / f"{export_id}.zip", account_id=account_id)
        with lock:
            jobs[export_id] = job
        threading.Thread(target=work, args=(export_id, job, body.address, token),
                         name=f"export-{export_id[:8]}", daemon=True).start()
        return ExportPublic(export_id=export_id, status="running")

    @router.get("/exports/{export_id}", response_model=ExportPublic,
                responses={404: {"description": "unknown export"}})
    def export_status(export_id: ExportIdPath,
                      _token: str = Depends(require("export:write"))) -> ExportPublic:  # noqa: B008
        """Whether the export is running, done or failed."""
        job = job_for(export_id)
        with lock:
            return ExportPublic(export_id=export_id, status=job.status)

    @router.get("/exports/{export_id}/download", response_class=FileResponse,
                responses={200: {"content": {"application/zip": {}}},
                           404: {"description": "unknown export"},
                           409: {"description": "the export is still running or failed"}})
    def download_export(export_id: ExportIdPath,
                        _token: str = Depends(require("export:write"))) -> FileResponse:  # noqa: B008
        """The zip, once done. It stays on disk until DELETEd."""
        job = job_for(export_id)
        with lock:
            status = job.status
        if status != "done":
            raise HTTPException(status_code=409, detail=f"the export is {status}")
        if not job.path.exists():
            raise HTTPException(status_code=404, detail="unknown export")
        return FileResponse(job.path, media_type="application/zip",
                            filename=f"ledgermail-export-{export_id[:8]}.zip")

    @router.delete("/exports/{export_id}", response_model=ExportDeleted,
                   responses={404: {"description": "unknown export"},
                              409: {"description": "the export is still running"}})
    def delete_export(export_id: ExportIdPath,
                      _token: str = Depends(require("export:write"))) -> ExportDeleted:  # noqa: B008
        """Remove the zip and forget the job."""
        job = job_for(export_id)
        with lock:
            if job.status == "running":
                raise HTTPException(status_code=409, detail="the export is still running")
            jobs.pop(export_id, None)
        job.path.unlink(missing_ok=True)
        return ExportDeleted(export_id=export_id, deleted=True)

    return router
