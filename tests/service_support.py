"""Running one of ledgermail's protocol services in the test process: on its own event
loop thread, on sockets bound to ports the OS picks, stopped as ``serve`` stops it."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from adapters.bootstrap import Container
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


@dataclass
class RunningService:
    """A service serving on ``ports`` (listener name -> port) from ``loop``'s thread."""

    container: Container
    service: Any
    ports: dict[str, int]
    loop: asyncio.AbstractEventLoop

    @property
    def app(self) -> Any:
        return self.container.app


def read_until_closed(sock: socket.socket | ssl.SSLSocket, buffered: bytes, seconds: float) -> bytes:
    """Read until the server closes; what it said (after ``buffered``, already read).
    Fails if the connection is still open after ``seconds``."""
    sock.settimeout(seconds)
    received = buffered
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, ssl.SSLError):
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"server still open after {seconds}s: {received!r}")
