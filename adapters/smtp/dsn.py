"""Delivery status notifications (RFC 3464) for the outbound queue: pure, no I/O.

``build_dsn`` writes the whole notification — a ``multipart/report`` (RFC 6522) with a
human-readable part, a ``message/delivery-status`` part and the returned original or its
header — as bytes with CRLF line ends, ready to be put in the sender's INBOX. The caller
delivers it with a null envelope sender (RFC 3461 §6.1, RFC 5321 §4.5.5), asks
``needs_dsn`` first (never a DSN about a message whose own sender was null) and
``should_notify`` for each recipient's NOTIFY parameter (RFC 3461 §4.1).

Every value that came from outside — the remote server's reply text, addresses, the
ENVID and ORCPT parameters, the remote host name — is flattened to one line with no
control characters before it is written, and long fields are folded at spaces, so no
value can add a header field, end a block of delivery-status fields or close a MIME
part. The message is written by hand rather than by ``email.generator``: its folding and
its refusal of CR/LF in headers varied between Python patch releases (CVE-2024-6923,
CVE-2026-1299), and what is written here must not depend on that.

Addresses that are not ASCII (SMTPUTF8, RFC 6531) are written with the ``utf-8``
address type in a ``message/global-delivery-status`` part (RFC 6533 §3, §4); an original
whose header is not ASCII comes back as ``message/global`` or ``message/global-headers``
(RFC 6532 §3.7, RFC 6533 §4).
"""

from __future__ import annotations

import re
import secrets
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

#: The largest original returned whole; a larger one comes back as its header alone.
MAX_RETURNED_ORIGINAL = 10 * 1024 * 1024
#: Remote reply text beyond this is cut (Postfix keeps a few hundred characters).
MAX_DIAGNOSTIC = 2000

Kind = Literal["failure", "delay", "success"]
KINDS: tuple[str, ...] = ("failure", "delay", "success")

#: RFC 3464 §2.3.3: the action-value words.
ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
#: RFC 3463 §3.1-3.3 classes each action may carry: a failure after a run of 4xx
#: replies (expiry) is ``failed`` with a 4.x.x status, as Postfix writes it.
_ACTION_CLASSES = {"failed": "45", "delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}
#: RFC 3463 §2: status-code = class "." subject "." detail.
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
#: RFC 2034 §4: an enhanced status code leads the reply text.
_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
#: RFC 3461 §4: ``+HH`` in xtext is one octet.
_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")
#: RFC 3464 §2.1.2 address-type and diagnostic-type are atoms; these are the safe ones.
_TYPE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")
_MTA_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f.:IPv]{2,60}\]")
#: RFC 5322 §3.6.4 msg-id, as a simple and safe subset (for References:).
_MESSAGE_ID = re.compile(rb"(?im)^message-id[ \t]*:[ \t]*(<[!-;=?-~]{1,250}>)[ \t]*\r?$")
_LINE_END = re.compile(rb"\r\n|\r|\n")
#: Characters that must never reach a header or a field: C0 and C1 controls, DEL, the
#: Unicode line and paragraph separators, and the bidirectional overrides that make
#: displayed text read differently from what it is (CVE-2021-42574 class).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAKS = re.compile("[\r\n\t\x0b\x0c\x85\u2028\u2029]+")

SOFT_LINE = 78  # RFC 5322 §2.1.1: SHOULD
HARD_LINE = 998  # RFC 5322 §2.1.1: MUST, without the CRLF
CRLF = "\r\n"

_SUBJECTS = {
    "failure": "Undelivered Mail Returned to Sender",
    "delay": "Delayed Mail (still being retried)",
    "success": "Successful Mail Delivery Report",
}


