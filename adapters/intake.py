"""The one intake pipeline every message goes through: MX, submission, ``ledgermail deliver``.

Steps, in order: limits, parse, submission checks (RFC 6409 §8: From: must be the
user's, Message-ID and Date added when missing), the Received: trace header (RFC 5321
§4.4), the scan hook, then the deliver or submit use case. The client's bytes are stored
as they came; the only change is header fields added at the top. Synchronous: the SMTP
listener calls it in a worker thread, so concurrent DATA transactions share commits.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime, getaddresses
from typing import Literal
from uuid import UUID, uuid4

from adapters.scanners.authentication_results import remove_forged_fields
from domain.application.mail import DeliveryResult
from domain.application.service import LedgerMail
from domain.application.submission import OutboundOptions, RemoteRecipient
from domain.model.errors import DomainError
from domain.model.summary import header_block
from domain.ports import ScanContext, Scanner

log = logging.getLogger(__name__)

_ADDRESS_LIKE = re.compile(r"[^\s<>,;:\"()\[\]\\]+@[^\s<>,;:\"()\[\]\\]+")
_TLS_WORDS = re.compile(r"^[A-Za-z0-9._\- ]{1,120}\Z")
_TRACE_TOKEN = re.compile(r"^[A-Za-z0-9.\-_:\[\]]{1,255}\Z")
#: A From field at the start of a header line, also in the RFC 5322 §4.5.3 obs-from form
#: with white space before the colon, which the parser skips but a reader may display.
_FROM_FIELD = re.compile(rb"(?:\A|[\r\n])from[ \t]*:", re.IGNORECASE)
_HEADER_END = (b"\r\n\r\n", b"\n\n")
#: DESIGN §4: the purpose a submission declares for the consent gate; removed before
#: the message is stored or sent (with any folded continuation lines).
PURPOSE_FIELD = "X-Ledgermail-Purpose"
_PURPOSE_LINES = re.compile(rb"(?im)^x-ledgermail-purpose[ \t]*:.*(?:\r?\n[ \t].*)*(?:\r?\n|\Z)")
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
#: RFC 8689 §5: the sender asks that TLS policies (MTA-STS) not stop delivery.
_TLS_REQUIRED_NO = re.compile(rb"(?im)^tls-required[ \t]*:[ \t]*no[ \t]*\r?$")


class SenderNotOwned(DomainError):
    """The From: header names an address that is not the authenticated user's."""


class ContentRejected(DomainError):
    """The scanner refused the message for good. ``kind`` says why in one word
    (``spam``, ``dmarc``, ...), for the reply the listener picks."""

    def __init__(self, reason: str = "content rejected", kind: str = "content") -> None:
        super().__init__(reason)
        self.kind = kind


class ContentTempfail(Exception):
    """The scanner could not decide (down, timed out, DNS failing): the sender must retry."""

    def __init__(self, reason: str = "scanner unavailable", kind: str = "scanner") -> None:
        super().__init__(reason)
        self.kind = kind


class BadPurpose(DomainError):
    """The purpose field is not a purpose token (letters, digits, ``.``, ``_``, ``-``)."""


@dataclass
class Arrival:
    """How a message arrived: what the trace header and the use case need."""

    channel: str  # "mx", "submission" or "cli"
    local_recipients: list[str]
    remote_recipients: list[RemoteRecipient] = field(default_factory=list)
    mail_from: str = ""
    account_id: UUID | None = None
    helo: str = ""
    client_ip: str = ""
    hide_client_ip: bool = False
    #: RFC 3848 "with" keyword: ESMTP, ESMTPS, ESMTPSA, UTF8SMTPS, ...
    protocol: str = "ESMTP"
    tls: str = ""
    ret: str | None = None
    envid: str | None = None
    #: RFC 6531 SMTPUTF8 and RFC 8689 REQUIRETLS on MAIL FROM, passed on to the next hop.
    smtp_utf8: bool = False
    requiretls: bool = False


@dataclass(frozen=True)
class Accepted:
    queue_id: str
    stored_size: int
    delivery: DeliveryResult | None
    outbound_id: UUID | None


