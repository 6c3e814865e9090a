"""Sender authentication of one inbound message: SPF, DKIM, ARC, then DMARC over them.

The order matters only for DMARC, which needs the SPF and DKIM results (RFC 7489 §4.2).
All lookups go through the one ``Resolver`` given, each result carrying enough for the
Authentication-Results field and the scorer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.scanners.arc_verify import ArcResult, verify_arc
from adapters.scanners.dkim_verify import MAX_SIGNATURES, MIN_RSA_BITS, DkimResult, DkimVerifier
from adapters.scanners.dmarc import DmarcEvaluator, DmarcOutcome
from adapters.scanners.spf import MAX_DNS_LOOKUPS, MAX_VOID_LOOKUPS, SpfChecker, SpfOutcome
from adapters.smtp.routing import Resolver
from domain.ports import ScanContext


@dataclass(frozen=True)
class AuthResults:
    spf: SpfOutcome
    dkim: list[DkimResult] = field(default_factory=list)
    arc: ArcResult = ArcResult("none")
    dmarc: DmarcOutcome = DmarcOutcome("none", "")

    @property
    def temporary(self) -> bool:
        """A DNS lookup failed for now somewhere (RFC 7208 §2.6.6, RFC 7489 §6.6.3)."""
        return (self.spf.result == "temperror" or self.dmarc.result == "temperror"
                or any(r.result == "temperror" for r in self.dkim))


class SenderAuthentication:
    def __init__(self, resolver: Resolver, *, spf_max_lookups: int = MAX_DNS_LOOKUPS,
                 spf_max_void_lookups: int = MAX_VOID_LOOKUPS, max_dkim_signatures: int = MAX_SIGNATURES,
                 min_rsa_bits: int = MIN_RSA_BITS, dmarc_sample: Callable[[], float] | None = None) -> None:
        self.resolver = resolver
        self.spf = SpfChecker(resolver, max_lookups=spf_max_lookups, max_void_lookups=spf_max_void_lookups)
        self.dkim = DkimVerifier(resolver, max_signatures=max_dkim_signatures, min_rsa_bits=min_rsa_bits)
        self.dmarc = DmarcEvaluator(resolver, dmarc_sample) if dmarc_sample else DmarcEvaluator(resolver)
        self.min_rsa_bits = min_rsa_bits

    def check(self, raw: bytes, context: ScanContext) -> AuthResults:
        spf = self.spf.check(context.client_ip, context.mail_from, context.helo)
        dkim_results = self.dkim.verify(raw)
        arc = verify_arc(raw, self.resolver, min_rsa_bits=self.min_rsa_bits)
        dmarc = self.dmarc.evaluate(raw, spf, dkim_results)
        return AuthResults(spf, dkim_results, arc, dmarc)
