"""Fakes at the outbound ports (DESIGN §7): DNS as a dict, and a real DNS server on
127.0.0.1 for testing ``DnsPythonResolver`` without the network.

``FakeResolver`` maps names to records; the future queue worker's tests point MX
hosts at loopback peers with it (``addresses={"mx.example.com": ["127.0.0.1"]}``).
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset

from adapters.smtp.routing import NoSuchDomain, TemporaryDnsFailure


class FakeResolver:
    """``Resolver`` from dicts. A name in ``nxdomain``, or in no table at all, does not
    exist; a name in ``temporary`` fails as SERVFAIL would; a name in some table but
    not the one asked has no records of that type (NODATA). ``queries`` records every
    lookup as (method, name)."""

    def __init__(self, *, mx: Mapping[str, list[tuple[int, str]]] | None = None,
                 addresses: Mapping[str, list[str]] | None = None,
                 txt: Mapping[str, list[str]] | None = None,
                 nxdomain: Iterable[str] = (), temporary: Iterable[str] = ()) -> None:
        self.mx_records = dict(mx or {})
        self.address_records = dict(addresses or {})
        self.txt_records = dict(txt or {})
        self.nxdomain = set(nxdomain)
        self.temporary = set(temporary)
        self.queries: list[tuple[str, str]] = []

    def mx(self, domain: str) -> list[tuple[int, str]]:
        return list(self._lookup("mx", domain, self.mx_records))

    def addresses(self, host: str) -> list[str]:
        return list(self._lookup("addresses", host, self.address_records))

    def txt(self, name: str) -> list[str]:
        return list(self._lookup("txt", name, self.txt_records))

    def _lookup(self, method: str, name: str, table: Mapping[str, list]) -> list:
        self.queries.append((method, name))
        if name in self.temporary:
            raise TemporaryDnsFailure(f"{name}: SERVFAIL")
        known = name in self.mx_records or name in self.address_records or name in self.txt_records
        if name in self.nxdomain or not known:
            raise NoSuchDomain(f"{name}: no such domain")
        return table.get(name, [])


@dataclass
class LoopbackDns:
    """An authoritative-looking DNS server on 127.0.0.1 (UDP) answering from ``zone``:
    {(name, type): [rdata text]}. Names in ``servfail`` get SERVFAIL, names in ``silent``
    get no answer at all (a timeout); a name with no entry is NXDOMAIN, one with
    entries of other types only is NODATA."""

    zone: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    port: int = 0

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not any(key[0] == name for key in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, rdtype) in self.zone:
            response.answer.append(dns.rrset.from_text_list(
                question.name, 300, "IN", rdtype, self.zone[(name, rdtype)]))
        return response.to_wire()

    def resolver(self) -> dns.resolver.Resolver:
        """A dnspython resolver that asks only this server."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver


@contextmanager
def loopback_dns(zone: dict[tuple[str, str], list[str]], *, servfail: Iterable[str] = (),
                 silent: Iterable[str] = ()) -> Iterator[LoopbackDns]:
    server_state = LoopbackDns(dict(zone), set(servfail), set(silent))

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            reply = server_state.answer(data)
            if reply is not None:
                sock.sendto(reply, self.client_address)

    with socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler) as server:
        server_state.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield server_state
        finally:
            server.shutdown()
            thread.join(5)


# --- a scripted remote MTA --------------------------------------------------------------


@dataclass
class PeerLog:
    """What a scripted peer saw: every command line, and each message's envelope/bytes."""

    commands: list[str] = field(default_factory=list)
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)


class ScriptedPeer:
    """A remote MTA at the edge of the world (DESIGN §7): aiosmtpd on 127.0.0.1 whose
    RCPT and end-of-data replies the test chooses. ``rcpt_reply``/``data_reply`` are
    full reply lines (``"450 4.2.0 Try later"``); None accepts. ``data_delay`` holds the
    final reply back that many seconds (a delivery "in flight")."""

    def __init__(self, *, rcpt_reply: str | None = None, data_reply: str | None = None,
                 data_delay: float = 0.0) -> None:
        from aiosmtpd.controller import Controller

        self.log = PeerLog()
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.data_delay = data_delay
        peer = self

        class Handler:
            async def handle_MAIL(self, server, session, envelope, address, options):  # noqa: ANN001, ANN201
                peer.log.commands.append("MAIL FROM:" + address + "".join(" " + o for o in options))
                envelope.mail_from = address
                return "250 2.1.0 OK"

            async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: ANN001, ANN201
                peer.log.commands.append("RCPT TO:" + address + "".join(" " + o for o in options))
                if peer.rcpt_reply is not None:
                    return peer.rcpt_reply
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
                import asyncio

                peer.log.commands.append("DATA")
                if peer.data_delay:
                    await asyncio.sleep(peer.data_delay)
                if peer.data_reply is not None:
                    return peer.data_reply
                peer.log.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content))
                return "250 2.0.0 Accepted"

        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     server_hostname="peer.test", decode_data=False)

    def __enter__(self) -> ScriptedPeer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
