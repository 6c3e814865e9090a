"""What the IMAP and POP3 listeners share (one implementation, not two): the table of
open connections per client address and in total, serving bound sockets with asyncio
streams (implicit TLS where asked), a connection's life (admission, the conversation,
a clean end) and a server stop that says goodbye and then cuts off whoever lingers.

The protocol packages subclass ``StreamConnection`` with their conversation; they never
import each other (DESIGN §1).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from adapters.config import Settings
from adapters.login_throttle import LoginThrottle
from domain.application.service import LedgerMail
from projections.mailbox_view.view import MailboxViewInterface

log = logging.getLogger(__name__)
T = TypeVar("T")

TLS_HANDSHAKE_TIMEOUT = 30.0
READ_SIZE = 65536
#: How long a stopping server waits for connections to close after its goodbye.
STOP_GRACE_SECONDS = 1.0


#: Why a connection is refused; each protocol words it in its own replies.
BUSY = "server busy, try again later"
TOO_MANY_FROM_ADDRESS = "too many connections from your address"


class ConnectionTable:
    """Per-address and total caps for one service (SMTP, IMAP or POP3)."""

    def __init__(self, per_ip: int, total: int) -> None:
        self.per_ip = per_ip
        self.total = total
        self.by_ip: collections.Counter[str] = collections.Counter()
        #: The open connections (StreamConnection, or SMTP's protocol objects).
        self.open: set[Any] = set()

    def admit(self, ip: str) -> str | None:
        """None when admitted (``release`` later), else why not (BUSY or
        TOO_MANY_FROM_ADDRESS)."""
        if len(self.open) >= self.total:
            return BUSY
        if self.by_ip[ip] >= self.per_ip:
            return TOO_MANY_FROM_ADDRESS
        self.by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]


class StreamConnection:
    """One client connection. Subclasses write ``converse`` (the protocol), ``refusal``
    and ``goodbye`` (their wording) and may ``encode`` what goes out (compression).

    Slotted, as are the IMAP subclass and its session state: ten thousand idle IMAP
    connections are ten thousand of these (issue 9)."""

    __slots__ = ("table", "reader", "writer", "ip", "closing", "task", "connected_at")

    protocol = "stream"

    def __init__(self, table: ConnectionTable, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.table = table
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        self.ip = str(peer[0])
        self.closing = False
        self.task: asyncio.Task[Any] | None = None
        self.connected_at = 0.0

    # -- what a protocol provides ---------------------------------------------------------

    async def converse(self) -> None:
        raise NotImplementedError

    def refusal(self, why: str) -> bytes:
        raise NotImplementedError

    def goodbye(self) -> bytes:
        raise NotImplementedError

    def ended(self) -> None:
        """The conversation is over, however it ended."""

    def encode(self, data: bytes) -> bytes:
        return data

    # -- shared ---------------------------------------------------------------------------

    async def run(self) -> None:
        self.task = asyncio.current_task()
        self.connected_at = asyncio.get_running_loop().time()
        why = self.table.admit(self.ip)
        if why is not None:
            with contextlib.suppress(Exception):
                self.writer.write(self.refusal(why))
                await self.writer.drain()
            await self.close()
            return
        self.table.open.add(self)
        try:
            await self.converse()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one connection's bug must not reach the server
            log.exception("%s connection failed", self.protocol)
        finally:
            self.ended()
            try:
                await self.close()
            finally:
                self.table.open.discard(self)
                self.table.release(self.ip)

    async def send(self, lines: list[bytes]) -> None:
        if lines:
            self.writer.write(self.encode(b"".join(lines)))
            await self.writer.drain()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """STARTTLS/STLS: bytes the client sent after the command and before the
        handshake were sent in the clear; they are discarded, never read as commands
        (checklist: command injection, CVE-2011-0411 class)."""
        buffer = getattr(self.reader, "_buffer", None)
        if buffer is not None:
            buffer.clear()
        await self.writer.start_tls(context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)

    def shutdown(self) -> None:
        """The server is stopping: say so and close."""
        self.closing = True
        with contextlib.suppress(Exception):
            self.writer.write(self.encode(self.goodbye()))
            self.writer.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), timeout=2.0)


class StreamReader(asyncio.StreamReader):
    """asyncio's reader, plus ``readable()``: a bare future that is done once a ``read``
    would return at once (bytes buffered, end of stream, or an error). A connection that
    sits idle for long (IMAP IDLE) awaits that instead of a suspended ``read()``, whose
    two coroutine frames and future would be held for the whole wait (issue 9)."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self._ready: asyncio.Future[None] | None = None

    def has_input(self) -> bool:
        """A ``read`` would return at once."""
        return bool(self._buffer) or self._eof or self._exception is not None

    def readable(self) -> asyncio.Future[None]:
        ready = self._loop.create_future()
        if self.has_input():
            ready.set_result(None)
        else:
            self._ready = ready
        return ready

    def _ready_now(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _wakeup_waiter(self) -> None:  # called by feed_data and feed_eof
        super()._wakeup_waiter()
        self._ready_now()

    def set_exception(self, exc: BaseException) -> None:
        super().set_exception(exc)
        self._ready_now()


class _StreamProtocol(asyncio.StreamReaderProtocol):
    """asyncio's stream protocol, less a per-connection deque: ``FlowControlMixin``
    keeps its drain waiters (none, unless the client stops reading) in a
    ``collections.deque``, over 600 bytes even when empty; a list does the same job
    (append, remove, iterate) in 56 (issue 9: 10,000 idle connections)."""

    def __init__(self, reader: asyncio.StreamReader, client_connected_cb: Callable[..., Any],
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(reader, client_connected_cb, loop=loop)
        if not getattr(self, "_drain_waiters", True):
            self._drain_waiters = []  # type: ignore[assignment]


async def listen(sockets: dict[str, socket.socket], implicit_tls: dict[str, bool],
                 tls_context: ssl.SSLContext,
                 connect: Callable[[str, bool, asyncio.StreamReader, asyncio.StreamWriter],
                                   Coroutine[Any, Any, None] | None],
                 ) -> list[asyncio.base_events.Server]:
    """Serve already bound sockets (bound early, so a taken port is a one-line error).

    ``connect`` is a plain function returning the connection's coroutine, which is run
    as the connection's task: no wrapper coroutines stay suspended under it for the
    connection's whole life (each is a frame kept per connection). Readers are
    ``StreamReader`` (this module's)."""
    loop = asyncio.get_running_loop()
    servers = []
    for name, sock in sockets.items():
        implicit = implicit_tls[name]

        def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  name: str = name, implicit: bool = implicit) -> None:
            # The task is made here, not by asyncio's protocol, which would add a
            # done-callback closure per connection (the coroutine catches its errors).
            # The connection keeps it referenced (``StreamConnection.task``).
            coroutine = connect(name, implicit, reader, writer)
            if coroutine is not None:
                loop.create_task(coroutine)

        def factory(serve: Callable[..., Any] = serve) -> _StreamProtocol:
            # What asyncio.start_server does, with the leaner reader and protocol.
            return _StreamProtocol(StreamReader(READ_SIZE, loop), serve, loop)

        servers.append(await loop.create_server(
            factory, sock=sock, ssl=tls_context if implicit else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None))
    return servers


async def stop_serving(servers: list[asyncio.base_events.Server], table: ConnectionTable) -> None:
    """Stop accepting, say goodbye to every open connection, give them a moment to
    close, then cut off the rest (a TLS peer that never answers close_notify)."""
    for server in servers:
        server.close()
    for connection in list(table.open):
        connection.shutdown()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE_SECONDS
    while table.open and loop.time() < deadline:
        await asyncio.sleep(0.02)
    stragglers = [c.task for c in table.open if c.task is not None]
    for connection in list(table.open):
        connection.writer.transport.abort()
    for task in stragglers:
        task.cancel()
    await asyncio.gather(*stragglers, return_exceptions=True)
    for server in servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=2.0)


