"""Orders from CSV, one row per order line, like `shop.record_order` and `mark_delivered`.

Rows with the same order_id form one order; an order with one bad line is
kept out whole. A stored order is left as it is, except that a newly given
delivered_at marks it delivered and the status cancelled cancels it; either
takes back refund credit no longer owed (`engine.intake.reversals`). A line without
a unit price is charged the product's price in effect when the order was
placed. Customers' order figures are recomputed set-based afterwards.
A new order's `cart_id` (the same on each of its lines) completes the stored
checkout of that cart, if any; a stored order's cart is left as it is. An
order's `coupon_code` (the same on each of its lines) is presented with it
(`engine.intake.coupons`): the use or refusal is recorded, the order kept.
So is its `referral_code` (`engine.intake.referrals`): the referral, pending or
refused with its reason, is recorded beside the order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from ...store import Checkout, Customer, Order, OrderItem, OrderStatus, PriceChange, Product
from ..coupons import normalise_code, redeem_order_coupon
from ..referrals import record_order_referral
from ..reversals import take_back
from ..shop import refresh_order_totals
from .cells import (
    CellError,
    cell,
    parse_amount,
    parse_status,
    parse_text,
    parse_when,
    parse_whole,
    required,
    shown,
)
from .csvfile import Record
from .job import CHUNK, WRITE_CHUNK, Job, chunks, lookup, table_of

COLUMNS = (
    "order_id",
    "customer_id",
    "placed_at",
    "delivered_at",
    "status",
    "sku",
    "quantity",
    "unit_price",
    "cart_id",
    "coupon_code",
    "referral_code",
)
REQUIRED = ("order_id", "customer_id", "placed_at", "sku", "quantity")
# The columns every line of an order repeats, the same each time.
_PER_ORDER = (
    "customer_id",
    "placed_at",
    "delivered_at",
    "status",
    "cart_id",
    "coupon_code",
    "referral_code",
)


def import_orders(job: Job, session: Session, records: list[Record]) -> None:
    """Record new orders (one row per line), mark stored ones delivered, refresh the figures."""
    conn = session.connection()
    lines = job.parse(records, _line_parser(job.zone))
    customers = lookup(
        conn, table_of(Customer), "external_id", (ln.customer_id for _, ln in lines), "id"
    )
    products = lookup(conn, table_of(Product), "sku", (ln.sku for _, ln in lines), "id", "price")
    stored = lookup(
        conn,
        table_of(Order),
        "external_id",
        (ln.order_id for _, ln in lines),
        "id",
        "customer_id",
        "status",
        "placed_at",
        "delivered_at",
    )
    history = _price_history(conn, [products[ln.sku].id for _, ln in lines
                                    if ln.unit_price is None and ln.sku in products])  # fmt: skip
    orders = _assemble_orders(job, lines, customers, products, stored, history)
    for order_id in _skip_whole_orders(job, lines):
        orders.pop(order_id, None)
    job.settle()
    touched, changed = _write_orders(job, conn, orders, stored)
    take_back(conn, changed, job.now)
    _complete_checkouts(conn, [o.first.cart_id for key, o in orders.items() if key not in stored])
    for order_id, order in orders.items():
        redeem_order_coupon(session, order.first.coupon_code, order_id, source="orders csv")
        record_order_referral(
            session, order.first.referral_code, order_id, now=job.now, source="orders csv"
        )
    refresh_order_totals(session, touched)


_History = dict[int, tuple[list[datetime], list[Decimal]]]


def _price_history(conn: Connection, product_ids: list[int]) -> _History:
    """{product id: (times, prices)} of these products' price changes, in time order."""
    table = table_of(PriceChange)
    found: _History = {}
    wanted = sorted(set(product_ids))
    for chunk in chunks(wanted, CHUNK):
        query = (
            select(table.c.product_id, table.c.changed_at, table.c.price)
            .where(table.c.product_id.in_(chunk))
            .order_by(table.c.product_id, table.c.changed_at, table.c.id)
        )
        for product_id, changed_at, price in conn.execute(query):
            times, prices = found.setdefault(product_id, ([], []))
            times.append(changed_at)
            prices.append(price)
    return found


def _price_when(history: _History, product: Any, placed_at: datetime) -> Decimal:
    """The product's price in effect at `placed_at` (before its first: the first)."""
    times, prices = history.get(product.id, ([], []))
    if not prices:
        return Decimal(product.price)
    return prices[max(bisect_right(times, placed_at) - 1, 0)]


