"""Sender Policy Framework: is the client allowed to send for the MAIL FROM (or HELO)
domain? RFC 7208 ``check_host()`` on the ``Resolver`` port.

Our own evaluator rather than a library, so every DNS question goes through the same
port the tests fake and the limits are ours to set: at most ``max_lookups`` terms that
cause DNS queries (§4.6.4: 10), at most ``max_void_lookups`` lookups that find nothing
(§4.6.4: 2), at most 10 MX hosts per ``mx`` (§4.6.4); past any of them, ``permerror``.

Not done: the ``ptr`` mechanism (§5.5, "SHOULD NOT be published") never matches, as
there is no reverse lookup on the port; it still counts as a DNS term. ``%{p}`` expands
to ``unknown`` (§7.3 allows that). ``exp=`` is checked for syntax and not fetched: our
rejections carry our own text.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote

from adapters.smtp.routing import NoSuchDomain, Resolver, TemporaryDnsFailure

log = logging.getLogger(__name__)

#: RFC 7208 §4.6.4: terms that cause DNS queries, per check_host() and its includes.
MAX_DNS_LOOKUPS = 10
#: RFC 7208 §4.6.4: lookups that return no record (NODATA or NXDOMAIN).
MAX_VOID_LOOKUPS = 2
#: RFC 7208 §4.6.4: MX records an ``mx`` mechanism looks at; more is a permerror.
MAX_MX_NAMES = 10
#: RFC 7208 §7.3: an expanded domain-spec is cut from the left to this length.
MAX_DOMAIN_LENGTH = 253

#: RFC 7208 §2.6 results.
RESULTS = ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
#: RFC 7208 §4.6.1: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9._-]*)=(.*)\Z", re.S)
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9._-]*)(.*)\Z", re.S)
#: RFC 7208 §7.1: macro-letter, transformers (digits, "r"), delimiters.
_MACRO = re.compile(r"%\{([slodiphcrtvSLODIPHCRTV])(\d*)(r?)([.\-+,/_=]*)\}|%%|%_|%-|%", re.I)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_DUAL_CIDR = re.compile(r"^(.*?)(?:/(\d{1,2}))?(?://(\d{1,3}))?\Z", re.S)


class SpfError(Exception):
    """Ends the evaluation with ``result`` (temperror or permerror)."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass(frozen=True)
class SpfOutcome:
    """One check_host() answer. ``identity`` is ``mailfrom`` or ``helo`` (RFC 7208 §2.3,
    §2.4: with the null reverse path the HELO name is checked, as postmaster@helo)."""

    result: str
    identity: str
    domain: str
    reason: str = ""


@dataclass
class _Term:
    qualifier: str
    name: str
    domain_spec: str | None
    cidr4: int
    cidr6: int
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None


class SpfChecker:
    """``check(ip, mail_from, helo)`` -> ``SpfOutcome``. Blocking; called from the intake
    thread."""

    def __init__(self, resolver: Resolver, *, max_lookups: int = MAX_DNS_LOOKUPS,
                 max_void_lookups: int = MAX_VOID_LOOKUPS) -> None:
        self.resolver = resolver
        self.max_lookups = max_lookups
        self.max_void_lookups = max_void_lookups

    def check(self, ip: str, mail_from: str, helo: str) -> SpfOutcome:
        """RFC 7208 §2.4: the MAIL FROM identity; with the null reverse path, the HELO
        identity as ``postmaster@<helo>`` (§2.3)."""
        if mail_from and "@" in mail_from:
            local, _, domain = mail_from.rpartition("@")
            identity = "mailfrom"
        else:
            local, domain, identity = "postmaster", helo, "helo"
        # RFC 7208 §4.3: a missing local part is "postmaster".
        local = local or "postmaster"
        domain = domain.rstrip(".").lower()
        try:
            address = _client_address(ip)
        except ValueError:
            return SpfOutcome("none", identity, domain, "no client address")
        evaluation = _Evaluation(self, address, f"{local}@{domain}", helo)
        try:
            result = evaluation.check_host(domain)
        except SpfError as error:
            return SpfOutcome(error.result, identity, domain, error.reason)
        return SpfOutcome(result, identity, domain, evaluation.reason)