class MailboxService:
    """What the IMAP and POP3 services share: the store and views their sessions use,
    the worker pool that runs the sessions' commands, the connection table and the
    listeners. A subclass names its listeners and makes its connections."""

    #: listener name -> implicit TLS
    listeners: dict[str, bool] = {}
    workers = 8
    name = "mailbox"

    def __init__(self, app: LedgerMail, view: MailboxViewInterface, wait_for: Callable[[int], None],
                 settings: Settings, tls_context: ssl.SSLContext, throttle: LoginThrottle,
                 per_ip: int, total: int) -> None:
        self.app = app
        self.view = view
        self.wait_for = wait_for
        self.settings = settings
        self.tls_context = tls_context
        self.throttle = throttle
        self.executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)
        self.table = ConnectionTable(per_ip, total)
        self.servers: list[asyncio.base_events.Server] = []

    def connection(self, listener: str, implicit_tls: bool, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> StreamConnection:
        raise NotImplementedError

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """A session call in the worker pool, with the caller's context."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, fn, *args)

    async def start(self, sockets: dict[str, socket.socket]) -> None:
        def connect(name: str, implicit: bool, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> Coroutine[Any, Any, None] | None:
            try:
                return self.connection(name, implicit, reader, writer).run()
            except Exception:  # noqa: BLE001 - one connection's bug must not reach the server
                log.exception("%s connection failed", self.name)
                writer.transport.abort()
                return None

        self.servers = await listen(sockets, self.listeners, self.tls_context, connect)

    async def stop(self) -> None:
        await stop_serving(self.servers, self.table)
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)
