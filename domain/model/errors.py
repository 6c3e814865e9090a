"""Domain errors: each message is fit to show an operator or a protocol client as it is."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused for a reason the caller can act on."""


class InvalidAddress(DomainError):
    def __init__(self, address: str, why: str) -> None:
        super().__init__(f"invalid address {address!r}: {why}")


class InvalidDomainName(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"invalid domain name {name!r}")


class UnknownDomain(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown domain {name!r} (add it with: ledgermail domain add {name})")


class DomainExists(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"domain {name!r} already exists")


class UnknownAddress(DomainError):
    def __init__(self, address: str) -> None:
        super().__init__(f"unknown address {address!r}")


class AddressTaken(DomainError):
    def __init__(self, address: str) -> None:
        super().__init__(f"address {address!r} already belongs to an account")


class AuthenticationFailed(DomainError):
    """Identical for unknown users and wrong passwords, so neither can be probed."""

    def __init__(self) -> None:
        super().__init__("authentication failed")


class WeakPassword(DomainError):
    def __init__(self, why: str) -> None:
        super().__init__(f"password refused: {why}")


class MailboxNotFound(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no mailbox named {name!r}")


class MailboxExists(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"mailbox {name!r} already exists")


class InvalidMailboxName(DomainError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"invalid mailbox name {name!r}: {why}")


class MailboxProtected(DomainError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"mailbox {name!r} cannot be changed: {why}")


class MailboxHasChildren(DomainError):
    """RFC 9051 §6.3.5 / §7.1 HASCHILDREN: delete the inferior mailboxes first."""

    def __init__(self, name: str) -> None:
        super().__init__(f"mailbox {name!r} has child mailboxes; delete them first")


class MessageNotFound(DomainError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no such message: {what}")


class MessageTooLarge(DomainError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")


class SubjectErased(DomainError):
    """The person's key was destroyed: their data is gone, by design, not by accident."""

    def __init__(self, what: str = "this person") -> None:
        super().__init__(f"{what} was erased (right to erasure); the data is no longer readable")


class LegalHoldActive(DomainError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"erasure blocked by a legal hold: {reason}")


class UnknownErasureRequest(DomainError):
    def __init__(self, request_id: str) -> None:
        super().__init__(f"no erasure request {request_id[:64]!r}")


class ConcurrencyExhausted(DomainError):
    """Too many concurrent writers kept winning the race; the caller should retry later."""

    def __init__(self, what: str) -> None:
        super().__init__(f"too much concurrent activity on {what}; try again")


class InvalidPurpose(DomainError):
    """Consent purposes are short tokens (``newsletter``, ``list.announce``)."""

    def __init__(self, purpose: str) -> None:
        super().__init__(f"invalid consent purpose {purpose!r}: expected 1-64 characters "
                         "of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")


class InvalidLegalBasis(DomainError):
    def __init__(self, basis: str, known: tuple[str, ...]) -> None:
        super().__init__(f"invalid legal basis {basis!r}: expected one of {', '.join(known)}")


class UnknownConsentRecord(DomainError):
    """No consent record has this id (a one-click link for a record never written)."""

    def __init__(self) -> None:
        super().__init__("no such consent record")


class InvalidScope(DomainError):
    def __init__(self, scope: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown token scope {scope!r}: expected one or more of {', '.join(known)}")


class InvalidTokenName(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"invalid token name {name!r}: expected 1-64 characters of "
                         "A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit")


class TokenRejected(DomainError):
    """An admin token that authenticates nobody (HTTP 401): malformed, unknown or revoked."""


class InvalidToken(TokenRejected):
    """Malformed, unknown or with a wrong secret: one message, so none can be probed."""

    def __init__(self) -> None:
        super().__init__("invalid admin token")


class TokenRevoked(TokenRejected):
    def __init__(self) -> None:
        super().__init__("admin token revoked")


class UnknownTokenId(DomainError):
    def __init__(self, token_id: str) -> None:
        super().__init__(f"no admin token with id {token_id!r} (see: ledgermail token list)")


class ScopeMissing(DomainError):
    """The token is valid but does not grant the scope (HTTP 403)."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"the admin token lacks the scope {scope!r}")


class InvalidProfile(DomainError):
    """A profile correction (GDPR Art. 16) names an unknown field or an unfit value."""

    def __init__(self, why: str) -> None:
        super().__init__(f"invalid profile data: {why}")


class InvalidLegalHold(DomainError):
    """A hold's case id, reason or scope is malformed: the operator can correct it."""

    def __init__(self, why: str) -> None:
        super().__init__(f"invalid legal hold: {why}")


class LegalHoldExists(DomainError):
    """Placing a case id again is refused, not merged: a hold's reason and scope are
    evidence of what was ordered, so changing them is a release and a new placement."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"legal hold {case_id!r} is already placed on this account; "
                         "release it first to place it again")


class InvalidRetentionRule(DomainError):
    def __init__(self, why: str) -> None:
        super().__init__(f"invalid retention rule: {why}")
