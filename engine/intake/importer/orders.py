"""Orders from CSV, one row per order line, like `shop.record_order` and `mark_delivered`.

Rows with the same order_id form one order; an order with one bad line is
kept out whole. A new order takes the file's status (placed, confirmed,
shipped, out_for_delivery, delivered, refused, returned, cancelled),
payment_method and tracking_url. A stored order is left as it is, except that a
newly given delivered_at marks it delivered, an ending status (cancelled,
refused, returned) ends it and a later live status moves it on
(`engine.intake.orderlife`); delivering or ending takes back refund credit no
longer owed (`engine.intake.reversals`). A file does not say when a status was
reached, so no shipping or return email follows one. A line without
a unit price is charged the product's price in effect when the order was
placed. Customers' order figures are recomputed set-based afterwards.
A new order's `cart_id` (the same on each of its lines) completes the stored
checkout of that cart, if any; a stored order's cart is left as it is. An
order's `coupon_code` (the same on each of its lines) is presented with it
(`engine.intake.coupons`): the use or refusal is recorded, the order kept.
So is its `referral_code` (`engine.intake.referrals`): the referral, pending or
refused with its reason, is recorded beside the order.

The file is read once, a chunk of lines at a time: each line is checked on its
own and against the store, and staged (`orderstage`). What needs the whole file
(an order's lines agree; an order with a bad line is kept out) is then asked of
the staged lines, and the good orders are written from them. Memory holds a
chunk, the products and the first bad rows, whatever the size of the file.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from ...errors import DataError
from ...store import ENDED_ORDER, ORDER_PROGRESS, Customer, Order, OrderStatus, PriceChange, Product
from ..couponrelease import release_coupons
from ..coupons import normalise_code, redeem_order_coupon
from ..orderlife import payment_method, tracking_url
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
from .orderstage import GOOD, REFUSED, UNREAD, OrderStage

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
    "payment_method",
    "tracking_url",
)
REQUIRED = ("order_id", "customer_id", "placed_at", "sku", "quantity")
# A status that says the parcel never reached the customer (or not yet).
NOT_DELIVERED = frozenset(
    {
        OrderStatus.PLACED,
        OrderStatus.CONFIRMED,
        OrderStatus.SHIPPED,
        OrderStatus.OUT_FOR_DELIVERY,
        OrderStatus.REFUSED,
    }
)
_KEPT = 100_000  # customers and prices remembered, whatever the file's size
_HEADS_KEPT = WRITE_CHUNK  # parsed orders remembered: an order's lines come together


def import_orders(job: Job, session: Session, from_file: Iterable[Record]) -> None:
    """Record new orders (one row per line), mark stored ones delivered, refresh the figures."""
    conn = session.connection()
    with OrderStage.opened(conn) as stage:
        checker = _LineChecker(job, conn, stage)
        for chunk in _chunks_of(job, from_file):
            checker.check(chunk)
        job.conclude(*stage.find_bad(job.shown))
        _write(job, session, stage)


def _chunks_of(job: Job, from_file: Iterable[Record]) -> Iterable[list[Record]]:
    """The file's rows, WRITE_CHUNK at a time, counted and reported as they are read."""
    chunk: list[Record] = []
    for record in from_file:
        job.result.rows += 1
        chunk.append(record)
        if len(chunk) == WRITE_CHUNK:
            yield chunk
            chunk = []
            job.report("checking", job.result.rows, max(job.expected - 1, job.result.rows))
    yield chunk
    job.report("checking", job.result.rows, job.result.rows)


