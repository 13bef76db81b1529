"""Mailers: hand prebuilt message bytes to an SMTP server and say what happened.

`Mailer` is the port the dispatcher knows. `SmtpMailer` is the real thing: a
pool of reused aiosmtplib connections sharing one token-bucket rate limit,
each connection recycled every `recycle_after` messages and on a 421.
`MemoryMailer` keeps messages in a list, for tests and `--dry-run`.

This is the only module that imports aiosmtplib. Every outcome of a send is a
`SendResult`, never an exception:

- SENT: the server answered 250 after the message data.
- TRANSIENT: 4xx, connection refused, disconnect or timeout before the message
  data went out: retry.
- PERMANENT: 5xx for this recipient or this message (with the enhanced code).
  `per_recipient` says the refusal is about the recipient alone (5.1.x and
  5.2.x, or a 550/551/553 "no such user" without an enhanced code);
  `bad_mailbox`, that the address itself is wrong and is to be suppressed.
- SYSTEMIC: the server refuses everyone (auth 535, any 5.7.x, 5xx for the
  sender or the greeting): stop sending, blame no recipient.
- IN_DOUBT: disconnect or timeout once the message data went out: the server
  may have accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from sqlalchemy.engine import Engine

from ..project import Project, Secrets, Sending, Smtp
from .ratelimit import SLOT_LEASE, SLOT_WAIT, SharedRate, SharedSlots, slot_owner

_UNREACHABLE = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
)
_UNSAFE = re.compile(r"[\x00-\x20<>\x7f]")  # never on an envelope line
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# Replies without an enhanced code that still say the mailbox does not exist.
_NO_SUCH_MAILBOX = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|"
    r"mailbox (is )?(unavailable|not found|does not exist|unknown)|"
    r"(user|recipient|address|mailbox) (does not|doesn't) exist|"
    r"recipient (unknown|not found)|invalid (recipient|mailbox)|not a valid mailbox",
    re.IGNORECASE,
)
_MAILBOX_CODES = (550, 551, 553)


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SYSTEMIC = "systemic"
    IN_DOUBT = "in_doubt"


class Stage(StrEnum):
    """Where in the SMTP conversation a send ended."""

    CONNECT = "connect"  # TCP, greeting, EHLO, STARTTLS
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # from the DATA command on: the server may hold the message


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    stage: Stage
    code: int | None = None
    reply: str = ""

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code in the reply ('5.1.1'), if any."""
        match = _ENHANCED.match(self.reply)
        return ".".join(match.groups()) if match else None

    @property
    def bad_mailbox(self) -> bool:
        """A permanent 5.1.x, or a 550/551/553 saying there is no such mailbox
        (without an enhanced code): the address itself is wrong; suppress it."""
        if self.outcome is not Outcome.PERMANENT:
            return False
        enhanced = self.enhanced
        if enhanced is not None:
            return enhanced.startswith("5.1.")
        return self.code in _MAILBOX_CODES and bool(_NO_SUCH_MAILBOX.search(self.reply))

    @property
    def per_recipient(self) -> bool:
        """A permanent refusal of this recipient alone (a bad mailbox, or 5.2.x:
        mailbox full or disabled), which says nothing about the sender."""
        enhanced = self.enhanced or ""
        return self.bad_mailbox or (
            self.outcome is Outcome.PERMANENT and enhanced.startswith("5.2.")
        )

    @property
    def unreachable(self) -> bool:
        """No session with the mail server could be opened (refused, no answer, unknown host)."""
        return (
            self.stage is Stage.CONNECT and self.code is None and self.outcome is Outcome.TRANSIENT
        )

    def describe(self) -> str:
        """One line for logs and `last_error`: code, reply and stage."""
        code = f"{self.code} " if self.code else ""
        return f"{code}{self.reply.strip()} (at {self.stage})".replace("\r", " ").replace("\n", " ")


