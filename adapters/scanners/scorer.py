"""The built-in spam scorer: sender authentication, DNS block and allow lists, and a few
header and content rules, added up into one score (SpamAssassin's model, small).

Only mail from the MX listener is scored; submission and ``ledgermail deliver`` mail
come from our own users and pass unchanged. Each rule that fires adds its weight (the
names and defaults are ``DEFAULT_WEIGHTS``; ``antiabuse.rule_weights`` overrides any).
Configured spam daemons (``antiabuse.spamd``, ``antiabuse.rspamd``: ``spamd.py``,
``rspamd.py``) add their scores to that sum; one that is down defers the message (451)
unless its ``fail_open`` says to score without it. Then, in this order:

- the From: domain's DMARC policy is ``reject`` and ``antiabuse.dmarc_reject_honoured``:
  reject (550 5.7.1, RFC 7489 §6.6.4 and §10.3); when not honoured, Junk;
- score >= ``reject_threshold``: reject at the end of DATA (550 5.7.1), nothing stored;
- score >= ``junk_threshold`` or DMARC policy ``quarantine``: deliver to the recipient's
  \\Junk mailbox with ``X-Spam-Flag: YES``;
- else the INBOX.

A DNS lookup that fails for now never loses mail: the check that needed it says
``temperror`` and scores 0 (RFC 7208 §8.6 and RFC 7489 §6.6.3 leave the choice to the
receiver), unless ``antiabuse.tempfail_on_dns_error`` asks for 451 4.4.3 so the sender
retries (RFC 7208 §8.6's reply for that choice).

Every message scored gets the Authentication-Results field (RFC 8601) and
``X-Spam-Status``/``X-Spam-Score``. The verdict's summary names results and rules only.

Then each local recipient's own learning filter (``learned``, issue 8) adds
``learning_weight * (2p - 1)`` to the message's score for that recipient alone, and the
same decision is taken again per recipient: the message is scored and stored once, but
lands in Junk for the users whose filter calls it spam and in INBOX for the others. A
recipient's filter never refuses a message (that would refuse it for everyone): its
"reject" means Junk. The headers stay the message's (one body for all recipients).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

from adapters.scanners.authentication_results import authentication_results
from adapters.scanners.daemons import DaemonUnavailable, ScoreSource
from adapters.scanners.dmarc import organizational_domain
from adapters.scanners.rules import DEFAULT_WEIGHTS, GTUBE
from adapters.scanners.sender_auth import AuthResults, SenderAuthentication
from adapters.smtp.routing import DnsError, Resolver
from domain.model.summary import header_block
from domain.ports import ScanContext, ScanVerdict

if TYPE_CHECKING:
    from adapters.config import AntiAbuse

log = logging.getLogger(__name__)

#: Subjects shorter than this many letters are not judged for capitals ("RE: OK").
ALL_CAPS_MIN_LETTERS = 10
#: This many ``!`` in the Subject is excessive.
EXCLAMATION_LIMIT = 3


class SpamScorer:
    """The ``Scanner`` the intake uses when anti-abuse is on."""

    def __init__(self, resolver: Resolver, hostname: str, settings: AntiAbuse,
                 authentication: SenderAuthentication | None = None,
                 sources: Sequence[ScoreSource] = (),
                 learned: Callable[[Sequence[str], bytes], dict[str, float]] | None = None) -> None:
        self.resolver = resolver
        #: Recipient addresses and message -> each trained recipient filter's spam
        #: probability (``LedgerMail.spam_probabilities``); None: no learning filter.
        self.learned = learned
        #: spamd and rspamd (``daemons.py``): their scores are added to ours.
        self.sources = tuple(sources)
        self.hostname = hostname
        self.settings = settings
        self.weights = {**DEFAULT_WEIGHTS, **settings.rule_weights}
        self.auth = authentication or SenderAuthentication(
            resolver, spf_max_lookups=settings.spf_max_dns_lookups,
            spf_max_void_lookups=settings.spf_max_void_lookups,
            max_dkim_signatures=settings.max_dkim_signatures, min_rsa_bits=settings.min_rsa_key_bits)

    def scan(self, raw: bytes, context: ScanContext) -> ScanVerdict:
        if context.channel != "mx" or context.authenticated:
            return ScanVerdict("accept")
        try:
            daemons = [source.score(raw, context) for source in self.sources]
        except DaemonUnavailable as error:
            log.warning("spam scan failed (%s); the sender is asked to retry", error)
            return ScanVerdict("tempfail", "scanner",
                               summary={"action": "tempfail", "unavailable": error.daemon})
        auth = self.auth.check(raw, context)
        rules = self._rules(raw, context, auth)
        score = round(sum(self.weights[name] for name in rules) + sum(d.score for d in daemons), 2)
        action, reason = self._decide(score, auth)
        recipient_actions, learned = self._per_recipient(raw, context, score, auth, action)
        summary: dict[str, Any] = {
            "action": action, "score": score, "rules": sorted(rules),
            "spf": auth.spf.result, "dkim": [r.result for r in auth.dkim] or ["none"],
            "dmarc": auth.dmarc.result, "dmarc_policy": auth.dmarc.policy, "arc": auth.arc.result,
        }
        if learned:
            summary["learned"] = learned
        if daemons:
            summary["daemons"] = {d.name: "unscanned" if d.unscanned else d.score for d in daemons}
        headers = (
            authentication_results(self.hostname, auth.spf, auth.dkim, auth.dmarc, auth.arc,
                                   context.mail_from),
            *self._spam_fields(action, score, rules + [d.label for d in daemons]),
        )
        return ScanVerdict(action, reason, score, headers, summary, recipient_actions)

    def _per_recipient(self, raw: bytes, context: ScanContext, score: float, auth: AuthResults,
                       action: str) -> tuple[dict[str, str], dict[str, int]]:
        """Each trained recipient filter's action where it differs from the message's,
        and counts for the record (numbers only: the summary is system-scoped). A
        failing filter read costs the learning score, never the message."""
        weight = self.settings.learning_weight
        if self.learned is None or not weight or action not in ("accept", "junk"):
            return {}, {}
        try:
            probabilities = self.learned(context.recipients, raw)
        except Exception:  # noqa: BLE001 - the store's trouble must not refuse mail here
            log.exception("the learning filter could not be read; scoring without it")
            return {}, {}
        if not probabilities:
            return {}, {}
        actions: dict[str, str] = {}
        for address, probability in probabilities.items():
            own, _ = self._decide(round(score + weight * (2 * probability - 1), 2), auth)
            own = {"reject": "junk", "tempfail": action}.get(own, own)
            if own != action:
                actions[address] = own
        changed = list(actions.values())
        return actions, {"filters": len(probabilities), "junk": changed.count("junk"),
                         "inbox": changed.count("accept")}

    # -- the decision --------------------------------------------------------------------

    def _decide(self, score: float, auth: AuthResults) -> tuple[str, str]:
        dmarc = auth.dmarc
        if dmarc.result == "fail" and dmarc.policy == "reject":
            if self.settings.dmarc_reject_honoured:
                return "reject", "dmarc"
            return "junk", "dmarc"
        if score >= self.settings.reject_threshold:
            return "reject", "spam"
        if score >= self.settings.junk_threshold:
            return "junk", "spam"
        if dmarc.result == "fail" and dmarc.policy == "quarantine":
            return "junk", "dmarc"
        if auth.temporary and self.settings.tempfail_on_dns_error:
            return "tempfail", "dns"
        return "accept", ""

    def _spam_fields(self, action: str, score: float, rules: list[str]) -> list[str]:
        """SpamAssassin's field names, which mail readers and Sieve scripts know."""
        spam = action in ("junk", "reject")
        tests = ",".join(sorted(rules)) or "none"
        fields = [
            f"X-Spam-Status: {'Yes' if spam else 'No'}, score={score:.1f} "
            f"required={self.settings.junk_threshold:.1f}\n\ttests={tests}",
            f"X-Spam-Score: {score:.1f}",
        ]
        if spam:
            fields.insert(0, "X-Spam-Flag: YES")
        return fields

    # -- the rules -----------------------------------------------------------------------

    def _rules(self, raw: bytes, context: ScanContext, auth: AuthResults) -> list[str]:
        rules: list[str] = []
        if GTUBE in raw:
            rules.append("gtube")
        if auth.spf.result in ("fail", "softfail", "permerror"):
            rules.append(f"spf_{auth.spf.result}")
        if auth.dkim and any(r.result == "fail" for r in auth.dkim) and not any(
                r.result == "pass" for r in auth.dkim):
            rules.append("dkim_fail")
        # A failed DMARC with a policy acts through the decision; only p=none scores here.
        if auth.dmarc.result == "fail" and auth.dmarc.policy == "none":
            rules.append("dmarc_fail")
        if auth.dmarc.result == "pass":
            rules.append("dmarc_pass")
        if self._listed(context.client_ip, self.settings.dnsbl_zones):
            rules.append("dnsbl")
        if self._listed(context.client_ip, self.settings.dnswl_zones):
            rules.append("dnswl")
        rules += header_rules(raw, context.mail_from)
        return rules

    def _listed(self, ip: str, zones: list[str]) -> bool:
        """RFC 5782 §2.1, §2.4: the client's reversed address under each zone; an
        answer in 127.0.0.0/8 means listed (127.0.0.1 and 127.255.255.0/24 are error
        codes some lists send to blocked resolvers, not listings)."""
        if not zones:
            return False
        name = reversed_ip(ip)
        if name is None:
            return False
        for zone in zones:
            try:
                answers = self.resolver.addresses(f"{name}.{zone.strip('.')}")
            except DnsError:
                continue  # not listed, or the list is unreachable: neither is a verdict
            for answer in answers:
                try:
                    address = ipaddress.ip_address(answer)
                except ValueError:
                    continue
                if (address.version == 4 and address in _LOOPBACK and address != _LOCALHOST
                        and address not in _LIST_ERRORS):
                    return True
        return False


