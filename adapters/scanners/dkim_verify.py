"""DKIM verification of inbound mail: RFC 6376 §6 with dkimpy, RSA and Ed25519 (RFC 8463).

Every signature is evaluated (up to ``max_signatures``, topmost first), each giving its
own result with its ``d=``, ``s=`` and ``a=``: DMARC needs to know which domains signed,
not only whether one signature held. Key records come from our ``Resolver`` port, so
tests publish keys in a fake zone and production uses the same DNS as everything else.

Result names are RFC 8601 §2.7.1's: ``pass``; ``fail`` (the signature or body hash does
not verify); ``permerror`` (the signature cannot be checked: malformed, no key record,
a revoked or too-small key); ``temperror`` (the key lookup failed for now).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import dkim

from adapters.smtp.routing import NoSuchDomain, Resolver, TemporaryDnsFailure

log = logging.getLogger(__name__)

#: Signatures looked at per message; the rest are ignored (a message with hundreds of
#: signatures would otherwise cost hundreds of DNS lookups and RSA operations).
MAX_SIGNATURES = 10
#: RFC 8301 §3.2: verifiers MUST NOT accept RSA keys shorter than 1024 bits.
MIN_RSA_BITS = 1024
_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", re.I)


@dataclass(frozen=True)
class DkimResult:
    """One signature's result (RFC 8601 §2.7.1) and what it names."""

    result: str
    domain: str
    selector: str
    algorithm: str
    reason: str = ""


class TxtLookup:
    """dkimpy's ``dnsfunc`` over the ``Resolver`` port: ``(name, timeout) -> bytes | None``.

    A temporary failure is remembered (dkimpy would report it as a failed signature)
    so the caller can say ``temperror`` instead of ``fail`` (RFC 6376 §6.1.2).
    """

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.temporary = False
        self.missing = False

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            records = self.resolver.txt(text.rstrip(".").lower())
        except NoSuchDomain:
            records = []
        except TemporaryDnsFailure as error:
            self.temporary = True
            raise dkim.DnsTimeoutError(str(error)) from error
        if not records:
            self.missing = True
            return None
        # RFC 6376 §3.6.2.2: more than one key record is undefined; take the first
        # that looks like a key, as dkimpy's own lookup takes the first.
        keyish = [r for r in records if "p=" in r]
        return (keyish or records)[0].encode("utf-8", "surrogateescape")


class DkimVerifier:
    def __init__(self, resolver: Resolver, *, max_signatures: int = MAX_SIGNATURES,
                 min_rsa_bits: int = MIN_RSA_BITS) -> None:
        self.resolver = resolver
        self.max_signatures = max_signatures
        self.min_rsa_bits = min_rsa_bits

    def verify(self, raw: bytes) -> list[DkimResult]:
        """One result per DKIM-Signature field (RFC 6376 §6.1: each is verified on its
        own); ``[]`` when the message is not signed."""
        try:
            headers = dkim.DKIM(raw, logger=_QUIET).headers
        except dkim.DKIMException:
            return []
        count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
        return [self._one(raw, index) for index in range(min(count, self.max_signatures))]

    def _one(self, raw: bytes, index: int) -> DkimResult:
        lookup = TxtLookup(self.resolver)
        verifier = dkim.DKIM(raw, minkey=self.min_rsa_bits, logger=_QUIET)
        sig_value = [v for n, v in verifier.headers if n.lower() == b"dkim-signature"][index]
        tags = {k.lower(): v.strip() for k, v in _TAG.findall(sig_value)}
        domain = _text(tags.get(b"d", b"")).lower()
        selector = _text(tags.get(b"s", b""))
        algorithm = _text(tags.get(b"a", b"")).lower()
        try:
            ok = verifier.verify(idx=index, dnsfunc=lookup)
        except dkim.ValidationError as error:
            # Body hash mismatch, expired signature, From not signed: it does not hold.
            return DkimResult("fail" if "body hash" in str(error) else "permerror",
                              domain, selector, algorithm, str(error)[:200])
        except dkim.DKIMException as error:
            return DkimResult("permerror", domain, selector, algorithm, str(error)[:200])
        except Exception as error:  # noqa: BLE001 - a hostile signature must not fail the intake
            log.info("DKIM signature %d could not be checked: %s", index, type(error).__name__)
            return DkimResult("permerror", domain, selector, algorithm, type(error).__name__)
        if ok:
            return DkimResult("pass", domain, selector, algorithm)
        if lookup.temporary:
            return DkimResult("temperror", domain, selector, algorithm, "key lookup failed")
        if lookup.missing:
            return DkimResult("permerror", domain, selector, algorithm, "no key record")
        return DkimResult("fail", domain, selector, algorithm, "signature did not verify")


def _text(value: bytes) -> str:
    return re.sub(r"\s+", "", value.decode("ascii", "replace"))


class _QuietLogger(logging.LoggerAdapter):
    """dkimpy logs every malformed signature at ERROR; from strangers' mail that is noise."""

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        self.debug(msg, *args, **kwargs)  # type: ignore[arg-type]


_QUIET = _QuietLogger(logging.getLogger("dkimpy"), {})
