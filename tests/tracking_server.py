"""The tracking app served over real HTTP on loopback, as the daemon serves it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from engine.track.httpserver import serve_in_thread, server_config


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (its own thread and loop) until the block ends; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, log_level="warning"))
    outer = threading.Thread(
        target=lambda: asyncio.run(serve_in_thread(server, [sock])), daemon=True
    )
    outer.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert outer.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        outer.join(15)
        sock.close()
        assert not outer.is_alive(), "the server did not stop"
