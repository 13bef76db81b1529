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
batch and never reaches a header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from .config import EMAIL, FirstOrder, HolidayTrigger, PriceDrop, pick_text
from .context import holiday_name, load_contexts
from .errors import ConfigError, DataError, DeliveryError, Problem, UnknownRecord
from .formatting import round_money
from .links import track_links
from .loader import Project, Secrets
from .models import Customer, Message, MessageKind, Order, OrderItem, Product
from .render import RenderedEmail, Renderer
from .tokens import InvalidToken, Signer

LINE = 78  # preferred header line length (RFC 5322 2.1.1)
DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_WORDS = re.compile(r"\S+\s*|\s+")


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
    """A message that cannot be sent as it is, and why (a permanent failure)."""

    message_id: int
    reason: str


@dataclass(frozen=True)
class Preview:
    """An email exactly as one customer would get it."""

    subject: str
    html: str
    text: str
    data: bytes


# ---------------------------------------------------------------- headers


def unsafe_reason(what: str, value: str) -> str | None:
    """Why `value` must not reach a header (a CR, LF or NUL), or None."""
    if "\r" in value or "\n" in value:
        return f"{what} contains a line break"
    if "\x00" in value:
        return f"{what} contains a NUL character"
    return None


def encoded_words(text: str, used: int, *, at_spaces: bool = False) -> list[str]:
    """`text` as RFC 2047 base64 encoded words, one per line, the first after `used` columns.

    Words break on character boundaries, never inside a UTF-8 sequence. With
    `at_spaces` (display names) they break after a space where they can: RFC 2047
    readers drop the folding whitespace between encoded words, and Python's own
    phrase parser keeps it, so breaking between words reads right in both.
    """
    words: list[str] = []
    budget = (LINE - used - 12) // 4 * 3
    if len(text.encode("utf-8")) <= budget:  # one word: no piece can overflow
        return [_encoded_word(text)]
    pieces = _WORDS.findall(text) if at_spaces else text
    chunk = ""
    size = 0  # UTF-8 bytes of chunk
    for piece in pieces:
        length = len(piece.encode("utf-8"))
        if chunk and size + length > budget:
            words.append(chunk)
            chunk = ""
            size = 0
            budget = (LINE - 1 - 12) // 4 * 3
        while length > budget:  # one word longer than a line
            head = _fit(piece, budget)
            words.append(head)
            piece = piece[len(head) :]
            length = len(piece.encode("utf-8"))
            budget = (LINE - 1 - 12) // 4 * 3
        chunk += piece
        size += length
    if chunk or not words:
        words.append(chunk)
    return [_encoded_word(w) for w in words]


def _encoded_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _fit(text: str, budget: int) -> str:
    """The longest prefix of `text` whose UTF-8 fits in `budget` bytes (at least one char)."""
    size = 0
    for i, char in enumerate(text):
        size += len(char.encode("utf-8"))
        if size > budget:
            return text[: max(i, 1)]
    return text


def _fold_ascii(text: str, used: int) -> list[str] | None:
    """Plain ASCII split at spaces into lines of at most 78 columns, or None if it can't be."""
    lines: list[str] = []
    current = ""
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        width = used if not lines else 0
        if current and width + len(current) + len(piece) > LINE:
            lines.append(current)
            current = piece
        else:
            current += piece
    lines.append(current)
    if any(len(line) > 998 - used for line in lines) or any(not line.strip() for line in lines[1:]):
        return None
    return lines


def unstructured(name: str, value: str) -> str:
    """`Name: value` folded, with encoded words when `value` is not plain ASCII."""
    prefix = f"{name}: "
    lines = None
    if _PRINTABLE_ASCII.match(value) and "=?" not in value and value == value.strip():
        lines = _fold_ascii(value, len(prefix))
    if lines is None:
        lines = encoded_words(value, len(prefix))
        return prefix + "\r\n ".join(lines)
    return prefix + "\r\n".join(lines)


def mailbox(name: str, display: str, address: str) -> str:
    """`Name: "Display" <address>`, the display name quoted or encoded as needed."""
    prefix = f"{name}: "
    if not display:
        return f"{prefix}<{address}>"
    quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    plain = _PRINTABLE_ASCII.match(display) and "=?" not in display
    if plain and len(prefix) + len(quoted) + len(address) + 3 <= LINE:
        return f"{prefix}{quoted} <{address}>"
    words = encoded_words(display, len(prefix), at_spaces=True)
    last = len(words[-1]) + (len(prefix) if len(words) == 1 else 1)
    tail = f" <{address}>" if last + len(address) + 3 <= LINE else f"\r\n <{address}>"
    return prefix + "\r\n ".join(words) + tail