@dataclass(frozen=True, kw_only=True)
class RecipientStatus:
    """One recipient's per-recipient fields (RFC 3464 §2.3).

    ``original_recipient`` is the RCPT's ORCPT parameter as received, ``addr-type;xtext``
    (RFC 3461 §4.2); ``status`` is an RFC 3463 code such as ``5.1.1``; ``diagnostic`` is
    the remote server's reply (``550 5.1.1 No such user``), written as ``smtp;``
    Diagnostic-Code; ``will_retry_until`` is written only for ``delayed``.
    """

    recipient: str
    action: str
    status: str
    original_recipient: str | None = None
    remote_mta: str | None = None
    diagnostic: str | None = None
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown DSN action {self.action!r} (RFC 3464 §2.3.3)")
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"not an RFC 3463 status code: {self.status!r}")
        if self.status[0] not in _ACTION_CLASSES[self.action]:
            raise ValueError(f"status {self.status} does not fit action {self.action}")


def needs_dsn(sender: str) -> bool:
    """False for the null reverse-path: a DSN is never sent about a message that was
    itself a DSN or other notification (RFC 5321 §4.5.5, RFC 3461 §6.1), so bounces
    cannot loop."""
    return sender.strip() not in ("", "<>")


def should_notify(notify: list[str] | None, kind: str) -> bool:
    """RFC 3461 §4.1: NOTIFY=NEVER asks for nothing; SUCCESS, FAILURE and DELAY each ask
    for their own notice. Without NOTIFY (``None`` or empty, as a submission stores it)
    the MTA chooses: failures and, as §4.1 allows and Postfix does, delays."""
    if kind not in KINDS:
        raise ValueError(f"unknown DSN kind {kind!r}")
    words = {word.strip().upper() for word in notify or ()}
    if not words:
        return kind in ("failure", "delay")
    if "NEVER" in words:
        return False
    return {"failure": "FAILURE", "delay": "DELAY", "success": "SUCCESS"}[kind] in words


def status_from_reply(code: int, text: str) -> str:
    """The RFC 3463 status of an SMTP reply: the enhanced code leading its text when it
    has one of the reply's own class (RFC 2034 §4), else ``class.0.0`` (RFC 3463 §3.1)."""
    reply_class = str(code)[:1]
    if reply_class not in ("2", "4", "5"):
        raise ValueError(f"not a final SMTP reply code: {code}")
    match = _ENHANCED.match(text)
    if match and match.group(1) == reply_class:
        return ".".join(match.groups())
    return f"{reply_class}.0.0"