class Mailer(Protocol):
    """Sends one message at a time; `concurrency` sends may run at once."""

    concurrency: int

    async def send(self, sender: str, recipient: str, data: bytes) -> SendResult: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------- the fake


Responder = Callable[[str, str, bytes], SendResult]


def accept(_sender: str, _recipient: str, _data: bytes) -> SendResult:
    return SendResult(Outcome.SENT, Stage.DATA, 250, "2.0.0 OK: queued in memory")


@dataclass
class MemoryMailer:
    """Keeps every accepted message in `sent`; `respond` decides each outcome."""

    respond: Responder = accept
    concurrency: int = 1
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    closed: bool = False

    async def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        result = self.respond(sender, recipient, data)
        if result.outcome is Outcome.SENT:
            self.sent.append((sender, recipient, data))
        return result

    async def close(self) -> None:
        self.closed = True


# ---------------------------------------------------------------- the real one


class TokenBucket:
    """At most `rate` takes per second on average, bursts up to `capacity`."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:  # waiters queue in order; each waits only for its own token
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class _Connection:
    """One reusable SMTP session; opened on first use, reopened after a failure."""

    def __init__(
        self,
        smtp: Smtp,
        password: str | None,
        recycle_after: int,
        ca_file: Path | None = None,
        slots: SharedSlots | None = None,
    ):
        self.smtp = smtp
        self.password = password
        # The shop's connections (sending.connections for every daemon together): a slot
        # is held while this connection may be open, renewed as it sends.
        self.slots = slots
        self.owner = slot_owner()
        self.slot: int | None = None
        self.renew_at = 0.0
        # TLS checked against the relay's own authority when it has one (sending.smtp.ca_file).
        self.tls_context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self.recycle_after = recycle_after
        self.client: aiosmtplib.SMTP | None = None
        self.count = 0

    def _new_client(self) -> aiosmtplib.SMTP:
        smtp = self.smtp
        return aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            local_hostname=smtp.local_hostname,
            timeout=smtp.timeout.total_seconds(),
            use_tls=smtp.security == "tls",
            start_tls=smtp.security == "starttls",
            username=smtp.username,
            password=self.password if smtp.username else None,
            tls_context=self.tls_context,
        )

    async def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        if not await self._keep_slot():
            return SendResult(
                Outcome.TRANSIENT,
                Stage.CONNECT,
                None,
                "every SMTP connection the shop allows (sending.connections) is in use by other daemons",
            )
        if self.client is None or not self.client.is_connected:
            failure = await self._open()
            if failure is not None:
                return failure
        client = self.client
        assert client is not None
        stage = Stage.MAIL
        handed_over = False
        try:
            # The envelope goes out as is: SmtpMailer.send has checked both addresses.
            reply = await client.execute_command(b"MAIL", b"FROM:<%s>" % sender.encode("ascii"))
            if reply.code == 250:
                stage = Stage.RCPT
                reply = await client.execute_command(
                    b"RCPT", b"TO:<%s>" % recipient.encode("ascii")
                )
            if reply.code in (250, 251):
                stage = Stage.DATA
                reply = await client.execute_command(b"DATA")
            if reply.code == 354:
                handed_over = True
                reply = await _transfer(client, _wire_form(data))
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Disconnects and timeouts: before the message data nothing was handed over.
            self._drop()
            outcome = Outcome.IN_DOUBT if handed_over else Outcome.TRANSIENT
            return SendResult(outcome, stage, None, f"{type(exc).__name__}: {exc}")
        except ValueError as exc:  # an address that cannot go on the wire (not ASCII)
            await self._reset()
            return SendResult(Outcome.PERMANENT, stage, None, f"refused before sending: {exc}")
        if not handed_over or reply.code != 250:
            result = _response_result(reply.code, reply.message, stage)
            await self._after_refusal(reply.code)
            return result
        self.count += 1
        if self.count >= self.recycle_after:
            await self.close()
        return SendResult(Outcome.SENT, Stage.DATA, reply.code, reply.message)

    async def try_slot(self) -> bool:
        """Take one of the shop's free connection slots (one look); True if held."""
        if self.slots is None or self.slot is not None:
            return True
        self.slot = await asyncio.to_thread(self.slots.acquire, self.owner)
        self.renew_at = time.monotonic() + SLOT_LEASE.total_seconds() / 3
        return self.slot is not None

    async def _keep_slot(self) -> bool:
        """Renew this connection's slot when due; if it was lost (its lease ran out and
        another daemon took it), close the session and look for a free one."""
        if self.slots is None or (self.slot is not None and time.monotonic() < self.renew_at):
            return True
        if self.slot is not None and await asyncio.to_thread(
            self.slots.renew, self.slot, self.owner
        ):
            self.renew_at = time.monotonic() + SLOT_LEASE.total_seconds() / 3
            return True
        self._drop()
        self.slot = None
        return await self.try_slot()

    async def _open(self) -> SendResult | None:
        self.client = self._new_client()
        self.count = 0
        try:
            await self.client.connect()
            await _greet(self.client)
        except aiosmtplib.SMTPAuthenticationError as exc:
            self._drop()
            return SendResult(Outcome.SYSTEMIC, Stage.AUTH, exc.code, exc.message)
        except aiosmtplib.SMTPResponseException as exc:  # greeting, EHLO, STARTTLS refused
            self._drop()
            outcome = Outcome.SYSTEMIC if exc.code >= 500 else Outcome.TRANSIENT
            return SendResult(outcome, Stage.CONNECT, exc.code, exc.message)
        except (*_UNREACHABLE, OSError) as exc:
            self._drop()
            return SendResult(Outcome.TRANSIENT, Stage.CONNECT, None, _unreachable(exc, self.smtp))
        except aiosmtplib.SMTPException as exc:  # e.g. AUTH or STARTTLS configured, not offered
            self._drop()
            return SendResult(Outcome.SYSTEMIC, Stage.CONNECT, None, f"{type(exc).__name__}: {exc}")
        return None

    async def _after_refusal(self, code: int) -> None:
        if code == 421:  # the server is closing this session: recycle it
            self._drop()
        else:
            await self._reset()

    async def _reset(self) -> None:
        if self.client is None:
            return
        try:
            await self.client.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await self.client.quit()  # closing anyway; the server may have hung up
        self._drop()
        if self.slots is not None and self.slot is not None:
            slot, self.slot = self.slot, None
            await asyncio.to_thread(self.slots.release, slot, self.owner)


