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

SQL cuts each counted order's day and hands the orders over a customer at a time
(in the order of the index on customer_id, placed_at, so SQLite sorts nothing);
each customer's days are summed up here and their row given before the next
customer's orders are read, so a shop of any size fits in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, case, cast, func, select, type_coerce
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col

from ..errors import StoreError
from ..store import Customer, Money, Order, is_postgres, is_purchase, session_scope
from .retention import TWO_PLACES

EPOCH = date(1970, 1, 1)
EPOCH_ORDINAL = EPOCH.toordinal()
ZERO = Decimal("0.00")
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
    cohort = None if first_order_from is None else _day_number(first_order_from, zone)
    try:
        with session_scope(engine) as session:
            placed = col(Order.placed_at)
            first, latest = session.execute(select(func.min(placed), func.max(placed))).one()
            if first is None:
                return
            day = _local_day(session, offsets(zone, first, end))
            # A condition on the day rather than on placed_at: a range on placed_at would
            # make SQLite read the orders in time order through its index, one customer's
            # orders far apart, instead of each customer's together.
            observed = [day <= (last_day - EPOCH).days]
            if latest >= end and _local_midnight(end, zone) != end:
                observed.append(placed < end)  # orders dated later on the last day
            query = _orders_query(day, observed).execution_options(yield_per=BATCH)
            dialect = session.get_bind().dialect
            stored = Money()
            batches = session.connection().execute(query).partitions()
            for history in _histories(row for batch in batches for row in batch):
                if cohort is None or min(history.days) >= cohort:
                    yield history.summary(last_day, stored, dialect)
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


def _local_midnight(moment: datetime, zone: ZoneInfo) -> datetime:
    return datetime.combine(moment.astimezone(zone).date(), time(), zone)


def _orders_query(day: Any, observed: list[Any]) -> Any:
    """The counted orders: customer, day and stored total, each customer's together in time
    order (the order of the index on customer_id, placed_at)."""
    return (
        select(
            col(Order.customer_id),
            day,
            type_coerce(col(Order.total), BigInteger),  # summed as stored, converted once
            col(Customer.external_id),
            col(Customer.email),
        )
        .join(Customer, col(Customer.id) == col(Order.customer_id))
        .where(is_purchase(col(Order.status)), *observed)
        .order_by(col(Order.customer_id), col(Order.placed_at))
    )


class _History:
    """One customer's counted orders: their number and each day's total, as stored."""

    __slots__ = ("customer", "days", "orders")

    def __init__(self, customer_id: int, external_id: str, email: str) -> None:
        self.customer = (customer_id, external_id, email)
        self.days: dict[int, int] = {}
        self.orders = 0

    def add(self, day: int, total: int) -> None:
        self.days[day] = self.days.get(day, 0) + total
        self.orders += 1

    def summary(self, observed_to: date, stored: Money, dialect: Dialect) -> CustomerSummary:
        """The summary with T counted to `observed_to`; `stored` reads the summed totals."""
        customer_id, external_id, email = self.customer
        first_day, last_day = min(self.days), max(self.days)
        first = date.fromordinal(EPOCH_ORDINAL + first_day)
        frequency = len(self.days) - 1
        total = sum(self.days.values())
        revenue = stored.process_result_value(total, dialect) or ZERO
        repeat = stored.process_result_value(total - self.days[first_day], dialect) or ZERO
        mean = repeat / frequency if frequency else ZERO
        return CustomerSummary(
            customer_id=customer_id,
            external_id=external_id,
            email=email,
            first_order=first,
            last_order=date.fromordinal(EPOCH_ORDINAL + last_day),
            orders=self.orders,
            revenue=revenue,
            frequency=frequency,
            recency=last_day - first_day,
            T=(observed_to - first).days,
            monetary_value=mean.quantize(TWO_PLACES, ROUND_HALF_UP),
        )


def _histories(rows: Iterable[Any]) -> Iterator[_History]:
    """Each customer's history from their orders' rows, a customer's rows together."""
    current: _History | None = None
    for customer_id, day, total, external_id, email in rows:
        if current is None or current.customer[0] != customer_id:
            if current is not None:
                yield current
            current = _History(customer_id, external_id, email)
        current.add(day, total)
    if current is not None:
        yield current
