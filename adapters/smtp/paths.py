"""Parsing MAIL FROM / RCPT TO arguments: the path and its ESMTP parameters.

Sans-I/O and strict where it matters for safety: no control characters or NUL anywhere
(Dovecot CVE-2020-10967 class), RFC 5321 §4.5.3.1 length limits, non-ASCII only with
SMTPUTF8 (RFC 6531 §3.4), and the forms an open relay is tricked with (source routes,
``%`` and ``!`` routing, quoted local parts holding ``@``) reported so policy can refuse
them. Lenient where real clients are sloppy: a space after the colon, a missing ``<>``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256
#: RFC 3461 §4.4 and §4.2: ENVID and ORCPT lengths.
MAX_ENVID = 100
MAX_ORCPT = 500

_XTEXT = re.compile(r"^(?:[!-*,-<>-~]|\+[0-9A-F]{2})*\Z")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_UTF8_DOMAIN_LABEL = re.compile(r"^[^\x00-\x2c./:-@\[-\^`{-\x7f]+\Z")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_NOTIFY = {"SUCCESS", "FAILURE", "DELAY"}


class PathError(Exception):
    """``reason`` is ``syntax``, ``length``, ``utf8`` or ``parameter``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class Path:
    address: str  # "" is the null reverse-path <>
    local: str = ""
    domain: str = ""
    quoted: bool = False
    source_routed: bool = False
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_address_literal(self) -> bool:
        return self.domain.startswith("[")

    @property
    def sender_routed(self) -> bool:
        """``x%y@local``, ``y!x@local``, ``"x@y"@local``: routing chosen by the sender
        (Postfix allow_untrusted_routing=no refuses all of them)."""
        return any(ch in self.local for ch in "%!@")


def parse_path(arg: str | None, keyword: str, *, utf8_allowed: bool) -> Path:
    """Parse ``FROM:<path> params`` (keyword ``FROM:``) or ``TO:<path> params``."""
    if arg is None or not arg[: len(keyword)].upper() == keyword:
        raise PathError("syntax", "missing keyword")
    rest = arg[len(keyword):].lstrip(" ")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F or (ord(ch) > 0x7F and _is_line_or_control(ch)) for ch in rest):
        raise PathError("syntax", "control character")
    if rest.startswith("<"):
        end = _closing_bracket(rest)
        inner, tail = rest[1:end], rest[end + 1:]
        if tail and not tail.startswith(" "):
            raise PathError("syntax", "text after path")
    else:
        inner, _, tail = rest.partition(" ")
    params = parse_params(tail)
    if inner == "":
        return Path("", params=params)
    source_routed = False
    if inner.startswith("@"):
        # RFC 5321 §4.1.1.3 / §3.6.1: a source route is accepted and ignored.
        route, colon, inner = inner.partition(":")
        if not colon:
            raise PathError("syntax", "bad source route")
        source_routed = True
    local, domain, quoted = _split_mailbox(inner)
    if not utf8_allowed and not inner.isascii():
        raise PathError("utf8")
    if len(local.encode()) > MAX_LOCAL_PART or len(domain.encode()) > MAX_DOMAIN \
            or len(inner.encode()) > MAX_PATH - 2:
        raise PathError("length")
    _check_domain(domain)
    if not quoted and not _is_dot_string(local):
        raise PathError("syntax", "bad local part")
    return Path(f"{local}@{domain.lower() if domain.isascii() else domain}", local, domain,
                quoted, source_routed, params)


def _is_line_or_control(ch: str) -> bool:
    """C1 controls (NEL among them) and the Unicode line and paragraph separators:
    ``str.splitlines()`` and some mail readers break lines there, so in a relayed
    address they could split a header line (RFC 6531 §3.3 allows UTF-8, not these)."""
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _closing_bracket(text: str) -> int:
    quoted = escaped = False
    for index, ch in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return index
    raise PathError("syntax", "unterminated path")


def _split_mailbox(mailbox: str) -> tuple[str, str, bool]:
    if mailbox.startswith('"'):
        index, escaped = 1, False
        while index < len(mailbox):
            ch = mailbox[index]
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                break
            index += 1
        else:
            raise PathError("syntax", "unterminated quoted local part")
        local, rest = mailbox[: index + 1], mailbox[index + 1:]
        if not rest.startswith("@"):
            raise PathError("syntax", "missing domain")
        return local, rest[1:], True
    local, at, domain = mailbox.rpartition("@")
    if not at or not local or "@" in local:
        raise PathError("syntax", "expected local-part@domain")
    return local, domain, False


def _is_dot_string(local: str) -> bool:
    if local.isascii():
        return bool(_DOT_ATOM.match(local))
    # RFC 6531 §3.3: UTF-8 is allowed in atext when SMTPUTF8 is in effect.
    ascii_view = "".join(ch if ch.isascii() else "a" for ch in local)
    return bool(_DOT_ATOM.match(ascii_view))


def _check_domain(domain: str) -> None:
    if domain.startswith("["):
        if not domain.endswith("]") or len(domain) < 3:
            raise PathError("syntax", "bad address literal")
        return
    if domain.isascii():
        if not _DOMAIN.match(domain):
            raise PathError("syntax", "bad domain")
        return
    labels = domain.split(".")
    if not all(label.isascii() and _DOMAIN.match(label) or _UTF8_DOMAIN_LABEL.match(label)
               for label in labels):
        raise PathError("syntax", "bad domain")


def parse_params(text: str) -> dict[str, str | None]:
    """``KEY=VALUE`` / ``KEY`` words (RFC 5321 §4.1.2 esmtp-param), keys upper-cased."""
    params: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not key or not key.isascii() or not key.replace("-", "").isalnum():
            raise PathError("parameter", word)
        key = key.upper()
        if key in params:
            raise PathError("parameter", f"{key} given twice")
        params[key] = value if eq else None
    return params


def is_xtext(value: str) -> bool:
    """RFC 3461 §4: printable ASCII except ``+`` and ``=``, which travel as ``+HH``."""
    return bool(_XTEXT.match(value))


def check_envid(value: str | None) -> str:
    if value is None or not value or len(value) > MAX_ENVID or not is_xtext(value):
        raise PathError("parameter", "ENVID")
    return value


def check_ret(value: str | None) -> str:
    if value is None or value.upper() not in ("FULL", "HDRS"):
        raise PathError("parameter", "RET")
    return value.upper()


def check_notify(value: str | None) -> list[str]:
    """RFC 3461 §4.1: NEVER alone, or any of SUCCESS, FAILURE, DELAY."""
    if not value:
        raise PathError("parameter", "NOTIFY")
    words = [w.upper() for w in value.split(",")]
    if words == ["NEVER"]:
        return words
    if len(set(words)) != len(words) or not set(words) <= _NOTIFY:
        raise PathError("parameter", "NOTIFY")
    return words


def check_orcpt(value: str | None) -> str:
    """RFC 3461 §4.2: ``addr-type ; xtext``."""
    if value is None or len(value) > MAX_ORCPT:
        raise PathError("parameter", "ORCPT")
    addr_type, semi, address = value.partition(";")
    if not semi or not addr_type or not addr_type.replace("-", "").isalnum() or not is_xtext(address):
        raise PathError("parameter", "ORCPT")
    return value
