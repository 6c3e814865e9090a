"""What the API tests share besides the ``client`` fixture (tests/conftest.py)."""

from __future__ import annotations


def bearer(token: str) -> dict[str, str]:
    """RFC 6750 §2.1: the token in the Authorization header."""
    return {"Authorization": f"Bearer {token}"}