class Intake:
    def __init__(self, app: LedgerMail, hostname: str, scanner: Scanner,
                 on_queued: Callable[[int], None] | None = None) -> None:
        self.app = app
        self.hostname = hostname
        self.scanner = scanner
        #: Told the log position when a submission queued outbound mail (the worker
        #: then looks at once, once the views show it).
        self.on_queued = on_queued

    def accept(self, arrival: Arrival, raw: bytes) -> Accepted:
        queue_id = uuid4().hex[:16].upper()
        self.app.check_size(raw)  # the limit the use case applies, before any work
        head = header_block(raw)
        newline = b"\r\n" if b"\r\n" in head or not head else b"\n"
        added: list[bytes] = []
        options = OutboundOptions()
        if arrival.channel == "submission":
            assert arrival.account_id is not None
            truncated = len(head) < len(raw) and not head.endswith(_HEADER_END)
            fields = BytesHeaderParser(policy=compat32).parsebytes(head)
            self._check_from(arrival.account_id, head, fields, truncated)
            added += self._missing_fields(fields)
            purpose = _purpose(fields)
            if purpose is not None:
                raw = _PURPOSE_LINES.sub(b"", head) + raw[len(head):]
            options = OutboundOptions(smtp_utf8=arrival.smtp_utf8, requiretls=arrival.requiretls,
                                      tls_optional=bool(_TLS_REQUIRED_NO.search(head)), purpose=purpose)
        stored = trace_header(arrival, self.hostname, queue_id, self.app.ports.clock.now(), newline)
        stored += b"".join(line + newline for line in added) + raw
        verdict = self.scanner.scan(stored, scan_context(arrival))
        if verdict.action == "reject":
            # Nothing is stored; the log keeps the verdict, never an address.
            log.info("%s message refused: %s", arrival.channel, verdict.summary or verdict.reason)
            raise ContentRejected(verdict.reason or "content rejected", verdict.reason or "content")
        if verdict.action == "tempfail":
            log.info("%s message deferred: %s", arrival.channel, verdict.summary or verdict.reason)
            raise ContentTempfail(verdict.reason or "scanner unavailable", verdict.reason or "scanner")
        if arrival.channel == "mx":
            # RFC 8601 §5: results claiming to be ours can only be forged; drop them
            # (after the scan, so a DKIM signature is checked on the bytes as sent).
            stored = remove_forged_fields(stored, self.hostname)
        if verdict.headers:
            stored = b"".join(field.replace("\n", "\r\n" if newline == b"\r\n" else "\n")
                              .encode("utf-8", "surrogateescape") + newline
                              for field in verdict.headers) + stored
        if arrival.channel == "submission":
            assert arrival.account_id is not None
            result = self.app.submit(arrival.account_id, arrival.mail_from, arrival.local_recipients,
                                     arrival.remote_recipients, stored, ret=arrival.ret,
                                     envid=arrival.envid, options=options)
            if result.outbound_ids and self.on_queued is not None:
                self.on_queued(result.position)
            return Accepted(queue_id, len(stored), result.delivery, result.outbound_id)
        # A recipient's own learning filter may file the message differently (issue 8).
        folders: dict[str, Literal["inbox", "junk"]] = {
            address: "junk" if own == "junk" else "inbox"
            for address, own in verdict.recipient_actions.items()}
        delivery = self.app.deliver(arrival.local_recipients, stored, channel=arrival.channel,
                                    folder="junk" if verdict.action == "junk" else "inbox",
                                    scan=verdict.summary or None, folders=folders or None)
        return Accepted(queue_id, len(stored), delivery, None)

    # -- RFC 6409 §8 -------------------------------------------------------------------

    def _check_from(self, account_id: UUID, head: bytes, fields: Message, truncated: bool) -> None:
        # A header section longer than header_block reads could hide a second From:.
        if truncated:
            raise SenderNotOwned("the header section is too large to check From:")
        owned = {a.lower() for a in self.app.sender_addresses(account_id)}
        values = [str(v) for v in fields.get_all("from") or []]
        # RFC 5322 §3.6: exactly one From:, counted on the bytes too, so a field the
        # parser drops (obs-from, a line after a malformed one) cannot be a second one.
        if len(values) != 1 or len(_FROM_FIELD.findall(head)) != 1:
            raise SenderNotOwned("exactly one From: header is required")
        value = values[0]
        parsed = [addr for _, addr in getaddresses([value]) if addr]
        # Every address-like token must be the user's, so a display name cannot smuggle
        # a second address past a lenient parser (CVE-2023-27043 class).
        tokens = _ADDRESS_LIKE.findall(value)
        if not parsed or not tokens:
            raise SenderNotOwned("From: has no address")
        for address in parsed + tokens:
            if not owns(owned, address):
                raise SenderNotOwned(address)

    def _missing_fields(self, fields: Message) -> list[bytes]:
        added = []
        if fields.get("message-id") is None:
            added.append(f"Message-ID: <{uuid4().hex}@{self.hostname}>".encode())
        if fields.get("date") is None:
            added.append(f"Date: {format_datetime(self.app.ports.clock.now())}".encode())
        return added


