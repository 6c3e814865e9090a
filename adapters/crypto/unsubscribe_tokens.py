"""One-click unsubscribe tokens (RFC 8058): the opaque part of a List-Unsubscribe URI.

RFC 8058 §3.1: the URI must identify the recipient and the list by itself (a one-click
POST carries nothing else) and should hold a hard-to-forge component rather than the
plain names. A token is ``base64url(version | record id | purpose | tag)`` (RFC 4648 §5,
no padding), where the tag is HMAC-SHA256 over the rest under a key derived from the
master key. The record id is already a keyed pseudonym of the address and the purpose a
short token, so the link holds no personal data. Tokens do not expire: an unsubscribe
link must keep working for as long as the mail that carries it is read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from uuid import UUID

from adapters.crypto.master_key import derive_key
from domain.model.consent import MAX_PURPOSE, is_valid_purpose

_VERSION = b"\x01"
_ID_BYTES = 16
_TAG_BYTES = 32
#: The longest token a valid payload makes; anything longer is refused unread.
MAX_TOKEN_CHARS = ((len(_VERSION) + _ID_BYTES + MAX_PURPOSE + _TAG_BYTES) * 4 + 2) // 3
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+\Z")


class UnsubscribeTokens:
    def __init__(self, master_key: bytes) -> None:
        self._key = derive_key(master_key, "unsubscribe-tokens")

    def issue(self, record_id: UUID, purpose: str) -> str:
        """The token for withdrawing ``purpose`` from the consent record ``record_id``."""
        if not is_valid_purpose(purpose):
            raise ValueError(f"invalid consent purpose {purpose!r}")
        payload = _VERSION + record_id.bytes + purpose.encode("ascii")
        token = payload + self._tag(payload)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")

    def read(self, token: str) -> tuple[UUID, str] | None:
        """(record id, purpose) of a token this server issued; None for anything else
        (malformed, truncated, forged, too long). Never raises."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _ALPHABET.match(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        # One spelling per token: a re-encoding that differs (stray bits) is refused.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
            return None
        if len(raw) < len(_VERSION) + _ID_BYTES + 1 + _TAG_BYTES or not raw.startswith(_VERSION):
            return None
        payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        record_bytes = payload[len(_VERSION):len(_VERSION) + _ID_BYTES]
        try:
            purpose = payload[len(_VERSION) + _ID_BYTES:].decode("ascii")
        except UnicodeDecodeError:
            return None
        if not is_valid_purpose(purpose):
            return None
        return UUID(bytes=record_bytes), purpose

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()
