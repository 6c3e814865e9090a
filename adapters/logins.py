"""Checking a password with the failed-login throttle around it: one implementation for
IMAP and POP3 (SMTP AUTH runs the same steps from its event loop, adapters/smtp/handler.py).

The outcome says what to answer, never why a login failed: an unknown user and a wrong
password get the same answer after the same delay (checklist §1).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from uuid import UUID

from adapters.login_throttle import LoginThrottle
from domain.application.context import acting
from domain.application.service import LedgerMail
from domain.model.errors import AuthenticationFailed, DomainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginOutcome:
    """``account_id`` when the login succeeded; else ``locked`` (too many failures),
    ``unavailable`` (the store could not be asked) or a plain failure. ``delay`` is how
    long to wait before answering."""

    account_id: UUID | None = None
    locked: bool = False
    unavailable: bool = False
    delay: float = 0.0


def check_login(app: LedgerMail, throttle: LoginThrottle, ip: str, user: str, password: str, *,
                protocol: str, session: str) -> LoginOutcome:
    verdict = throttle.begin(ip, user, protocol)
    if verdict.locked:
        return LoginOutcome(locked=True, delay=verdict.delay)
    failed = False
    try:
        with acting(f"peer:{ip}", protocol=protocol, session=session, purpose="authentication"):
            account_id = app.authenticate(user, password)
    except (AuthenticationFailed, DomainError, ValueError):
        failed = True
    except Exception:  # noqa: BLE001 - the store is down: not the user's fault
        log.warning("%s login could not be checked", protocol, exc_info=True)
        return LoginOutcome(unavailable=True)
    finally:
        throttle.end(ip, user, failed=failed, protocol=protocol)
    if failed:
        return LoginOutcome(delay=throttle.check(ip, user).delay)
    throttle.succeeded(ip, user)
    return LoginOutcome(account_id=account_id)


class SaslError(ValueError):
    """A malformed SASL message: the protocol answers with a syntax error."""


def decode_plain(encoded: bytes) -> tuple[str, str, str]:
    """RFC 4616 §2 PLAIN, base64-encoded: (authzid, authcid, password)."""
    try:
        message = base64.b64decode(encoded.strip(), validate=True)
        authzid, authcid, password = message.split(b"\x00")
        return authzid.decode("utf-8"), authcid.decode("utf-8"), password.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SaslError("invalid SASL PLAIN response") from None


def is_loopback(ip: str) -> bool:
    """Loopback clients count as secure (DESIGN §5, as in Dovecot)."""
    return ip.startswith("127.") or ip in ("::1",) or ip.startswith("::ffff:127.")