class _LineChecker:
    """The first pass: parse each line, check it against the store, stage it."""

    def __init__(self, job: Job, conn: Connection, stage: OrderStage):
        self.conn, self.stage = conn, stage
        self.parse = _LineParser(job.zone, stage.time_value).parse
        self.customers: dict[str, int] = {}  # ids by the shop's customer id, as they are met
        self.products: dict[str, Any] = {}  # by sku; None: not in the store
        self.history: _History = {}
        self.money_value = stage.money_value
        self.money: dict[Decimal, Any] = {}  # prices repeat: convert each once

    def check(self, records: list[Record]) -> None:
        staged: list[tuple[Any, ...]] = []
        bad: list[tuple[Any, ...]] = []
        parsed: list[tuple[int, _Line]] = []
        for record in records:
            try:
                if record.problem:
                    raise CellError("", record.problem)
                parsed.append((record.line, self.parse(record)))
            except CellError as exc:
                staged.append(_unread(record.line, record.cells.get("order_id", ""), UNREAD))
                bad.append((record.line, 0, exc.column, str(exc)))
        self._learn_customers({line.head.customer_id for _, line in parsed})
        self._learn_products({line.sku for _, line in parsed})
        stored = lookup(
            self.conn,
            table_of(Order),
            "external_id",
            {line.head.order_id for _, line in parsed},
            "status",
            "placed_at",
            "delivered_at",
        )
        for number, line in parsed:
            refusal = self._refusal(line)
            if refusal:
                staged.append(_unread(number, line.head.order_id, REFUSED))
                bad.append((number, 0, *refusal))
            else:
                staged.append(self._staged(number, line, stored.get(line.head.order_id)))
        self.stage.add(staged, bad)

    def _learn_customers(self, external_ids: set[str]) -> None:
        unknown = external_ids - self.customers.keys()
        if len(self.customers) + len(unknown) > _KEPT:
            self.customers.clear()
        found = lookup(self.conn, table_of(Customer), "external_id", unknown, "id")
        self.customers |= {key: row.id for key, row in found.items()}

    def _learn_products(self, skus: set[str]) -> None:
        unknown = skus - self.products.keys()
        found = lookup(self.conn, table_of(Product), "sku", unknown, "id", "price")
        self.products |= {sku: found.get(sku) for sku in unknown}
        self.history |= _price_history(self.conn, [p.id for p in found.values()])

    def _refusal(self, line: _Line) -> tuple[str, str] | None:
        if line.head.customer_id not in self.customers:
            return "customer_id", f"unknown customer {shown(line.head.customer_id)}"
        if self.products[line.sku] is None:
            return "sku", f"unknown product sku {shown(line.sku)}"
        return None

    def _staged(self, number: int, line: _Line, old: Any) -> tuple[Any, ...]:
        head, product = line.head, self.products[line.sku]
        price = line.unit_price
        if price is None:
            price = _price_when(self.history, product, head.placed_at)
        money = self.money.get(price)
        if money is None:
            if len(self.money) >= _KEPT:
                self.money.clear()
            money = self.money[price] = self.money_value(price)
        refused = (None, None) if old is None else _stored_problem(head, old)
        return (
            number,
            head.order_id,
            GOOD,
            *refused,
            head.customer_id,
            self.customers[head.customer_id],
            *head.staged,
            head.cart_id,
            head.coupon_code,
            head.referral_code,
            head.payment_method,
            head.tracking_url,
            product.id,
            line.quantity,
            money,
        )


def _unread(number: int, order_id: str, state: int) -> tuple[Any, ...]:
    return (number, order_id, state, *(None,) * (len(OrderStage.LINE_COLUMNS) - 3))


def _stored_problem(head: _Head, old: Any) -> tuple[str | None, str | None]:
    """Why the order as stored refuses this line, if it does: (column, message)."""
    if head.status == OrderStatus.REFUSED and old.status == OrderStatus.DELIVERED:
        return "status", f"order {head.order_id} was delivered: it can be returned, not refused"
    if head.delivered_at is None or head.status in (OrderStatus.CANCELLED, OrderStatus.RETURNED):
        return None, None
    if old.delivered_at is None and old.status in ENDED_ORDER:
        return "delivered_at", f"order {head.order_id} is {old.status} and cannot be delivered"
    if old.delivered_at is None and head.delivered_at < old.placed_at:
        return "delivered_at", f"is before the order's placed_at {old.placed_at.isoformat()}"
    return None, None


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


class _Head(NamedTuple):
    """The columns every line of an order repeats, parsed and checked together."""

    order_id: str
    customer_id: str
    placed_at: datetime
    delivered_at: datetime | None
    status: OrderStatus | None
    cart_id: str | None
    coupon_code: str | None
    referral_code: str | None
    payment_method: str | None
    tracking_url: str | None
    staged: tuple[Any, Any, str | None]  # placed_at, delivered_at and status for the driver


class _Line(NamedTuple):
    head: _Head
    sku: str
    quantity: int
    unit_price: Decimal | None


_id_text = partial(parse_text, limit=64)
_whole = partial(parse_whole, minimum=1)


def _quantity(record: Record) -> int:
    text = record.cells["quantity"]
    if text.isascii() and text.isdigit() and len(text) < 10 and text.strip("0"):
        return int(text)  # the common case, without the regular expression
    return required(record, "quantity", _whole)  # a "+2", or the message


def _code(value: str) -> str:
    return normalise_code(_id_text(value))


def _read_by(read: Callable[[str], Any]) -> Callable[[str], Any]:
    """A cell parser from one of `orderlife`'s readers (which name their field)."""

    def parse(value: str) -> Any:
        try:
            return read(value)
        except DataError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from exc

    return parse


