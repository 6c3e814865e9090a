"""The SMTP listeners from the settings: ``smtp`` (MX), ``submission`` (STARTTLS) and
``submissions`` (implicit TLS, RFC 8314 §3.3), sharing one handler, one connection
table and one worker pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

from adapters.config import Settings
from adapters.connections import ConnectionTable
from adapters.intake import Intake
from adapters.login_throttle import LoginThrottle
from adapters.smtp import replies
from adapters.smtp.greylist import Greylist
from adapters.smtp.handler import MailHandler
from adapters.smtp.protocol import LedgerSMTP, Listener
from adapters.smtp.rate_limit import OutboundRateLimit
from domain.application.service import LedgerMail

log = logging.getLogger(__name__)

#: listener name -> (kind, implicit TLS)
LISTENERS = {
    "smtp": ("mx", False),
    "submission": ("submission", False),
    "submissions": ("submission", True),
}
#: A TLS handshake that has not finished by then is dropped (a ClientHello never sent).
TLS_HANDSHAKE_TIMEOUT = 30.0
#: Threads for store work: enough for every SMTP transaction in flight to join a commit.
WORKERS = 32
#: How long a stopping server lets transactions already in DATA finish.
DRAIN_SECONDS = 10.0


class SmtpService:
    def __init__(self, app: LedgerMail, settings: Settings, intake: Intake,
                 tls_context: ssl.SSLContext, throttle: LoginThrottle,
                 greylist: Greylist | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context
        self.executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="smtp")
        self.table = ConnectionTable(settings.smtp.max_connections_per_ip, settings.smtp.max_connections)
        self.handler = MailHandler(app, intake, throttle, self.executor,
                                   settings.sqlite_dir, settings.smtp.min_free_bytes,
                                   settings.smtp.hide_client_ip_on_submission,
                                   OutboundRateLimit(settings.outbound.max_messages_per_hour),
                                   greylist)
        self.servers: list[asyncio.base_events.Server] = []

    def listener(self, name: str) -> Listener:
        kind, implicit = LISTENERS[name]
        return Listener(name, kind, implicit, self.settings.hostname, self.settings.smtp,
                        self.settings.max_message_bytes)

    async def start(self, sockets: dict[str, socket.socket]) -> None:
        """Serve on already bound sockets (bound early, so a taken port is a clean error)."""
        loop = asyncio.get_running_loop()
        for name, sock in sockets.items():
            listener = self.listener(name)

            def factory(listener: Listener = listener) -> LedgerSMTP:
                return LedgerSMTP(self.handler, listener, self.table, self.tls_context)

            tls = self.tls_context if listener.implicit_tls else None
            server = await loop.create_server(
                factory, sock=sock, ssl=tls,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if tls else None)
            self.servers.append(server)

    async def stop(self) -> None:
        """Stop accepting, let transactions already storing finish, then close the rest
        with 421 (RFC 5321 §3.8) and wait for the store work to end."""
        for server in self.servers:
            server.close()
        deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
        while any(s.committing for s in self.table.open) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.table.open):
            if not session.committing:
                session.close_with(replies.SHUTTING_DOWN)
        # Closing a TLS connection takes a few loop turns; let them finish.
        while self.table.open and asyncio.get_running_loop().time() < deadline + 2.0:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the cancelled session tasks finish their unwinding
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2.0)
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)
