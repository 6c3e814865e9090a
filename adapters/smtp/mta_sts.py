"""SMTP MTA Strict Transport Security (RFC 8461), without a network of its own.

A recipient domain publishes a TXT record at ``_mta-sts.<domain>`` (§3.1) naming the
current policy id, and the policy itself at
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.2, §3.3). In ``enforce`` mode a
sender delivers only to MX hosts the policy lists, only over TLS with a certificate
valid for that host (§4), and defers rather than fall back to plaintext (§5).

The HTTPS client is injected (``get(url) -> (status, content_type, body)``); so is the
clock. The DNS lookup goes through the ``Resolver`` port of ``routing``; the queue
worker applies the policy (``queue_worker._tls_policy``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import dns.exception
import dns.name

from adapters.smtp.routing import DnsError, Resolver

#: RFC 8461 §3.2: max_age is at most 31557600 seconds (about one year).
MAX_MAX_AGE = 31_557_600
#: RFC 8461 §3.3: senders may limit the policy body to 64 KiB.
MAX_POLICY_BYTES = 64 * 1024
#: How long a failed policy fetch is not retried for the same TXT id (§3.3: senders may
#: rate-limit fetches), so a broken policy host costs one fetch, not one per message.
FETCH_RETRY_AFTER = 300.0
#: How many domains the cache remembers; the oldest entry goes first.
MAX_CACHED_DOMAINS = 10_000

Mode = Literal["enforce", "testing", "none"]
HttpGet = Callable[[str], tuple[int, str, bytes]]

# RFC 8461 §3.1 ABNF.
_STS_VERSION = re.compile(r"^v=STSv1[ \t]*;")
_STS_SEP = re.compile(r"[ \t]*;[ \t]*")
_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}\Z")
_STS_EXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_STS_EXT_VALUE = re.compile(r"^[\x21-\x3a\x3c\x3e-\x7e]+\Z")
# RFC 8461 §3.2 ABNF: extension names; values are printable text, UTF-8 allowed.
_POLICY_EXT_NAME = _STS_EXT_NAME
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_MODES = ("enforce", "testing", "none")


class MtaStsError(Exception):
    """No usable policy; the domain is treated as having none (§3.3, §5)."""


class PolicyError(MtaStsError):
    """The policy text breaks RFC 8461 §3.2."""


class FetchError(MtaStsError):
    """The HTTPS fetch failed or broke RFC 8461 §3.3."""


@dataclass(frozen=True)
class Policy:
    """An RFC 8461 §3.2 policy. ``mx`` patterns are lower-case, ``*.`` wildcards kept."""

    mode: Mode
    max_age: int
    mx: tuple[str, ...] = ()
    version: str = "STSv1"

    @property
    def requires_tls(self) -> bool:
        """RFC 8461 §5: in ``enforce`` mode mail goes only over validated TLS to a
        matching MX, or not at all (it is deferred, never sent in plaintext)."""
        return self.mode == "enforce"

    def allows_mx(self, host: str) -> bool:
        """RFC 8461 §4.1: does ``host`` match an ``mx`` pattern?

        Exact names compare case-insensitively; ``*.example.net`` matches exactly one
        extra leftmost label: ``mx1.example.net``, not ``example.net`` nor
        ``a.b.example.net``.
        """
        name = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, dot, parent = name.partition(".")
                if dot and label and parent == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def record_name(domain: str) -> str:
    """RFC 8461 §3.1: where the TXT record lives."""
    return f"_mta-sts.{_policy_domain(domain)}"


def policy_url(domain: str) -> str:
    """RFC 8461 §3.3: the policy's one and only address (HTTPS, port 443)."""
    return f"https://mta-sts.{_policy_domain(domain)}/.well-known/mta-sts.txt"