def _unreachable(exc: BaseException, smtp: Smtp) -> str:
    """Why no session with the mail server could be opened, naming the server tried."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    if isinstance(exc, aiosmtplib.SMTPTimeoutError) or isinstance(cause, TimeoutError):
        why = f"no answer within {smtp.timeout.total_seconds():g}s"
    elif getattr(cause, "errno", None) == errno.ECONNREFUSED:
        why = "connection refused (no mail server is listening there)"
    elif isinstance(cause, socket.gaierror):
        why = f"the host name {smtp.host!r} cannot be found"
    else:
        why = f"{type(cause).__name__}: {cause}"
    return f"cannot connect to the mail server at {smtp.host}:{smtp.port}: {why}"


def _response_result(code: int, message: str, stage: Stage) -> SendResult:
    """Classify a refusal by its code, its enhanced code and where it came."""
    result = SendResult(Outcome.TRANSIENT, stage, code, message)
    enhanced = result.enhanced or ""
    if code < 500:
        return result
    if code == 535 or enhanced.startswith("5.7.") or stage in (Stage.CONNECT, Stage.MAIL):
        return SendResult(Outcome.SYSTEMIC, stage, code, message)
    return SendResult(Outcome.PERMANENT, stage, code, message)


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if refused), unless connecting already did it for STARTTLS or AUTH."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()


def _wire_form(data: bytes) -> bytes:
    """`data` as the DATA phase sends it: CRLF line endings, a leading dot doubled
    (RFC 5321 4.5.2), and the closing dot line.

    aiosmtplib's `data()` does this with two regular expressions over the whole
    message, about 200 µs for a 10 KB email, more than all the rest of a send.
    Composed messages already end their lines with CRLF, so a count says so and
    a plain replace doubles the dots; anything else is normalised the slow way.
    """
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\n") or crlf != data.count(b"\r"):
        data = normalize_message_line_endings(data)
    elif not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


async def _transfer(client: aiosmtplib.SMTP, wire: bytes) -> aiosmtplib.SMTPResponse:
    """Send the message data after the server's 354 and read its reply.

    What `SMTP.data()` does after the DATA command, with the data already in
    wire form. The reply is awaited right after the write, with nothing in
    between, as aiosmtplib's protocol requires.
    """
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        protocol.write(wire)
        return await protocol.read_response(timeout=client.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise


class SmtpMailer:
    """A pool of `connections` reused SMTP sessions sharing one rate limit: with an
    `engine`, the shop's (`ratelimit.SharedRate`, whatever the number of daemons);
    without, this mailer's own."""

    def __init__(
        self,
        sending: Sending,
        password: str | None = None,
        engine: Engine | None = None,
        ca_file: Path | None = None,
    ):
        self.concurrency = sending.connections
        slots = SharedSlots(engine, sending.connections) if engine is not None else None
        self.bucket: TokenBucket | SharedRate = (
            SharedRate(engine, sending.rate_per_second)
            if engine is not None
            else TokenBucket(
                sending.rate_per_second, capacity=min(sending.rate_per_second, sending.connections)
            )
        )
        self.slots = slots
        self.pool = [
            _Connection(sending.smtp, password, sending.recycle_after, ca_file, slots)
            for _ in range(sending.connections)
        ]
        self.idle: list[_Connection] = list(self.pool)
        self.returned = asyncio.Event()

    @classmethod
    def from_project(
        cls, project: Project, secrets: Secrets, engine: Engine | None = None
    ) -> SmtpMailer:
        smtp = project.config.sending.smtp
        ca_file = project.root / smtp.ca_file if smtp.ca_file else None
        return cls(project.config.sending, secrets.smtp_password, engine, ca_file)

    async def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        for address in (sender, recipient):
            if _UNSAFE.search(address) or "@" not in address:
                return SendResult(
                    Outcome.PERMANENT, Stage.RCPT, None, f"refused before sending: {address!r}"
                )
        await self.bucket.take()
        connection = await self._connection()
        try:
            return await connection.send(sender, recipient, data)
        finally:
            self.idle.append(connection)
            self.returned.set()

    async def _connection(self) -> _Connection:
        """An idle connection: one holding a slot of the shop's first; else one that can
        take a free slot. While this mailer holds a slot it waits for its own connections
        (never for another daemon's), so no two daemons wait on each other."""
        while True:
            ready = [c for c in self.idle if c.slot is not None or self.slots is None]
            if ready:
                self.idle.remove(ready[-1])
                return ready[-1]
            if self.idle:
                candidate = self.idle.pop()  # out of the list while it looks for a slot
                if await candidate.try_slot():
                    return candidate
                self.idle.append(candidate)
            holding = any(c.slot is not None for c in self.pool)
            self.returned.clear()
            if holding:
                await self.returned.wait()
            else:  # another daemon has every slot: look again soon
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.returned.wait(), SLOT_WAIT)

    async def close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self.pool))

    async def release_idle(self) -> None:
        """Close the idle connections that hold one of the shop's slots, so another
        daemon may use them while this one has nothing to send (the daemon, after a tick)."""
        if self.slots is None:
            return
        idle = [c for c in self.idle if c.slot is not None]
        await asyncio.gather(*(connection.close() for connection in idle))
