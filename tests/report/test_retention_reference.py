"""Every retention figure of every bucket, against a plain recomputation from the rows.

The history is made up (seeded): years of orders with gaps, cancellations, leap days
and times just after midnight in Dhaka. `reference` below reads docs/metrics.md's
definitions literally, customer by customer, with exact fractions; the report computes
them in one scan of the orders table. They must agree on SQLite and PostgreSQL, for
monthly buckets over six years (more segments than one 62-bit mask holds), yearly
buckets, a window in days and a period that cuts its first and last month.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine

from engine.report.retention import retention
from engine.store.db import session_scope
from engine.store.models import Customer, Order, OrderStatus

DHAKA = ZoneInfo("Asia/Dhaka")


@dataclass(frozen=True)
class Placed:
    customer: str
    at: datetime
    cancelled: bool
    total: Decimal


def history(seed: int = 2026) -> list[Placed]:
    """Forty customers over 2018–2026: most buy once or twice, some often, some come
    back after years; orders at 00:00–00:59 Dhaka time and on 29 February included."""
    rng = random.Random(seed)
    placed = []
    special = [
        datetime(2020, 2, 29, 0, 30, tzinfo=DHAKA),
        datetime(2024, 2, 29, 12, 0, tzinfo=DHAKA),
        datetime(2024, 3, 1, 10, 0, tzinfo=DHAKA),
        datetime(2025, 1, 1, 0, 10, tzinfo=DHAKA),
    ]
    for n in range(40):
        first = datetime(2018, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(4_500_000))
        moments = [first]
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 4, 9])):
            moments.append(moments[-1] + timedelta(minutes=rng.randrange(1, 700_000)))
        if n < len(special):
            moments.append(special[n].astimezone(UTC))
        for moment in moments:
            cancelled = rng.random() < 0.1
            total = Decimal(rng.randrange(100, 900_000)) / 100
            placed.append(Placed(f"c{n}", moment, cancelled, total))
    return placed


def store_history(engine: Engine, orders: list[Placed]) -> None:
    created = datetime(2017, 1, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        ids: dict[str, int] = {}
        for name in sorted({o.customer for o in orders}):
            customer = Customer(
                external_id=name,
                email=f"{name}@example.com",
                created_at=created,
                updated_at=created,
            )
            session.add(customer)
            session.flush()
            assert customer.id is not None
            ids[name] = customer.id
        for k, o in enumerate(orders):
            status = OrderStatus.CANCELLED if o.cancelled else OrderStatus.DELIVERED
            session.add(
                Order(
                    external_id=f"o{k}",
                    customer_id=ids[o.customer],
                    placed_at=o.at,
                    status=status,
                    total=o.total,
                )
            )


def a_year_back(moment: datetime) -> datetime:
    local = moment.astimezone(DHAKA)
    try:
        back = local.replace(year=local.year - 1)
    except ValueError:  # 29 February
        back = local.replace(year=local.year - 1, day=28)
    return back.astimezone(UTC)


def reference(
    orders: list[Placed], start: datetime, end: datetime, days: int | None
) -> dict[str, Any]:
    """docs/metrics.md's retention figures for [start, end), read literally."""
    counted = [o for o in orders if not o.cancelled]

    def window(t: datetime) -> datetime:
        return a_year_back(t) if days is None else t - timedelta(days=days)

    def active(t: datetime) -> set[str]:
        return {o.customer for o in counted if window(t) <= o.at < t}

    s, e = active(start), active(end)
    first = {
        c: min(o.at for o in counted if o.customer == c) for c in {o.customer for o in counted}
    }
    new = {c for c, at in first.items() if start <= at < end}
    in_period = [o for o in counted if start <= o.at < end]
    ordering = {o.customer for o in in_period}
    returning = {c for c in ordering if first[c] < start}
    repeat = {c for c in ordering if sum(o.customer == c and o.at < end for o in counted) >= 2}
    year = [o for o in counted if a_year_back(end) <= o.at < end]
    revenue = sum((o.total for o in in_period), Decimal(0))

    def share(part: int | Fraction, whole: int) -> Fraction | None:
        return Fraction(part) / whole if whole else None

    aov = share(Fraction(revenue), len(in_period))
    per_year = share(len(year), len({o.customer for o in year}))
    crr = share(len(e) - len(new), len(s))
    return {
        "customers_at_start": len(s),
        "customers_at_end": len(e),
        "new_customers": len(new),
        "retained_customers": len(s & e),
        "lost_customers": len(s - e),
        "ordering_customers": len(ordering),
        "returning_customers": len(returning),
        "repeat_customers": len(repeat),
        "orders": len(in_period),
        "revenue": revenue,
        "retention_rate": None if crr is None else crr * 100,
        "churn_rate": None if not s else Fraction(len(s - e) * 100, len(s)),
        "repeat_customer_rate": share(len(repeat) * 100, len(ordering)),
        "purchase_frequency": share(len(in_period), len(ordering)),
        "average_order_value": aov,
        "purchases_per_year": per_year,
        "customer_lifetime_value": None
        if aov is None or per_year is None or crr is None
        else aov * per_year * crr,
    }


