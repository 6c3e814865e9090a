"""The subject key store: random 256-bit keys, each wrapped by the master key.

It lives apart from the event log (its own SQLite file or PostgreSQL schema), so it can
have its own, short, backup retention. A new key is committed durably before any event
sealed with it. Shredding keeps a tombstone (key id, time, erasure reference, keyed hash
of the subject id) so a restored old key store can be re-shredded and an erased subject
id is never reused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.crypto.errors import (
    KeyShreddedError,
    MasterKeyMismatch,
    SubjectKeyErasedError,
    UnknownKeyError,
)
from adapters.crypto.master_key import derive_key

KEY_ID_BYTES = 16
_CHECK_PLAINTEXT = b"ledgermail master key check v1"


class SubjectKeyStore(ABC):
    """Backend-neutral logic; subclasses provide the SQL."""

    #: Seconds a cached key is trusted without reading its row again.
    cache_ttl = 2.0
    #: How often cache hits are held back until the backend says whether another process
    #: changed the store (SQLite can tell cheaply; PostgreSQL relies on the TTL). Staleness
    #: cannot leak an erased person's data: erasure markers are written before the shred,
    #: and every use case refuses a stream that carries one.
    change_check_interval = 0.25

    def __init__(self, master_key: bytes, where: str) -> None:
        self._master = AESGCM(master_key)
        self._tombstone_key = derive_key(master_key, "subject-tombstones")
        self._where = where
        self._lock = threading.RLock()
        self._keys: dict[bytes, tuple[float, bytes]] = {}
        self._subjects: dict[str, tuple[float, bytes]] = {}
        self._next_change_check = 0.0
        self._setup()
        self._check_master_key()

    # -- backend hooks -----------------------------------------------------------------

    @abstractmethod
    def _setup(self) -> None: ...

    @abstractmethod
    def _get_meta(self, name: str) -> bytes | None: ...

    @abstractmethod
    def _put_meta(self, name: str, value: bytes) -> None: ...

    @abstractmethod
    def _live_key_id(self, subject_id: str) -> bytes | None: ...

    @abstractmethod
    def _is_tombstoned(self, tombstone: str) -> bool: ...

    @abstractmethod
    def _insert_key(self, key_id: bytes, subject_id: str, wrapped: bytes) -> None:
        """Insert and commit durably before returning."""

    @abstractmethod
    def _key_row(self, key_id: bytes) -> tuple[bytes | None, Any] | None:
        """(wrapped key or None, shredded_at or None), or None if unknown."""

    @abstractmethod
    def _shred_rows(self, subject_id: str, tombstone: str, erasure_ref: str) -> list[bytes]: ...

    @abstractmethod
    def _keys_shredded_by(self, erasure_ref: str) -> list[bytes]: ...

    @abstractmethod
    def _shred_key_rows(self, key_ids: list[bytes], erasure_ref: str) -> list[bytes]:
        """Tombstone these keys if they are live (a restored backup); return those shredded."""

    def _changed_elsewhere(self) -> bool:
        """True when another process may have shredded keys since the last look."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    # -- master key check ----------------------------------------------------------------

    def _check_master_key(self) -> None:
        stored = self._get_meta("master_check")
        if stored is None:
            nonce = os.urandom(12)
            self._put_meta("master_check", nonce + self._master.encrypt(nonce, _CHECK_PLAINTEXT, b"check"))
            return
        try:
            self._master.decrypt(stored[:12], stored[12:], b"check")
        except InvalidTag:
            raise MasterKeyMismatch(self._where) from None

    # -- keys ----------------------------------------------------------------------------

    def tombstone_name(self, subject_id: str) -> str:
        digest = hmac.new(self._tombstone_key, subject_id.encode(), hashlib.sha256).hexdigest()
        return "erased:" + digest

    def _fresh(self, entry: tuple[float, bytes] | None) -> bytes | None:
        now = time.monotonic()
        if entry is None or entry[0] < now or self._next_change_check < now:
            return None
        return entry[1]

    def evict(self, key_ids: list[bytes] | None) -> None:
        """Forget these cached keys (None: all of them), because another node shredded
        them; the next use reads the row and finds the tombstone."""
        with self._lock:
            if key_ids is None:
                self._keys.clear()
                self._subjects.clear()
                return
            gone = set(key_ids)
            for key_id in gone:
                self._keys.pop(key_id, None)
            for subject_id, (_, key_id) in list(self._subjects.items()):
                if key_id in gone:
                    self._subjects.pop(subject_id, None)

    def _forget_if_changed(self) -> None:
        now = time.monotonic()
        if self._next_change_check < now:
            if self._changed_elsewhere():
                self._keys.clear()
                self._subjects.clear()
            self._next_change_check = now + self.change_check_interval

    def key_for_subject(self, subject_id: str) -> tuple[bytes, bytes]:
        """(key id, key) of the subject's live key, creating it on first use."""
        key_id = self._fresh(self._subjects.get(subject_id))  # lock-free hit: dict reads are atomic
        if key_id is not None:
            key = self._fresh(self._keys.get(key_id))
            if key is not None:
                return key_id, key
        with self._lock:
            self._forget_if_changed()
            key_id = self._fresh(self._subjects.get(subject_id))
            if key_id is None:
                key_id = self._live_key_id(subject_id)
                if key_id is None:
                    if self._is_tombstoned(self.tombstone_name(subject_id)):
                        raise SubjectKeyErasedError("subject was erased; its id is never reused")
                    key_id = os.urandom(KEY_ID_BYTES)
                    key = AESGCM.generate_key(256)
                    nonce = os.urandom(12)
                    self._insert_key(key_id, subject_id, nonce + self._master.encrypt(nonce, key, key_id))
                    self._keys[key_id] = (time.monotonic() + self.cache_ttl, key)
                self._subjects[subject_id] = (time.monotonic() + self.cache_ttl, key_id)
            return key_id, self.get_key(key_id)

    def get_key(self, key_id: bytes) -> bytes:
        key = self._fresh(self._keys.get(key_id))  # lock-free hit
        if key is not None:
            return key
        with self._lock:
            self._forget_if_changed()
            key = self._fresh(self._keys.get(key_id))
            if key is not None:
                return key
            row = self._key_row(key_id)
            if row is None:
                raise UnknownKeyError(key_id.hex())
            wrapped, shredded_at = row
            if shredded_at is not None or wrapped is None:
                raise KeyShreddedError(key_id.hex())
            try:
                key = self._master.decrypt(wrapped[:12], wrapped[12:], key_id)
            except InvalidTag:
                raise MasterKeyMismatch(self._where) from None
            self._keys[key_id] = (time.monotonic() + self.cache_ttl, key)
            return key

    def shred_subject(self, subject_id: str, erasure_ref: str) -> list[str]:
        """Destroy the subject's keys (idempotent); return the destroyed key ids."""
        with self._lock:
            key_ids = self._shred_rows(subject_id, self.tombstone_name(subject_id), erasure_ref)
            for key_id in key_ids:
                self._keys.pop(key_id, None)
            self._subjects.pop(subject_id, None)
            if not key_ids:
                key_ids = self._keys_shredded_by(erasure_ref)
            return [k.hex() for k in key_ids]

    def reapply_shreds(self, erasure_ref: str, key_ids_hex: list[str]) -> list[str]:
        """Shred again keys an erasure destroyed, if a restored key store brought them back."""
        with self._lock:
            key_ids = [bytes.fromhex(k) for k in key_ids_hex]
            revived = self._shred_key_rows(key_ids, erasure_ref)
            for key_id in revived:
                self._keys.pop(key_id, None)
            if revived:
                self._subjects.clear()
            return [k.hex() for k in revived]

    # -- server secrets (DKIM private keys) ----------------------------------------------

    def seal_secret(self, name: str, value: bytes) -> bytes:
        """Keep a server secret wrapped by the master key, durably, under ``name``;
        the first value stored under a name wins (two processes adding the same domain
        at once agree on one key). Returns the value now stored."""
        nonce = os.urandom(12)
        with self._lock:
            self._put_meta("secret:" + name, nonce + self._master.encrypt(nonce, value, name.encode()))
        stored = self.open_secret(name)
        assert stored is not None, "a secret just stored cannot be read back"
        return stored

    def open_secret(self, name: str) -> bytes | None:
        with self._lock:
            sealed = self._get_meta("secret:" + name)
        if sealed is None:
            return None
        try:
            return self._master.decrypt(sealed[:12], sealed[12:], name.encode())
        except InvalidTag:
            raise MasterKeyMismatch(self._where) from None

    def shredded_key_ids(self, erasure_ref: str) -> list[str]:
        with self._lock:
            return [k.hex() for k in self._keys_shredded_by(erasure_ref)]
