"""The tracking server's HTTP layer over real sockets: one write per response, nothing held back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from engine.track.httpserver import HttpProtocol, server_config
from tests.daemon_fixtures import free_port

PIXEL_SIZE = 43


class _CountingTransport:
    """Passes everything to the real socket transport, counting the writes that reach it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]):
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def counting(base: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    class Counting(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(_CountingTransport(transport, writes))

    return Counting


def make_app(released: asyncio.Event) -> Starlette:
    async def pixel(request: Request) -> Response:
        return Response(b"G" * PIXEL_SIZE, media_type="image/gif")

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await released.wait()  # the client has the first chunk before we go on
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    return Starlette(routes=[Route("/o/x.gif", pixel), Route("/stream", stream)])


async def serving(protocol: type[HttpToolsProtocol], scenario: Callable[..., Any]) -> None:
    released = asyncio.Event()
    port = free_port()
    config = server_config(
        make_app(released), host="127.0.0.1", port=port, http=protocol, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await asyncio.wait_for(scenario(reader, writer, released), 10)
        finally:
            writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, *extra: str
) -> bytes:
    headers = "".join(f"{line}\r\n" for line in extra)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@pytest.mark.parametrize(("protocol", "expected"), [(HttpProtocol, 1), (HttpToolsProtocol, 2)])
def test_a_small_response_leaves_in_one_write(protocol, expected):
    """The shipped protocol sends headers and body together; plain uvicorn takes two writes."""
    writes: list[bytes] = []

    async def scenario(reader, writer, released) -> None:
        for _ in range(3):  # keep-alive: every response on the connection
            writes.clear()
            response = await get(reader, writer, "/o/x.gif")
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
            assert response.endswith(b"\r\n\r\n" + b"G" * PIXEL_SIZE)
            assert len(writes) == expected
            assert b"".join(writes) == response

    asyncio.run(serving(counting(protocol, writes), scenario))


def test_a_closing_response_is_sent_whole_before_the_connection_closes():
    async def scenario(reader, writer, released) -> None:
        response = await get(reader, writer, "/o/x.gif", "Connection: close")
        assert response.endswith(b"G" * PIXEL_SIZE)
        assert await reader.read() == b""  # then the server closed the connection

    asyncio.run(serving(HttpProtocol, scenario))


def test_a_streamed_response_is_not_held_back():
    """Each chunk leaves when it is produced: the client reads the first one
    while the app is still waiting to produce the second."""

    async def scenario(reader, writer, released) -> None:
        writer.write(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        assert await reader.readuntil(b"first\n\r\n") == b"6\r\nfirst\n\r\n"
        released.set()
        assert await reader.readuntil(b"0\r\n\r\n") == b"7\r\nsecond\n\r\n0\r\n\r\n"

    asyncio.run(serving(HttpProtocol, scenario))