def agrees(got: Any, want: Any) -> bool:
    """Counts and money exactly; an unrounded rate to its 28 significant digits."""
    if want is None or got is None:
        return got is want
    if isinstance(want, Fraction):
        return abs(Fraction(got) - want) <= abs(want) * Fraction(1, 10**26) + Fraction(1, 10**26)
    return bool(got == want)


def dhaka(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=DHAKA).astimezone(UTC)


@pytest.mark.parametrize(
    ("first", "last", "by", "days", "partial"),
    [
        pytest.param("2019-01-01", "2025-01-01", "month", None, [], id="six-years-by-month"),
        pytest.param("2018-07-01", "2026-07-01", "year", None, ["2018", "2026"], id="by-year"),
        pytest.param("2023-01-01", "2025-07-01", "month", 90, [], id="ninety-day-window"),
        pytest.param(
            "2024-02-15T13:00",
            "2024-06-10T09:30",
            "month",
            None,
            ["2024-02", "2024-06"],
            id="cut-months",
        ),
    ],
)
def test_every_bucket_agrees_with_a_plain_recomputation(
    store: Engine, first: str, last: str, by: str, days: int | None, partial: list[str]
) -> None:
    orders = history()
    store_history(store, orders)
    start, end = dhaka(first), dhaka(last)
    with session_scope(store) as session:
        report = retention(session, start, end, by=by, timezone="Asia/Dhaka", activity_days=days)
    slices = [*report["buckets"], report["total"]]
    assert len(slices) > 2
    checked = 0
    for got in slices:
        want = reference(orders, got["start"], got["end"], days)
        wrong = {k: (got[k], v) for k, v in want.items() if not agrees(got[k], v)}
        assert not wrong, (got.get("label", "total"), wrong)
        checked += len(want)
    assert checked == len(slices) * 17
    assert sum(b["orders"] for b in report["buckets"]) == report["total"]["orders"]
    assert [b["label"] for b in report["buckets"] if b["partial"]] == partial


def test_the_activity_window_is_a_calendar_year_not_365_days(store: Engine) -> None:
    """2024 is a leap year: a calendar year before 1 March 2024 is 1 March 2023, while
    365 days before it is 2 March 2023. A customer who ordered on 1 March 2023 is still
    active at the start of March 2024; counted in 365 days, they would have left."""
    store_history(
        store,
        [
            Placed("leap", dhaka("2023-03-01T10:00"), False, Decimal("500")),
            Placed("steady", dhaka("2023-06-01T10:00"), False, Decimal("500")),
        ],
    )
    with session_scope(store) as session:
        year = retention(
            session, dhaka("2024-03-01"), dhaka("2024-04-01"), by="month", timezone="Asia/Dhaka"
        )
        days = retention(
            session,
            dhaka("2024-03-01"),
            dhaka("2024-04-01"),
            by="month",
            timezone="Asia/Dhaka",
            activity_days=365,
        )
    assert year["activity_window"] == "a calendar year" and year["activity_days"] is None
    assert days["activity_window"] == "365 days"
    assert year["total"]["customers_at_start"] == 2  # "leap" and "steady"
    assert days["total"]["customers_at_start"] == 1  # "steady" only
    # purchases per year look a calendar year back from the end, 1 April 2023: only
    # "steady"'s order, by one customer
    assert year["total"]["purchases_per_year"] == Decimal("1.00")