def build_dsn(
    *,
    reporting_mta: str,
    original: bytes,
    sender: str,
    recipients: list[RecipientStatus],
    envid: str | None,
    ret: str | None,
    arrival: datetime,
    now: datetime,
    kind: Kind,
    max_original: int = MAX_RETURNED_ORIGINAL,
) -> bytes:
    """The whole DSN message for ``sender`` about ``recipients``, CRLF line ends.

    ``kind`` picks the subject and the explanation; each recipient's own ``action`` is
    what the delivery-status part reports. The original comes back whole only with
    RET=FULL, only when some recipient failed (RFC 3461 §4.3) and only up to
    ``max_original`` octets; otherwise its header section comes back (also cut to
    ``max_original``). Raises ValueError for a null sender, no recipients, an unknown
    kind or a reporting MTA that is not a host name.
    """
    if not needs_dsn(sender):
        raise ValueError("no DSN for a null reverse-path (RFC 5321 §4.5.5)")
    if kind not in KINDS:
        raise ValueError(f"unknown DSN kind {kind!r}")
    if not recipients:
        raise ValueError("a DSN needs at least one recipient (RFC 3464 §2.1)")
    if not _MTA_NAME.fullmatch(reporting_mta):
        raise ValueError(f"reporting MTA is not a host name: {reporting_mta!r}")

    # RFC 6533 §4: an address that needs the utf-8 type makes the report global, and
    # then the other values may keep their UTF-8 too.
    rows = [_recipient_row(r, utf8=False) for r in recipients]
    utf8 = any(not row.final.isascii() or not (row.original or "").isascii() for row in rows)
    if utf8:
        rows = [_recipient_row(r, utf8=True) for r in recipients]

    failed = any(r.action == "failed" for r in recipients)
    returned = _returned_part(original, ret, failed, max_original)
    human = _human_text(kind, reporting_mta, rows, recipients, arrival, now, returned)
    status = _delivery_status(reporting_mta, envid, arrival, rows, recipients, utf8)

    parts: list[tuple[list[str], bytes]] = [
        (
            [
                "Content-Description: Notification",
                "Content-Type: text/plain; charset=" + ("utf-8" if not human.isascii() else "us-ascii"),
                "Content-Transfer-Encoding: " + ("8bit" if not human.isascii() else "7bit"),
            ],
            human.encode("utf-8"),
        ),
        (
            [
                "Content-Description: Delivery report",
                # RFC 3464 §2.1 / RFC 6533 §4 (message/global-delivery-status).
                "Content-Type: " + ("message/global-delivery-status" if utf8 else "message/delivery-status"),
                "Content-Transfer-Encoding: " + ("8bit" if utf8 else "7bit"),
            ],
            status.encode("utf-8"),
        ),
    ]
    if returned is not None:
        parts.append((returned.headers, returned.body))

    boundary = _boundary([body for _, body in parts], reporting_mta)
    encoding = _widest(["8bit" if utf8 or not human.isascii() else "7bit",
                        returned.encoding if returned else "7bit"])
    headers = [
        _field("From", f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"),
        _field("To", f"<{_clean(sender, utf8=True)}>"),  # RFC 6532 §3.2: UTF-8 as is
        _field("Subject", _SUBJECTS[kind]),
        _field("Date", format_datetime(_aware(now))),
        _field("Message-ID", f"<{secrets.token_hex(16)}@{reporting_mta}>"),
    ]
    if returned is not None and returned.message_id:
        headers.append(_field("References", returned.message_id))  # threads with the original
    headers += [
        "Auto-Submitted: auto-replied",  # RFC 3834 §5: DSNs are auto-replied
        "MIME-Version: 1.0",
        # RFC 6522 §3: multipart/report; RFC 3464 §2.1: report-type=delivery-status.
        f'Content-Type: multipart/report; report-type=delivery-status;{CRLF}\tboundary="{boundary}"',
    ]
    if encoding != "7bit":
        headers.append(f"Content-Transfer-Encoding: {encoding}")  # RFC 2045 §6.4

    out = bytearray(CRLF.join(headers).encode("utf-8"))
    out += f"{CRLF}{CRLF}This is a MIME-encapsulated message.{CRLF}".encode()
    for part_headers, body in parts:
        out += f"{CRLF}--{boundary}{CRLF}".encode()
        out += CRLF.join(part_headers).encode("utf-8") + f"{CRLF}{CRLF}".encode()
        out += body
    out += f"{CRLF}--{boundary}--{CRLF}".encode()
    return bytes(out)


# -- the per-recipient values ---------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    final: str  # "rfc822; a@b" or "utf-8; ü@b"
    original: str | None  # the Original-Recipient value, or None
    display: str  # the address as the human-readable part shows it
    remote_mta: str | None
    diagnostic: str | None


def _recipient_row(r: RecipientStatus, *, utf8: bool) -> _Row:
    """Addresses keep their UTF-8 (they decide whether the report is global); with
    ``utf8`` false, whatever else is not ASCII (reply text, host name) shows as ``?``."""
    address = _clean(r.recipient, utf8=True)
    # RFC 3464 §2.3.2 Final-Recipient; RFC 6533 §3: the utf-8 type for an SMTPUTF8 address.
    final = f"rfc822; {address}" if address.isascii() else f"utf-8; {address}"
    diagnostic = None
    if r.diagnostic is not None and r.diagnostic.strip():
        text = " ".join(_clean(r.diagnostic, utf8=utf8).split())
        if len(text) > MAX_DIAGNOSTIC:
            text = text[:MAX_DIAGNOSTIC] + " [...]"
        diagnostic = text or None
    remote = None
    if r.remote_mta:
        remote = "".join(_clean(r.remote_mta, utf8=utf8).split()) or None
    return _Row(final, _original_recipient(r.original_recipient), address, remote, diagnostic)


def _original_recipient(orcpt: str | None) -> str | None:
    """RFC 3464 §2.3.1 from the ORCPT parameter (RFC 3461 §4.2): the address type as
    given, the address decoded from xtext (RFC 3461 §4.2 speaks of its value "prior to
    encoding as xtext"). The ``utf-8`` type's own forms are kept as they came: they are
    already a valid ``utf-8-enc-addr`` (RFC 6533 §3). A value with no type is taken as an
    rfc822 address; a malformed type leaves the field out."""
    if orcpt is None or not orcpt.strip():
        return None
    addr_type, semi, value = orcpt.partition(";")
    if not semi:
        addr_type, value = "rfc822", orcpt
    addr_type = addr_type.strip()
    if not _TYPE_WORD.fullmatch(addr_type):
        return None
    if addr_type.lower() == "utf-8":
        address = _clean(value.strip(), utf8=True)
    else:
        raw = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value.strip())
        address = _clean(raw.encode("latin-1", "replace").decode("utf-8", "replace"), utf8=True)
        if not address.isascii():
            addr_type = "utf-8"  # RFC 6533 §3: a non-ASCII address is of the utf-8 type
    if not address:
        return None
    return f"{addr_type}; {address}"


