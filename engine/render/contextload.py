"""The rows a batch of messages needs, read in a handful of queries.

`load` reads, for a whole batch, one query per table (customers, order lines
with their products, orders, offered products, credits; and for the triggers
of a shop's year: each customer's last order, what they bought, the products of
their favourite categories, the products and carts the emails are about; the
coupons the messages carry), in
chunks of `CHUNK` ids, never one query per message, and returns them keyed by
id in a `Batch`. A query whose ids are all missing is not run: a batch of the
founding triggers costs what it did before.
It raises nothing of its own: a row that does not exist is simply absent, and
the context built from the batch says so for the message that wanted it. This
is the module to read for the cost of a send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import Session, col

from ..intake import message_coupons
from ..project import Project
from ..store import (
    Checkout,
    Credit,
    Customer,
    Message,
    Order,
    OrderItem,
    Product,
    is_purchase,
)
from .contextparts import FAVOURITES_SHOWN, WITH_FAVOURITES

CHUNK = 500  # ids per IN (...) list


def _chunks(ids: Iterable[Any]) -> list[list[Any]]:
    unique = sorted({i for i in ids if i is not None})
    return [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]


@dataclass
class Batch:
    """Rows of one batch, keyed by id."""

    customers: dict[int, Any] = field(default_factory=dict)
    orders: dict[int, Any] = field(default_factory=dict)
    lines: dict[int, list[Any]] = field(default_factory=dict)  # order id → its lines
    line_by_id: dict[int, Any] = field(default_factory=dict)
    products: dict[str, Any] = field(default_factory=dict)  # sku → product row
    credits: dict[int, Any] = field(default_factory=dict)
    credit_balances: dict[int, Any] = field(default_factory=dict)  # customer id → render.wallet
    credit_expiries: dict[int, Any] = field(default_factory=dict)  # customer id → (when, left)
    offers: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    last_orders: dict[int, Any] = field(default_factory=dict)  # customer id → order row
    favourites: dict[int, str] = field(default_factory=dict)  # customer id → category
    bought: dict[int, set[int]] = field(default_factory=dict)  # customer id → product ids
    in_category: dict[str, list[Any]] = field(default_factory=dict)  # newest first
    products_by_id: dict[int, Any] = field(default_factory=dict)
    checkouts: dict[str, Any] = field(default_factory=dict)  # cart id → checkout row
    coupons: dict[int, Any] = field(default_factory=dict)  # message id → its coupon


def _planned(message: Message, key: str) -> Any:
    """A value the planner wrote on the message (None if the context is not an object)."""
    context = message.context
    return context.get(key) if isinstance(context, dict) else None


def _context_id(message: Message, key: str) -> int | None:
    value = _planned(message, key)
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def credit_id(message: Message) -> int | None:
    return _context_id(message, "credit_id")


def product_id(message: Message) -> int | None:
    return _context_id(message, "product_id")


def cart_id(message: Message) -> str | None:
    value = _planned(message, "cart_id")
    return value if isinstance(value, str) and value else None


def wants_favourites(project: Project, message: Message) -> bool:
    campaign = project.campaigns.get(message.campaign)
    return campaign is not None and isinstance(campaign.trigger, WITH_FAVOURITES)


_PRODUCT_COLUMNS = (
    col(Product.id),
    col(Product.sku),
    col(Product.name),
    col(Product.name_bn),
    col(Product.category),
    col(Product.price),
    col(Product.stock),
)
_ORDER_COLUMNS = (
    col(Order.id),
    col(Order.customer_id),
    col(Order.external_id),
    col(Order.placed_at),
    col(Order.delivered_at),
    col(Order.total),
    col(Order.status),
    col(Order.payment_method),
    col(Order.payable),
    col(Order.shipped_at),
    col(Order.tracking_url),
    col(Order.returned_at),
)


def load(session: Session, project: Project, messages: Sequence[Message]) -> Batch:
    batch = Batch()
    for ids in _chunks(m.customer_id for m in messages):
        rows = session.execute(
            select(
                col(Customer.id),
                col(Customer.name),
                col(Customer.email),
                col(Customer.locale),
                col(Customer.timezone),
                col(Customer.tier),
                col(Customer.referral_code),
            ).where(col(Customer.id).in_(ids))
        )
        batch.customers.update({row.id: row for row in rows})
    yearly = [m.customer_id for m in messages if wants_favourites(project, m)]
    _load_last_orders(session, batch, yearly)
    _load_checkouts(session, batch, [cart_id(m) for m in messages])
    order_ids = [m.order_id for m in messages]
    order_ids += [row.id for row in batch.last_orders.values()]
    item_ids = [m.order_item_id for m in messages]
    _load_lines(session, batch, order_ids, item_ids)
    order_ids += [line.order_id for line in batch.line_by_id.values()]
    for ids in _chunks(i for i in order_ids if i not in batch.orders):
        rows = session.execute(select(*_ORDER_COLUMNS).where(col(Order.id).in_(ids)))
        batch.orders.update({row.id: row for row in rows})
    skus: set[Any] = {
        offer.sku
        for m in messages
        if m.campaign in project.campaigns
        for offer in project.campaigns[m.campaign].offers
    }
    skus |= {item.get("sku") for row in batch.checkouts.values() for item in _items(row)}
    for ids in _chunks(sku for sku in skus if isinstance(sku, str)):
        rows = session.execute(select(*_PRODUCT_COLUMNS).where(col(Product.sku).in_(ids)))
        batch.products.update({row.sku: row for row in rows})
    for ids in _chunks(product_id(m) for m in messages):
        rows = session.execute(select(*_PRODUCT_COLUMNS).where(col(Product.id).in_(ids)))
        batch.products_by_id.update({row.id: row for row in rows})
    for ids in _chunks(credit_id(m) for m in messages):
        rows = session.execute(
            select(col(Credit.id), col(Credit.created_at)).where(col(Credit.id).in_(ids))
        )
        batch.credits.update({row.id: row for row in rows})
    _load_favourites(session, batch, yearly)
    _load_coupons(session, batch, [m.id for m in messages if carries_coupon(project, m)])
    return batch


def carries_coupon(project: Project, message: Message) -> bool:
    """Whether the message's campaign step promises a coupon."""
    campaign = project.campaigns.get(message.campaign)
    step = campaign.flow_step(message.step) if campaign is not None else None
    return step is not None and step.coupon is not None