def scan_context(arrival: Arrival) -> ScanContext:
    """What the scanners see of the SMTP transaction."""
    recipients = arrival.local_recipients + [r.address for r in arrival.remote_recipients]
    return ScanContext(channel=arrival.channel, client_ip=arrival.client_ip, helo=arrival.helo,
                       mail_from=arrival.mail_from, recipients=tuple(recipients),
                       authenticated=arrival.account_id is not None)


def _purpose(fields: Message) -> str | None:
    values = [str(v).strip().lower() for v in fields.get_all(PURPOSE_FIELD) or []]
    if not values:
        return None
    if len(set(values)) != 1 or not _PURPOSE.match(values[0]):
        raise BadPurpose(f"{PURPOSE_FIELD} must be one purpose token")
    return values[0]


def owns(owned: set[str], address: str) -> bool:
    """``address`` is one of ``owned``, or a sub-address (``user+tag@``) of one."""
    address = address.strip().lower()
    if address in owned:
        return True
    local, _, domain = address.rpartition("@")
    base, plus, _ = local.partition("+")
    return bool(plus) and f"{base}@{domain}" in owned


def trace_token(text: str, fallback: str = "unknown") -> str:
    """Client-chosen words (HELO name) go into a header only if they are a plain token:
    no CR, LF, spaces or parentheses can reach the stored message (header injection)."""
    return text if _TRACE_TOKEN.match(text) else fallback


def address_literal(ip: str) -> str:
    """RFC 5321 §4.1.3: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``. An IPv4-mapped IPv6
    address (a dual-stack socket's view of an IPv4 client) is the IPv4 address it maps;
    a zone index (``%eth0``) has no place in the literal."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return f"[{trace_token(ip)}]"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return f"[IPv6:{address.compressed}]" if address.version == 6 else f"[{address}]"


def trace_header(arrival: Arrival, hostname: str, queue_id: str, now: datetime, newline: bytes) -> bytes:
    """RFC 5321 §4.4 Received: ``from`` the client, ``by`` us, ``with`` the RFC 3848
    protocol, ``id``, and ``for`` only when there is one recipient (more would reveal
    Bcc recipients to each other)."""
    if arrival.channel == "cli":
        source = "from local (ledgermail deliver)"
        protocol = "LOCAL"
    else:
        helo = trace_token(arrival.helo)
        if arrival.hide_client_ip or not arrival.client_ip:
            source = f"from {helo}"
        else:
            source = f"from {helo} ({address_literal(arrival.client_ip)})"
        protocol = arrival.protocol
    lines = [f"Received: {source}", f"\tby {hostname} (ledgermail) with {protocol} id {queue_id}"]
    if arrival.tls and _TLS_WORDS.match(arrival.tls):
        lines.append(f"\t(using {arrival.tls})")
    recipients = arrival.local_recipients + [r.address for r in arrival.remote_recipients]
    when = format_datetime(now)
    if len(recipients) == 1 and _ADDRESS_LIKE.fullmatch(recipients[0]):
        lines.append(f"\tfor <{recipients[0]}>; {when}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{when}")
    return newline.join(line.encode("utf-8", "surrogateescape") for line in lines) + newline
