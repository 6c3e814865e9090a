"""DMARC evaluation of inbound mail (RFC 7489): does an SPF or DKIM pass align with the
From: domain, and what does that domain ask us to do when neither does?

Policy discovery (§6.6.3) asks ``_dmarc.<From domain>`` and then ``_dmarc.<organizational
domain>``; the organizational domain comes from the Public Suffix List (§3.2), which the
``publicsuffixlist`` package bundles, so nothing is fetched at run time. Alignment is
relaxed (same organizational domain) or strict (same name) per ``adkim``/``aspf``
(§3.1). The policy to apply is ``p`` (or ``sp`` for a subdomain found through the
organizational record), sampled by ``pct`` (§6.6.4: a message not sampled gets the next
weaker policy). What the receiver then does with ``reject`` is the scorer's choice.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from publicsuffixlist import PublicSuffixList

from adapters.scanners.dkim_verify import DkimResult
from adapters.scanners.spf import SpfOutcome, valid_domain
from adapters.smtp.routing import NoSuchDomain, Resolver, TemporaryDnsFailure
from domain.model.summary import header_block

#: RFC 7489 §6.3: the policies, weakest first (the order §6.6.4 steps down in).
POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class DmarcRecord:
    policy: str
    subdomain_policy: str
    percent: int
    adkim: str
    aspf: str


@dataclass(frozen=True)
class DmarcOutcome:
    """``result`` is RFC 7489 §11.2's (none, pass, fail, temperror, permerror);
    ``policy`` is what to do about it (none, quarantine, reject; none unless failed)."""

    result: str
    from_domain: str
    policy: str = "none"
    published: str = ""
    reason: str = ""


@functools.cache
def _psl() -> PublicSuffixList:
    """Parsed once (the bundled list is about 10,000 rules)."""
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; a public suffix is its own."""
    domain = domain.rstrip(".").lower()
    return _psl().privatesuffix(domain) or domain


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 §3.1.1, §3.1.2: strict is the same name, relaxed the same
    organizational domain."""
    identifier, from_domain = identifier.rstrip(".").lower(), from_domain.rstrip(".").lower()
    if not identifier or not from_domain:
        return False
    if mode == "s":
        return identifier == from_domain
    return organizational_domain(identifier) == organizational_domain(from_domain)


def author_domain(raw: bytes) -> str | None:
    """RFC 7489 §6.6.1: the domain of the single From: address; None when there is not
    exactly one From: field with exactly one address (DMARC cannot then be applied)."""
    fields = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
    values = fields.get_all("from") or []
    if len(values) != 1:
        return None
    addresses = [address for _, address in getaddresses([str(values[0])]) if address]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].rpartition("@")[2].rstrip(">").lower()


def parse_record(text: str) -> DmarcRecord | None:
    """RFC 7489 §6.3, §6.4: ``v=DMARC1`` first, then tag=value pairs; None when the
    record is not a usable DMARC record."""
    tags: dict[str, str] = {}
    parts = [part.strip() for part in text.split(";")]
    for part in parts:
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals:
            return None
        tags.setdefault(name.strip().lower(), value.strip())
    first = parts[0].partition("=")
    if first[0].strip().lower() != "v" or first[2].strip() != "DMARC1":
        return None
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        # §6.6.3: an invalid or missing p with a rua is treated as p=none.
        if "rua" not in tags:
            return None
        policy = "none"
    subdomain_policy = tags.get("sp", "").lower()
    if subdomain_policy not in POLICIES:
        subdomain_policy = policy
    try:
        percent = min(100, max(0, int(tags.get("pct", "100"))))
    except ValueError:
        percent = 100
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    return DmarcRecord(policy, subdomain_policy, percent, adkim, aspf)


class DmarcEvaluator:
    """``evaluate(raw, spf, dkim)`` -> ``DmarcOutcome``. ``sample`` gives a number in
    [0, 1) for the pct sampling (tests pass a fixed one)."""

    def __init__(self, resolver: Resolver, sample: Callable[[], float] = random.random) -> None:
        self.resolver = resolver
        self.sample = sample

    def evaluate(self, raw: bytes, spf: SpfOutcome, dkim_results: list[DkimResult]) -> DmarcOutcome:
        from_domain = author_domain(raw)
        if from_domain is None or not valid_domain(from_domain):
            return DmarcOutcome("permerror", from_domain or "", reason="not exactly one From: address")
        try:
            found = self._discover(from_domain)
        except TemporaryDnsFailure:
            return DmarcOutcome("temperror", from_domain, reason="DNS")
        if found is None:
            return DmarcOutcome("none", from_domain)
        record, at_org = found
        spf_ok = spf.result == "pass" and aligned(spf.domain, from_domain, record.aspf)
        dkim_ok = any(r.result == "pass" and aligned(r.domain, from_domain, record.adkim)
                      for r in dkim_results)
        if spf_ok or dkim_ok:
            return DmarcOutcome("pass", from_domain, published=record.policy,
                                reason="aligned " + ("dkim" if dkim_ok else "spf"))
        # §6.3 sp: the organizational record's policy for its subdomains.
        policy = record.subdomain_policy if at_org else record.policy
        if record.percent < 100 and self.sample() * 100 >= record.percent:
            policy = POLICIES[max(0, POLICIES.index(policy) - 1)]  # §6.6.4
        return DmarcOutcome("fail", from_domain, policy=policy, published=record.policy,
                            reason="no aligned pass")

    def _discover(self, from_domain: str) -> tuple[DmarcRecord, bool] | None:
        """RFC 7489 §6.6.3 policy discovery: the From domain, then its organizational
        domain. True with the record when it came from the organizational domain."""
        record = self._record(from_domain)
        if record is not None:
            return record, False
        org = organizational_domain(from_domain)
        if org != from_domain:
            record = self._record(org)
            if record is not None:
                return record, True
        return None

    def _record(self, domain: str) -> DmarcRecord | None:
        try:
            texts = self.resolver.txt(f"_dmarc.{domain}")
        except NoSuchDomain:
            return None
        candidates = [t for t in texts if t.replace(" ", "").lower().startswith("v=dmarc1")]
        # §6.6.3 step 5: several records are as good as none.
        if len(candidates) != 1:
            return None
        return parse_record(candidates[0])
