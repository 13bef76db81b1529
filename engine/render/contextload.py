"""The rows a batch of messages needs, read in a handful of queries.

`load` reads, for a whole batch, one query per table (customers, order lines
with their products, orders, offered products, credits), in chunks of `CHUNK`
ids, never one query per message, and returns them keyed by id in a `Batch`.
It raises nothing of its own: a row that does not exist is simply absent, and
the context built from the batch says so for the message that wanted it. This
is the module to read for the cost of a send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlmodel import Session, col

from ..project import Project
from ..store import Credit, Customer, Message, Order, OrderItem, Product

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
    offers: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


def credit_id(message: Message) -> int | None:
    value = (message.context or {}).get("credit_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


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
    for ids in _chunks(credit_id(m) for m in messages):
        rows = session.execute(
            select(col(Credit.id), col(Credit.created_at)).where(col(Credit.id).in_(ids))
        )
        batch.credits.update({row.id: row for row in rows})
    return batch


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