class _LineParser:
    """Parse order lines, each order's repeated columns once (they are most of the work)."""

    def __init__(self, zone: ZoneInfo, time_value: Callable[[datetime], Any]):
        self.zone, self.time_value = zone, time_value
        self.heads: dict[tuple[str | None, ...], _Head] = {}
        self.skus: set[str] = set()

    def parse(self, record: Record) -> _Line:
        cells = record.cells
        get = cells.get
        key = (
            get("order_id"),
            get("customer_id"),
            get("placed_at"),
            get("delivered_at"),
            get("status"),
            get("cart_id"),
            get("coupon_code"),
            get("referral_code"),
            get("payment_method"),
            get("tracking_url"),
        )
        head = self.heads.get(key)
        if head is None:
            if len(self.heads) >= _HEADS_KEPT:
                self.heads.clear()
            head = self.heads[key] = self._head(record)
        sku = cells["sku"]
        if sku not in self.skus:  # a SKU is checked the first time it is met
            if len(self.skus) >= _KEPT:
                self.skus.clear()
            self.skus.add(required(record, "sku", _id_text))
        price = get("unit_price")
        return _Line(
            head,
            sku,
            _quantity(record),
            cell(record, "unit_price", parse_amount) if price else None,
        )

    def _head(self, record: Record) -> _Head:
        placed_at = required(record, "placed_at", self._when)
        delivered_at = cell(record, "delivered_at", self._when)
        status = cell(record, "status", parse_status)
        if delivered_at is not None and delivered_at < placed_at:
            raise CellError("delivered_at", f"is before placed_at ({record.cells['placed_at']})")
        if status == OrderStatus.DELIVERED and delivered_at is None:
            raise CellError("delivered_at", "is required when status is delivered")
        if delivered_at is not None and status in NOT_DELIVERED:
            raise CellError("status", f"is {status}, but delivered_at is given")
        staged = (
            self.time_value(placed_at),
            None if delivered_at is None else self.time_value(delivered_at),
            None if status is None else status.value,
        )
        return _Head(
            required(record, "order_id", _id_text),
            required(record, "customer_id", _id_text),
            placed_at,
            delivered_at,
            status,
            cell(record, "cart_id", _id_text),
            cell(record, "coupon_code", _code),
            cell(record, "referral_code", _code),
            cell(record, "payment_method", _read_by(payment_method)),
            cell(record, "tracking_url", _read_by(tracking_url)),
            staged,
        )

    def _when(self, value: str) -> datetime:
        return parse_when(value, self.zone)


def _write(job: Job, session: Session, stage: OrderStage) -> None:
    """The second pass: write the good orders from the stage, then what follows from them."""
    conn = session.connection()
    new = job.result.created = stage.new_orders()
    job.report("writing", 0, new)
    stage.insert_new_orders(job.now)
    job.report("writing", new, new)
    changed, cancelled_customers = _update_stored(job, conn, stage)
    take_back(conn, changed, job.now)
    release_coupons(conn, order_ids=changed)
    stage.complete_checkouts()
    for page in stage.coded_orders():
        for _, order_id, coupon_code, referral_code in page:
            redeem_order_coupon(session, coupon_code, order_id, source="orders csv")
            record_order_referral(
                session, referral_code, order_id, now=job.now, source="orders csv"
            )
    refresh_order_totals(session, stage.new_order_customers() | cancelled_customers)


def _update_stored(job: Job, conn: Connection, stage: OrderStage) -> tuple[list[int], set[int]]:
    """Move stored orders along their life as the file says: delivered, ended
    (cancelled, refused, returned) or a later live status; count the others.

    Returns the orders delivered or ended and the customers of those ended.
    """
    delivered: list[dict[str, Any]] = []
    ended: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    customers: set[int] = set()
    for page in stage.stored_orders():
        for _, order_id, customer_id, status, delivered_at, given, given_delivered_at in page:
            if given in ENDED_ORDER and status not in ENDED_ORDER:
                ended.append({"b_id": order_id, "v_status": given})
                customers.add(customer_id)
            elif (
                given_delivered_at is not None
                and delivered_at is None
                and not ({status, given} & set(ENDED_ORDER))
            ):
                delivered.append({"b_id": order_id, "v_delivered_at": given_delivered_at})
            elif _later(status, given):
                moved.append({"b_id": order_id, "v_status": given})
            else:
                job.result.unchanged += 1
    job.result.updated, job.result.cancelled = len(delivered) + len(moved), len(ended)
    table = table_of(Order)
    mark = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.delivered_at.is_(None))
        .values(delivered_at=bindparam("v_delivered_at"), status=OrderStatus.DELIVERED.value)
    )
    job.write(conn, mark, delivered)
    # When the file's status happened it does not say: no shipping or return email follows.
    status = (
        update(table).where(table.c.id == bindparam("b_id")).values(status=bindparam("v_status"))
    )
    job.write(conn, status, ended + moved)
    return [r["b_id"] for r in delivered + ended], customers


def _later(stored: str, given: str | None) -> bool:
    """Whether `given` is a live status after the stored live one."""
    life = [s.value for s in ORDER_PROGRESS]
    return given in life and stored in life and life.index(given) > life.index(stored)
