"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), what IMAP4rev1 clients send and expect.

Printable US-ASCII stands for itself, "&" is written "&-", and any other run of
characters is "&", the modified BASE64 (RFC 2045 alphabet with "," for "/", no padding)
of its UTF-16BE form, then "-". Decoding is strict, as Dovecot's is: a name has one
spelling, so two names cannot alias the same mailbox and nothing can hide in one
(checklist §2.14, §6.22). Refused: bytes outside printable ASCII, an unterminated shift,
a shift encoding printable ASCII or nothing, two shifts back to back, padding bits that
are not zero, broken surrogate pairs.
"""

from __future__ import annotations

import binascii

_B64_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_MODIFIED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class InvalidModifiedUtf7(ValueError):
    """The name is not in canonical modified UTF-7; the message says why."""


def _direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be", "surrogatepass")
            b64 = binascii.b2a_base64(utf16, newline=False).rstrip(b"=").replace(b"/", b",")
            out.append("&" + b64.decode("ascii") + "-")
            pending.clear()

    for ch in name:
        if _direct(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidModifiedUtf7("8-bit byte in a modified UTF-7 name") from None
    out: list[str] = []
    i, n = 0, len(text)
    previous_was_shift = False
    while i < n:
        ch = text[i]
        if not _direct(ch):
            raise InvalidModifiedUtf7(f"character {ch!r} must be encoded")
        if ch != "&":
            out.append(ch)
            previous_was_shift = False
            i += 1
            continue
        end = text.find("-", i + 1)
        if end == -1:
            raise InvalidModifiedUtf7("unterminated shift ('&' without '-')")
        if end == i + 1:
            out.append("&")  # "&-" is the ampersand
            previous_was_shift = False
            i = end + 1
            continue
        if previous_was_shift:
            raise InvalidModifiedUtf7("two shifts back to back (they must be one)")
        out.append(_decode_run(text[i + 1:end]))
        previous_was_shift = True
        i = end + 1
    return "".join(out)


def _decode_run(run: str) -> str:
    raw = run.encode("ascii")
    if any(byte not in _B64_MODIFIED for byte in raw):
        raise InvalidModifiedUtf7(f"invalid modified BASE64 in '&{run}-'")
    bits = len(raw) * 6
    if bits % 16 >= 6:
        raise InvalidModifiedUtf7(f"'&{run}-' does not end on a UTF-16 boundary")
    standard = raw.replace(b",", b"/") + b"=" * (-len(raw) % 4)
    try:
        utf16 = binascii.a2b_base64(standard)
    except binascii.Error:
        raise InvalidModifiedUtf7(f"invalid modified BASE64 in '&{run}-'") from None
    utf16 = utf16[: bits // 16 * 2]
    # RFC 4648 §3.5: the bits after the last UTF-16 unit must be zero (one spelling).
    leftover = bits % 16
    if leftover and _B64_STANDARD.index(standard[len(raw) - 1]) & ((1 << leftover) - 1):
        raise InvalidModifiedUtf7(f"'&{run}-' has non-zero padding bits")
    try:
        decoded = utf16.decode("utf-16-be")
    except UnicodeDecodeError:
        raise InvalidModifiedUtf7(f"'&{run}-' is not valid UTF-16") from None
    if any(_direct(ch) for ch in decoded):
        raise InvalidModifiedUtf7(f"'&{run}-' encodes printable ASCII, which must be written as is")
    return decoded
