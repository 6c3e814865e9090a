"""The Authentication-Results: header field (RFC 8601) and the removal of forged ones.

We add one field per message from the MX listener, its authserv-id our ``hostname``:

    Authentication-Results: mx.example.org;
        spf=pass smtp.mailfrom=sender@example.com;
        dkim=pass header.d=example.com header.s=ed20260314 header.a=ed25519-sha256;
        dmarc=pass header.from=example.com;
        arc=none

A mail reader trusts such a field only for the authserv-ids it knows, so a field that
arrives already naming ours is a forgery: RFC 8601 §5 requires us to remove it before
delivery. The same goes for the ``X-Spam-*`` fields our scorer writes, which a sender
could otherwise pre-set to ``No``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from adapters.scanners.arc_verify import ArcResult
from adapters.scanners.dkim_verify import DkimResult
from adapters.scanners.dmarc import DmarcOutcome
from adapters.scanners.spf import SpfOutcome

FIELD = "Authentication-Results"
#: Fields we write; a copy arriving from outside is removed (RFC 8601 §5 for the first).
SPAM_FIELDS = ("x-spam-flag", "x-spam-status", "x-spam-score", "x-virus-status")
#: RFC 8601 §2.2 value: a token, or else a quoted-string.
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]{1,255}\Z")
_COMMENT = re.compile(r"\([^()]*\)")


def value(text: str) -> str:
    """A property value fit for the field: as it is when a plain token, else a quoted
    string without control characters (so nothing from the message can fold or end the
    header field)."""
    if _TOKEN.match(text):
        return text
    clean = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text[:255])
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authentication_results(authserv_id: str, spf: SpfOutcome | None, dkim: Iterable[DkimResult],
                           dmarc: DmarcOutcome | None, arc: ArcResult | None,
                           mail_from: str = "") -> str:
    """The field, folded one result per line (``\\n\\t``; the intake puts its own line
    ends). RFC 8601 §2.2: ``authserv-id; method=result ptype.property=value``."""
    parts = [f"{FIELD}: {authserv_id}"]
    if spf is not None:
        if spf.identity == "mailfrom":
            parts.append(f"spf={spf.result} smtp.mailfrom={value(mail_from or spf.domain)}")
        else:
            parts.append(f"spf={spf.result} smtp.helo={value(spf.domain or 'unknown')}")
    signatures = list(dkim)
    if not signatures:
        parts.append("dkim=none")
    for result in signatures:
        text = f"dkim={result.result}"
        if result.domain:
            text += f" header.d={value(result.domain)}"
        if result.selector:
            text += f" header.s={value(result.selector)}"
        if result.algorithm:
            text += f" header.a={value(result.algorithm)}"
        parts.append(text)
    if dmarc is not None:
        text = f"dmarc={dmarc.result}"
        if dmarc.published:
            text += f" (p={dmarc.published})"
        if dmarc.from_domain:
            text += f" header.from={value(dmarc.from_domain)}"
        parts.append(text)
    if arc is not None:
        parts.append(f"arc={arc.result}")
    return ";\n\t".join(parts)


def authserv_id_of(field_value: str) -> str:
    """RFC 8601 §2.2: the authserv-id is what comes before the first ``;`` (comments and
    an optional version number aside)."""
    head = _COMMENT.sub(" ", field_value.partition(";")[0]).split()
    return head[0].lower() if head else ""


def remove_forged_fields(raw: bytes, authserv_id: str) -> bytes:
    """Drop incoming Authentication-Results fields that claim ``authserv_id`` (RFC 8601
    §5) and incoming X-Spam-* and X-Virus-Status fields (only we may claim a scan
    result), with their folded lines; the rest of the message is kept byte for byte."""
    own = authserv_id.lower()
    out: list[bytes] = []
    skipping = False
    position = 0
    for line in raw.splitlines(keepends=True):
        position += len(line)
        if line in (b"\r\n", b"\n"):  # end of the header section
            out.append(line)
            break
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        name, colon, rest = line.partition(b":")
        lowered = name.strip().lower().decode("latin-1")
        skipping = False
        if colon and lowered in SPAM_FIELDS:
            skipping = True
        elif colon and lowered == FIELD.lower():
            # The value may continue on folded lines; the authserv-id is at its start.
            skipping = authserv_id_of(rest.decode("latin-1")) == own
        if not skipping:
            out.append(line)
    else:
        return b"".join(out)
    return b"".join(out) + raw[position:]
