"""Keyed one-way names (HMAC-SHA256) for addresses and subjects."""

from __future__ import annotations

import hashlib
import hmac
from uuid import UUID

from adapters.crypto.master_key import derive_key


class HmacPseudonymizer:
    def __init__(self, master_key: bytes) -> None:
        self._index_key = derive_key(master_key, "address-index")
        self._subject_key = derive_key(master_key, "subject-pseudonyms")

    def address_index_id(self, address: str) -> UUID:
        digest = hmac.new(self._index_key, address.encode(), hashlib.sha256).digest()
        return UUID(bytes=digest[:16])

    def subject_pseudonym(self, subject_id: str) -> str:
        digest = hmac.new(self._subject_key, subject_id.encode(), hashlib.sha256).hexdigest()
        return "p-" + digest[:32]
