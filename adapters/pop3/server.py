"""The POP3 listeners: ``pop3`` (STLS, RFC 2595 §4) and ``pop3s`` (implicit TLS, RFC 8314
§3.3), on asyncio streams. The only POP3 module that touches sockets.

Each connection cuts lines with the sans-I/O ``LineReader`` and hands each to its
``Pop3Session`` in a worker thread, one at a time (so pipelined commands, RFC 2449
PIPELINING, are answered in order), writing what it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from adapters.config import Settings
from adapters.connections import ConnectionTable
from adapters.login_throttle import LoginThrottle
from adapters.logins import is_loopback
from adapters.pop3.lines import LineReader, TooLong
from adapters.pop3.session import Maildrops, Peer, Pop3Session, State, err
from domain.application.service import LedgerMail
from projections.mailbox_view.view import MailboxViewInterface

log = logging.getLogger(__name__)

#: listener name -> implicit TLS
LISTENERS = {"pop3": False, "pop3s": True}
TLS_HANDSHAKE_TIMEOUT = 30.0
WORKERS = 8
READ_SIZE = 65536
STOP_GRACE_SECONDS = 1.0
#: Pipelined lines handed to one worker call at most.
PIPELINE_BATCH = 32
T = TypeVar("T")


class Pop3Service:
    def __init__(self, app: LedgerMail, view: MailboxViewInterface, wait_for: Callable[[int], None],
                 settings: Settings, tls_context: ssl.SSLContext, throttle: LoginThrottle) -> None:
        self.app = app
        self.view = view
        self.wait_for = wait_for
        self.settings = settings
        self.tls_context = tls_context
        self.throttle = throttle
        self.maildrops = Maildrops()
        self.executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pop3")
        self.table = ConnectionTable(settings.pop3.max_connections_per_ip, settings.pop3.max_connections)
        self.servers: list[asyncio.base_events.Server] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, fn, *args)

    async def start(self, sockets: dict[str, socket.socket]) -> None:
        for name, sock in sockets.items():
            implicit = LISTENERS[name]

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            name: str = name, implicit: bool = implicit) -> None:
                await Connection(self, name, implicit, reader, writer).run()

            server = await asyncio.start_server(
                serve, sock=sock, ssl=self.tls_context if implicit else None,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None, limit=READ_SIZE)
            self.servers.append(server)

    async def stop(self) -> None:
        """Stop accepting; open sessions are closed without their deletions (RFC 1939
        §6: only QUIT commits them)."""
        for server in self.servers:
            server.close()
        for connection in list(self.table.open):
            connection.shutdown()
        deadline = asyncio.get_running_loop().time() + STOP_GRACE_SECONDS
        while self.table.open and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        stragglers = [c.task for c in self.table.open if c.task is not None]
        for connection in list(self.table.open):
            connection.writer.transport.abort()
        for task in stragglers:
            task.cancel()
        await asyncio.gather(*stragglers, return_exceptions=True)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2.0)
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)


class Connection:
    def __init__(self, service: Pop3Service, listener: str, implicit_tls: bool,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.service = service
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        self.ip = str(peer[0])
        limits = service.settings.pop3
        self.session = Pop3Session(
            service.app, service.view, service.wait_for, service.throttle, service.maildrops, limits,
            service.settings.hostname,
            Peer(ip=self.ip, listener=listener, secure=implicit_tls or is_loopback(self.ip),
                 tls=implicit_tls, can_starttls=not implicit_tls))
        self.lines = LineReader(max_line=limits.max_line)
        self.closing = False
        self.task: asyncio.Task[Any] | None = None
        self.connected_at = 0.0

    async def run(self) -> None:
        self.task = asyncio.current_task()
        self.connected_at = asyncio.get_running_loop().time()
        table = self.service.table
        refusal = table.admit(self.ip)
        if refusal is not None:
            with contextlib.suppress(Exception):
                self.writer.write(err(refusal, "SYS/TEMP"))
                await self.writer.drain()
            await self._close()
            return
        table.open.add(self)
        try:
            await self._send([self.session.greeting()])
            while not self.closing:
                data = await self._read()
                if not data:
                    break
                await self._receive(data)
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one connection's bug must not reach the server
            log.exception("POP3 connection failed")
        finally:
            # Whatever happened, a session that did not QUIT deletes nothing.
            self.session.closed()
            try:
                await self._close()
            finally:
                table.open.discard(self)
                table.release(self.ip)

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
                await self._send(outcome.lines)
            outcome = outcomes[-1]
            if outcome.delay:
                await asyncio.sleep(outcome.delay)
            await self._send(outcome.lines)
            if outcome.close:
                self.closing = True
                return
            if outcome.starttls:
                # RFC 2595 §4 / checklist: what came after STLS in the clear is dropped.
                self.lines.discard()
                buffer = getattr(self.reader, "_buffer", None)
                if buffer is not None:
                    buffer.clear()
                await self.writer.start_tls(self.service.tls_context,
                                            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
                self.session.tls_started()
                return

    async def _send(self, lines: list[bytes]) -> None:
        if lines:
            self.writer.write(b"".join(lines))
            await self.writer.drain()

    def shutdown(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            self.writer.write(err("server shutting down", "SYS/TEMP"))
            self.writer.close()

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), timeout=2.0)
