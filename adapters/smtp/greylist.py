"""Optional greylisting of MX mail (issue 8, RFC 6647), off unless
``antiabuse.greylist.enabled``.

A triplet (client network, envelope sender, recipient) seen for the first time gets a
temporary failure at RCPT (RFC 6647 §2.1, §4): a real MTA keeps the message and
retries, most spam engines never come back. A retry after ``delay_seconds`` and before
``retry_window_seconds`` passes, and the triplet is then remembered for
``pass_seconds`` (RFC 6647 §4.3), renewed at each use. A network with
``auto_allow_after`` passed triplets is let through whole for ``pass_seconds`` (the
"auto-whitelisting" of postgrey), so a regular correspondent is delayed only while new.

The client network is the IPv4 /24 or IPv6 /64 (RFC 6647 §4.2): large senders retry
from another address of the same pool.

Why only a keyed hash: a triplet holds two addresses and an IP, all personal data,
and greylisting needs only equality. Each key is HMAC-SHA256 under a random key made
per process, so nothing in memory (or in a core dump) can be turned back into an
address, not even by guessing, once the process is gone; nothing here is logged.

Why in memory, per process: it keeps the store free of personal data that would need
erasing, and costs a restart (everyone is greylisted again) and, with several nodes,
one delay per node a sender reaches (documented in docs/anti-abuse.md). Memory is
bounded by ``max_entries`` per table, the least recently used entry going first.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from adapters.config import Greylisting

V = TypeVar("V")

#: The networks RFC 6647 §4.2 suggests treating as one client.
IPV4_PREFIX = 24
IPV6_PREFIX = 64


@dataclass
class _Triplet:
    #: When the triplet was first refused (the retry window runs from here).
    first_seen: float
    #: Until when it passes without delay; None while it is still being greylisted.
    passes_until: float | None = None


def client_network(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) holding ``ip``; an IPv4-mapped IPv6 address counts
    as IPv4. An unparsable peer (a unix socket in tests) is its own network."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Greylist:
    def __init__(self, settings: Greylisting, clock: Callable[[], float] = time.monotonic,
                 key: bytes | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self._key = key or secrets.token_bytes(32)
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in settings.exempt_networks]
        #: hashed triplet -> its state, least recently used first.
        self._triplets: OrderedDict[bytes, _Triplet] = OrderedDict()
        #: hashed network -> how many triplets from it passed.
        self._passed: OrderedDict[bytes, int] = OrderedDict()
        #: hashed network -> until when the whole network passes.
        self._allowed: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def _hash(self, *parts: str) -> bytes:
        # NUL cannot occur in an SMTP path or an IP, so the parts cannot run together.
        message = "\0".join(parts).encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def is_exempt(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._exempt)

    def admit(self, ip: str, sender: str, recipient: str) -> bool:
        """May this RCPT pass now? False means: answer the greylisting 451.

        The null sender (a bounce, RFC 5321 §4.5.5) is greylisted like any sender, its
        triplet being (network, "", recipient): the MTA that sends a bounce retries
        it like any message."""
        if self.is_exempt(ip):
            return True
        network = self._hash("net", client_network(ip))
        triplet = self._hash("rcpt", client_network(ip), sender.lower(), recipient.lower())
        with self._lock:
            now = self.clock()
            allowed = self._allowed.get(network)
            if allowed is not None:
                if now < allowed:
                    self._allowed[network] = now + self.settings.pass_seconds
                    self._allowed.move_to_end(network)
                    return True
                del self._allowed[network]
            entry = self._triplets.get(triplet)
            if entry is not None and entry.passes_until is not None:
                if now < entry.passes_until:
                    entry.passes_until = now + self.settings.pass_seconds  # renewed on use
                    self._triplets.move_to_end(triplet)
                    return True
                entry = None  # not seen for pass_seconds: a stranger again
            if entry is None or now - entry.first_seen > self.settings.retry_window_seconds:
                self._put(self._triplets, triplet, _Triplet(first_seen=now))
                return False
            if now - entry.first_seen < self.settings.delay_seconds:
                return False  # came back too soon: the window still runs from the first try
            entry.passes_until = now + self.settings.pass_seconds
            self._triplets.move_to_end(triplet)
            self._note_pass(network, now)
            return True

    def _note_pass(self, network: bytes, now: float) -> None:
        if self.settings.auto_allow_after <= 0:
            return
        count = self._passed.pop(network, 0) + 1
        if count >= self.settings.auto_allow_after:
            self._put(self._allowed, network, now + self.settings.pass_seconds)
        else:
            self._put(self._passed, network, count)

    def _put(self, table: OrderedDict[bytes, V], key: bytes, value: V) -> None:
        """Insert as the most recent entry, dropping the least recent beyond the bound."""
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.settings.max_entries:
            table.popitem(last=False)

    def __len__(self) -> int:
        return len(self._triplets)

    def state(self) -> tuple[dict[bytes, _Triplet], dict[bytes, int], dict[bytes, float]]:
        """Copies of everything held (triplets, passes per network, allowed networks),
        so a test can show that no address or IP is among it."""
        with self._lock:
            return dict(self._triplets), dict(self._passed), dict(self._allowed)
