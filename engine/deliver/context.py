"""What a template sees: plain dicts built from the database for a batch of messages.

`load_contexts` reads everything a batch needs in a handful of queries (one per
table: customers, orders, order lines with their products, offered products,
credits), never one per message, and returns one context dict per message, or
a `ContextError` saying why that message cannot be rendered. Templates never
get ORM objects, the config or the environment: only the keys listed in
`load_contexts`.

`sample_context` builds the same shape from made-up data, for checking
templates without a database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import or_, select
from sqlmodel import Session, col

from ..errors import DeliveryError
from ..project import Campaign, HolidayTrigger, PriceDrop, Project, pick_text
from ..store import Credit, Customer, Message, MessageKind, Order, OrderItem, Product
from .formatting import round_money

log = logging.getLogger(__name__)

CHUNK = 500  # ids per IN (...) list
_FRIEND = {"bn": "বন্ধু", "en": "friend"}

# Links a message carries: {"unsubscribe_url": …, "pixel_url": …}, from its id.
Links = Callable[[int], dict[str, str]]


class ContextError(DeliveryError):
    """The data one message needs is missing or inconsistent."""


def language(locale: str) -> str:
    return locale.replace("-", "_").split("_")[0].lower() or "en"


def shop_context(project: Project, locale: str) -> dict[str, Any]:
    shop = project.config.shop
    return {
        "name": shop.name,
        "url": shop.url,
        "address": shop.address,
        "story": pick_text(shop.story, locale).strip(),
        "support_email": shop.support_email,
        "locale": shop.locale,
        "timezone": shop.timezone,
        "currency": shop.currency,
    }


def customer_context(name: str, email: str, locale: str) -> dict[str, Any]:
    name = (name or "").strip()
    first = name.split()[0] if name else _FRIEND.get(language(locale), _FRIEND["en"])
    return {"name": name, "first_name": first, "email": email, "locale": locale}


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


def _chunks(ids: Iterable[Any]) -> list[list[Any]]:
    unique = sorted({i for i in ids if i is not None})
    return [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]


@dataclass
class _Batch:
    """Rows of one batch, keyed by id."""

    customers: dict[int, Any] = field(default_factory=dict)
    orders: dict[int, Any] = field(default_factory=dict)
    lines: dict[int, list[Any]] = field(default_factory=dict)  # order id → its lines
    line_by_id: dict[int, Any] = field(default_factory=dict)
    products: dict[str, Any] = field(default_factory=dict)  # sku → product row
    credits: dict[int, Any] = field(default_factory=dict)
    offers: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


def _credit_id(message: Message) -> int | None:
    value = (message.context or {}).get("credit_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _load(session: Session, project: Project, messages: Sequence[Message]) -> _Batch:
    batch = _Batch()
    for ids in _chunks(m.customer_id for m in messages):
        rows = session.execute(
            select(
                col(Customer.id),
                col(Customer.name),
                col(Customer.email),
                col(Customer.locale),
                col(Customer.timezone),
            ).where(col(Customer.id).in_(ids))
        )
        batch.customers.update({row.id: row for row in rows})
    order_ids = [m.order_id for m in messages]
    item_ids = [m.order_item_id for m in messages]
    _load_lines(session, batch, order_ids, item_ids)
    order_ids += [line.order_id for line in batch.line_by_id.values()]
    for ids in _chunks(order_ids):
        rows = session.execute(
            select(
                col(Order.id),
                col(Order.external_id),
                col(Order.placed_at),
                col(Order.delivered_at),
                col(Order.total),
            ).where(col(Order.id).in_(ids))
        )
        batch.orders.update({row.id: row for row in rows})
    skus = {
        offer.sku
        for m in messages
        if m.campaign in project.campaigns
        for offer in project.campaigns[m.campaign].offers
    }
    for ids in _chunks(skus):
        rows = session.execute(
            select(
                col(Product.sku),
                col(Product.name),
                col(Product.name_bn),
                col(Product.price),
                col(Product.stock),
            ).where(col(Product.sku).in_(ids))
        )
        batch.products.update({row.sku: row for row in rows})
    for ids in _chunks(_credit_id(m) for m in messages):
        rows = session.execute(
            select(col(Credit.id), col(Credit.created_at)).where(col(Credit.id).in_(ids))
        )
        batch.credits.update({row.id: row for row in rows})
    return batch


def _load_lines(
    session: Session, batch: _Batch, order_ids: list[int | None], item_ids: list[int | None]
) -> None:
    orders = _chunks(order_ids)
    items = _chunks(item_ids)
    for i in range(max(len(orders), len(items))):
        wanted = []
        if i < len(orders):
            wanted.append(col(OrderItem.order_id).in_(orders[i]))
        if i < len(items):
            wanted.append(col(OrderItem.id).in_(items[i]))
        rows = session.execute(
            select(
                col(OrderItem.id),
                col(OrderItem.order_id),
                col(OrderItem.quantity),
                col(OrderItem.unit_price),
                col(Product.sku),
                col(Product.name),
                col(Product.name_bn),
            )
            .join(Product, col(Product.id) == col(OrderItem.product_id))
            .where(or_(*wanted))
            .order_by(col(OrderItem.id))
        )
        for row in rows:
            if row.id not in batch.line_by_id:
                batch.line_by_id[row.id] = row
                batch.lines.setdefault(row.order_id, []).append(row)


def _product_name(row: Any, lang: str) -> str:
    return str(row.name_bn if lang == "bn" and row.name_bn else row.name)


def order_context(order: Any, lines: list[Any], lang: str) -> dict[str, Any]:
    return {
        "number": order.external_id,
        "placed_at": order.placed_at,
        "delivered_at": order.delivered_at,
        "items": [
            {
                "product_name": _product_name(line, lang),
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.unit_price * line.quantity,
            }
            for line in lines
        ],
        "total": order.total,
    }


def offers_context(campaign: Campaign, products: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    """The campaign's offers with each product's price and stock as they are now."""
    offers = []
    for offer in campaign.offers:
        product = products.get(offer.sku)
        if product is None:
            log.warning(
                "campaign %s: offered product %s no longer exists", campaign.name, offer.sku
            )
            continue
        offers.append(
            {
                "sku": offer.sku,
                "name": _product_name(product, lang),
                "old_price": product.price,
                "discount": offer.discount,
                "new_price": round_money(product.price * (100 - offer.discount) / 100),
                "stock": product.stock,
            }
        )
    return offers


def holiday_name(project: Project, holiday_id: str, given: Any, locale: str) -> str:
    if isinstance(given, (str, dict)) and given:
        return pick_text(given, locale)
    for extra in project.config.holidays.extra:
        if extra.id == holiday_id:
            return pick_text(extra.name, locale)
    return holiday_id.replace("_", " ").title()


def load_contexts(
    session: Session, project: Project, messages: Sequence[Message], links: Links
) -> list[dict[str, Any] | ContextError]:
    """One template context per message (same order), or the ContextError for it.

    Keys: shop, customer, order, holiday, offers, item, credit, preheader,
    subject, unsubscribe_url, pixel_url, is_marketing, campaign, locale, lang,
    timezone, currency. Keys a campaign has no use for are None (or []).
    """
    batch = _load(session, project, messages)
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
    batch: _Batch,
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
    batch: _Batch, message: Message, lang: str, extra: dict[str, Any]
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
        "product_name": _product_name(line, lang),
        "sku": line.sku,
        "quantity": quantity,
        "unit_price_paid": _decimal(extra.get("old_price", line.unit_price), "old_price", mid),
        "new_price": _decimal(extra.get("new_price"), "new_price", mid),
        "order_number": order.external_id if order is not None else "",
    }
    credit_row = batch.credits.get(_credit_id(message) or 0)
    credit = {
        "amount": _decimal(extra.get("amount"), "amount", mid),
        "created_at": credit_row.created_at if credit_row is not None else message.created_at,
    }
    return item, credit


def base_context(
    project: Project,
    campaign: Campaign,
    *,
    shop: dict[str, Any],
    customer: dict[str, Any],
    timezone: str,
    is_marketing: bool,
    links: dict[str, str],
    order: dict[str, Any] | None = None,
    holiday: dict[str, Any] | None = None,
    offers: list[dict[str, Any]] | None = None,
    item: dict[str, Any] | None = None,
    credit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    locale = customer["locale"]
    return {
        "campaign": campaign.name,
        "shop": shop,
        "customer": customer,
        "order": order,
        "holiday": holiday,
        "offers": offers or [],
        "item": item,
        "credit": credit,
        "preheader": "",
        "subject": "",
        "unsubscribe_url": links["unsubscribe_url"],
        "pixel_url": links["pixel_url"],
        "is_marketing": is_marketing,
        "locale": locale,
        "lang": language(locale),
        "timezone": timezone,
        "currency": project.config.shop.currency,
    }


# ---------------------------------------------------------------- sample data


def sample_context(
    project: Project, campaign: Campaign, locale: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """A context of the shape `campaign`'s trigger produces, filled with made-up data."""
    now = now or datetime(2026, 4, 10, 4, 0, tzinfo=UTC)
    lang = language(locale)
    base = project.config.tracking.base_url.rstrip("/")
    bengali = lang == "bn"
    lines = [
        ("JUTE-BAG-01", "পাটের ব্যাগ" if bengali else "Jute tote bag", 2, Decimal("450.00")),
        (
            "TEA-500G",
            "সিলেটের চা, ৫০০ গ্রাম" if bengali else "Sylhet tea, 500 g",
            1,
            Decimal("320.50"),
        ),
    ]
    order = {
        "number": "NG-10234",
        "placed_at": now - timedelta(days=3),
        "delivered_at": now - timedelta(hours=2),
        "items": [
            {
                "product_name": name,
                "sku": sku,
                "quantity": qty,
                "unit_price": price,
                "line_total": price * qty,
            }
            for sku, name, qty, price in lines
        ],
        "total": sum((price * qty for _, _, qty, price in lines), Decimal("0")),
    }
    kwargs: dict[str, Any] = {"order": order}
    trigger = campaign.trigger
    if isinstance(trigger, HolidayTrigger):
        holiday_id = trigger.holidays[0]
        kwargs = {
            "holiday": {
                "id": holiday_id,
                "name": holiday_name(project, holiday_id, None, locale),
                "date": (now + timedelta(days=trigger.days_before)).date(),
            },
            "offers": [
                {
                    "sku": offer.sku,
                    "name": offer.sku,
                    "old_price": Decimal("1250.00"),
                    "discount": offer.discount,
                    "new_price": round_money(Decimal("1250.00") * (100 - offer.discount) / 100),
                    "stock": 12 - 12 * (i % 2),
                }
                for i, offer in enumerate(campaign.offers)
            ],
        }
    elif isinstance(trigger, PriceDrop):
        kwargs["item"] = {
            "product_name": lines[1][1],
            "sku": lines[1][0],
            "quantity": 2,
            "unit_price_paid": Decimal("320.50"),
            "new_price": Decimal("313.25"),
            "order_number": order["number"],
        }
        kwargs["credit"] = {"amount": Decimal("14.50"), "created_at": now}
    return base_context(
        project,
        campaign,
        shop=shop_context(project, locale),
        customer=customer_context(
            "রহিমা খাতুন" if bengali else "Rahima Khatun", "rahima@example.com", locale
        ),
        timezone=project.config.shop.timezone,
        is_marketing=campaign.kind != MessageKind.TRANSACTIONAL,
        links={
            "unsubscribe_url": f"{base}/u/SAMPLE-UNSUBSCRIBE-TOKEN",
            "pixel_url": f"{base}/o/SAMPLE-OPEN-TOKEN.gif",
        },
        **kwargs,
    )
