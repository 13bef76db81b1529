"""A cheap SMTP sink for benchmarks: speaks just enough SMTP, counts, keeps nothing.

aiosmtpd spends about 1 ms of CPU per 22 KB message and tops out near 1,000
messages/s on this machine, so a benchmark against it measures the sink. This
one answers every command with a fixed reply and only looks for the end of
DATA. Extra commands: `XCOUNT` answers `250 <messages received>`, `XSTOP`
ends the process. It prints its port, then exits by itself after --max-seconds.

    python bench/sink_counter.py [--port 0] [--max-seconds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

END = b"\r\n.\r\n"


class Counter:
    messages = 0


class CheapSmtp(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event):
        self.stop = stop
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(END)
                if end < 0:
                    # keep only a tail long enough to hold a split terminator
                    return
                self.buffer = self.buffer[end + len(END) :]
                self.in_data = False
                Counter.messages += 1
                self.transport.write(b"250 2.0.0 Ok\r\n")
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            self.command(line[:4].upper(), line)

    def command(self, verb: bytes, line: bytes) -> None:
        if verb in (b"EHLO", b"HELO"):
            self.transport.write(b"250-sink\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.buffer = b"\r\n" + self.buffer  # a message may be empty
            self.transport.write(b"354 go on\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        elif line.upper() == b"XCOUNT":
            self.transport.write(f"250 {Counter.messages}\r\n".encode())
        elif line.upper() == b"XSTOP":
            self.transport.write(b"221 stopping\r\n")
            self.stop.set()
        else:
            self.transport.write(b"250 Ok\r\n")


async def serve(port: int, max_seconds: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CheapSmtp(stop), "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        print("sink: time is up, exiting", file=sys.stderr)
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_seconds))
