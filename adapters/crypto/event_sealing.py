"""Per-person encryption of stored events (DESIGN §3), plugged into eventsourcing.

Selected with ``MAPPER_TOPIC`` and ``CIPHER_TOPIC``. Stored state layouts:

    system scope:  b"Y1" | nonce(12) | AES-256-GCM_system(state)
    subject scope: b"S1" | key_id(16) | len(env)(4) | nonce(12) | AES-256-GCM_system(envelope)
                                      | nonce(12) | AES-256-GCM_subject(state)

AAD = "originator_id|version|topic" (plus a part label), binding each ciphertext to its
row: a row moved or edited fails authentication loudly. The audit envelope of a
personal event is sealed apart, with the system key, so the record of processing
survives the person's key; the body of the event does not.
"""

from __future__ import annotations

import base64
import os
import struct
from dataclasses import replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Cipher, Compressor, Mapper, StoredEvent, Transcoder
from eventsourcing.utils import Environment, get_topic

from adapters.crypto.errors import KeyShreddedError, TamperedEventError
from adapters.crypto.keystore import KEY_ID_BYTES, SubjectKeyStore
from adapters.crypto.master_key import derive_key
from adapters.crypto.registry import keystore_from_env
from domain.model.base import ENVELOPE, ShreddedEvent

SYSTEM_FORMAT = b"Y1"
SUBJECT_FORMAT = b"S1"
_NONCE = 12


def _aad(stored: StoredEvent, part: bytes) -> bytes:
    return f"{stored.originator_id}|{stored.originator_version}|{stored.topic}|".encode() + part


class SubjectCipher(Cipher):
    """Owns the key store; its plain ``encrypt``/``decrypt`` refuse to work (fail closed)."""

    def __init__(self, environment: Environment) -> None:
        self.keystore: SubjectKeyStore = keystore_from_env(environment)
        master = base64.b64decode(environment.get("KEYSTORE_MASTER_KEY") or "")
        self.system = AESGCM(derive_key(master, "system-events"))

    def encrypt(self, plaintext: bytes) -> bytes:
        raise NotImplementedError("ledgermail seals events per subject: use seal()")

    def decrypt(self, ciphertext: bytes) -> bytes:
        raise NotImplementedError("ledgermail seals events per subject: use open()")

    def seal_system(self, stored: StoredEvent, plain: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return SYSTEM_FORMAT + nonce + self.system.encrypt(nonce, plain, _aad(stored, b"system"))

    def seal_subject(self, stored: StoredEvent, subject_id: str, envelope: bytes, body: bytes) -> bytes:
        key_id, key = self.keystore.key_for_subject(subject_id)
        env_nonce, body_nonce = os.urandom(_NONCE), os.urandom(_NONCE)
        sealed_envelope = env_nonce + self.system.encrypt(env_nonce, envelope, _aad(stored, b"envelope"))
        sealed_body = body_nonce + AESGCM(key).encrypt(body_nonce, body, _aad(stored, b"body"))
        length = struct.pack(">I", len(sealed_envelope))
        return SUBJECT_FORMAT + key_id + length + sealed_envelope + sealed_body

    def open_system(self, stored: StoredEvent) -> bytes:
        blob = stored.state[2:]
        try:
            return self.system.decrypt(blob[:_NONCE], blob[_NONCE:], _aad(stored, b"system"))
        except InvalidTag:
            raise TamperedEventError(stored.originator_id, stored.originator_version) from None

    def open_subject(self, stored: StoredEvent) -> tuple[bytes, bytes | None, str]:
        """(envelope, body or None when the key was shredded, key id hex)."""
        state = stored.state
        key_id = state[2:2 + KEY_ID_BYTES]
        offset = 2 + KEY_ID_BYTES
        (env_len,) = struct.unpack(">I", state[offset:offset + 4])
        offset += 4
        sealed_envelope = state[offset:offset + env_len]
        sealed_body = state[offset + env_len:]
        try:
            envelope = self.system.decrypt(sealed_envelope[:_NONCE], sealed_envelope[_NONCE:],
                                           _aad(stored, b"envelope"))
        except InvalidTag:
            raise TamperedEventError(stored.originator_id, stored.originator_version) from None
        try:
            key = self.keystore.get_key(key_id)
        except KeyShreddedError:
            return envelope, None, key_id.hex()
        try:
            body = AESGCM(key).decrypt(sealed_body[:_NONCE], sealed_body[_NONCE:], _aad(stored, b"body"))
        except InvalidTag:
            raise TamperedEventError(stored.originator_id, stored.originator_version) from None
        return envelope, body, key_id.hex()


def subject_of(domain_event: Any) -> str | None:
    """The person an event is about: its ``subject_id``, or a snapshot's state's."""
    subject_id = getattr(domain_event, "subject_id", None)
    if subject_id is None:
        state = getattr(domain_event, "state", None)
        if isinstance(state, dict):
            subject_id = state.get("subject_id")
    return subject_id or None


class SubjectMapper(Mapper):
    """Chooses the key per event: the subject's, or the system key when there is none."""

    def __init__(self, transcoder: Transcoder, compressor: Compressor | None = None,
                 cipher: Cipher | None = None) -> None:
        if not isinstance(cipher, SubjectCipher):
            raise OSError("SubjectMapper needs CIPHER_TOPIC set to SubjectCipher (fail closed)")
        super().__init__(transcoder=transcoder, compressor=None, cipher=None)
        self.sealer = cipher

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        topic = get_topic(type(domain_event))
        stored = StoredEvent(originator_id=originator_id, originator_version=originator_version,
                             topic=topic, state=b"")
        subject_id = subject_of(domain_event)
        if subject_id is None or getattr(type(domain_event), "key_scope", "subject") == "system":
            return replace(stored, state=self.sealer.seal_system(stored, self.transcoder.encode(state)))
        envelope = state.pop(ENVELOPE, None) or {}
        return replace(stored, state=self.sealer.seal_subject(
            stored, subject_id, self.transcoder.encode(envelope), self.transcoder.encode(state)))

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        fmt = stored_event.state[:2]
        if fmt == SYSTEM_FORMAT:
            plain = self.sealer.open_system(stored_event)
            return super().to_domain_event(replace(stored_event, state=plain))
        if fmt != SUBJECT_FORMAT:
            raise TamperedEventError(stored_event.originator_id, stored_event.originator_version)
        envelope_bytes, body, key_id = self.sealer.open_subject(stored_event)
        envelope = self.transcoder.decode(envelope_bytes)
        if body is None:
            return ShreddedEvent(originator_id=stored_event.originator_id,
                                 originator_version=stored_event.originator_version,
                                 original_topic=stored_event.topic, key_id=key_id,
                                 envelope=envelope)
        event = super().to_domain_event(replace(stored_event, state=body))
        if envelope:
            object.__setattr__(event, ENVELOPE, envelope)
        return event

    def verify(self, stored_event: StoredEvent) -> None:
        """Authenticate a stored event without building it (start-up integrity scan)."""
        fmt = stored_event.state[:2]
        if fmt == SYSTEM_FORMAT:
            self.sealer.open_system(stored_event)
        elif fmt == SUBJECT_FORMAT:
            self.sealer.open_subject(stored_event)
        else:
            raise TamperedEventError(stored_event.originator_id, stored_event.originator_version)
