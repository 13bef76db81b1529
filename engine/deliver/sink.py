"""A development mail sink: an SMTP server that keeps every message as an .eml file.

`lifecycle sink` runs it on its own; the daemon runs `MailSink` inside its own
event loop for `make demo`. Each message is written atomically (a temporary
file, then a rename) as `<UTC time>-<counter>.eml`, and one line per message
says when, to whom and the subject (decoded).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any, Self

from aiosmtpd.smtp import SMTP, Envelope, Session

from ..errors import DeliveryError

Clock = Callable[[], datetime]


def _clock() -> datetime:
    return datetime.now(UTC)


def summary(at: datetime, recipients: list[str], data: bytes) -> str:
    """'12:00:01  to a@example.com  Subject text' with the subject decoded."""
    headers = BytesHeaderParser(policy=default).parsebytes(data)
    subject = str(headers.get("Subject", "(no subject)")).replace("\n", " ").replace("\r", "")
    return f"{at:%H:%M:%S}  to {', '.join(recipients)}  {subject}"


class _Handler:
    def __init__(self, sink: MailSink):
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        try:
            self.sink.store(list(envelope.rcpt_tos), data)
        except OSError as exc:
            return f"451 4.3.0 cannot store the message: {exc.strerror}"
        return "250 2.0.0 OK: kept in the outbox folder"


class LoopServer:
    """An aiosmtpd server inside the running event loop: `start`, `stop`, or `async with`.
    A subclass makes each session's protocol (`_protocol`) and says what it is
    (`what`, for errors). `port=0` picks a free port (read `.port` after `start()`)."""

    what = "the SMTP server"

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.server: asyncio.AbstractServer | None = None
        self.sessions: list[SMTP] = []

    def _protocol(self) -> SMTP:
        raise NotImplementedError

    def _session(self, smtp: SMTP) -> SMTP:
        """Keep `smtp` to close at `stop` (dropping the sessions already closed)."""
        self.sessions = [
            s for s in self.sessions if s.transport is None or not s.transport.is_closing()
        ]
        self.sessions.append(smtp)
        return smtp

    async def start(self) -> Self:
        """Listen; raise DeliveryError if the port cannot be used."""
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(self._protocol, self.host, self.port)
        except OSError as exc:
            raise DeliveryError(
                f"{self.what} cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for smtp in self.sessions:
            if smtp.transport is not None:
                smtp.transport.close()
        await self.server.wait_closed()
        self.server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class MailSink(LoopServer):
    """Accepts mail on `host:port` and keeps it in `directory`.

    `port=0` picks a free port (read `.port` after `start()`). `echo` gets the
    one-line summary of each message (default: print).
    """

    what = "the mail sink"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 8025,
        *,
        echo: Callable[[str], None] | None = print,
        clock: Clock = _clock,
    ):
        super().__init__(host, port)
        self.directory = Path(directory)
        self.echo = echo
        self.clock = clock
        self.count = 0
        self.handler = _Handler(self)

    def _protocol(self) -> SMTP:
        return self._session(SMTP(self.handler, hostname="lifecycle-sink", ident="lifecycle sink"))

    async def start(self) -> Self:
        """Listen; raise DeliveryError if the folder or the port cannot be used."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"cannot create the outbox folder {self.directory}: {exc}") from exc
        return await super().start()

    def store(self, recipients: list[str], data: bytes) -> Path:
        """Write one message atomically; return its path."""
        at = self.clock()
        self.count += 1
        name = f"{at:%Y%m%dT%H%M%S.%f}Z-{self.count:06d}.eml"
        path = self.directory / name
        partial = self.directory / f".{name}.part"
        partial.write_bytes(data)
        os.replace(partial, path)
        if self.echo is not None:
            self.echo(summary(at, recipients, data))
        return path


async def start_sink(
    host: str, port: int, directory: str | os.PathLike[str], **kw: Any
) -> MailSink:
    """Start a sink inside the running event loop; `await sink.stop()` ends it."""
    return await MailSink(directory, host, port, **kw).start()


async def serve_sink(
    host: str, port: int, directory: str | os.PathLike[str], stop: asyncio.Event | None = None
) -> None:
    """Run a sink until `stop` is set (or forever)."""
    async with MailSink(directory, host, port) as sink:
        print(f"mail sink listening on {sink.host}:{sink.port}, keeping mail in {directory}/")
        await (stop or asyncio.Event()).wait()
