"""Bodies are sealed once, with a random data key, and bound to their blob id."""

from __future__ import annotations

import os
from uuid import uuid4

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.ports import SealedBlob

BLOB_FORMAT = b"B1"


class BlobIntegrityError(Exception):
    def __init__(self, blob_id: str) -> None:
        super().__init__(f"message body {blob_id} failed authentication (changed on disk?)")


def seal(body: bytes) -> tuple[SealedBlob, bytes]:
    """A new blob id and data key, and the bytes to store."""
    blob_id = uuid4().hex
    data_key = AESGCM.generate_key(256)
    nonce = os.urandom(12)
    return SealedBlob(blob_id, data_key), BLOB_FORMAT + nonce + AESGCM(data_key).encrypt(
        nonce, body, blob_id.encode()
    )


def open_sealed(blob_id: str, data_key: bytes, stored: bytes) -> bytes:
    if stored[:2] != BLOB_FORMAT:
        raise BlobIntegrityError(blob_id)
    try:
        return AESGCM(data_key).decrypt(stored[2:14], stored[14:], blob_id.encode())
    except InvalidTag:
        raise BlobIntegrityError(blob_id) from None
