"""Next hops the operator names in the settings (``outbound.smarthost``,
``outbound.routes``): parsed here, apart from the SMTP package, so the settings can
check them without importing a protocol adapter."""

from __future__ import annotations

import ipaddress
import re

SMTP_PORT = 25

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def parse_smarthost(value: str) -> tuple[str, int]:
    """``"relay.example:587"``, ``"[2001:db8::1]:25"``, ``"192.0.2.1:2525"`` or a bare
    host (port 25) -> (host, port). ValueError on anything else, for config checks."""
    text = value.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"smarthost {value!r}: expected [address]:port")
        port_text = rest[1:] if rest else None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not is_hostname(host):
                raise ValueError(f"smarthost {value!r}: bad host") from None
    else:
        if text.count(":") > 1:
            raise ValueError(f"smarthost {value!r}: an IPv6 address goes in brackets, [::1]:25")
        host, colon, port_text = text.partition(":")
        if not colon:
            port_text = None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not is_hostname(host):
                raise ValueError(f"smarthost {value!r}: bad host") from None
    host = host.rstrip(".").lower()
    if port_text is None:
        return host, SMTP_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"smarthost {value!r}: bad port")
    return host, int(port_text)


def is_hostname(host: str) -> bool:
    labels = host.rstrip(".").lower().split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)
