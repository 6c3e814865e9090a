"""The envelope summary kept with each copy: what IMAP ENVELOPE and list views need.

Parsed with the standard library's header parser only (no body walk), with every field
truncated, so a hostile header costs bounded time and space.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

SUMMARY_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date",
                  "message-id", "in-reply-to", "references")
MAX_HEADER_BYTES = 256 * 1024
MAX_FIELD_CHARS = 4096


def header_block(raw: bytes) -> bytes:
    """The bytes up to the first empty line (RFC 5322 §2.1), bounded."""
    head = raw[:MAX_HEADER_BYTES]
    for sep in (b"\r\n\r\n", b"\n\n"):
        cut = head.find(sep)
        if cut != -1:
            return head[: cut + len(sep)]
    return head


def summarize(raw: bytes) -> dict[str, str]:
    """The summary fields present in the message header, as decoded-to-str raw values."""
    message = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
    summary: dict[str, str] = {}
    for name in SUMMARY_FIELDS:
        value = message.get(name)
        if value is not None:
            summary[name] = str(value)[:MAX_FIELD_CHARS]
    return summary

