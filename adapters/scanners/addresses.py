"""Daemon addresses as the settings write them, apart from the socket code so the
settings (imported by every session module) can check them without importing sockets."""

from __future__ import annotations


def parse_address(address: str, *, unix: bool = True) -> tuple[str, int] | str:
    """``host:port`` or ``[v6]:port`` -> (host, port); an absolute path -> the path of a
    unix socket (when ``unix``). Raises ``ValueError`` with the reason."""
    if address.startswith("/"):
        if not unix:
            raise ValueError("must be host:port")
        return address
    host, colon, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is neither host:port nor an absolute socket path")
    return host, int(port)
