"""Where each local domain's DKIM keys live: sealed by the master key in the key store.

``ledgermail domain add`` makes the pair (Ed25519 and RSA-2048, RFC 8463 and RFC 6376);
the worker reads it to sign. A domain added before keys existed gets its pair on first
use. The private keys never touch a file or an event.
"""

from __future__ import annotations

import json
import threading
from typing import Protocol

from adapters.smtp.dkim_signing import DkimKey, DomainKeys, generate_keys, normalise_domain


class SecretStore(Protocol):
    def seal_secret(self, name: str, value: bytes) -> bytes: ...

    def open_secret(self, name: str) -> bytes | None: ...


class DkimKeyring:
    def __init__(self, secrets: SecretStore) -> None:
        self._secrets = secrets
        self._cache: dict[str, DomainKeys] = {}
        self._lock = threading.Lock()

    def keys_for(self, domain: str, *, create: bool = True) -> DomainKeys | None:
        """The domain's pair; made and stored first when ``create`` and there is none."""
        name = normalise_domain(domain)
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        with self._lock:
            stored = self._secrets.open_secret(_secret_name(name))
            if stored is None:
                if not create:
                    return None
                stored = self._secrets.seal_secret(_secret_name(name), _encode(generate_keys()))
            keys = self._cache[name] = _decode(stored)
            return keys


def _secret_name(domain: str) -> str:
    return f"dkim:{domain}"


def _encode(keys: DomainKeys) -> bytes:
    return json.dumps({key.algorithm: {"selector": key.selector, "private": key.private_key.decode("ascii")}
                       for key in (keys.ed25519, keys.rsa)}).encode()


def _decode(stored: bytes) -> DomainKeys:
    data = json.loads(stored)
    ed, rsa = data["ed25519"], data["rsa"]
    return DomainKeys(
        ed25519=DkimKey.from_private_key("ed25519", ed["selector"], ed["private"].encode("ascii")),
        rsa=DkimKey.from_private_key("rsa", rsa["selector"], rsa["private"].encode("ascii")),
    )
