"""Where outbound mail for a domain goes: the ordered list of hosts to try.

RFC 5321 §5.1 with RFC 7505 (null MX): MX records sorted by preference, equal
preferences shuffled, the domain itself as the implicit MX when it has none, address
literals used as they are, and an operator's smarthost overriding all of it. DNS is a
port (``Resolver``); ``DnsPythonResolver`` is the real one. ``route`` does no I/O of its
own, so the queue worker's tests drive it with a fake resolver mapping domains to
loopback peers.

Failures carry the reply and RFC 3463 status the queue worker puts in a bounce or a
deferral: null MX 556 5.1.10, no such domain 550 5.1.2, DNS trouble 451 4.4.3.
"""

from __future__ import annotations

import ipaddress
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from adapters.next_hops import SMTP_PORT, is_hostname, parse_smarthost

#: Seconds one lookup may take, every retry and server included (dnspython ``lifetime``).
DNS_TIMEOUT = 10.0
#: At most this many MX hosts are tried for one domain (Postfix smtp_mx_address_limit
#: is 5 addresses); the rest of a hostile or broken record set is ignored.
MAX_MX_HOSTS = 10

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


# --- the DNS port ---------------------------------------------------------------------


class DnsError(Exception):
    """A lookup failed; the subclass says whether for good."""


class NoSuchDomain(DnsError):
    """NXDOMAIN: the name does not exist (or cannot: it is not a valid DNS name)."""


class TemporaryDnsFailure(DnsError):
    """SERVFAIL, a timeout, no server answering: the answer may come later."""


class Resolver(Protocol):
    """The DNS lookups outbound delivery needs.

    Names go in and come out lower-case, without the trailing dot, IDNs as A-labels.
    Each method returns ``[]`` when the name exists but has no record of that type
    (NODATA), raises ``NoSuchDomain`` on NXDOMAIN and ``TemporaryDnsFailure`` when the
    DNS could not answer.
    """

    def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs; the null MX's exchange is ``"."``."""
        ...

    def addresses(self, host: str) -> list[str]:
        """IPv4 and IPv6 addresses of ``host`` as text (A, then AAAA)."""
        ...

    def txt(self, name: str) -> list[str]:
        """One string per TXT record, its character-strings joined (RFC 7208 §3.3)."""
        ...


