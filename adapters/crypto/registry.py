"""One key store instance per process and location, so there is one cache to evict.

The eventsourcing factory builds the cipher from environment variables only, so the
cipher finds its key store here by the ``KEYSTORE_URL`` it is given.
"""

from __future__ import annotations

import base64
import threading

from adapters.crypto.keystore import SubjectKeyStore

_STORES: dict[tuple[str, str], SubjectKeyStore] = {}
_LOCK = threading.Lock()


def open_keystore(url: str, schema: str, master_key: bytes) -> SubjectKeyStore:
    with _LOCK:
        store = _STORES.get((url, schema))
        if store is None:
            if url.startswith("sqlite:///"):
                from adapters.crypto.keystore_sqlite import SQLiteKeyStore

                store = SQLiteKeyStore(url.removeprefix("sqlite:///"), master_key)
            elif url.startswith(("postgresql://", "postgres://")):
                from adapters.crypto.keystore_postgres import PostgresKeyStore

                store = PostgresKeyStore(url, schema, master_key)
            else:
                raise ValueError(f"unsupported key store url {url!r}")
            _STORES[(url, schema)] = store
        return store


def keystore_from_env(get: object) -> SubjectKeyStore:
    """Build (or find) the key store from an eventsourcing ``Environment``."""
    env_get = get.get  # type: ignore[attr-defined]
    url = env_get("KEYSTORE_URL")
    master = env_get("KEYSTORE_MASTER_KEY")
    if not url or not master:
        raise OSError("KEYSTORE_URL and KEYSTORE_MASTER_KEY must be set (fail closed)")
    return open_keystore(url, env_get("KEYSTORE_SCHEMA") or "", base64.b64decode(master))


def close_all() -> None:
    with _LOCK:
        for store in _STORES.values():
            store.close()
        _STORES.clear()
