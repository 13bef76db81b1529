"""Where an orders file waits between its two passes: temporary tables in the store.

The first pass (`orders`) stages each line of the file as it is read: the line
checked on its own and against the store, or the reason it is bad. What needs
the whole file is then asked of the database, not of memory: whether every
line of an order repeats its first good line, which orders have a bad line,
the first bad rows to list. The second pass writes the good orders from here
with `INSERT … SELECT`. The tables live in the import's transaction only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from ...store import ENDED_ORDER, Checkout, Money, Order, OrderItem, OrderStatus, UTCDateTime
from .cells import shown
from .job import LISTED_BAD, BadRow, table_of

PAGE = 5_000  # rows read back at a time
# The columns every line of an order repeats: the name in the file, the staged column.
PER_ORDER = {
    "customer_id": "customer_ref",
    "placed_at": "placed_at",
    "delivered_at": "delivered_at",
    "status": "status",
    "cart_id": "cart_id",
    "coupon_code": "coupon_code",
    "referral_code": "referral_code",
    "payment_method": "payment_method",
    "tracking_url": "tracking_url",
}
# A staged line's state: good so far; read but refused (unknown customer or product);
# not even read (a cell or the row's width is bad). The last two are in `bad` already.
GOOD, REFUSED, UNREAD = 0, 1, 2


def _tables() -> tuple[Table, Table, Table, Table]:
    metadata = MetaData()
    temporary: dict[str, Any] = {"prefixes": ["TEMPORARY"], "postgresql_on_commit": "DROP"}
    lines = Table(
        "import_order_line",
        metadata,
        Column("line", Integer, primary_key=True, autoincrement=False),
        Column("order_id", String, nullable=False),
        Column("state", Integer, nullable=False),
        # Why the order as stored refuses this line (reported only if no line before it is good).
        Column("stored_column", String),
        Column("stored_message", String),
        Column("customer_ref", String),
        Column("customer_id", Integer),
        Column("placed_at", UTCDateTime),
        Column("delivered_at", UTCDateTime),
        Column("status", String),
        Column("cart_id", String),
        Column("coupon_code", String),
        Column("referral_code", String),
        Column("payment_method", String),
        Column("tracking_url", String),
        Column("product_id", Integer),
        Column("quantity", Integer),
        Column("unit_price", BigInteger),  # minor units, as `Money` stores them
        **temporary,
    )
    bad = Table(
        "import_bad_row",
        metadata,
        Column("line", Integer, primary_key=True, autoincrement=False),
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("column_name", String, nullable=False),
        Column("message", String, nullable=False),
        **temporary,
    )
    orders = Table(  # an order with a good line: its first one, and its id if stored
        "import_order",
        metadata,
        Column("order_id", String, primary_key=True),
        Column("first_line", Integer, nullable=False),
        Column("stored_id", Integer),
        **temporary,
    )
    bad_orders = Table(  # an order with a bad line: its first one
        "import_bad_order",
        metadata,
        Column("order_id", String, primary_key=True),
        Column("first_bad", Integer, nullable=False),
        **temporary,
    )
    return lines, bad, orders, bad_orders


class OrderStage:
    """The staged lines of one orders file, on the import's connection."""

    LINE_COLUMNS = (
        "line",
        "order_id",
        "state",
        "stored_column",
        "stored_message",
        "customer_ref",
        "customer_id",
        "placed_at",
        "delivered_at",
        "status",
        "cart_id",
        "coupon_code",
        "referral_code",
        "payment_method",
        "tracking_url",
        "product_id",
        "quantity",
        "unit_price",
    )

    def __init__(self, conn: Connection):
        self.conn = conn
        self.lines, self.bad, self.orders, self.bad_orders = _tables()
        self.tables = (self.lines, self.bad, self.orders, self.bad_orders)
        self.postgres = conn.dialect.name == "postgresql"
        # Staged values go to the driver as they are, already in the form the column types
        # give them: per-row type processing is most of the cost of a bulk insert.
        self.time_value = _processor(UTCDateTime(), conn)
        self.money_value = _processor(Money(), conn)

    @classmethod
    @contextmanager
    def opened(cls, conn: Connection) -> Iterator[OrderStage]:
        """A stage with empty tables, dropped afterwards."""
        stage = cls(conn)
        stage._drop()  # left by an import on this connection that failed (SQLite)
        for table in stage.tables:
            table.create(conn)
        try:
            yield stage
            stage._drop()
        except BaseException:
            # PostgreSQL's rollback drops them; SQLite's may not, as it does not take back
            # DDL run before the first write.
            if not stage.postgres:
                stage._drop()
            raise

    def _drop(self) -> None:
        schema = "pg_temp" if self.postgres else "temp"
        for table in reversed(self.tables):
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{table.name}")

    # ------------------------------------------------------------ the first pass

    def add(self, lines: Sequence[tuple[Any, ...]], bad: Sequence[tuple[Any, ...]]) -> None:
        """Stage lines (values in LINE_COLUMNS order) and bad rows (line, seq, column, message)."""
        self._insert(self.lines, lines)
        self._insert(self.bad, bad)

    def _insert(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        names = ", ".join(column.name for column in table.columns)
        if self.postgres:
            cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in table.columns)
        self.conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)

    # ------------------------------------------------------------ what needs the whole file

    def find_bad(self, file: str) -> tuple[list[BadRow], int]:
        """Report the lines that disagree with their order, and every other line of an
        order with a bad line; keep only the good orders. Returns the first
        LISTED_BAD bad rows in line order and how many there are."""
        Index("ix_import_order_line_order", self.lines.c.order_id).create(self.conn)
        lines, orders = self.lines, self.orders
        first_good = (
            select(lines.c.order_id, func.min(lines.c.line))
            .where(lines.c.state == GOOD, lines.c.stored_message.is_(None))
            .group_by(lines.c.order_id)
        )
        self.conn.execute(insert(orders).from_select(["order_id", "first_line"], first_good))
        for page in self._pages(self._disagreeing(), "line"):
            self._insert(self.bad, [_disagreement(row) for row in page])
        self._reject_whole_orders()
        return self._listed(file)

    def _disagreeing(self) -> Select[Any]:
        """Good lines the store refuses before their order's first good line, and lines
        after it that do not repeat it."""
        line, first, orders = self.lines.alias("l"), self.lines.alias("f"), self.orders
        differs = [line.c[c].is_distinct_from(first.c[c]) for c in PER_ORDER.values()]
        return (
            select(
                line,
                *(first.c[c].label(f"first_{c}") for c in PER_ORDER.values()),
                orders.c.first_line,
            )
            .select_from(
                line.outerjoin(orders, orders.c.order_id == line.c.order_id).outerjoin(
                    first, first.c.line == orders.c.first_line
                )
            )
            .where(
                line.c.state == GOOD,
                or_(
                    and_(
                        line.c.stored_message.is_not(None),
                        or_(orders.c.first_line.is_(None), line.c.line < orders.c.first_line),
                    ),
                    and_(line.c.line > orders.c.first_line, or_(*differs)),
                ),
            )
        )

    def _reject_whole_orders(self) -> None:
        lines, bad, bad_orders = self.lines, self.bad, self.bad_orders
        first_bad = (
            select(lines.c.order_id, func.min(bad.c.line))
            .select_from(bad.join(lines, lines.c.line == bad.c.line))
            .group_by(lines.c.order_id)
        )
        self.conn.execute(insert(bad_orders).from_select(["order_id", "first_bad"], first_bad))
        message = (
            literal("order ")
            + lines.c.order_id
            + literal(" is not imported: its line ")
            + cast(bad_orders.c.first_bad, String)
            + literal(" is bad")
        )
        others = (
            select(lines.c.line, literal(1), literal("order_id"), message)
            .select_from(lines.join(bad_orders, bad_orders.c.order_id == lines.c.order_id))
            .where(lines.c.state != UNREAD, lines.c.line != bad_orders.c.first_bad)
        )
        self.conn.execute(
            insert(bad).from_select(["line", "seq", "column_name", "message"], others)
        )
        orders = self.orders
        self.conn.execute(
            delete(orders).where(orders.c.order_id.in_(select(bad_orders.c.order_id)))
        )
        stored = table_of(Order)
        self.conn.execute(
            update(orders).values(
                stored_id=select(stored.c.id)
                .where(stored.c.external_id == orders.c.order_id)
                .scalar_subquery()
            )
        )

    def _listed(self, file: str) -> tuple[list[BadRow], int]:
        bad = self.bad
        count = self.conn.scalar(select(func.count()).select_from(bad)) or 0
        first = select(bad.c.line, bad.c.column_name, bad.c.message).order_by(bad.c.line, bad.c.seq)
        listed = [BadRow(file, *row) for row in self.conn.execute(first.limit(LISTED_BAD))]
        return listed, count

    def _pages(self, query: Select[Any], key: str) -> Iterator[Sequence[Any]]:
        """The rows of `query` a page at a time, in order of its unique column `key`.

        Each page is a query of its own, so no cursor stays open while pages are handled.
        """
        column = query.selected_columns[key]
        last = None
        while True:
            page = query.order_by(column).limit(PAGE)
            if last is not None:
                page = page.where(column > last)
            rows = self.conn.execute(page).all()
            if not rows:
                return
            yield rows
            last = rows[-1]._mapping[key]

    # ------------------------------------------------------------ the second pass

    def new_orders(self) -> int:
        return (
            self.conn.scalar(
                select(func.count())
                .select_from(self.orders)
                .where(self.orders.c.stored_id.is_(None))
            )
            or 0
        )

    def insert_new_orders(self, now: datetime) -> None:
        """Insert the orders not stored yet, then their items, in the order of the file."""
        lines, orders, first = self.lines, self.orders, self.lines.alias("f")
        stored, items = table_of(Order), table_of(OrderItem)
        totals = (
            select(lines.c.order_id, func.sum(lines.c.quantity * lines.c.unit_price).label("sum"))
            .where(lines.c.state == GOOD)
            .group_by(lines.c.order_id)
            .subquery()
        )
        # Ended as the file says; else delivered with a delivery time; else as it says.
        status = case(
            (first.c.status.in_(ENDED_ORDER), first.c.status),
            (first.c.delivered_at.is_not(None), OrderStatus.DELIVERED.value),
            (first.c.status.is_not(None), first.c.status),
            else_=OrderStatus.PLACED.value,
        )
        new = (
            select(
                orders.c.order_id,
                first.c.customer_id,
                first.c.placed_at,
                first.c.delivered_at,
                status,
                totals.c.sum,
                literal(now, UTCDateTime),
                first.c.cart_id,
                first.c.payment_method,
                first.c.tracking_url,
            )
            .select_from(
                orders.join(first, first.c.line == orders.c.first_line).join(
                    totals, totals.c.order_id == orders.c.order_id
                )
            )
            .where(orders.c.stored_id.is_(None))
            .order_by(orders.c.first_line)
        )
        columns = ["external_id", "customer_id", "placed_at", "delivered_at", "status", "total"]
        columns += ["recorded_at", "cart_id", "payment_method", "tracking_url"]
        self.conn.execute(insert(stored).from_select(columns, new))
        new_items = (
            select(stored.c.id, lines.c.product_id, lines.c.quantity, lines.c.unit_price)
            .select_from(
                lines.join(orders, orders.c.order_id == lines.c.order_id).join(
                    stored, stored.c.external_id == orders.c.order_id
                )
            )
            .where(orders.c.stored_id.is_(None), lines.c.state == GOOD)
            .order_by(orders.c.first_line, lines.c.line)
        )
        self.conn.execute(
            insert(items).from_select(
                ["order_id", "product_id", "quantity", "unit_price"], new_items
            )
        )

    def stored_orders(self) -> Iterator[Sequence[Any]]:
        """Pages of the good orders already stored: (first_line, id, customer_id, stored
        status, stored delivered_at, status, delivered_at), the last two from the file."""
        orders, first, stored = self.orders, self.lines.alias("f"), table_of(Order)
        query = (
            select(
                orders.c.first_line,
                stored.c.id,
                stored.c.customer_id,
                stored.c.status,
                stored.c.delivered_at,
                first.c.status.label("given_status"),
                first.c.delivered_at.label("given_delivered_at"),
            )
            .select_from(
                orders.join(first, first.c.line == orders.c.first_line).join(
                    stored, stored.c.id == orders.c.stored_id
                )
            )
            .where(orders.c.stored_id.is_not(None))
        )
        return self._pages(query, "first_line")

    def coded_orders(self) -> Iterator[Sequence[Any]]:
        """Pages of the good orders with a coupon or a referral code, in the file's order:
        (first_line, order_id, coupon_code, referral_code)."""
        orders, first = self.orders, self.lines.alias("f")
        query = (
            select(
                orders.c.first_line, orders.c.order_id, first.c.coupon_code, first.c.referral_code
            )
            .select_from(orders.join(first, first.c.line == orders.c.first_line))
            .where(or_(first.c.coupon_code.is_not(None), first.c.referral_code.is_not(None)))
        )
        return self._pages(query, "first_line")

    def new_order_customers(self) -> set[int]:
        orders, first = self.orders, self.lines.alias("f")
        query = (
            select(first.c.customer_id)
            .select_from(orders.join(first, first.c.line == orders.c.first_line))
            .where(orders.c.stored_id.is_(None))
            .distinct()
        )
        return set(self.conn.scalars(query))

    def complete_checkouts(self) -> None:
        """Give each stored checkout of a new order's cart, not yet completed, its first order."""
        checkout, stored = table_of(Checkout), table_of(Order)
        orders, first = self.orders, self.lines.alias("f")
        carts = (
            select(first.c.cart_id)
            .select_from(orders.join(first, first.c.line == orders.c.first_line))
            .where(orders.c.stored_id.is_(None), first.c.cart_id.is_not(None))
        )
        first_order = (
            select(func.min(stored.c.id))
            .where(stored.c.cart_id == checkout.c.cart_id)
            .scalar_subquery()
        )
        self.conn.execute(
            update(checkout)
            .where(checkout.c.cart_id.in_(carts), checkout.c.order_id.is_(None))
            .values(order_id=first_order)
        )


def _processor(type_: Any, conn: Connection) -> Callable[[Any], Any]:
    """What the column type does to a value before it goes to this dialect's driver."""
    dialect = conn.dialect
    process: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return process or (lambda value: value)


def _disagreement(row: Any) -> tuple[int, int, str, str]:
    """The bad row (line, seq, column, message) for a line `_disagreeing` found."""
    values = row._mapping
    first_line = values["first_line"]
    if values["stored_message"] is not None and (first_line is None or row.line < first_line):
        return row.line, 0, values["stored_column"], values["stored_message"]
    for name, column in PER_ORDER.items():
        given, first = values[column], values[f"first_{column}"]
        if given != first:
            message = (
                f"order {row.order_id} has {name} {plain(first)} on an earlier line, "
                f"got {plain(given)}"
            )
            return row.line, 0, name, message
    raise AssertionError(f"line {row.line} repeats its order's first line")


def plain(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, datetime):
        return value.isoformat()
    return shown(str(value))