class DnsPythonResolver:
    """``Resolver`` on dnspython's stub resolver.

    ``resolver`` is a configured ``dns.resolver.Resolver`` (the system's by default);
    ``timeout`` bounds each whole lookup. ``ipv6=False`` skips AAAA lookups, for hosts
    without IPv6 connectivity (Postfix inet_protocols = ipv4). Blocking: the queue
    worker calls it from a thread.
    """

    def __init__(self, resolver: dns.resolver.Resolver | None = None, *, timeout: float = DNS_TIMEOUT,
                 ipv6: bool = True) -> None:
        self._resolver = resolver if resolver is not None else dns.resolver.Resolver()
        self._timeout = timeout
        self._ipv6 = ipv6

    def mx(self, domain: str) -> list[tuple[int, str]]:
        answer = self._resolve(domain, dns.rdatatype.MX)
        return [(int(rr.preference), _host_text(rr.exchange)) for rr in answer]

    def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        problems: list[DnsError] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) if self._ipv6 else (dns.rdatatype.A,):
            try:
                found.extend(rr.address for rr in self._resolve(host, rdtype))
            except DnsError as problem:
                problems.append(problem)
        if found or not problems:
            return found
        # One family failing temporarily while the other answered NODATA is still
        # temporary: the missing answer may hold the only address.
        temporary = [p for p in problems if isinstance(p, TemporaryDnsFailure)]
        raise temporary[0] if temporary else problems[0]

    def txt(self, name: str) -> list[str]:
        answer = self._resolve(name, dns.rdatatype.TXT)
        return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]

    def _resolve(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[Any]:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as error:  # label too long, empty label, bad IDN
            raise NoSuchDomain(f"{name!r} is not a valid domain name") from error
        try:
            answer = self._resolver.resolve(qname, rdtype, search=False, lifetime=self._timeout)
        except dns.resolver.NXDOMAIN as error:
            raise NoSuchDomain(f"{name}: no such domain") from error
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.DNSException as error:
            # NoNameservers (every server gave SERVFAIL/REFUSED), LifetimeTimeout, ...
            raise TemporaryDnsFailure(f"{name}: {type(error).__name__}") from error
        return list(answer)


def _host_text(name: dns.name.Name) -> str:
    return "." if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


# --- routes ---------------------------------------------------------------------------


class Candidate(NamedTuple):
    """One host to try: a DNS name, or an IP address for literals and smarthosts
    given as addresses (then there is nothing to resolve)."""

    host: str
    port: int
    preference: int
    #: The address to connect to when ``host`` is a name already resolved (through the
    #: ``Resolver`` port); ``host`` stays the name TLS verifies (RFC 8461 §4.1).
    address: str | None = None

    @property
    def connect_to(self) -> str:
        return self.address or self.host

    @property
    def is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Route:
    """Where mail for ``domain`` goes, best candidate first.

    ``kind`` says how the route was found: ``mx`` (MX records), ``implicit`` (no MX:
    the domain's own A/AAAA, RFC 5321 §5.1), ``literal`` (``[192.0.2.1]``),
    ``transport`` (the operator's per-domain next hop, ``outbound.routes``) or
    ``smarthost``. MTA-STS (RFC 8461) applies to ``mx`` routes only: a smarthost hop is
    not the recipient domain's MX.
    """

    domain: str
    kind: Literal["mx", "implicit", "literal", "transport", "smarthost"]
    candidates: tuple[Candidate, ...]

    @property
    def limit_key(self) -> str:
        """What ``DomainLimiter`` counts against: the relay when there is a smarthost
        (every domain shares it), otherwise the recipient domain."""
        if self.kind == "smarthost":
            relay = self.candidates[0]
            return f"smarthost:[{relay.host}]:{relay.port}"
        return self.domain


class RouteFailure(Exception):
    """No route. ``reply`` is what the bounce (5xx) or the deferral (4xx) reports."""

    code = 451
    status = "4.4.3"

    def __init__(self, domain: str, detail: str) -> None:
        self.domain = domain
        self.detail = detail
        super().__init__(self.reply)

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.detail}"

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class NullMx(RouteFailure):
    """RFC 7505 §3: the domain accepts no mail; bounce at once with the reply and
    enhanced code RFC 7505 registers (556, 5.1.10), never retry."""

    code = 556
    status = "5.1.10"


class UnknownDomain(RouteFailure):
    """RFC 5321 §5.1: a non-existent domain is reported as an error (RFC 3463 X.1.2:
    bad destination system address). Also an address literal we cannot use."""

    code = 550
    status = "5.1.2"


class Unroutable(RouteFailure):
    """RFC 5321 §5.1: MX records, or the implicit MX, exist but none is usable
    (RFC 3463 X.4.4 unable to route; X.4.6 when every MX is ourselves)."""

    code = 550
    status = "5.4.4"


class MailLoop(Unroutable):
    status = "5.4.6"


class RouteDeferred(RouteFailure):
    """RFC 5321 §5.1: a temporary DNS error queues the message for a retry
    (RFC 3463 X.4.3 directory server failure)."""

    code = 451
    status = "4.4.3"