def _base64_body(text: str) -> bytes:
    """`text` as UTF-8 in base64, 76 characters a line, each line ending in CRLF.

    The same bytes as `base64.encodebytes` with CRLF, from one encoder call
    instead of one per 57-byte line.
    """
    if not text:
        return b""
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False)
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    lines.append(b"")
    return b"\r\n".join(lines)


def message_id_for(dedupe_key: str, domain: str) -> str:
    """A Message-ID that is the same every time the same email is built."""
    return f"<{hashlib.sha256(dedupe_key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


def valid_address(address: str) -> str | None:
    """Why `address` cannot be a recipient, or None."""
    reason = unsafe_reason("recipient address", address)
    if reason:
        return reason
    if not address.isascii():
        return f"recipient address {address!r} is not ASCII (SMTPUTF8 is not supported)"
    if not EMAIL.match(address):
        return f"recipient address {address!r} is not a valid email address"
    return None


# ---------------------------------------------------------------- composer


class Composer:
    """Renders and composes queued messages; one per process, templates compiled once."""

    def __init__(self, project: Project, secrets: Secrets, *, renderer: Renderer | None = None):
        self.project = project
        self.renderer = renderer or Renderer(project.templates_dir)
        self._signer = _signer(secrets)
        sending = project.config.sending
        _check_sending(project)
        self.sender = sending.sender.email
        self.domain = self.sender.rsplit("@", 1)[1]
        self.base_url = project.config.tracking.base_url.rstrip("/")
        self._from = mailbox("From", sending.sender.name, self.sender)
        self._reply_to = f"Reply-To: <{sending.reply_to}>" if sending.reply_to else None
        # Only an address someone reads goes in List-Unsubscribe; the link alone is enough.
        self._mailto = sending.unsubscribe_mailto
        self._dkim = _dkim_key(project)
        self._keep = (f"{self.base_url}/u/", f"{self.base_url}/o/", f"{self.base_url}/c/")
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
        contexts = load_contexts(session, self.project, messages, self.links)
        results: list[Outgoing | Unsendable] = []
        for message, context in zip(messages, contexts, strict=True):
            mid = message.id or 0
            if isinstance(context, Exception):
                results.append(Unsendable(mid, str(context)))
                continue
            try:
                results.append(self._compose(message, context, now)[0])
            except DeliveryError as exc:
                results.append(Unsendable(mid, str(exc)))
        return results

    def preview(
        self, session: Session, campaign: str, customer_id: int, *, now: datetime
    ) -> Preview:
        """`campaign` for customer `customer_id` as they would get it; writes nothing.

        Uses the customer's own orders (the latest one; the first for a welcome),
        or, for a holiday, the next date of one of the campaign's holidays in the
        calendar. Raises UnknownRecord or DataError when the
        customer or the data the campaign needs is missing, DeliveryError when
        the email cannot be built.
        """
        self.renderer.revalidate()
        message = preview_message(session, self.project, campaign, customer_id, now=now)
        [context] = load_contexts(session, self.project, [message], self.links)
        if isinstance(context, Exception):
            raise context
        outgoing, rendered = self._compose(message, context, now)
        return Preview(rendered.subject, rendered.html, rendered.text, outgoing.data)

    def links(self, message_id: int) -> dict[str, str]:
        return {
            "unsubscribe_url": f"{self.base_url}/u/{self._signer.unsubscribe_token(message_id)}",
            "pixel_url": f"{self.base_url}/o/{self._signer.open_token(message_id)}.gif",
        }

    # -- steps

    def _compose(
        self, message: Message, context: dict[str, Any], now: datetime
    ) -> tuple[Outgoing, RenderedEmail]:
        mid = message.id or 0
        customer = context["customer"]
        recipient = customer["email"]
        for reason in (
            unsafe_reason("customer name", customer["name"]),
            valid_address(recipient),
        ):
            if reason:
                raise DeliveryError(reason)
        campaign = self.project.campaigns[message.campaign]
        locale = context["locale"]
        rendered = self.renderer.render_email(
            campaign.template,
            locale,
            context,
            subject=pick_text(campaign.subject, locale),
            preheader=pick_text(campaign.preheader, locale),
            origin=self.project.campaign_files.get(campaign.name, campaign.name),
        )
        reason = unsafe_reason("subject", rendered.subject)
        if reason:
            raise DeliveryError(f"{reason} (after rendering)")
        html = track_links(rendered.html, lambda url: self._click(mid, url), keep=self._keep)
        header_id = message_id_for(message.dedupe_key, self.domain)
        marketing = message.kind != MessageKind.TRANSACTIONAL
        data = self._assemble(
            customer["name"],
            recipient,
            rendered.subject,
            now,
            header_id,
            context["unsubscribe_url"] if marketing else None,
            rendered.text,
            html,
        )
        outgoing = Outgoing(mid, self.sender, recipient, data, header_id)
        return outgoing, RenderedEmail(rendered.subject, html, rendered.text)

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
                _base64_body(text),
                f"--{boundary}\r\n".encode(),
                b'Content-Type: text/html; charset="utf-8"\r\n',
                b"Content-Transfer-Encoding: base64\r\n\r\n",
                _base64_body(html),
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


