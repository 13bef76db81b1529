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

from aiosmtpd.smtp import SMTP, Envelope, Session

from ..deliver import LoopServer
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


class BounceListener(LoopServer):
    """Accepts reports for `bounce_address` on `host:port` (`port=0`: a free one, read
    `.port` after `start()`)."""

    what = "the bounce listener"

    def __init__(self, processor: Processor, bounce_address: str, host: str, port: int):
        super().__init__(host, port)
        self.processor = processor
        local, _, domain = bounce_address.lower().partition("@")
        self._local, self._domain = local, domain
        self.tally = Tally()
        self.handler = _Handler(self)

    def accepts(self, address: str) -> bool:
        local, _, domain = address.lower().partition("@")
        base, _, _ = local.partition("+")
        return domain == self._domain and base == self._local

    def _protocol(self) -> SMTP:
        return self._session(
            SMTP(
                self.handler,
                hostname=self._domain or "lifecycle-bounces",
                ident="lifecycle bounces",
                data_size_limit=MAX_REPORT_BYTES,
                timeout=TIMEOUT,
            )
        )
