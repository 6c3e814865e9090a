"""Running one of ledgermail's protocol services in the test process: on its own event
loop thread, on sockets bound to ports the OS picks, stopped as ``serve`` stops it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapters.serve import bind


def bound(*names: str) -> tuple[dict[str, socket.socket], dict[str, int]]:
    sockets = {name: bind("127.0.0.1", 0) for name in names}
    return sockets, {name: sock.getsockname()[1] for name, sock in sockets.items()}


@contextmanager
def on_a_thread(service: Any, sockets: dict[str, socket.socket],
                what: str) -> Iterator[asyncio.AbstractEventLoop]:
    """``service.start(sockets)`` on a new loop in a thread; ``service.stop()`` after."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(service.start(sockets))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name=f"{what}-test-server", daemon=True)
    thread.start()
    assert started.wait(10), f"{what} service did not start"
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