# ---------------------------------------------------------------- preview


def preview_message(
    session: Session, project: Project, campaign_name: str, customer_id: int, *, now: datetime
) -> Message:
    """An unsaved message of `campaign_name` for the customer, like the planner would queue."""
    campaign = project.campaigns.get(campaign_name)
    if campaign is None:
        known = ", ".join(sorted(project.campaigns))
        raise UnknownRecord(f"no campaign named {campaign_name!r} (known: {known})")
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise UnknownRecord(f"no customer with id {customer_id}")
    message = Message(
        id=0,
        dedupe_key=f"preview:{campaign.name}:{customer_id}",
        campaign=campaign.name,
        kind=campaign.kind,
        customer_id=customer_id,
        occurrence="preview",
        created_at=now,
        send_after=now,
        context={},
    )
    trigger = campaign.trigger
    if isinstance(trigger, HolidayTrigger):
        holiday, day, name = _next_holiday(session, project, trigger, now)
        message.holiday = holiday
        message.holiday_date = day
        message.context = {"holiday_name": name}
        return message
    order = _order_for(session, customer_id, first=isinstance(trigger, FirstOrder))
    if order is None:
        raise DataError(
            f"customer {customer_id} has no orders, and the {campaign.name} email is about one"
        )
    message.order_id = order.id
    if isinstance(trigger, PriceDrop):
        _preview_refund(session, message, order.id)
    return message


def _next_holiday(
    session: Session, project: Project, trigger: HolidayTrigger, now: datetime
) -> tuple[str, date, Any]:
    """The campaign's next holiday from the calendar, else its first one, days_before ahead."""
    from .calendar import holiday_dates

    today = now.date()
    for holiday in holiday_dates(project, [today.year, today.year + 1], session.connection()):
        if holiday.id in trigger.holidays and holiday.date >= today:
            return holiday.id, holiday.date, holiday.name
    first = trigger.holidays[0]
    day = today + timedelta(days=trigger.days_before)
    return first, day, holiday_name(project, first, None, "en")


def _order_for(session: Session, customer_id: int, *, first: bool) -> Order | None:
    placed = col(Order.placed_at)
    query = (
        select(Order)
        .where(col(Order.customer_id) == customer_id)
        .order_by(placed if first else placed.desc(), col(Order.id))
        .limit(1)
    )
    return session.execute(query).scalars().first()


def _preview_refund(session: Session, message: Message, order_id: int | None) -> None:
    row = session.execute(
        select(OrderItem, Product)
        .join(Product, col(Product.id) == col(OrderItem.product_id))
        .where(col(OrderItem.order_id) == order_id)
        .order_by(col(OrderItem.id))
        .limit(1)
    ).first()
    if row is None:
        raise DataError(f"order {order_id} has no items")
    item, product = row
    paid = item.unit_price
    new = product.price if product.price < paid else round_money(paid * Decimal("0.9"))
    message.order_item_id = item.id
    message.context = {
        "old_price": str(paid),
        "new_price": str(new),
        "quantity": item.quantity,
        "amount": str((paid - new) * item.quantity),
    }
