"""Per-customer RFM rows for lifetime-value models (BG/NBD, Pareto/NBD, Gamma-Gamma).

`customer_summaries` gives one row per customer with a counted order (status not
`cancelled`) placed before the observation's end, with the columns the `lifetimes`
library's `summary_data_from_transaction_data` computes (freq "D"), days being
calendar days of the shop's timezone (docs/metrics.md, "Customers (RFM)"):

- the purchase days are the distinct days on which the customer ordered, each
  worth the total of that day's counted orders;
- `frequency` = purchase days − 1; `recency` = last purchase day − first;
- `T` = the observation's last day − the first purchase day, the last day being the
  one that holds the last moment before `end` (the `--to` day, or today);
- `monetary_value` = the mean of the purchase days after the first, rounded half-up
  to the paisa; 0 when there are none.

The days are cut in SQL, grouped by customer and day, and the rows are read from
the database as they are written out, so a shop of any size fits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, case, cast, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col

from ..errors import StoreError
from ..store import Customer, Order, OrderStatus, is_postgres, session_scope
from .retention import TWO_PLACES

EPOCH = date(1970, 1, 1)
DAY_SECONDS = 86_400
BATCH = 2_000  # rows fetched from the database at a time


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """One customer's purchase history, summed up as a lifetime-value model reads it."""

    customer_id: int
    external_id: str
    email: str
    first_order: date
    last_order: date
    orders: int
    revenue: Decimal
    frequency: int
    recency: int
    T: int  # the name every BTYD library gives the customer's age
    monetary_value: Decimal


CUSTOMER_COLUMNS = tuple(field.name for field in fields(CustomerSummary))


def customer_summaries(
    engine: Engine, end: datetime, timezone: str, *, first_order_from: datetime | None = None
) -> Iterator[CustomerSummary]:
    """Each customer's summary from the counted orders placed before `end`, by customer id.

    `first_order_from` keeps the customers whose first counted order was placed at
    or after it (a cohort). Rows are fetched in batches while the caller reads them.
    Raises StoreError when the database cannot be read.
    """
    zone = ZoneInfo(timezone)
    last_day = observation_day(end, timezone)
    try:
        with session_scope(engine) as session:
            first = session.execute(select(func.min(col(Order.placed_at)))).scalar()
            if first is None:
                return
            day = _local_day(session, offsets(zone, first, end))
            cohort = None if first_order_from is None else _day_number(first_order_from, zone)
            query = _summary_query(day, end, cohort)
            rows = session.execute(query, execution_options={"yield_per": BATCH})
            for row in rows:
                yield _summary(row, last_day)
    except OperationalError as exc:
        raise StoreError(
            f"cannot read the customers' orders from the database: {exc.orig}"
        ) from exc


def observation_day(end: datetime, timezone: str) -> date:
    """The last day observed, in `timezone`: the day of the last moment before `end`."""
    return (end - timedelta(microseconds=1)).astimezone(ZoneInfo(timezone)).date()


def offsets(zone: ZoneInfo, first: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offset in seconds from `first` to `end`: (since, offset) pairs.

    The first pair's `since` is `first`; each next one is a change of offset (a
    daylight-saving switch), found to the second. Zones change offset at most once
    a day, so a daily look finds every change.
    """
    first = first.astimezone(UTC).replace(microsecond=0)
    found = [(first, _offset(zone, first))]
    moment = first
    while moment < end:
        following = min(moment + timedelta(days=1), end)
        if _offset(zone, following) != found[-1][1]:
            lo, hi = moment, following  # the offset changes in (lo, hi]
            while hi - lo > timedelta(seconds=1):
                middle = lo + (hi - lo) / 2
                lo, hi = (middle, hi) if _offset(zone, middle) == found[-1][1] else (lo, middle)
            found.append((hi.replace(microsecond=0), _offset(zone, hi)))
        moment = following
    return found


def _offset(zone: ZoneInfo, moment: datetime) -> int:
    shift = moment.astimezone(zone).utcoffset()
    return int(shift.total_seconds()) if shift is not None else 0


def _day_number(moment: datetime, zone: ZoneInfo) -> int:
    """Days from 1970-01-01 to the day of `moment` in `zone`."""
    return (moment.astimezone(zone).date() - EPOCH).days


def _local_day(session: Session, changes: list[tuple[datetime, int]]) -> Any:
    """SQL for an order's day in the shop's timezone, as days since 1970-01-01."""
    placed = col(Order.placed_at)
    if is_postgres(session):
        seconds = cast(func.floor(func.extract("epoch", placed)), BigInteger)
    else:
        seconds = cast(func.strftime("%s", placed), Integer)
    offset: Any = changes[-1][1]
    if len(changes) > 1:  # the latest change first: the first WHEN that holds wins
        offset = case(
            *[(placed >= since, shift) for since, shift in reversed(changes[1:])],
            else_=changes[0][1],
        )
    # Integer division rounds toward zero; orders after 1970 are never negative.
    return (seconds + offset) // DAY_SECONDS


def _summary_query(day: Any, end: datetime, first_day: int | None) -> Any:
    """One row per customer: their purchase days, orders, revenue and first day's total."""
    counted = (
        select(col(Order.customer_id).label("customer_id"), day.label("day"), col(Order.total))
        .where(col(Order.status) != OrderStatus.CANCELLED, col(Order.placed_at) < end)
        .subquery("counted")
    )
    per_day = (
        select(
            counted.c.customer_id,
            counted.c.day,
            func.count().label("orders"),
            func.sum(counted.c.total).label("total"),
        )
        .group_by(counted.c.customer_id, counted.c.day)
        .subquery("per_day")
    )
    marked = select(
        per_day,
        func.min(per_day.c.day).over(partition_by=per_day.c.customer_id).label("first_day"),
    ).subquery("marked")
    first_total = case((marked.c.day == marked.c.first_day, marked.c.total), else_=0)
    grouped = select(
        marked.c.customer_id,
        func.min(marked.c.day).label("first_day"),
        func.max(marked.c.day).label("last_day"),
        func.count().label("days"),
        func.sum(marked.c.orders).label("orders"),
        func.sum(marked.c.total).label("revenue"),
        func.sum(first_total).label("first_day_total"),
    ).group_by(marked.c.customer_id)
    if first_day is not None:
        grouped = grouped.having(func.min(marked.c.day) >= first_day)
    summary = grouped.subquery("summary")
    return (
        select(summary, col(Customer.external_id), col(Customer.email))
        .join(Customer, col(Customer.id) == summary.c.customer_id)
        .order_by(summary.c.customer_id)
    )


def _summary(row: Any, last_day: date) -> CustomerSummary:
    first, last = EPOCH + timedelta(days=row.first_day), EPOCH + timedelta(days=row.last_day)
    frequency = row.days - 1
    repeat = Decimal(row.revenue) - Decimal(row.first_day_total)
    return CustomerSummary(
        customer_id=row.customer_id,
        external_id=row.external_id,
        email=row.email,
        first_order=first,
        last_order=last,
        orders=row.orders,
        revenue=Decimal(row.revenue).quantize(TWO_PLACES),
        frequency=frequency,
        recency=(last - first).days,
        T=(last_day - first).days,
        monetary_value=(repeat / frequency if frequency else Decimal(0)).quantize(
            TWO_PLACES, ROUND_HALF_UP
        ),
    )