def _skip_whole_orders(job: Job, lines: list[tuple[Record, _LineRow]]) -> set[str]:
    """The ids of orders with a bad line; their other lines are reported too."""
    first_bad: dict[str, int] = {}
    for bad in sorted(job.bad, key=lambda b: b.line):
        order_id = job.cells_by_line[bad.line].get("order_id", "")
        first_bad.setdefault(order_id, bad.line)
    for record, line in lines:
        bad_line = first_bad.get(line.order_id)
        if bad_line is not None and bad_line != record.line:
            message = f"order {line.order_id} is not imported: its line {bad_line} is bad"
            job.reject(record, "order_id", message)
    return set(first_bad)


@dataclass(frozen=True)
class _LineRow:
    order_id: str
    customer_id: str
    placed_at: datetime
    delivered_at: datetime | None
    status: OrderStatus | None
    sku: str
    quantity: int
    unit_price: Decimal | None
    cart_id: str | None
    coupon_code: str | None
    referral_code: str | None


_id_text = partial(parse_text, limit=64)
_quantity = partial(parse_whole, minimum=1)
_Head = tuple[
    str, str, datetime, datetime | None, OrderStatus | None, str | None, str | None, str | None
]


def _order_head(record: Record, zone: ZoneInfo) -> _Head:
    """The columns every line of an order repeats, parsed and checked together."""
    placed_at = required(record, "placed_at", lambda v: parse_when(v, zone))
    delivered_at = cell(record, "delivered_at", lambda v: parse_when(v, zone))
    status = cell(record, "status", parse_status)
    if delivered_at is not None and delivered_at < placed_at:
        raise CellError("delivered_at", f"is before placed_at ({record.cells['placed_at']})")
    if status == OrderStatus.DELIVERED and delivered_at is None:
        raise CellError("delivered_at", "is required when status is delivered")
    if status == OrderStatus.PLACED and delivered_at is not None:
        raise CellError("status", "is placed, but delivered_at is given")
    return (
        required(record, "order_id", _id_text),
        required(record, "customer_id", _id_text),
        placed_at,
        delivered_at,
        status,
        cell(record, "cart_id", _id_text),
        cell(record, "coupon_code", lambda v: normalise_code(_id_text(v))),
        cell(record, "referral_code", lambda v: normalise_code(_id_text(v))),
    )


def _line_parser(zone: ZoneInfo) -> Callable[[Record], _LineRow]:
    """Parse order lines, each order's repeated columns once (they are most of the work)."""
    heads: dict[tuple[str | None, ...], _Head] = {}

    def parse(record: Record) -> _LineRow:
        get = record.cells.get
        key = (
            get("order_id"),
            get("customer_id"),
            get("placed_at"),
            get("delivered_at"),
            get("status"),
            get("cart_id"),
            get("coupon_code"),
            get("referral_code"),
        )
        head = heads.get(key)
        if head is None:
            head = heads[key] = _order_head(record, zone)
        (order_id, customer_id, placed_at, delivered_at, status, cart_id, coupon_code,
         referral_code) = head  # fmt: skip
        return _LineRow(
            order_id,
            customer_id,
            placed_at,
            delivered_at,
            status,
            sku=required(record, "sku", _id_text),
            quantity=required(record, "quantity", _quantity),
            unit_price=cell(record, "unit_price", parse_amount),
            cart_id=cart_id,
            coupon_code=coupon_code,
            referral_code=referral_code,
        )

    return parse


@dataclass
class _NewOrder:
    first: _LineRow
    customer: int
    lines: list[tuple[int, int, Decimal]] = field(default_factory=list)  # product, qty, price


def _assemble_orders(
    job: Job,
    lines: list[tuple[Record, _LineRow]],
    customers: dict[str, Any],
    products: dict[str, Any],
    stored: dict[str, Any],
    history: _History,
) -> dict[str, _NewOrder]:
    """Group lines into orders, checking each against the store and its order's first line."""
    orders: dict[str, _NewOrder] = {}
    for record, line in lines:
        order = orders.get(line.order_id)
        problem = _line_problem(line, order, customers, products, stored)
        if problem:
            job.reject(record, *problem)
            continue
        if order is None:
            order = orders[line.order_id] = _NewOrder(line, customers[line.customer_id].id)
        product = products[line.sku]
        if line.unit_price is None:
            price = _price_when(history, product, line.placed_at)
        else:
            price = line.unit_price
        order.lines.append((product.id, line.quantity, price))
    return orders