def _clean(text: str, *, utf8: bool) -> str:
    """One line of printable text: line breaks and tabs become spaces, other controls
    (and, unless ``utf8``, anything not ASCII) become ``?``. Postfix's ``printable()``
    does the same to reply text before it goes into a bounce."""
    text = _LINE_BREAKS.sub(" ", text)
    text = _UNSAFE.sub("?", text)
    if not utf8 and not text.isascii():
        text = "".join(ch if ch.isascii() else "?" for ch in text)
    return text.strip()


# -- the three parts ------------------------------------------------------------------


def _delivery_status(reporting_mta: str, envid: str | None, arrival: datetime, rows: list[_Row],
                     recipients: list[RecipientStatus], utf8: bool) -> str:
    """RFC 3464 §2.2 per-message fields, then one block per recipient (§2.3), blocks
    separated by a blank line (§2.1)."""
    fields: list[str] = []
    if envid:
        # RFC 3464 §2.2.1: the ENVID, decoded from xtext (RFC 3461 §4.4).
        decoded = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), envid)
        value = _clean(decoded, utf8=False)
        if value:
            fields.append(_field("Original-Envelope-Id", value))
    fields.append(_field("Reporting-MTA", f"dns; {reporting_mta}"))  # RFC 3464 §2.2.2
    fields.append(_field("Arrival-Date", format_datetime(_aware(arrival))))  # RFC 3464 §2.2.5
    blocks = [CRLF.join(fields)]
    for row, r in zip(rows, recipients, strict=True):
        block: list[str] = []
        if row.original:
            block.append(_field("Original-Recipient", row.original))  # RFC 3464 §2.3.1
        block.append(_field("Final-Recipient", row.final))  # RFC 3464 §2.3.2
        block.append(_field("Action", r.action))  # RFC 3464 §2.3.3
        block.append(_field("Status", r.status))  # RFC 3464 §2.3.4
        if row.remote_mta:
            block.append(_field("Remote-MTA", f"dns; {row.remote_mta}"))  # RFC 3464 §2.3.5
        if row.diagnostic:
            # RFC 3464 §2.3.6; RFC 6533 §4 lets the smtp type carry UTF-8 when global.
            block.append(_field("Diagnostic-Code", f"smtp; {row.diagnostic}"))
        if r.last_attempt is not None:
            block.append(_field("Last-Attempt-Date", format_datetime(_aware(r.last_attempt))))  # §2.3.7
        if r.action == "delayed" and r.will_retry_until is not None:
            block.append(_field("Will-Retry-Until", format_datetime(_aware(r.will_retry_until))))  # §2.3.9
        blocks.append(CRLF.join(block))
    return (CRLF + CRLF).join(blocks) + CRLF