def _load_coupons(session: Session, batch: Batch, message_ids: list[int | None]) -> None:
    for ids in _chunks(message_ids):
        batch.coupons.update(message_coupons(session, ids))


def _items(checkout: Any) -> list[dict[str, Any]]:
    items = checkout.items
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _load_last_orders(session: Session, batch: Batch, customer_ids: list[int]) -> None:
    """Each customer's latest order that is not cancelled (one query per chunk)."""
    for ids in _chunks(customer_ids):
        rank = (
            func.row_number()
            .over(
                partition_by=col(Order.customer_id),
                order_by=(col(Order.placed_at).desc(), col(Order.id).desc()),
            )
            .label("rank")
        )
        ranked = (
            select(*_ORDER_COLUMNS, rank)
            .where(col(Order.customer_id).in_(ids), is_purchase(col(Order.status)))
            .subquery()
        )
        rows = session.execute(select(ranked).where(ranked.c.rank == 1))
        for row in rows:
            batch.last_orders[row.customer_id] = row
            batch.orders[row.id] = row


def _load_checkouts(session: Session, batch: Batch, cart_ids: list[str | None]) -> None:
    for ids in _chunks(cart_ids):
        rows = session.execute(
            select(
                col(Checkout.cart_id),
                col(Checkout.customer_id),
                col(Checkout.started_at),
                col(Checkout.amount),
                col(Checkout.items),
            ).where(col(Checkout.cart_id).in_(ids))
        )
        batch.checkouts.update({row.cart_id: row for row in rows})


def _load_favourites(session: Session, batch: Batch, customer_ids: list[int]) -> None:
    """What each customer bought and their favourite category (most bought by quantity,
    a tie to the category bought last, then by name), then the newest products of
    those categories in stock: enough of them that each customer still has
    `FAVOURITES_SHOWN` once what they bought is left out."""
    counts: dict[int, dict[str, tuple[int, Any]]] = {}
    bought_in: dict[tuple[int, str], int] = {}  # products a customer bought in a category
    for ids in _chunks(customer_ids):
        rows = session.execute(
            select(
                col(Order.customer_id),
                col(OrderItem.product_id),
                col(Product.category),
                func.sum(col(OrderItem.quantity)).label("quantity"),
                func.max(col(Order.placed_at)).label("latest"),
            )
            .join(Order, col(Order.id) == col(OrderItem.order_id))
            .join(Product, col(Product.id) == col(OrderItem.product_id))
            .where(col(Order.customer_id).in_(ids), is_purchase(col(Order.status)))
            .group_by(col(Order.customer_id), col(OrderItem.product_id), col(Product.category))
        )
        for row in rows:
            batch.bought.setdefault(row.customer_id, set()).add(row.product_id)
            if row.category is None:
                continue
            key = (row.customer_id, row.category)
            bought_in[key] = bought_in.get(key, 0) + 1
            per_category = counts.setdefault(row.customer_id, {})
            quantity, latest = per_category.get(row.category, (0, row.latest))
            per_category[row.category] = (quantity + int(row.quantity), max(latest, row.latest))
    for customer, per_category in counts.items():
        ranked = sorted(per_category.items(), key=lambda c: (-c[1][0], _neg_time(c[1][1]), c[0]))
        batch.favourites[customer] = ranked[0][0]
    if batch.favourites:
        most = max(bought_in[c, category] for c, category in batch.favourites.items())
        _load_in_category(session, batch, FAVOURITES_SHOWN + most)


def _neg_time(moment: Any) -> float:
    return -moment.timestamp()


def _load_in_category(session: Session, batch: Batch, wanted: int) -> None:
    for names in _chunks(batch.favourites.values()):
        rank = (
            func.row_number()
            .over(partition_by=col(Product.category), order_by=col(Product.id).desc())
            .label("rank")
        )
        ranked = (
            select(*_PRODUCT_COLUMNS, rank)
            .where(col(Product.category).in_(names), col(Product.stock) > 0)
            .subquery()
        )
        rows = session.execute(
            select(ranked).where(ranked.c.rank <= wanted).order_by(ranked.c.rank)
        )
        for row in rows:
            batch.in_category.setdefault(row.category, []).append(row)


def _load_lines(
    session: Session, batch: Batch, order_ids: list[int | None], item_ids: list[int | None]
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