def _line_problem(
    line: _LineRow,
    order: _NewOrder | None,
    customers: dict[str, Any],
    products: dict[str, Any],
    stored: dict[str, Any],
) -> tuple[str, str] | None:
    if line.customer_id not in customers:
        return "customer_id", f"unknown customer {shown(line.customer_id)}"
    if line.sku not in products:
        return "sku", f"unknown product sku {shown(line.sku)}"
    if order is not None:
        first = order.first
        for name in _PER_ORDER:
            if getattr(line, name) != getattr(first, name):
                return name, (
                    f"order {line.order_id} has {name} {_plain(getattr(first, name))} on an "
                    f"earlier line, got {_plain(getattr(line, name))}"
                )
    old = stored.get(line.order_id)
    if old is not None and line.delivered_at is not None and line.status != OrderStatus.CANCELLED:
        if old.delivered_at is None and old.status == OrderStatus.CANCELLED:
            return "delivered_at", f"order {line.order_id} is cancelled and cannot be delivered"
        if old.delivered_at is None and line.delivered_at < old.placed_at:
            return "delivered_at", f"is before the order's placed_at {old.placed_at.isoformat()}"
    return None


def _plain(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, datetime):
        return value.isoformat()
    return shown(str(value))


def _write_orders(
    job: Job, conn: Connection, orders: dict[str, _NewOrder], stored: dict[str, Any]
) -> tuple[set[int], list[int]]:
    """Insert the new orders and their items, mark delivered and cancelled ones.

    Returns the customers whose figures change and the stored orders that changed.
    """
    table, items = table_of(Order), table_of(OrderItem)
    new, delivered, cancelled = [], [], []
    for external_id, order in orders.items():
        old, first = stored.get(external_id), order.first
        if old is None:
            new.append(_order_values(external_id, order, job.now))
        elif first.status == OrderStatus.CANCELLED and old.status != OrderStatus.CANCELLED:
            cancelled.append({"b_id": old.id})
        elif (
            first.delivered_at is not None
            and old.delivered_at is None
            and first.status != OrderStatus.CANCELLED
        ):
            delivered.append({"b_id": old.id, "v_delivered_at": first.delivered_at})
        else:
            job.result.unchanged += 1
    job.result.created, job.result.updated = len(new), len(delivered)
    job.result.cancelled = len(cancelled)
    job.report("writing", 0, len(new))
    ids: dict[str, int] = {}
    returning = insert(table).returning(table.c.external_id, table.c.id)
    for number, chunk in enumerate(chunks(new, WRITE_CHUNK), 1):
        ids |= {key: id_ for key, id_ in conn.execute(returning, list(chunk))}
        job.report("writing", min(number * WRITE_CHUNK, len(new)), len(new))
    rows = [
        {"order_id": ids[r["external_id"]], "product_id": p, "quantity": q, "unit_price": price}
        for r in new
        for p, q, price in orders[r["external_id"]].lines
    ]
    job.write(conn, insert(items), rows)
    mark = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.delivered_at.is_(None))
        .values(delivered_at=bindparam("v_delivered_at"), status=OrderStatus.DELIVERED.value)
    )
    job.write(conn, mark, delivered)
    cancel = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(status=OrderStatus.CANCELLED.value)
    )
    job.write(conn, cancel, cancelled)
    by_id = {old.id: old.customer_id for old in stored.values()}
    touched = {r["customer_id"] for r in new} | {by_id[r["b_id"]] for r in cancelled}
    return touched, [r["b_id"] for r in delivered + cancelled]


def _order_values(external_id: str, order: _NewOrder, now: datetime) -> dict[str, Any]:
    first = order.first
    if first.status == OrderStatus.CANCELLED:
        status = OrderStatus.CANCELLED
    else:
        status = OrderStatus.DELIVERED if first.delivered_at else OrderStatus.PLACED
    total = sum((price * quantity for _, quantity, price in order.lines), Decimal("0"))
    return {
        "external_id": external_id,
        "customer_id": order.customer,
        "placed_at": first.placed_at,
        "delivered_at": first.delivered_at,
        "status": status.value,
        "total": total,
        "recorded_at": now,
        "cart_id": first.cart_id,
    }


def _complete_checkouts(conn: Connection, cart_ids: list[str | None]) -> None:
    """Give each stored checkout of these carts not yet completed its (first) order."""
    checkout, orders = table_of(Checkout), table_of(Order)
    first_order = (
        select(func.min(orders.c.id))
        .where(orders.c.cart_id == checkout.c.cart_id)
        .scalar_subquery()
    )
    for chunk in chunks(sorted({c for c in cart_ids if c is not None}), CHUNK):
        conn.execute(
            update(checkout)
            .where(checkout.c.cart_id.in_(chunk), checkout.c.order_id.is_(None))
            .values(order_id=first_order)
        )
