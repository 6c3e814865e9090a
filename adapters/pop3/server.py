"""The POP3 listeners: ``pop3`` (STLS, RFC 2595 §4) and ``pop3s`` (implicit TLS, RFC 8314
§3.3), on asyncio streams. The only POP3 module that touches sockets.

Each connection cuts lines with the sans-I/O ``LineReader`` and hands them to its
``Pop3Session`` in a worker thread: pipelined lines (RFC 2449 PIPELINING) together, in
order, so the reads they make are recorded in one transaction. What the listeners share
with IMAP (admission, TLS, stopping) is ``adapters/connections.py``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from adapters.config import Settings
from adapters.connections import READ_SIZE, MailboxService, StreamConnection
from adapters.login_throttle import LoginThrottle
from adapters.logins import is_loopback
from adapters.pop3.lines import LineReader, TooLong
from adapters.pop3.session import Maildrops, Peer, Pop3Session, State, err
from domain.application.service import LedgerMail
from projections.mailbox_view.view import MailboxViewInterface

log = logging.getLogger(__name__)

#: listener name -> implicit TLS
LISTENERS = {"pop3": False, "pop3s": True}
WORKERS = 8
#: Pipelined lines handed to one worker call at most.
PIPELINE_BATCH = 32


class Pop3Service(MailboxService):
    listeners = LISTENERS
    workers = WORKERS
    name = "pop3"

    def __init__(self, app: LedgerMail, view: MailboxViewInterface, wait_for: Callable[[int], None],
                 settings: Settings, tls_context: ssl.SSLContext, throttle: LoginThrottle) -> None:
        super().__init__(app, view, wait_for, settings, tls_context, throttle,
                         settings.pop3.max_connections_per_ip, settings.pop3.max_connections)
        self.maildrops = Maildrops()

    def connection(self, listener: str, implicit_tls: bool, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> Connection:
        # Stopping closes open sessions without their deletions (RFC 1939 §6: only QUIT
        # commits them).
        return Connection(self, listener, implicit_tls, reader, writer)


class Connection(StreamConnection):
    protocol = "POP3"

    def __init__(self, service: Pop3Service, listener: str, implicit_tls: bool,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(service.table, reader, writer)
        self.service = service
        limits = service.settings.pop3
        self.session = Pop3Session(
            service.app, service.view, service.wait_for, service.throttle, service.maildrops, limits,
            service.settings.hostname,
            Peer(ip=self.ip, listener=listener, secure=implicit_tls or is_loopback(self.ip),
                 tls=implicit_tls, can_starttls=not implicit_tls))
        self.lines = LineReader(max_line=limits.max_line)

    def refusal(self, why: str) -> bytes:
        return err(why, "SYS/TEMP")

    def goodbye(self) -> bytes:
        return err("server shutting down", "SYS/TEMP")

    def ended(self) -> None:
        # Whatever happened, a session that did not QUIT deletes nothing.
        self.session.closed()

    async def converse(self) -> None:
        await self.send([self.session.greeting()])
        while not self.closing:
            data = await self._read()
            if not data:
                break
            await self._receive(data)

    def _timeout(self) -> float:
        limits = self.service.settings.pop3
        if self.session.state is not State.AUTHORIZATION:
            return limits.idle_timeout
        left = self.connected_at + limits.login_deadline - asyncio.get_running_loop().time()
        return max(0.0, min(limits.idle_timeout, left))

    async def _read(self) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.read(READ_SIZE), timeout=self._timeout())
        except TimeoutError:
            # RFC 1939 §3: the autologout timer ran out: close without a word (a
            # pipelining client would take any line for an answer); nothing is deleted.
            return b""

    async def _receive(self, data: bytes) -> None:
        self.lines.receive_data(data)
        events = self.lines.events()
        while events and not self.closing:
            if isinstance(events[0], TooLong):
                outcomes = [self.session.refuse_line()]
                events = events[1:]
            else:
                # Pipelined lines go to the worker together (their reads are recorded
                # together); it stops early after one that changes the connection.
                run = 1
                while run < len(events) and run < PIPELINE_BATCH and isinstance(events[run], bytes):
                    run += 1
                batch = [e for e in events[:run] if isinstance(e, bytes)]
                outcomes = await self.service.run(self.session.execute_many, batch)
                events = events[len(outcomes):]
            for outcome in outcomes[:-1]:
                await self.send(outcome.lines)
            outcome = outcomes[-1]
            if outcome.delay:
                await asyncio.sleep(outcome.delay)
            await self.send(outcome.lines)
            if outcome.close:
                self.closing = True
                return
            if outcome.starttls:
                # RFC 2595 §4: what came after STLS in the clear is dropped.
                self.lines.discard()
                await self.start_tls(self.service.tls_context)
                self.session.tls_started()
                return
