"""The tracking server's HTTP layer: uvicorn with one socket write per response.

uvicorn writes a response's status line and headers as soon as the app starts
the response, and the body in a second write. For a small response such as the
open pixel that is two system calls and two TCP segments where one would do,
and the mail client (or proxy) on the other end wakes up twice. `HttpProtocol`
is uvicorn's own httptools protocol with a transport that holds the writes made
in one turn of the event loop and sends them together at the end of it, so a
response the app produces without waiting in between leaves in one segment.
A streamed response still leaves piece by piece: whatever is held goes out
before the loop waits for anything.

`serve_in_thread` runs the server on an event loop and a thread of its own, so
nothing else the process does on its main loop (the dispatcher's database
calls, a reload) can hold up a pixel, a click or an unsubscribe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport whose writes in one loop turn go out as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._release)
        else:
            self._held.append(data)

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._release()
        self._transport.close()

    def write_eof(self) -> None:
        self._release()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `_CoalescingTransport`."""

    def connection_made(self, transport: Any) -> None:
        held: Any = _CoalescingTransport(transport, self.loop)
        super().connection_made(held)


def server_config(app: ASGIApp, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration the tracking server runs with; `options` add to it."""
    settings: dict[str, Any] = {
        "http": HttpProtocol,
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        "server_header": False,
        # The dashboard decides which peers may speak for others (tracking.trusted_proxies):
        # uvicorn would otherwise take X-Forwarded-For from any local peer as the client.
        "proxy_headers": False,
    }
    settings.update(options)
    return uvicorn.Config(app, **settings)


async def serve_in_thread(server: uvicorn.Server, sockets: list[socket.socket]) -> None:
    """Run `server` on `sockets` in a thread with its own event loop; return when it ends.

    Stop it with `server.should_exit = True`; cancelling the caller does the same
    and still waits for the server's shutdown (its lifespan writes what is pending).
    An exception the server ends with is raised here.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def report(error: BaseException | None) -> None:
        if ended.done():
            return
        if error is None:
            ended.set_result(None)
        else:
            ended.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            asyncio.run(server.serve(sockets=sockets))
        except BaseException as exc:  # handed to the awaiting loop, raised there
            error = exc
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(report, error)

    thread = threading.Thread(target=run, name="tracking-server", daemon=True)
    thread.start()
    try:
        await asyncio.shield(ended)
    except asyncio.CancelledError:
        server.should_exit = True
        await asyncio.to_thread(thread.join)
        raise
