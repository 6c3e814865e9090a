"""Admin tokens: bearer credentials for the compliance API, with scopes (issue 7).

A token is shown once as ``lm_<token id>_<secret>``. Only a hash of the secret is
stored (the secret is 32 random bytes, so a plain SHA-256 is enough: there is nothing
to brute-force). A token names no person: the aggregate is system scope.
"""

from __future__ import annotations

import hashlib
import re
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import SystemAggregate
from domain.model.errors import InvalidScope, InvalidTokenName

#: The fixed set of scopes; ``admin`` grants every other.
ADMIN_SCOPE = "admin"
SCOPES = ("audit:read", "subjects:read", "subjects:write", "erasure:write", "consent:read",
          "consent:write", "export:write", "retention:read", "retention:write", "holds:read",
          "holds:write", ADMIN_SCOPE)
TOKEN_PREFIX = "lm"
#: A token id: 16 lowercase hex digits (no ``_``, so the token splits unambiguously).
TOKEN_ID = re.compile(r"[0-9a-f]{16}\Z")
#: A token's name is a label for operators, not a person's name: a short token.
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: The one token index, listing every token id ever created.
ADMIN_TOKENS_ID = uuid5(NAMESPACE_URL, "ledgermail:admin-tokens")


def admin_token_id_for(token_id: str) -> UUID:
    return uuid5(ADMIN_TOKENS_ID, f"token:{token_id}")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    """The scopes, deduplicated in order; an unknown or empty set is refused."""
    cleaned: list[str] = []
    for scope in scopes:
        scope = scope.strip()
        if scope not in SCOPES:
            raise InvalidScope(scope, SCOPES)
        if scope not in cleaned:
            cleaned.append(scope)
    if not cleaned:
        raise InvalidScope("", SCOPES)
    return cleaned


def check_token_name(name: str) -> str:
    if not TOKEN_NAME.match(name):
        raise InvalidTokenName(name)
    return name


class AdminToken(SystemAggregate):
    @event("Created")
    def __init__(self, token_id: str, name: str, scopes: list[str], secret_hash: str,
                 created_at: str) -> None:
        self.token_id = token_id
        self.name = name
        self.scopes = scopes
        self.secret_hash = secret_hash
        self.created_at = created_at
        self.revoked_at: str | None = None

    @staticmethod
    def create_id(token_id: str, **_: object) -> UUID:
        return admin_token_id_for(token_id)

    @event("Revoked")
    def revoke(self, at: str) -> None:
        self.revoked_at = at

    def grants(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN_SCOPE in self.scopes


class AdminTokenIndex(SystemAggregate):
    """Every token id, so they can be listed without a projection."""

    @event("Started")
    def __init__(self) -> None:
        self.token_ids: list[str] = []

    @staticmethod
    def create_id(**_: object) -> UUID:
        return ADMIN_TOKENS_ID

    @event("TokenAdded")
    def add(self, token_id: str) -> None:
        self.token_ids.append(token_id)