@dataclass(frozen=True)
class _Returned:
    headers: list[str]
    body: bytes
    encoding: str
    whole: bool
    cut: bool  # the original (or its header) was larger than the limit
    message_id: str | None


def _returned_part(original: bytes, ret: str | None, failed: bool, limit: int) -> _Returned | None:
    """RFC 3461 §4.3: RET=FULL returns the whole message, RET=HDRS (and, our choice, no
    RET) its header; DSNs that report no failure return the header only."""
    if not original:
        return None
    header = _header_section(original)
    match = _MESSAGE_ID.search(header)
    message_id = match.group(1).decode("ascii") if match else None
    global_header = not header.isascii()
    too_big = len(original) > limit
    if (ret or "").upper() == "FULL" and failed and not too_big:
        body = _LINE_END.sub(b"\r\n", original)
        content_type = "message/global" if global_header else "message/rfc822"  # RFC 6532 §3.7
        encoding = _transfer_encoding(body)
        return _Returned(
            ["Content-Description: Undelivered Message", f"Content-Type: {content_type}",
             f"Content-Transfer-Encoding: {encoding}"],
            body, encoding, True, False, message_id)
    cut = too_big and (ret or "").upper() == "FULL" and failed
    if len(header) > limit:
        # Keep whole lines only, so no field is cut in the middle of a line.
        end = max(header.rfind(b"\n", 0, limit), header.rfind(b"\r", 0, limit))
        header = header[: end + 1] if end >= 0 else b""
        cut = True
    body = _LINE_END.sub(b"\r\n", header)
    # RFC 6522 §4 text/rfc822-headers; RFC 6533 §4 message/global-headers for UTF-8.
    content_type = "message/global-headers" if global_header else "text/rfc822-headers"
    encoding = _transfer_encoding(body)
    description = "Undelivered Message Headers" if failed else "Message Headers"
    return _Returned(
        [f"Content-Description: {description}", f"Content-Type: {content_type}",
         f"Content-Transfer-Encoding: {encoding}"],
        body, encoding, False, cut, message_id)


def _header_section(original: bytes) -> bytes:
    """The header fields up to the blank line (RFC 5322 §2.1), without that blank line;
    all of it when there is no blank line. Bare LF line ends are understood too."""
    if original.startswith((b"\r\n", b"\n")):
        return b""
    ends = [i for i in (original.find(b"\r\n\r\n"), original.find(b"\n\n")) if i >= 0]
    if not ends:
        return original
    end = min(ends)
    return original[: end + (2 if original[end] == 0x0D else 1)]


def _transfer_encoding(body: bytes) -> str:
    """RFC 2045 §2.7-2.9 and RFC 2046 §5.2.1: 7bit, 8bit or binary, whichever the
    content is (a message/* part is never base64- or QP-encoded)."""
    if b"\x00" in body or any(len(line) > HARD_LINE for line in body.split(b"\r\n")):
        return "binary"
    return "7bit" if body.isascii() else "8bit"


def _widest(encodings: list[str]) -> str:
    order = ["7bit", "8bit", "binary"]
    return max(encodings, key=order.index)