def route(domain: str, resolver: Resolver, smarthost: str | None = None, *,
          rng: random.Random | None = None, port: int = SMTP_PORT,
          own_hosts: frozenset[str] = frozenset(), max_hosts: int = MAX_MX_HOSTS) -> Route:
    """The hosts to try for mail to ``domain``, in order.

    ``smarthost`` (``"host:port"``, ``"[::1]:25"``) overrides everything and looks
    nothing up. ``rng`` shuffles equal preferences (tests pass a seeded one). ``port``
    is where MX hosts listen (25; tests point it at loopback peers). ``own_hosts`` are
    this server's names, for the MX loop rule. Raises a ``RouteFailure``.
    """
    if smarthost is not None:
        host, relay_port = parse_smarthost(smarthost)
        return Route(domain, "smarthost", (Candidate(host, relay_port, 0),))
    if domain.startswith("["):
        return Route(domain, "literal", (Candidate(_literal_address(domain), port, 0),))
    name = _a_label(domain)
    own_hosts = frozenset(host.rstrip(".").lower() for host in own_hosts)
    try:
        records = resolver.mx(name)
    except NoSuchDomain as error:
        raise UnknownDomain(domain, f"Domain {name} does not exist") from error
    except TemporaryDnsFailure as error:
        raise RouteDeferred(domain, f"MX lookup for {name} failed, will retry") from error
    records = [(pref, host.rstrip(".").lower() or ".") for pref, host in records]

    if records and all(host == "." for _, host in records):
        # RFC 7505 §3: a null MX is the single record "0 ."; any preference, or a
        # duplicate, says the same thing: there is no host to try.
        raise NullMx(domain, f"Recipient address has null MX ({name} accepts no mail)")
    # RFC 7505 §3: a domain with a null MX MUST NOT publish other MX records. When it
    # does anyway, "." is no host (the root has no address) and the others are used.
    records = [(pref, host) for pref, host in records if host != "."]

    if not records:
        # RFC 5321 §5.1: no MX is an implicit MX of preference 0 pointing at the domain
        # itself, usable only if the domain has an address (A/AAAA fallback).
        try:
            addresses = resolver.addresses(name)
        except NoSuchDomain as error:
            raise UnknownDomain(domain, f"Domain {name} does not exist") from error
        except TemporaryDnsFailure as error:
            raise RouteDeferred(domain, f"Address lookup for {name} failed, will retry") from error
        if not addresses:
            raise Unroutable(domain, f"Domain {name} has no MX and no address record")
        if name in own_hosts:
            raise MailLoop(domain, f"Mail for {name} loops back to myself")
        return Route(domain, "implicit", (Candidate(name, port, 0),))

    best: dict[str, int] = {}
    for pref, host in records:  # a host listed twice is tried once, at its best preference
        best[host] = min(pref, best.get(host, pref))
    mine = [pref for host, pref in best.items() if host in own_hosts]
    if mine:
        # RFC 5321 §5.1: when we are one of the MX hosts, discard every MX with a
        # preference equal to or higher than ours: only better hosts may relay.
        best = {host: pref for host, pref in best.items() if pref < min(mine)}
        if not best:
            raise MailLoop(domain, f"Mail for {name} loops back to myself")

    shuffle = (rng or random.Random()).shuffle
    ordered: list[Candidate] = []
    for pref in sorted(set(best.values())):
        # RFC 5321 §5.1: equal preferences MUST be randomized to spread the load.
        same = sorted(host for host, p in best.items() if p == pref)
        shuffle(same)
        ordered.extend(Candidate(host, port, pref) for host in same)
    return Route(domain, "mx", tuple(ordered[:max_hosts]))


def _a_label(domain: str) -> str:
    """The lookup form of a domain: lower-case, no trailing dot, IDNA A-labels."""
    try:
        name = dns.name.from_text(domain.rstrip(".") or ".")
    except dns.exception.DNSException as error:
        raise UnknownDomain(domain, "Bad domain name") from error
    if name == dns.name.root:
        raise UnknownDomain(domain, "Empty domain")
    text = name.to_text(omit_final_dot=True).lower()
    if not is_hostname(text):  # RFC 5321 §4.1.2 Domain: letters, digits, hyphens
        raise UnknownDomain(domain, "Bad domain name")
    return text


def _literal_address(domain: str) -> str:
    """RFC 5321 §4.1.3: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    if not domain.endswith("]"):
        raise UnknownDomain(domain, "Bad address literal")
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        # Untagged IPv6 and general address literals (RFC 5321 §4.1.3) are refused.
        raise UnknownDomain(domain, "Bad or unsupported address literal") from None


# --- concurrency ----------------------------------------------------------------------


class DomainLimiter:
    """At most ``limit`` deliveries at once per destination (``Route.limit_key``),
    ``per_domain`` overriding it for named ones (Postfix
    default_destination_concurrency_limit). A plain counter, thread-safe, no asyncio:
    the queue worker asks before it connects and releases after."""

    def __init__(self, limit: int, per_domain: Mapping[str, int] | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._overrides = {key.lower(): value for key, value in (per_domain or {}).items()}
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    def limit_for(self, key: str) -> int:
        return self._overrides.get(key.lower(), self._limit)

    def acquire(self, key: str) -> bool:
        """Take a slot if one is free; False means try this destination later."""
        key = key.lower()
        with self._lock:
            active = self._active.get(key, 0)
            if active >= self.limit_for(key):
                return False
            self._active[key] = active + 1
            return True

    def release(self, key: str) -> None:
        key = key.lower()
        with self._lock:
            active = self._active.get(key, 0)
            if active == 0:
                raise RuntimeError(f"release of {key!r} without a matching acquire")
            if active == 1:
                del self._active[key]  # idle destinations cost nothing
            else:
                self._active[key] = active - 1

    def active(self, key: str) -> int:
        with self._lock:
            return self._active.get(key.lower(), 0)
