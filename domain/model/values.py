"""Value rules the write model enforces: address and domain syntax, mailbox names, flags.

Addresses are compared case-insensitively in both parts, as Postfix and Dovecot look
them up; the stored form is lower case.
"""

from __future__ import annotations

import re
import unicodedata

from domain.model.errors import InvalidAddress, InvalidDomainName, InvalidMailboxName

# RFC 5321 §4.5.3.1: local part ≤ 64 octets, domain ≤ 255, path ≤ 256 (254 for the address).
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254
MAX_DOMAIN = 253

# RFC 1035 §2.3.1 / RFC 5321 §4.1.2 (Domain): labels of letters, digits and hyphens.
# Patterns end in \Z, not $: $ also matches before a trailing newline.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
# RFC 5321 §4.1.2 Dot-string atoms (atext of RFC 5322 §3.2.3). Quoted local parts and
# address literals are refused for local accounts: no real mailbox needs them.
_ATOM = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")


def _ascii_lower(text: str) -> str:
    # str.lower() maps some non-ASCII letters to ASCII (KELVIN SIGN -> "k"), which would
    # let a different string pass as somebody else's address; fold ASCII only.
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_domain(name: str) -> str:
    """Lower-cased domain with no trailing dot; raises ``InvalidDomainName``."""
    candidate = _ascii_lower(name.strip())
    # One trailing dot is the root (RFC 1034 §3.1); more is an empty label.
    candidate = candidate[:-1] if candidate.endswith(".") else candidate
    if not candidate or len(candidate) > MAX_DOMAIN or "." not in candidate:
        raise InvalidDomainName(name)
    labels = candidate.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise InvalidDomainName(name)
    # RFC 3696 §2: a top-level domain is never all-numeric (so 127.0.0.1 is no host name;
    # address literals are refused, see above).
    if labels[-1].isdigit():
        raise InvalidDomainName(name)
    return candidate


def normalize_address(address: str) -> str:
    """The canonical form of a local mailbox address; raises ``InvalidAddress``."""
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in address):
        raise InvalidAddress(address, "spaces and control characters are not allowed")
    candidate = _ascii_lower(address)
    if len(candidate) > MAX_ADDRESS:
        raise InvalidAddress(address, f"longer than {MAX_ADDRESS} characters")
    local, at, domain = candidate.rpartition("@")
    if not at or not local:
        raise InvalidAddress(address, "expected local-part@domain")
    if len(local) > MAX_LOCAL_PART:
        raise InvalidAddress(address, f"local part longer than {MAX_LOCAL_PART} characters")
    if any(not _ATOM.match(atom) for atom in local.split(".")):
        raise InvalidAddress(address, "local part has characters outside RFC 5322 atext")
    try:
        domain = normalize_domain(domain)
    except InvalidDomainName:
        raise InvalidAddress(address, "domain is not a valid host name") from None
    return f"{local}@{domain}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


# RFC 6154 §2: special-use attributes, and the mailboxes every account starts with.
SPECIAL_USE = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged")
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

MAILBOX_DELIMITER = "/"
MAX_MAILBOX_NAME = 512
MAX_MAILBOX_DEPTH = 32


def normalize_mailbox_name(name: str) -> str:
    """Validate a mailbox name (UTF-8, RFC 9051 §5.1); INBOX is case-insensitive."""
    if not name or len(name.encode()) > MAX_MAILBOX_NAME:
        raise InvalidMailboxName(name, f"must be 1 to {MAX_MAILBOX_NAME} bytes")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise InvalidMailboxName(name, "control characters are not allowed")
    # C1 controls and the Unicode line/paragraph separators break lines in some readers,
    # so a name echoed in LIST could split a response (checklist §2.8, §6.21).
    if not name.isascii() and any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise InvalidMailboxName(name, "control characters are not allowed")
    # RFC 9051 §5.1: names are in NFC; one spelling per name, so "é" composed and
    # decomposed cannot be two mailboxes that look the same.
    if not name.isascii() and unicodedata.normalize("NFC", name) != name:
        raise InvalidMailboxName(name, "must be in Unicode normalization form C")
    if name[0] in "~#":
        raise InvalidMailboxName(name, "a leading '~' or '#' is reserved for namespaces")
    if any(ch in name for ch in "*%"):
        raise InvalidMailboxName(name, "'*' and '%' are LIST wildcards")
    parts = name.split(MAILBOX_DELIMITER)
    if any(part == "" for part in parts):
        raise InvalidMailboxName(name, "empty hierarchy level")
    if any(part in (".", "..") for part in parts):
        raise InvalidMailboxName(name, "'.' and '..' are not mailbox names")
    if len(parts) > MAX_MAILBOX_DEPTH:
        raise InvalidMailboxName(name, f"deeper than {MAX_MAILBOX_DEPTH} levels")
    # RFC 9051 §5.1: INBOX is case-insensitive, in any hierarchy position only at the top.
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return MAILBOX_DELIMITER.join(parts)


# RFC 9051 §2.3.2: system flags. Keywords are atoms without the backslash.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_KEYWORD = re.compile(r"^[!#$&'+,\-.0-9:;<=>?@A-Z^_`a-z|}~]{1,64}\Z")


def normalize_flags(flags: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """Canonical, sorted, de-duplicated flags; unknown backslash flags are refused."""
    out: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            match = next((f for f in SYSTEM_FLAGS if f.lower() == flag.lower()), None)
            if match is None:
                raise ValueError(f"unknown system flag {flag!r}")
            out.add(match)
        elif _KEYWORD.match(flag):
            out.add(flag)
        else:
            raise ValueError(f"invalid keyword {flag!r}")
    return sorted(out)