def _client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The client address; an IPv4-mapped IPv6 address is the IPv4 address (RFC 7208 §5)."""
    address = ipaddress.ip_address(ip.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def valid_domain(domain: str) -> bool:
    """RFC 7208 §4.3: a multi-label name of valid labels (no empty label, none over 63)."""
    labels = domain.rstrip(".").split(".")
    return len(labels) > 1 and len(domain) <= MAX_DOMAIN_LENGTH and all(_LABEL.match(x) for x in labels)


class _Evaluation:
    """One check_host() with its includes: the lookup and void-lookup counts are shared
    by the whole evaluation (RFC 7208 §4.6.4)."""

    def __init__(self, checker: SpfChecker, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 sender: str, helo: str) -> None:
        self.checker = checker
        self.resolver = checker.resolver
        self.ip = ip
        self.sender = sender
        self.helo = helo
        self.lookups = 0
        self.voids = 0
        self.reason = ""

    # -- RFC 7208 §4 -------------------------------------------------------------------

    def check_host(self, domain: str) -> str:
        # RFC 7208 §4.3: an invalid or single-label domain has no SPF record.
        if not valid_domain(domain):
            return "none"
        record = self._record(domain)
        if record is None:
            return "none"
        terms, redirect = self._parse(record, domain)
        for term in terms:
            if self._matches(term, domain):
                self.reason = f"{term.name} matched"
                return _QUALIFIERS[term.qualifier]
        if redirect is not None:
            # RFC 7208 §6.1: redirect counts as a DNS term; no record there is a permerror.
            self._count_lookup()
            target = self._expand(redirect, domain)
            result = self.check_host(target)
            if result == "none":
                raise SpfError("permerror", "redirect target has no SPF record")
            return result
        # RFC 7208 §4.7: no mechanism matched and no redirect.
        self.reason = "no mechanism matched"
        return "neutral"

    def _record(self, domain: str) -> str | None:
        """RFC 7208 §4.4, §4.5: the one TXT record starting ``v=spf1``."""
        try:
            texts = self.resolver.txt(domain)
        except NoSuchDomain:
            return None
        except TemporaryDnsFailure as error:
            raise SpfError("temperror", f"DNS: {error}") from error
        records = [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
        if len(records) > 1:
            raise SpfError("permerror", "more than one SPF record")
        return records[0] if records else None

    def _parse(self, record: str, domain: str) -> tuple[list[_Term], str | None]:
        """RFC 7208 §4.6: the whole record is checked before anything is evaluated; any
        syntax error is a permerror."""
        terms: list[_Term] = []
        redirect: str | None = None
        explanation: str | None = None
        for word in record.split(" ")[1:]:
            if not word:
                continue
            modifier = _MODIFIER.match(word)
            if modifier and modifier.group(1).lower() not in _MECHANISMS:
                name, value = modifier.group(1).lower(), modifier.group(2)
                self._check_macros(value, exp=name == "exp")
                if name == "redirect":
                    if redirect is not None:  # RFC 7208 §6: at most once
                        raise SpfError("permerror", "redirect given twice")
                    redirect = value
                elif name == "exp":
                    if explanation is not None:
                        raise SpfError("permerror", "exp given twice")
                    explanation = value
                continue  # RFC 7208 §6: unknown modifiers are ignored
            terms.append(self._mechanism(word))
        # RFC 7208 §6.1: redirect is ignored when the record has an "all" mechanism.
        if any(term.name == "all" for term in terms):
            redirect = None
        return terms, redirect

    def _mechanism(self, word: str) -> _Term:
        match = _MECHANISM.match(word)
        if not match or match.group(2).lower() not in _MECHANISMS:
            raise SpfError("permerror", "unknown mechanism")
        qualifier, name, rest = match.group(1) or "+", match.group(2).lower(), match.group(3)
        if name == "all":
            if rest:
                raise SpfError("permerror", "all takes no argument")
            return _Term(qualifier, name, None, 32, 128)
        if name in ("ip4", "ip6"):
            if not rest.startswith(":"):
                raise SpfError("permerror", f"{name} needs an address")
            try:
                network = ipaddress.ip_network(rest[1:], strict=False)
            except ValueError:
                raise SpfError("permerror", f"bad {name} network") from None
            if network.version != (4 if name == "ip4" else 6):
                raise SpfError("permerror", f"bad {name} network")
            return _Term(qualifier, name, None, 32, 128, network)
        if name in ("a", "mx"):
            cidr = _DUAL_CIDR.match(rest)
            assert cidr is not None  # the pattern matches any text
            spec, four, six = cidr.group(1), cidr.group(2), cidr.group(3)
            cidr4 = int(four) if four is not None else 32
            cidr6 = int(six) if six is not None else 128
            if cidr4 > 32 or cidr6 > 128:
                raise SpfError("permerror", "bad prefix length")
            if spec and not spec.startswith(":"):
                raise SpfError("permerror", f"bad {name} argument")
            domain_spec = spec[1:] if spec else None
            if domain_spec is not None:
                self._check_domain_spec(domain_spec)
            return _Term(qualifier, name, domain_spec, cidr4, cidr6)
        # include, exists: a domain-spec is required; ptr: optional
        if name == "ptr" and not rest:
            return _Term(qualifier, name, None, 32, 128)
        if not rest.startswith(":") or len(rest) < 2:
            raise SpfError("permerror", f"{name} needs a domain")
        self._check_domain_spec(rest[1:])
        return _Term(qualifier, name, rest[1:], 32, 128)

    def _check_domain_spec(self, spec: str) -> None:
        self._check_macros(spec, exp=False)
        if not spec or " " in spec:
            raise SpfError("permerror", "bad domain-spec")

    def _check_macros(self, text: str, *, exp: bool) -> None:
        for match in _MACRO.finditer(text):
            token = match.group(0)
            if token == "%":
                raise SpfError("permerror", "bad macro")
            if match.group(1) and match.group(1).lower() in "crt" and not exp:
                raise SpfError("permerror", "c, r and t macros are only for exp")
            if match.group(2) and int(match.group(2)) == 0:  # RFC 7208 §7.3: nonzero
                raise SpfError("permerror", "bad macro transformer")

    # -- mechanisms, RFC 7208 §5 -------------------------------------------------------

    def _matches(self, term: _Term, domain: str) -> bool:
        name = term.name
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            assert term.network is not None
            return self.ip.version == term.network.version and self.ip in term.network
        self._count_lookup()
        target = self._expand(term.domain_spec, domain) if term.domain_spec is not None else domain
        if name == "include":
            # RFC 7208 §5.2: the include's result decides only on pass.
            result = self.check_host(target)
            if result == "pass":
                return True
            if result in ("fail", "softfail", "neutral"):
                return False
            if result == "temperror":
                raise SpfError("temperror", "include: temporary DNS failure")
            raise SpfError("permerror", f"include: {result}")
        if name == "a":
            return self._in_any(self._addresses(target), term)
        if name == "mx":
            exchanges = self._lookup(self.resolver.mx, target)
            names = [host for _, host in exchanges if host != "."]
            if len(names) > MAX_MX_NAMES:
                raise SpfError("permerror", "more than 10 MX names")
            return any(self._in_any(self._addresses(host, count_void=False), term) for host in names)
        if name == "exists":
            # RFC 7208 §5.7: an A lookup, whatever the client's address family.
            return any(ipaddress.ip_address(a).version == 4 for a in self._addresses(target))
        return False  # ptr: see the module docstring

    def _in_any(self, addresses: list[str], term: _Term) -> bool:
        for text in addresses:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if address.version != self.ip.version:
                continue
            prefix = term.cidr4 if address.version == 4 else term.cidr6
            if self.ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False):
                return True
        return False

    def _addresses(self, host: str, *, count_void: bool = True) -> list[str]:
        return self._lookup(self.resolver.addresses, host, count_void=count_void)

    def _lookup(self, method: object, name: str, *, count_void: bool = True) -> list:
        try:
            answer = method(name)  # type: ignore[operator]
        except NoSuchDomain:
            answer = []
        except TemporaryDnsFailure as error:
            raise SpfError("temperror", f"DNS: {error}") from error
        if not answer and count_void:
            # RFC 7208 §4.6.4: NXDOMAIN and NODATA are void lookups.
            self.voids += 1
            if self.voids > self.checker.max_void_lookups:
                raise SpfError("permerror", "too many void DNS lookups")
        return list(answer)

    def _count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > self.checker.max_lookups:
            raise SpfError("permerror", "too many DNS lookups")

    # -- macros, RFC 7208 §7 -----------------------------------------------------------

    def _expand(self, spec: str, domain: str) -> str:
        expanded = expand_macros(spec, sender=self.sender, domain=domain, ip=self.ip, helo=self.helo)
        expanded = expanded.rstrip(".")
        # RFC 7208 §7.3: cut whole labels from the left until it fits.
        while len(expanded) > MAX_DOMAIN_LENGTH and "." in expanded:
            expanded = expanded.partition(".")[2]
        return expanded.lower()


def expand_macros(spec: str, *, sender: str, domain: str,
                  ip: ipaddress.IPv4Address | ipaddress.IPv6Address, helo: str) -> str:
    """RFC 7208 §7.3 macro expansion of a domain-spec (or explanation string)."""
    local = sender.rpartition("@")[0] or "postmaster"
    values = {
        "s": sender, "l": local, "o": sender.rpartition("@")[2], "d": domain,
        "i": _dotted(ip), "p": "unknown", "v": "in-addr" if ip.version == 4 else "ip6",
        "h": helo or "unknown", "c": str(ip), "r": "unknown", "t": "0",
    }

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "%%":
            return "%"
        if token == "%_":
            return " "
        if token == "%-":
            return "%20"
        if token == "%":
            raise SpfError("permerror", "bad macro")
        letter, digits, reverse, delimiters = match.groups()
        value = values[letter.lower()]
        parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
        if reverse:
            parts.reverse()
        if digits:
            keep = int(digits)
            if keep == 0:
                raise SpfError("permerror", "bad macro transformer")
            parts = parts[-keep:]
        text = ".".join(parts)
        # RFC 7208 §7.3: an upper-case macro letter means URL-escaped.
        return quote(text, safe="-._~") if letter.isupper() else text

    return _MACRO.sub(replace, spec)


def _dotted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """RFC 7208 §7.3 ``%{i}``: dotted quad, or dot-separated nibbles for IPv6."""
    if ip.version == 4:
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))
