"""An SMTP listener for the bounce domain: reports arrive straight from the mail system.

A shop can point its bounce domain's MX at the daemon instead of a mailbox
(`bounces.listen: {host, port}`). The listener accepts mail only for the bounce
address and its VERP forms (`bounce+<token>@domain`): any other recipient is
refused at RCPT (550 5.1.1), so it is never an open relay. Each accepted report is
applied in a worker thread before the 250 is answered (a failure to record it is a
451, and the sending server tries again later); a report larger than
`MAX_REPORT_BYTES` is refused at DATA (552 5.3.4), and a session ends after
`MAX_RECIPIENTS` recipients or `TIMEOUT` seconds of silence.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from ..errors import DeliveryError
from .apply import Tally
from .mailboxes import Processor
from .reports import MAX_REPORT_BYTES

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 10
TIMEOUT = 60  # seconds an idle session is kept


class _Handler:
    def __init__(self, listener: BounceListener):
        self.listener = listener

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        if not self.listener.accepts(address):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        # Postfix and Exim write the envelope recipient in no header of a bounce; the
        # VERP address it was sent to is added the way local delivery adds it.
        head = "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos).encode(
            "ascii", "replace"
        )
        try:
            applied = await asyncio.to_thread(self.listener.processor.handle, head + data)
        except Exception:
            log.exception("bounce listener: a report could not be recorded")
            return "451 4.3.0 cannot record the report now, try again later"
        self.listener.tally.add(applied)
        return "250 2.0.0 OK: report received"


class BounceListener:
    """Accepts reports for `bounce_address` on `host:port` (`port=0`: a free one, read
    `.port` after `start()`)."""

    def __init__(self, processor: Processor, bounce_address: str, host: str, port: int):
        self.processor = processor
        local, _, domain = bounce_address.lower().partition("@")
        self._local, self._domain = local, domain
        self.host, self.port = host, port
        self.tally = Tally()
        self.server: asyncio.AbstractServer | None = None
        self.handler = _Handler(self)
        self.sessions: list[SMTP] = []

    def accepts(self, address: str) -> bool:
        local, _, domain = address.lower().partition("@")
        base, _, _ = local.partition("+")
        return domain == self._domain and base == self._local

    def _protocol(self) -> SMTP:
        smtp = SMTP(
            self.handler,
            hostname=self._domain or "lifecycle-bounces",
            ident="lifecycle bounces",
            data_size_limit=MAX_REPORT_BYTES,
            timeout=TIMEOUT,
        )
        self.sessions = [
            s for s in self.sessions if s.transport is not None and not s.transport.is_closing()
        ]
        self.sessions.append(smtp)
        return smtp

    async def start(self) -> BounceListener:
        """Listen; DeliveryError if the port cannot be used."""
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(self._protocol, self.host, self.port)
        except OSError as exc:
            raise DeliveryError(
                f"the bounce listener cannot listen on {self.host}:{self.port}: {exc.strerror}"
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

    async def __aenter__(self) -> BounceListener:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