def parse_sts_record(txt_values: list[str]) -> str | None:
    """The policy id from the TXT records at ``_mta-sts.<domain>``, or None.

    RFC 8461 §3.1: records not starting with ``v=STSv1;`` are discarded; unless exactly
    one remains, and it is valid, the domain has no available policy.
    """
    records = [value for value in txt_values if _STS_VERSION.match(value)]
    if len(records) != 1:
        return None
    fields = _STS_SEP.split(records[0].strip(" \t"))[1:]
    if fields and fields[-1] == "":
        fields.pop()  # the optional trailing ";"
    policy_id = None
    for field in fields:
        key, eq, value = field.partition("=")
        if key == "id":
            if policy_id is not None or not _STS_ID.match(value):
                return None
            policy_id = value
        elif not (eq and _STS_EXT_NAME.match(key) and _STS_EXT_VALUE.match(value)):
            return None  # §3.1: a syntactically invalid record means no policy
    return policy_id


def parse_policy(text: str) -> Policy:
    """RFC 8461 §3.2: ``key: value`` lines, CRLF or LF, unknown keys ignored.

    ``version``, ``mode`` and ``max_age`` each exactly once; ``mx`` at least once unless
    the mode is ``none``. Raises ``PolicyError``.
    """
    fields: dict[str, str] = {}
    mx: list[str] = []
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = raw.removesuffix("\r").rstrip(" \t")
        if not line:
            continue  # blank lines, and the optional final line end
        key, colon, value = line.partition(":")
        value = value.lstrip(" \t")
        if not colon or not _POLICY_EXT_NAME.match(key):
            raise PolicyError(f"line {number}: not a 'key: value' field")
        if not value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value if ch != "\t"):
            raise PolicyError(f"line {number}: bad value for {key}")
        if key == "mx":
            mx.append(_mx_pattern(value, number))
        elif key in ("version", "mode", "max_age"):
            if key in fields:
                raise PolicyError(f"line {number}: {key} given twice")
            fields[key] = value
        # Any other key is an extension (§3.2): ignored.
    if fields.get("version") != "STSv1":
        raise PolicyError("version must be STSv1")
    mode = fields.get("mode")
    if mode not in _MODES:
        raise PolicyError("mode must be enforce, testing or none")
    max_age = fields.get("max_age", "")
    # §3.2: 1*10DIGIT, at most 31557600.
    if not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 10):
        raise PolicyError("max_age must be a number of seconds")
    if int(max_age) > MAX_MAX_AGE:
        raise PolicyError(f"max_age above {MAX_MAX_AGE}")
    if not mx and mode != "none":
        raise PolicyError("a policy in enforce or testing mode needs an mx")
    return Policy(mode=cast(Mode, mode), max_age=int(max_age), mx=tuple(mx))


