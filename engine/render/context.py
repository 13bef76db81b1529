"""What a template sees: plain dicts built from the database for a batch of messages.

`load_contexts` reads everything a batch needs in a handful of queries (one per
table, in `contextload`), never one per message, and returns one context dict
per message, built from the pieces in `contextparts`, or a `ContextError` saying
why that message cannot be rendered. Templates never get ORM objects, the config
or the environment: only the keys listed in `load_contexts`.

`samplecontext` builds the same shape from made-up data, for checking templates
without a database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import Session

from ..errors import DeliveryError
from ..project import Project
from ..store import Message, MessageKind
from .contextload import Batch, credit_id, load
from .contextparts import (
    base_context,
    customer_context,
    holiday_name,
    language,
    offers_context,
    order_context,
    product_name,
    shop_context,
)

# Links a message carries: {"unsubscribe_url": …, "pixel_url": …}, from its id.
Links = Callable[[int], dict[str, str]]


class ContextError(DeliveryError):
    """The data one message needs is missing or inconsistent."""


def load_contexts(
    session: Session, project: Project, messages: Sequence[Message], links: Links
) -> list[dict[str, Any] | ContextError]:
    """One template context per message (same order), or the ContextError for it.

    Keys: shop, customer, order, holiday, offers, item, credit, preheader,
    subject, unsubscribe_url, pixel_url, is_marketing, campaign, locale, lang,
    timezone, currency. Keys a campaign has no use for are None (or []).
    """
    batch = load(session, project, messages)
    shops: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any] | ContextError] = []
    for message in messages:
        try:
            out.append(_context(project, batch, shops, message, links))
        except ContextError as exc:
            out.append(exc)
    return out


def _context(
    project: Project,
    batch: Batch,
    shops: dict[str, dict[str, Any]],
    message: Message,
    links: Links,
) -> dict[str, Any]:
    mid = message.id
    campaign = project.campaigns.get(message.campaign)
    if campaign is None:
        raise ContextError(f"message {mid}: no campaign named {message.campaign!r}")
    customer = batch.customers.get(message.customer_id)
    if customer is None:
        raise ContextError(f"message {mid}: customer {message.customer_id} does not exist")
    locale = customer.locale or project.config.shop.locale
    lang = language(locale)
    if locale not in shops:
        shops[locale] = shop_context(project, locale)
    extra = message.context or {}
    order = None
    if message.order_id is not None:
        row = batch.orders.get(message.order_id)
        if row is None:
            raise ContextError(f"message {mid}: order {message.order_id} does not exist")
        order = order_context(row, batch.lines.get(row.id, []), lang)
    item = credit = None
    if message.order_item_id is not None:
        item, credit = _refund(batch, message, lang, extra)
    holiday = None
    offers: list[dict[str, Any]] = []
    if message.holiday is not None:
        holiday = {
            "id": message.holiday,
            "name": holiday_name(project, message.holiday, extra.get("holiday_name"), locale),
            "date": message.holiday_date,
        }
        key = (campaign.name, lang)
        if key not in batch.offers:
            batch.offers[key] = offers_context(campaign, batch.products, lang)
        offers = batch.offers[key]
    return base_context(
        project,
        campaign,
        shop=shops[locale],
        customer=customer_context(customer.name, customer.email, locale),
        timezone=customer.timezone or project.config.shop.timezone,
        is_marketing=message.kind != MessageKind.TRANSACTIONAL,
        links=links(mid or 0),
        order=order,
        holiday=holiday,
        offers=offers,
        item=item,
        credit=credit,
    )


def _refund(
    batch: Batch, message: Message, lang: str, extra: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    mid = message.id
    line = batch.line_by_id.get(message.order_item_id or 0)
    if line is None:
        raise ContextError(f"message {mid}: order item {message.order_item_id} does not exist")
    order = batch.orders.get(line.order_id)
    quantity = extra.get("quantity", line.quantity)
    try:
        quantity = int(quantity)
    except (TypeError, ValueError) as exc:
        raise ContextError(f"message {mid}: quantity is not a whole number: {quantity!r}") from exc
    item = {
        "product_name": product_name(line, lang),
        "sku": line.sku,
        "quantity": quantity,
        "unit_price_paid": _decimal(extra.get("old_price", line.unit_price), "old_price", mid),
        "new_price": _decimal(extra.get("new_price"), "new_price", mid),
        "order_number": order.external_id if order is not None else "",
    }
    credit_row = batch.credits.get(credit_id(message) or 0)
    credit = {
        "amount": _decimal(extra.get("amount"), "amount", mid),
        "created_at": credit_row.created_at if credit_row is not None else message.created_at,
    }
    return item, credit


def _decimal(value: Any, what: str, message_id: int | None) -> Decimal:
    if isinstance(value, float) or value is None:
        raise ContextError(f"message {message_id}: {what} must be a decimal string, got {value!r}")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ContextError(f"message {message_id}: {what} is not a number: {value!r}") from exc
    if not number.is_finite():
        raise ContextError(f"message {message_id}: {what} is not a finite number: {value!r}")
    return number
