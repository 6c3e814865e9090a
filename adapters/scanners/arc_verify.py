"""ARC chain validation of inbound mail (RFC 8617 §5.2) with dkimpy, over our Resolver.

The result (``none``, ``pass``, ``fail``; RFC 8617 §10.1 registers these for
Authentication-Results) is reported only: the scorer gives it no weight, since a chain
vouches for earlier hops' results only if we trust its sealers, and no list of trusted
sealers is configured yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dkim

from adapters.scanners.dkim_verify import MIN_RSA_BITS, TxtLookup
from adapters.smtp.routing import Resolver
from domain.model.summary import header_block

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArcResult:
    result: str
    reason: str = ""


def verify_arc(raw: bytes, resolver: Resolver, *, min_rsa_bits: int = MIN_RSA_BITS) -> ArcResult:
    """RFC 8617 §5.2: ``none`` without ARC sets, else the chain validation status."""
    if b"arc-seal" not in header_block(raw).lower():
        return ArcResult("none")
    lookup = TxtLookup(resolver)
    try:
        status, _, reason = dkim.arc_verify(raw, dnsfunc=lookup, minkey=min_rsa_bits)
    except Exception as error:  # noqa: BLE001 - a hostile chain must not fail the intake
        return ArcResult("fail", type(error).__name__)
    if status == dkim.CV_Pass:
        return ArcResult("pass")
    if status == dkim.CV_None:
        return ArcResult("none", str(reason)[:200])
    if lookup.temporary:
        return ArcResult("fail", "temporary DNS failure")
    return ArcResult("fail", str(reason)[:200])
