"""One grouped scan of `orders` that every retention figure of every bucket counts from.

A report asks about a fixed set of moments: the start and end of the period and of
each bucket, and where each of their activity windows and years begins. Sorted,
these `cuts` split time into segments: segment 0 is before the first cut, segment
i is [cuts[i − 1], cuts[i]), and the last is from the last cut on. Every question a
retention figure asks ("ordered in [a, b)?", "first order before a?", "second
order before b?") is about whole segments, so one statement answers all of them:

- per segment, the counted orders and their revenue;
- per customer, the set of segments they ordered in (a bit mask), the segment of
  their first counted order and whether a second one lies in it too, grouped into
  `Profile`s: how many customers share each shape.

The statement does the work in the database (two grouped scans, then a grouping
of a few hundred thousand customers into a few thousand shapes), so a report's
time grows with the orders table, not with the number of buckets times the table.
Counted orders are those not cancelled.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
    union_all,
)
from sqlmodel import Session, col

from ..store import Order, is_purchase

WORK_MEM = "64MB"  # PostgreSQL's memory for the scan's sorts and hashes (the default is 4MB)
MASK_BITS = 62  # segments per mask column: a signed 64-bit sum never overflows
PAISA = Decimal(100)


@dataclass(frozen=True)
class Profile:
    """`customers` customers who ordered in the segments of `mask`, the first time in
    segment `first`, the second time in segment `second` (None: no second order)."""

    mask: int
    first: int
    second: int | None
    customers: int


@dataclass(frozen=True)
class Scan:
    """What the orders table says about the segments of `cuts`."""

    cuts: tuple[datetime, ...]
    orders: tuple[int, ...]  # counted orders per segment
    revenue: tuple[Decimal, ...]  # their revenue per segment
    profiles: tuple[Profile, ...]

    def index(self, moment: datetime) -> int:
        """The segment that starts at `moment` (a cut): orders before it are in
        segments 0 … index − 1."""
        position = bisect.bisect_left(self.cuts, moment)
        if position == len(self.cuts) or self.cuts[position] != moment:
            raise ValueError(f"{moment} is not one of the scan's cuts")
        return position + 1

    def between(self, start: datetime, end: datetime) -> tuple[int, int]:
        """The segments [first, last) that make up [start, end)."""
        return self.index(start), self.index(end)


def bits(first: int, last: int) -> int:
    """The mask of segments first … last − 1."""
    return (1 << last) - (1 << first) if last > first else 0


def scan(session: Session, moments: set[datetime]) -> Scan:
    """Scan the counted orders once, cut at `moments`."""
    cuts = tuple(sorted(moments))
    segments = len(cuts) + 1
    sqlite = session.get_bind().dialect.name == "sqlite"
    if not sqlite:  # PostgreSQL: group a few hundred thousand customers in memory, not on disk
        session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    rows = session.execute(_statement(cuts, sqlite=sqlite)).all()
    orders, revenue = [0] * segments, [Decimal(0)] * segments
    profiles = []
    for kind, segment, count, total, *masks in rows:
        if kind == 0:
            orders[segment], revenue[segment] = int(count), Decimal(int(total)) / PAISA
            continue
        mask = sum(int(m) << (MASK_BITS * k) for k, m in enumerate(masks))
        first, alone = divmod(int(segment), 2)
        profiles.append(Profile(mask, first, _second(mask, first, alone), int(count)))
    return Scan(cuts, tuple(orders), tuple(revenue), tuple(profiles))


def _second(mask: int, first: int, alone: int) -> int | None:
    """The segment of the second order: the first one's, unless that order was alone
    in it; then the next segment with an order (None: there is none)."""
    if not alone:
        return first
    later = mask >> (first + 1)
    if not later:
        return None
    return first + 1 + (later & -later).bit_length() - 1


def _statement(cuts: tuple[datetime, ...], *, sqlite: bool) -> Any:
    """Rows (0, segment, orders, revenue in paisa, 0 …) per segment, then rows
    (1, 2 × first segment + alone, customers, 0, mask columns …) per profile, where
    alone is 1 when the first order was the only one in its segment."""
    counted = is_purchase(col(Order.status))
    segment = _segment_of(col(Order.placed_at), cuts, 0, len(cuts)).label("segment")
    by_segment: Any = literal_column("segment")  # PostgreSQL: the label, not the CASE's binds
    columns = (len(cuts) + 1 + MASK_BITS - 1) // MASK_BITS
    zero = literal(0, BigInteger)
    per_segment = (
        select(
            literal(0).label("kind"),
            segment,
            func.count().label("count"),
            cast(func.sum(col(Order.total)), BigInteger).label("total"),
            *(zero.label(f"mask{k}") for k in range(columns)),
        )
        .where(counted)
        .group_by(by_segment)
    )
    # SQLite, `+ 0`: a table scan and one sort, not a walk of the (customer, placed_at)
    # index that reads the table in random order (three times slower). PostgreSQL
    # hashes either way, and estimates the groups from the column's statistics.
    customer_id = col(Order.customer_id)
    customer = (customer_id + 0 if sqlite else customer_id).label("customer")
    cs = (
        select(customer, segment, func.count().label("orders"))
        .where(counted)
        .group_by(literal_column("customer"), by_segment)
        .subquery("customer_segment")
        .c
    )
    one = cast(literal(1), BigInteger)
    shape = func.min(cs.segment * 2 + case((cs.orders >= 2, 0), else_=1)).label("shape")
    masks = [
        func.coalesce(
            func.sum(
                case(
                    (
                        (cs.segment >= MASK_BITS * k) & (cs.segment < MASK_BITS * (k + 1)),
                        one.op("<<")(cs.segment - MASK_BITS * k),
                    ),
                    else_=0,
                )
            ),
            0,
        ).label(f"mask{k}")
        for k in range(columns)
    ]
    customers = select(cs.customer, shape, *masks).group_by(cs.customer).subquery()
    mask_columns = [customers.c[f"mask{k}"] for k in range(columns)]
    per_profile = select(
        literal(1).label("kind"),
        customers.c.shape,
        func.count().label("count"),
        zero.label("total"),
        *mask_columns,
    ).group_by(customers.c.shape, *mask_columns)
    return union_all(per_segment, per_profile).order_by(literal_column("kind"))


def _segment_of(placed: Any, cuts: tuple[datetime, ...], low: int, high: int) -> Any:
    """The segment (low … high) of `placed`, as a balanced tree of CASEs: each
    order is compared with log2(segments) cuts, not with all of them."""
    if low == high:
        return literal(low)
    middle = (low + high + 1) // 2  # segment `middle` starts at cuts[middle - 1]
    return case(
        (placed < cuts[middle - 1], _segment_of(placed, cuts, low, middle - 1)),
        else_=_segment_of(placed, cuts, middle, high),
    )