_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_LOCALHOST = ipaddress.ip_address("127.0.0.1")
_LIST_ERRORS = ipaddress.ip_network("127.255.255.0/24")


def reversed_ip(ip: str) -> str | None:
    """RFC 5782 §2.1 (IPv4 octets reversed) and §2.4 (IPv6 nibbles reversed)."""
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return ".".join(reversed(str(address).split(".")))
    return ".".join(reversed(address.exploded.replace(":", "")))


def header_rules(raw: bytes, mail_from: str) -> list[str]:
    """The header heuristics: fields every real mail program writes (RFC 5322 §3.6:
    Date is required, Message-ID SHOULD be present), a bounce address in another
    organization than the author, and a shouting subject."""
    fields = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
    rules = []
    if fields.get("date") is None:
        rules.append("missing_date")
    if fields.get("message-id") is None:
        rules.append("missing_message_id")
    authors = [address for _, address in getaddresses([str(v) for v in fields.get_all("from") or []])
               if "@" in address]
    if mail_from and "@" in mail_from and authors:
        envelope = organizational_domain(mail_from.rpartition("@")[2])
        if all(organizational_domain(a.rpartition("@")[2]) != envelope for a in authors):
            rules.append("from_return_path_mismatch")
    subject = str(fields.get("subject") or "")
    letters = [ch for ch in subject if ch.isalpha()]
    if len(letters) >= ALL_CAPS_MIN_LETTERS and all(ch.isupper() for ch in letters):
        rules.append("all_caps_subject")
    if subject.count("!") >= EXCLAMATION_LIMIT:
        rules.append("excessive_exclamation")
    return rules

