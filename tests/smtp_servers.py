"""Scripted SMTP servers for tests: real aiosmtpd on 127.0.0.1, misbehaving on cue.

`Script` is the handler: it records every message the server accepted and can
refuse a recipient, answer MAIL FROM with queued replies, drop the connection
at MAIL FROM, before the 354 to DATA or after DATA, hang after DATA, or reject
every login.
`serving(script)` runs it inside the test's event loop; `ServerThread(script)`
runs it in a thread of its own (for tests with several event loops).
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data)


@dataclass
class Script:
    """An aiosmtpd handler that does what the test tells it to."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)  # recipient → reply
    mail_replies: list[str] = field(default_factory=list)  # replies for the next MAIL FROMs
    drop_at_mail: set[int] = field(default_factory=set)  # close before answering MAIL number n
    drop_after_data: set[str] = field(default_factory=set)  # recipients whose DATA is cut off
    drop_after_rcpt: set[str] = field(default_factory=set)  # hang up once RCPT is answered
    hang_after_data: set[str] = field(default_factory=set)  # recipients whose DATA never ends
    reject_logins: bool = False
    data_delay: float = 0.0  # seconds to think before accepting each message
    starttls: ssl.SSLContext | None = None  # offer STARTTLS and require it
    received: list[Received] = field(default_factory=list)
    mails: int = 0
    connections: int = 0
    logins: int = 0
    open: list[SMTP] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mails += 1
        if self.mails in self.drop_at_mail:
            server.transport.close()
            return "421 4.3.0 going away"
        if self.mail_replies:
            reply = self.mail_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        if address in self.drop_after_rcpt:  # after this reply, before DATA's 354
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipients = set(envelope.rcpt_tos)
        if recipients & self.drop_after_data:
            server.transport.close()
            return "421 4.3.0 cut off"
        if recipients & self.hang_after_data:
            await asyncio.sleep(30)
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        assert envelope.mail_from is not None and envelope.original_content is not None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 Ok: queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.logins += 1
        ok = not self.reject_logins and data.password == b"right-password"
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535

    def protocol(self) -> SMTP:
        self.connections += 1
        smtp = SMTP(
            self,
            hostname="scripted.test",
            authenticator=self.authenticate,
            auth_require_tls=self.starttls is not None,
            tls_context=self.starttls,
            require_starttls=self.starttls is not None,
        )
        self.open.append(smtp)
        return smtp

    def hang_up(self) -> None:
        for smtp in self.open:
            if smtp.transport is not None:
                smtp.transport.close()

    def recipients(self) -> list[str]:
        return [r for item in self.received for r in item.recipients]


@asynccontextmanager
async def serving(script: Script, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serve `script` on 127.0.0.1 in the running loop (over TLS from the first
    byte with `tls`); yield the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(script.protocol, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        script.hang_up()
        await server.wait_closed()


class ServerThread:
    """`script` served from an event loop in its own thread."""

    def __init__(self, script: Script):
        self.script = script
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(self.script.protocol, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()
        self.script.hang_up()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    @contextmanager
    def running(self) -> Iterator[int]:
        self.thread.start()
        assert self.ready.wait(10), "scripted SMTP server did not start"
        try:
            yield self.port
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the certificate file a client must trust."""
    cert, key = certificate(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: `folder`'s cert.pem and key.pem
    (P-256: an RSA key takes openssl up to a second to make)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "1",
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key
