"""Loud crypto errors: each names the problem an operator must fix."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of errors that must stop a server rather than be worked around."""


class MasterKeyMismatch(CryptoError):
    def __init__(self, where: str) -> None:
        super().__init__(
            f"the master key does not open the key store at {where} "
            "(wrong master key file or LEDGERMAIL_MASTER_KEY?)"
        )


class KeyShreddedError(CryptoError):
    """The key existed and was destroyed on purpose (a tombstone records it)."""


class UnknownKeyError(CryptoError):
    """No record of the key at all: the key store is older than the event log (a
    restore mismatch) or was damaged. Never reported as "erased"."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"no record of subject key {key_id} in the key store: restore mismatch or "
            "damaged key store (the event log refers to a key the key store never had)"
        )


class TamperedEventError(CryptoError):
    def __init__(self, originator_id: object, version: int) -> None:
        super().__init__(
            f"stored event {originator_id} version {version} failed authentication: "
            "it was changed or moved outside ledgermail (or the master key is wrong)"
        )


class SubjectKeyErasedError(CryptoError):
    """Sealing refused: the subject was erased, and an erased subject id is never reused."""
