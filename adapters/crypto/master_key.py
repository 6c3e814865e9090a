"""The master key and the keys derived from it.

One 256-bit secret, from a 0600 file created on first start or from the environment,
wraps every subject key and is stretched (HKDF, RFC 5869) into the system event key
and the pseudonym keys. Losing it loses every mailbox; leaking it exposes every live
subject key, but never a shredded one.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_BYTES = 32


class MasterKeyError(Exception):
    pass


def load_or_create_master_key(path: Path, from_env: str | None = None) -> bytes:
    """Read the master key (base64) from ``from_env`` or ``path``; create ``path`` if absent."""
    if from_env:
        return _decode(from_env, "LEDGERMAIL_MASTER_KEY")
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise MasterKeyError(
                f"master key file {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        return _decode(path.read_text().strip(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(MASTER_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(path.parent)
    return key


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise MasterKeyError(f"master key in {where} is not base64") from None
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(f"master key in {where} must be {MASTER_KEY_BYTES} bytes")
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def derive_key(master: bytes, label: str) -> bytes:
    """A 256-bit key for one purpose, independent of the others (RFC 5869 HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"ledgermail/{label}".encode()).derive(master)
