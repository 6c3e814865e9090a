"""``ledgermail serve``: every listener in one process, stopped cleanly by Ctrl-C/SIGTERM.

Order matters: the store is opened and checked (durability settings, master key, the
authenticity of every stored event) before any listener accepts a connection; on stop,
listeners close first and the store last.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from typing import TYPE_CHECKING

from adapters import bootstrap
from adapters.config import Settings
from adapters.imap.server import LISTENERS as IMAP_LISTENERS
from adapters.pop3.server import LISTENERS as POP3_LISTENERS
from adapters.smtp.server import LISTENERS as SMTP_LISTENERS
from adapters.tls import TlsConfigError, server_context

if TYPE_CHECKING:
    import uvicorn  # imported only when the HTTP listener is on (issue 9: a server
    # without HTTP does not carry uvicorn, click and their imports)

log = logging.getLogger(__name__)

#: Garbage-collector thresholds for a long-running server (docs/performance.md). A serve
#: process holds a large, long-lived heap (up to 20,000 cached aggregates, sessions);
#: with Python's defaults (700, 10, 10) a SELECT of 10,000 messages, which allocates
#: 10,000 small objects, often set off a full collection that walked all of it: the same
#: SELECT took 25 ms or 90-180 ms. Almost all of our garbage is freed by reference
#: counting; cycles are collected less often, and what start-up built is frozen.
GC_THRESHOLDS = (50_000, 20, 100)

#: The HTTP application, imported by uvicorn (the api package depends on adapters,
#: never the reverse).
HTTP_APP = "api.main:create_app"


def serve(settings: Settings) -> int:
    container = bootstrap.build(settings)
    try:
        if settings.verify_on_start:
            count = bootstrap.verify_event_log(container)
            log.info("authenticated %d stored events", count)
        bootstrap.set_current(container)
        gc.collect()
        gc.freeze()  # what start-up built lives as long as the process: never scan it again
        gc.set_threshold(*GC_THRESHOLDS)
        return asyncio.run(_serve_forever(container))
    finally:
        bootstrap.set_current(None)
        container.close()


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is a one-line error, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def _serve_forever(container: bootstrap.Container) -> int:
    settings = container.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        sockets = bind_listeners(settings)
        tls_context = server_context(settings)
    except (ListenError, TlsConfigError) as error:
        print(f"ledgermail: error: {error}", file=sys.stderr)
        return 1
    if settings.outbound.enabled:
        container.worker = bootstrap.queue_worker(container)
    smtp_sockets = {name: sock for name, sock in sockets.items() if name in SMTP_LISTENERS}
    smtp = bootstrap.smtp_service(container, tls_context)
    await smtp.start(smtp_sockets)
    imap = bootstrap.imap_service(container, tls_context)
    await imap.start({name: sock for name, sock in sockets.items() if name in IMAP_LISTENERS})
    pop3 = bootstrap.pop3_service(container, tls_context)
    await pop3.start({name: sock for name, sock in sockets.items() if name in POP3_LISTENERS})
    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[None]] = []
    if container.worker is not None:
        tasks.append(asyncio.create_task(container.worker.run(stop)))
    if settings.retention.enabled:  # issue 7: retention policies applied as events
        tasks.append(asyncio.create_task(bootstrap.retention_scheduler(container).run(stop)))
    if "http" in sockets:
        import uvicorn

        config = uvicorn.Config(HTTP_APP, factory=True, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve(sockets=[sockets["http"]])))
    listening = ", ".join(f"{name} on {getattr(settings.listen, name)}" for name in sockets) or "nothing"
    print(f"ledgermail serving from {container.settings.store_url.split('@')[-1]}; "
          f"{listening}; Ctrl-C stops", flush=True)
    await stop.wait()
    await smtp.stop()
    await imap.stop()
    await pop3.stop()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    print("ledgermail stopped", flush=True)
    return 0


class ListenError(Exception):
    pass


def bind_listeners(settings: Settings) -> dict[str, socket.socket]:
    """Every configured listener this release serves, bound before any is served."""
    bound: dict[str, socket.socket] = {}
    for name in (*SMTP_LISTENERS, *IMAP_LISTENERS, *POP3_LISTENERS, "http"):
        address = settings.listen.address(name)
        if address is None:
            continue
        try:
            bound[name] = bind(*address)
        except OSError as error:
            for sock in bound.values():
                sock.close()
            raise ListenError(f"cannot listen on {address[0]}:{address[1]} ({name}): "
                              f"{error.strerror}") from None
    return bound
