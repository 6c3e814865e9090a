"""Writing IMAP response data safely (RFC 9051 §4, §7), without I/O.

Every string that came from a user or a message (mailbox names, flags' keywords aside,
header fields in ENVELOPE, ID values, ALERT text) goes out through ``string``/``astring``:
quoted when every byte may appear in a quoted string, a literal otherwise. So a name
holding CR LF can never end a response line early and inject "* 1 EXISTS" into another
session (checklist §2.8). Response text (after OK/NO/BAD) is free text on one line: any
control character in it is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from adapters.imap import utf7

#: Longer strings go as literals even when they could be quoted (easier on clients).
MAX_QUOTED = 1024
_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0x20)) | {0x7F}


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _quotable(value: bytes, utf8: bool) -> bool:
    if len(value) > MAX_QUOTED or _CONTROL.search(value):
        return False
    if value.isascii():
        return True
    if not utf8:
        return False  # 8-bit in a quoted string needs UTF8=ACCEPT (RFC 9051 §4.3 / RFC 6855)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def string(value: bytes | str | None, *, utf8: bool = False) -> bytes:
    """``NIL``, a quoted string, or a literal (``~{n}`` when it holds NUL, RFC 3516)."""
    if value is None:
        return b"NIL"
    data = value.encode("utf-8") if isinstance(value, str) else value
    if _quotable(data, utf8):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    prefix = b"~" if b"\x00" in data else b""
    return prefix + b"{%d}\r\n" % len(data) + data


def astring(value: bytes | str, *, utf8: bool = False) -> bytes:
    """An atom when the value is one, else ``string`` (RFC 9051 §9 astring)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    # "[" is no atom-special, but our tokenizer (and others) reads it as a fetch section.
    if data and data.upper() != b"NIL" and data.isascii() and not any(
            b in _ATOM_SPECIALS or b == 0x5B for b in data):
        return data
    return string(data, utf8=utf8)


def mailbox(name: str, *, utf8: bool) -> bytes:
    """A mailbox name: UTF-8 for IMAP4rev2 / UTF8=ACCEPT sessions, modified UTF-7 for
    IMAP4rev1 (RFC 3501 §5.1.3). INBOX is always the atom INBOX."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else utf7.encode(name), utf8=utf8)


def paren_list(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def text(value: str) -> bytes:
    """Human-readable response text: one line, no control characters."""
    clean = "".join(ch if ch.isprintable() else " " for ch in value)
    return clean.encode("utf-8")


def tagged(tag: bytes, status: str, message: str, code: str | None = None) -> bytes:
    """``tag OK|NO|BAD [code] text`` CRLF; the tag is echoed only if it is a valid tag."""
    valid = tag and tag.isascii() and not any(b in _ATOM_SPECIALS or b == 0x2B for b in tag)
    safe_tag = tag if valid else b"*"
    code_part = b"[" + text(code) + b"] " if code else b""
    return safe_tag + b" " + status.encode() + b" " + code_part + text(message) + b"\r\n"