def _human_text(kind: str, reporting_mta: str, rows: list[_Row], recipients: list[RecipientStatus],
                arrival: datetime, now: datetime, returned: _Returned | None) -> str:
    paragraphs = [f"This is the mail system at host {reporting_mta}."]
    if kind == "failure":
        paragraphs.append("I'm sorry to have to inform you that your message could not be delivered "
                          "to one or more recipients.")
    elif kind == "delay":
        hours = max(0.0, (_aware(now) - _aware(arrival)).total_seconds() / 3600)
        paragraphs.append("THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.")
        text = f"Your message could not be delivered for {hours:.1f} hours."
        until = [r.will_retry_until for r in recipients if r.will_retry_until is not None]
        if until:
            text += f" It will be retried until {format_datetime(_aware(max(until, key=_aware)))}."
        paragraphs.append(text)
    else:
        paragraphs.append("Your message was delivered to the following recipients, as you asked.")
    lines: list[str] = []
    for paragraph in paragraphs:
        lines += _wrap(paragraph, "") + [""]
    for row, r in zip(rows, recipients, strict=True):
        detail = row.diagnostic or _ACTION_TEXT[r.action]
        where = f" (host {row.remote_mta})" if row.remote_mta else ""
        lines += _wrap(f"<{row.display}>{where}: {detail} [{r.status}]", "    ") + [""]
    if returned is not None:
        if returned.whole:
            lines.append("The message is attached below.")
        elif returned.cut:
            lines += _wrap("The message was too large to return in full; its header "
                           "(or as much of it as fits) is attached below.", "")
        else:
            lines.append("The header of the message is attached below.")
    return CRLF.join(lines).rstrip() + CRLF


_ACTION_TEXT = {
    "failed": "delivery failed",
    "delayed": "delivery is delayed, still trying",
    "delivered": "delivered",
    "relayed": "relayed to a server that does not send delivery notices",
    "expanded": "delivered and expanded to further recipients",
}


def _wrap(text: str, indent: str) -> list[str]:
    lines = textwrap.wrap(text, width=SOFT_LINE - 2, subsequent_indent=indent,
                          break_long_words=False, break_on_hyphens=False) or [""]
    out: list[str] = []
    for line in lines:
        while len(line.encode("utf-8")) > HARD_LINE:
            head = _prefix_within(line, HARD_LINE)
            out.append(head)
            line = indent + line[len(head):]
        out.append(line)
    return out


# -- header fields --------------------------------------------------------------------


def _field(name: str, value: str) -> str:
    """``Name: value``, folded before a space (RFC 5322 §2.2.3) so lines stay within 78
    characters where the value allows and within 998 octets always. The value has been
    cleaned: it holds no CR or LF of its own."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name}: a field value must be cleaned of line breaks first")
    line = f"{name}: {value}"
    out: list[str] = []
    start = len(name) + 2
    while len(line.encode("utf-8")) > SOFT_LINE:
        # Fold before a space that is followed by text, never leaving a blank line.
        breaks = [m.start() for m in re.finditer(r" (?=[^ ])", line) if m.start() >= start]
        fitting = [i for i in breaks if len(line[:i].encode("utf-8")) <= SOFT_LINE]
        cut = fitting[-1] if fitting else (breaks[0] if breaks else None)
        if cut is None or len(line[:cut].encode("utf-8")) > HARD_LINE:
            if len(line.encode("utf-8")) <= HARD_LINE:
                break
            head = _prefix_within(line, HARD_LINE)  # one word longer than a line: cut it
            out.append(head)
            line = " " + line[len(head):]
        else:
            out.append(line[:cut])
            line = line[cut:]
        start = 1
    out.append(line)
    return CRLF.join(out)


def _prefix_within(text: str, octets: int) -> str:
    size = 0
    for index, ch in enumerate(text):
        size += len(ch.encode("utf-8"))
        if size > octets:
            return text[:index]
    return text


def _boundary(bodies: list[bytes], reporting_mta: str) -> str:
    """RFC 2046 §5.1.1: a boundary that occurs in no part. ``=_`` cannot start a line of
    base64 or quoted-printable text, and the random part makes a clash unlikely; the
    check makes it impossible."""
    while True:
        boundary = f"=_{secrets.token_hex(12)}/{reporting_mta}"[:70]
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in body for body in bodies):
            return boundary


def _aware(moment: datetime) -> datetime:
    """A naive time is taken as UTC (the clock port's times are UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
