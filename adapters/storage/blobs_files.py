"""Sealed message bodies as files under ``<data dir>/blobs``, written durably."""

from __future__ import annotations

import os
from pathlib import Path

from adapters.crypto.blob_sealing import open_sealed, seal
from domain.ports import SealedBlob


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, blob_id: str) -> Path:
        if len(blob_id) != 32 or not all(c in "0123456789abcdef" for c in blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    def put(self, body: bytes) -> SealedBlob:
        """Write to a temporary name, fsync the file, rename, fsync the directory: the
        body is on disk before any event refers to it."""
        sealed, data = seal(body)
        path = self._path(sealed.blob_id)
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return sealed

    def get(self, blob_id: str, data_key: bytes) -> bytes:
        return open_sealed(blob_id, data_key, self._path(blob_id).read_bytes())

    def delete(self, blob_id: str) -> bool:
        try:
            self._path(blob_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, blob_id: str) -> bool:
        return self._path(blob_id).exists()
