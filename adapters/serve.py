"""``ledgermail serve``: every listener in one process, stopped cleanly by Ctrl-C/SIGTERM.

Order matters: the store is opened and checked (durability settings, master key, the
authenticity of every stored event) before any listener accepts a connection; on stop,
listeners close first and the store last.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

import uvicorn

from adapters import bootstrap
from adapters.config import Settings

log = logging.getLogger(__name__)

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
    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[None]] = []
    http = settings.listen.address("http")
    if http is not None:
        try:
            listening = bind(*http)
        except OSError as error:
            print(f"ledgermail: error: cannot listen on {http[0]}:{http[1]} (http): "
                  f"{error.strerror}", file=sys.stderr)
            return 1
        config = uvicorn.Config(HTTP_APP, factory=True, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve(sockets=[listening])))
    print(f"ledgermail serving from {container.settings.store_url.split('@')[-1]}; "
          f"http on {settings.listen.http or 'off'}; Ctrl-C stops", flush=True)
    await stop.wait()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    print("ledgermail stopped", flush=True)
    return 0
