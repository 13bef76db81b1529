"""Turn queued messages into the exact bytes to hand to the SMTP server.

`Composer.prepare` renders a batch (context from the database in a few
queries, templates compiled once), rewrites links for click tracking, and
assembles each email by hand: RFC 5322 headers folded at 78 columns, RFC 2047
encoded words for anything not plain ASCII, a multipart/alternative body
(text, then HTML) in base64, CRLF line endings, and optionally a DKIM
signature. Building bytes directly costs about a twentieth of
`email.message.EmailMessage` (see the performance notes); the tests parse
every output back with the standard library to hold it to the RFCs.

One bad message (a line break in a name or subject, an invalid address, a
template error) becomes an `Unsendable` with the reason; it never stops the
batch and never reaches a header. A template error is the engine's to fix,
not the customer's: its `Unsendable` says `retry`, and the message waits for
a good template (see `engine.deliver.results`).

Templates are rendered from those the project holds (`Renderer.for_project`):
the version that was checked when the project was loaded or last reloaded.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from sqlmodel import Session

from ..errors import ConfigError, DeliveryError, Problem, RenderError
from ..project import Project, Secrets, pick_text
from ..render import RenderedEmail, Renderer, load_contexts, message_step, track_links
from ..store import Message, MessageKind
from .headers import (
    base64_body,
    feedback_part,
    mailbox,
    message_id_for,
    unsafe_reason,
    unstructured,
    valid_address,
)
from .preview import preview_message
from .servicetags import service_headers
from .tokens import InvalidToken, Signer

DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"Feedback-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)


@dataclass(frozen=True)
class Outgoing:
    """One email ready for SMTP."""

    message_id: int  # message.id
    sender: str  # envelope MAIL FROM
    recipient: str  # envelope RCPT TO
    data: bytes  # the whole RFC 5322 message, CRLF line endings
    header_message_id: str  # the Message-ID header value


@dataclass(frozen=True)
class Unsendable:
    """A message that cannot be sent as it is, and why: a permanent failure, or
    (`retry`) a template error, after which the message waits for a good template."""

    message_id: int
    reason: str
    retry: bool = False


@dataclass(frozen=True)
class Preview:
    """An email exactly as one customer would get it."""

    subject: str
    html: str
    text: str
    data: bytes


class Composer:
    """Renders and composes queued messages; one per process, templates compiled once."""

    def __init__(self, project: Project, secrets: Secrets, *, renderer: Renderer | None = None):
        self.project = project
        self.renderer = renderer or Renderer.for_project(project)
        self._signer = _signer(secrets)
        sending = project.config.sending
        _check_sending(project)
        self.sender = sending.sender.email
        self.domain = self.sender.rsplit("@", 1)[1]
        # VERP: `local+<token>@domain` per message when a bounce address is set.
        self._bounce = sending.bounce_address.rsplit("@", 1) if sending.bounce_address else None
        self._shop = feedback_part(project.config.shop.name) or feedback_part(self.domain)
        self.base_url = project.config.tracking.base_url.rstrip("/")
        self._from = mailbox("From", sending.sender.name, self.sender)
        self._reply_to = f"Reply-To: <{sending.reply_to}>" if sending.reply_to else None
        # Only an address someone reads goes in List-Unsubscribe; the link alone is enough.
        self._mailto = sending.unsubscribe_mailto
        self._dkim = _dkim_key(project)
        self._keep = (
            f"{self.base_url}/u/",
            f"{self.base_url}/o/",
            f"{self.base_url}/c/",
            f"{self.base_url}/s/",
        )
        self._date: tuple[datetime, str] | None = None  # the last Date header made

    # -- public

    def prepare(
        self, session: Session, messages: Sequence[Message], *, now: datetime | None = None
    ) -> list[Outgoing | Unsendable]:
        """One Outgoing or Unsendable per message, in order; never raises for one message.

        `now` is the Date header (the clock if not given). Database errors raise.
        """
        now = now or datetime.now(UTC)
        self.renderer.revalidate()
        contexts = load_contexts(session, self.project, messages, self.links, now=now)
        results: list[Outgoing | Unsendable] = []
        for message, context in zip(messages, contexts, strict=True):
            mid = message.id or 0
            if isinstance(context, Exception):
                results.append(
                    Unsendable(mid, str(context), retry=getattr(context, "retry", False))
                )
                continue
            try:
                results.append(self._compose(message, context, now)[0])
            except RenderError as exc:
                results.append(Unsendable(mid, f"template error: {exc}", retry=True))
            except DeliveryError as exc:
                results.append(Unsendable(mid, str(exc)))
        return results

    def preview(
        self,
        session: Session,
        campaign: str,
        customer_id: int,
        *,
        now: datetime,
        step: str | None = None,
        to: str | None = None,
    ) -> Preview:
        """`campaign`'s email (its `step`; the first if None) for customer
        `customer_id` as they would get it; writes nothing.

        With `to` (a test send), the email is addressed to `to` instead and gets a
        Message-ID of its own, so a mailbox that got an earlier test shows this one.

        Uses the customer's own data (see `preview_message`): their orders (the
        latest one; the first for a welcome), or, for a holiday, the next date of
        one of the campaign's holidays in the calendar. Raises UnknownRecord or
        DataError when the customer, the step or the data the campaign needs is
        missing, DeliveryError when the email cannot be built.
        """
        self.renderer.revalidate()
        message = preview_message(session, self.project, campaign, customer_id, now=now, step=step)
        [context] = load_contexts(session, self.project, [message], self.links, now=now)
        if isinstance(context, Exception):
            raise context
        outgoing, rendered = self._compose(message, context, now, to=to)
        return Preview(rendered.subject, rendered.html, rendered.text, outgoing.data)

    def links(self, message_id: int) -> dict[str, str]:
        return {
            "unsubscribe_url": f"{self.base_url}/u/{self._signer.unsubscribe_token(message_id)}",
            "pixel_url": f"{self.base_url}/o/{self._signer.open_token(message_id)}.gif",
            "survey_url": f"{self.base_url}/s/{self._signer.survey_token(message_id)}",
        }

    # -- steps

    def _compose(
        self, message: Message, context: dict[str, Any], now: datetime, *, to: str | None = None
    ) -> tuple[Outgoing, RenderedEmail]:
        mid = message.id or 0
        customer = context["customer"]
        recipient = to or customer["email"]
        for reason in (
            unsafe_reason("customer name", customer["name"]),
            valid_address(recipient),
        ):
            if reason:
                raise DeliveryError(reason)
        campaign = self.project.campaigns[message.campaign]
        step = message_step(campaign, message)
        locale = context["locale"]
        origin = self.project.campaign_files.get(campaign.name, campaign.name)
        rendered = self.renderer.render_email(
            step.template,
            locale,
            context,
            subject=pick_text(step.subject, locale),
            preheader=pick_text(step.preheader, locale),
            origin=f"{origin} step {step.id}" if step.id else origin,
        )
        reason = unsafe_reason("subject", rendered.subject)
        if reason:
            raise DeliveryError(f"{reason} (after rendering)")
        html = track_links(rendered.html, lambda url: self._click(mid, url), keep=self._keep)
        # The same for every try of a message, not guessable from its dedupe key.
        header_id = message_id_for(
            self._signer.digest(f"test:{secrets.token_hex(16)}" if to else message.dedupe_key),
            self.domain,
        )
        marketing = message.kind != MessageKind.TRANSACTIONAL
        feedback = f"{feedback_part(message.campaign)}:{message.kind}:{self._shop}"
        data = self._assemble(
            "" if to else customer["name"],
            recipient,
            rendered.subject,
            now,
            header_id,
            context["unsubscribe_url"] if marketing else None,
            rendered.text,
            html,
            feedback,
            self._signer.bounce_token(mid),
        )
        outgoing = Outgoing(mid, self.envelope_sender(mid), recipient, data, header_id)
        return outgoing, RenderedEmail(rendered.subject, html, rendered.text)

    def envelope_sender(self, message_id: int) -> str:
        """MAIL FROM for a message: its VERP address, or the From address without one."""
        if self._bounce is None:
            return self.sender
        local, domain = self._bounce
        return f"{local}+{self._signer.bounce_token(message_id)}@{domain}"

    def _click(self, message_id: int, url: str) -> str:
        return f"{self.base_url}/c/{self._signer.click_token(message_id, url)}"

    def _assemble(
        self,
        name: str,
        recipient: str,
        subject: str,
        now: datetime,
        header_id: str,
        unsubscribe_url: str | None,
        text: str,
        html: str,
        feedback: str,
        token: str,
    ) -> bytes:
        boundary = "=_lc_" + header_id[1:33]
        headers = [
            self._from,
            mailbox("To", name, recipient),
            unstructured("Subject", subject),
            self._date_header(now),
            f"Message-ID: {header_id}",
        ]
        if self._reply_to:
            headers.append(self._reply_to)
        headers.append(f"Feedback-ID: {feedback}")
        headers.extend(service_headers(self.project.config.sending.service, token))
        if unsubscribe_url:
            mailto = f",\r\n <mailto:{self._mailto}?subject=unsubscribe>" if self._mailto else ""
            headers.append(f"List-Unsubscribe: <{unsubscribe_url}>{mailto}")
            headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        headers.append("MIME-Version: 1.0")
        headers.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
        head = "\r\n".join(headers).encode("ascii") + b"\r\n\r\n"
        body = b"".join(
            (
                f"--{boundary}\r\n".encode(),
                b'Content-Type: text/plain; charset="utf-8"\r\n',
                b"Content-Transfer-Encoding: base64\r\n\r\n",
                base64_body(text),
                f"--{boundary}\r\n".encode(),
                b'Content-Type: text/html; charset="utf-8"\r\n',
                b"Content-Transfer-Encoding: base64\r\n\r\n",
                base64_body(html),
                f"--{boundary}--\r\n".encode(),
            )
        )
        data = head + body
        if self._dkim is not None:
            data = self._sign(data)
        return data

    def _date_header(self, now: datetime) -> str:
        """`Date: …` for `now`, formatted once for all the emails of a batch."""
        if self._date is None or self._date[0] != now:
            self._date = (now, f"Date: {format_datetime(now.astimezone(UTC))}")
        return self._date[1]

    def _sign(self, data: bytes) -> bytes:
        import dkim

        selector, domain, key = self._dkim  # type: ignore[misc]
        present = [
            h
            for h in DKIM_HEADERS
            if re.search(rb"(?im)^" + h + rb":", data.split(b"\r\n\r\n", 1)[0])
        ]
        try:
            signature = dkim.sign(
                data,
                selector,
                domain,
                key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=present,
            )
        except dkim.DKIMException as exc:
            raise DeliveryError(f"DKIM signing failed: {exc}") from exc
        return bytes(signature) + data


def _check_sending(project: Project) -> None:
    """The config's own header values must be safe and, for addresses, ASCII."""
    sending = project.config.sending
    problems = []
    name_reason = unsafe_reason("the sender's name", sending.sender.name)
    if name_reason:
        problems.append(("sending.from.name", name_reason))
    for key, address in (
        ("sending.from.email", sending.sender.email),
        ("sending.reply_to", sending.reply_to),
        ("sending.unsubscribe_mailto", sending.unsubscribe_mailto),
    ):
        if address is not None and not address.isascii():
            problems.append((key, f"{address!r} is not ASCII (SMTPUTF8 is not supported)"))
    if problems:
        file = next(iter(project.docs), "config.yaml")
        raise ConfigError(
            [
                Problem(file, project.where(file, tuple(key.split("."))), key, reason)
                for key, reason in problems
            ]
        )


def _signer(secrets: Secrets) -> Signer:
    if not secrets.secret:
        raise ConfigError(
            [
                Problem(
                    "environment",
                    None,
                    "LIFECYCLE_SECRET",
                    "is not set: emails need it to sign their open, click and unsubscribe links",
                )
            ]
        )
    try:
        return Signer(secrets.secret)
    except InvalidToken as exc:
        raise ConfigError([Problem("environment", None, "LIFECYCLE_SECRET", str(exc))]) from exc


def _dkim_key(project: Project) -> tuple[bytes, bytes, bytes] | None:
    dkim_config = project.config.sending.dkim
    if dkim_config is None:
        return None
    path = project.root / dkim_config.key_file
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            [Problem("config.yaml", None, "sending.dkim.key_file", f"cannot read {path}: {exc}")]
        ) from exc
    if b"PRIVATE KEY" not in key:
        raise ConfigError(
            [
                Problem(
                    "config.yaml", None, "sending.dkim.key_file", f"{path} is not a PEM private key"
                )
            ]
        )
    return dkim_config.selector.encode(), dkim_config.domain.encode(), key
