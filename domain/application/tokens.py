"""Admin tokens for the compliance API (issue 7): create, list, revoke, check.

The plaintext token is returned once by ``create_token`` and never stored: the events
hold a SHA-256 of its secret, compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from domain.application.base import LedgerApplication
from domain.application.context import acting
from domain.model.admin_token import (
    ADMIN_TOKENS_ID,
    TOKEN_ID,
    TOKEN_PREFIX,
    AdminToken,
    AdminTokenIndex,
    admin_token_id_for,
    check_scopes,
    check_token_name,
    hash_secret,
)
from domain.model.errors import InvalidToken, ScopeMissing, TokenRevoked, UnknownTokenId

#: The audit envelope's purpose for changes to admin tokens.
TOKEN_PURPOSE = "administration"
#: Hashed when a token is unknown, so an unknown id costs what a wrong secret costs.
_DUMMY_HASH = hash_secret("")


class TokenUseCases(LedgerApplication):
    def create_token(self, name: str, scopes: list[str]) -> tuple[str, str]:
        """A new token with ``scopes``: (token id, the plaintext token, shown once)."""
        scopes = check_scopes(scopes)
        name = check_token_name(name)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)

        def body() -> None:
            token = AdminToken(token_id=token_id, name=name, scopes=scopes,
                               secret_hash=hash_secret(secret), created_at=self.now_iso())
            index: AdminTokenIndex | None = self.load_or_none(ADMIN_TOKENS_ID)
            if index is None:
                index = AdminTokenIndex()
            index.add(token_id)
            self.save_with_envelope(index, token)

        with acting(purpose=TOKEN_PURPOSE):
            self.retrying("the admin tokens", lambda: [ADMIN_TOKENS_ID], body)
        return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token: True, or False when it was revoked already."""
        aggregate_id = self._token_aggregate_id(token_id)

        def body() -> bool:
            token: AdminToken | None = self.load_or_none(aggregate_id)
            if token is None:
                raise UnknownTokenId(token_id)
            if token.revoked_at is not None:
                return False
            token.revoke(self.now_iso())
            self.save_with_envelope(token)
            return True

        with acting(purpose=TOKEN_PURPOSE):
            return self.retrying("an admin token", lambda: [aggregate_id], body)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token ever created, oldest first: id, name, scopes, created, revoked."""
        index: AdminTokenIndex | None = self.load_or_none(ADMIN_TOKENS_ID)
        listing = []
        for token_id in index.token_ids if index is not None else []:
            token: AdminToken = self.repository.get(admin_token_id_for(token_id))
            listing.append({"token_id": token.token_id, "name": token.name,
                            "scopes": list(token.scopes), "created_at": token.created_at,
                            "revoked_at": token.revoked_at})
        return listing

    def check_token(self, plaintext: str, scope: str) -> str:
        """The token id of a valid token granting ``scope``. Raises ``InvalidToken``
        (malformed, unknown, wrong secret) or ``TokenRevoked`` (both: 401) or
        ``ScopeMissing`` (403)."""
        prefix, _, rest = plaintext.partition("_")
        token_id, _, secret = rest.partition("_")
        token: AdminToken | None = None
        if prefix == TOKEN_PREFIX and TOKEN_ID.match(token_id) and secret:
            token = self.load_or_none(admin_token_id_for(token_id))
        expected = token.secret_hash if token is not None else _DUMMY_HASH
        if not hmac.compare_digest(hash_secret(secret), expected) or token is None:
            raise InvalidToken()
        if token.revoked_at is not None:
            raise TokenRevoked()
        if not token.grants(scope):
            raise ScopeMissing(scope)
        return token.token_id

    def _token_aggregate_id(self, token_id: str) -> Any:
        if not TOKEN_ID.match(token_id):
            raise UnknownTokenId(token_id)
        return admin_token_id_for(token_id)