def fetch(domain: str, get: HttpGet) -> Policy:
    """Fetch and parse the domain's policy through ``get`` (RFC 8461 §3.3).

    ``get`` is the HTTPS client: it MUST validate the server certificate for
    ``mta-sts.<domain>`` against the trust store, MUST NOT follow redirects, SHOULD
    time out and SHOULD stop reading past ``MAX_POLICY_BYTES``. Any error it raises
    becomes a ``FetchError``. Here: HTTPS only, status 200 only (a 3xx is a failure,
    not a redirect), ``text/plain`` only, at most 64 KiB of UTF-8.
    """
    url = policy_url(domain)
    if not url.startswith("https://"):  # §3.3: HTTPS only, never plain HTTP
        raise FetchError("policy URL is not HTTPS")
    try:
        status, content_type, body = get(url)
    except Exception as error:  # noqa: BLE001 - whatever the HTTP client raises
        raise FetchError(f"fetching {url}: {type(error).__name__}") from error
    if status != 200:
        raise FetchError(f"{url} answered HTTP {status}")  # §3.3: no redirects
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "text/plain":
        raise FetchError(f"{url} is {media_type or 'untyped'}, not text/plain")
    if len(body) > MAX_POLICY_BYTES:
        raise FetchError(f"{url} is larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FetchError(f"{url} is not UTF-8") from error
    return parse_policy(text)


@dataclass(frozen=True)
class CachedPolicy:
    policy: Policy
    policy_id: str
    fetched_at: float

    def fresh(self, now: float) -> bool:
        return now < self.fetched_at + self.policy.max_age


class PolicyCache:
    """The policy to apply for each recipient domain, RFC 8461 §3.3 and §5.1.

    ``policy(domain)`` looks the TXT record up and fetches the policy only when the id
    is new; a policy is kept for its ``max_age`` after the fetch. When DNS or the
    fetch fails, an unexpired cached policy still applies (so an attacker who blocks
    them cannot downgrade a known enforcing domain); without one the domain has no
    policy. ``clock`` returns seconds (monotonic by default); ``get`` is ``fetch``'s.
    """

    def __init__(self, resolver: Resolver, get: HttpGet, *, clock: Callable[[], float] = time.monotonic,
                 retry_after: float = FETCH_RETRY_AFTER, max_domains: int = MAX_CACHED_DOMAINS) -> None:
        self._resolver = resolver
        self._get = get
        self._clock = clock
        self._retry_after = retry_after
        self._max_domains = max_domains
        self._entries: dict[str, CachedPolicy] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # domain -> (TXT id, when)
        self._lock = threading.Lock()

    def cached(self, domain: str) -> CachedPolicy | None:
        """The unexpired cached entry, without any lookup."""
        key = _policy_domain(domain)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not entry.fresh(now):
                del self._entries[key]  # §3.3: past max_age a policy is gone
                entry = None
            return entry

    def policy(self, domain: str) -> Policy | None:
        """The policy that applies to mail for ``domain`` now; None: no MTA-STS.

        §5.1 step 3: call this again before bouncing a message that failed under a
        policy; a changed TXT id brings the new policy in.
        """
        key = _policy_domain(domain)
        entry = self.cached(key)
        try:
            policy_id = parse_sts_record(self._resolver.txt(record_name(key)))
        except DnsError:
            policy_id = None
        if policy_id is None:
            # §3.3: no live policy discovered, but an unexpired cached one applies.
            return entry.policy if entry else None
        if entry is not None and entry.policy_id == policy_id:
            return entry.policy  # §3.1: the id is unchanged: no fetch
        now = self._clock()
        with self._lock:
            failed = self._failed.get(key)
        if failed is not None and failed[0] == policy_id and now < failed[1] + self._retry_after:
            return entry.policy if entry else None
        try:
            policy = fetch(key, self._get)
        except MtaStsError:
            # §3.3/§5.1: a failed fetch keeps the cached unexpired policy; without
            # one, deliver as if the domain had no MTA-STS.
            with self._lock:
                self._failed[key] = (policy_id, now)
                self._trim(self._failed)
            return entry.policy if entry else None
        with self._lock:
            self._failed.pop(key, None)
            self._entries.pop(key, None)
            self._entries[key] = CachedPolicy(policy, policy_id, now)
            self._trim(self._entries)
        return policy

    def _trim(self, table: dict[str, Any]) -> None:
        while len(table) > self._max_domains:
            del table[next(iter(table))]


def _mx_pattern(value: str, number: int) -> str:
    """RFC 8461 §3.2: ``["*."] Domain`` (RFC 5321 Domain: letters, digits, hyphens)."""
    pattern = value.lower()
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise PolicyError(f"line {number}: bad mx pattern {value!r}")
    return pattern


def _policy_domain(domain: str) -> str:
    """Lower-case, no trailing dot, A-labels; refuses anything that is not a host name
    (the result goes into a URL and a DNS query)."""
    name = domain.rstrip(".").lower()
    if not name.isascii():
        try:  # IDNA 2008 through dnspython, as the resolver spells the name
            name = dns.name.from_text(name).to_text(omit_final_dot=True).lower()
        except dns.exception.DNSException as error:
            raise ValueError(f"{domain!r} is not a domain name") from error
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{domain!r} is not a domain name")
    return name
