"""Per-customer RFM rows, checked column by column against a plain recomputation."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from engine.report.customers import CUSTOMER_COLUMNS, customer_summaries, offsets
from engine.store.db import session_scope
from engine.store.models import Customer
from tests.report.test_retention import at, build

DHAKA = "Asia/Dhaka"
# The observation ends with 31 March 2026 in Dhaka: 2026-04-01 00:00 +06:00.
END = at("2026-03-31T18:00")

# (placed at, UTC; total in taka, "-" for a cancelled order)
HISTORY = {
    # one order: frequency 0, monetary value 0
    "once": [("2026-01-10T10:00", "500.00")],
    # two orders on 1 February in Dhaka (09:00 and 18:00) make one purchase day
    "same_day": [
        ("2026-02-01T03:00", "100.50"),
        ("2026-02-01T12:00", "200.25"),
        ("2026-02-15T08:00", "300.00"),
        ("2026-03-01T05:00", "10.10"),
        ("2026-03-01T06:00", "20.20"),
    ],
    # 00:30 on 1 February in Dhaka is still 31 January in UTC: one day with the 16:00 order
    "midnight": [
        ("2026-01-31T18:30", "70.00"),
        ("2026-02-01T10:00", "30.00"),
        ("2026-02-02T17:59", "45.45"),
    ],
    # cancelled orders count nowhere, not even as the first order
    "cancelled": [
        ("2026-01-05T10:00", "-"),
        ("2026-01-20T10:00", "50.00"),
        ("2026-02-20T10:00", "-"),
    ],
    "only_cancelled": [("2026-02-10T10:00", "-")],
    # 23:59 on 31 March in Dhaka is in; 00:30 on 1 April is after the end.
    # 04:30 UTC on 10 March is 00:30 in New York (summer time since 8 March).
    "late": [
        ("2026-03-10T04:30", "100.00"),
        ("2026-03-31T17:59", "40.33"),
        ("2026-03-31T18:30", "999.00"),
    ],
    "after_end": [("2026-04-02T10:00", "80.00")],
    # repeat days of 10.00 and 10.01: a mean of 10.005, rounded half-up to 10.01
    "half": [
        ("2026-01-03T10:00", "1.00"),
        ("2026-01-04T10:00", "10.00"),
        ("2026-03-04T10:00", "10.01"),
    ],
}


def expected(
    history: dict[str, list[tuple[str, str]]],
    end: datetime,
    timezone: str,
    first_order_from: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """The rows worked out one customer at a time from the history itself."""
    zone = ZoneInfo(timezone)
    last_day = (end - timedelta(microseconds=1)).astimezone(zone).date()
    rows = {}
    for key, orders in history.items():
        day_totals: dict[date, Decimal] = {}
        count = 0
        for placed, total in orders:
            if total == "-" or at(placed) >= end:
                continue
            day = at(placed).astimezone(zone).date()
            day_totals[day] = day_totals.get(day, Decimal("0")) + Decimal(total)
            count += 1
        if not day_totals:
            continue
        days = sorted(day_totals)
        if first_order_from is not None and days[0] < first_order_from.astimezone(zone).date():
            continue
        repeat = [day_totals[d] for d in days[1:]]
        mean = sum(repeat, Decimal("0")) / len(repeat) if repeat else Decimal("0")
        rows[key] = {
            "external_id": key,
            "email": f"{key}@example.com",
            "first_order": days[0],
            "last_order": days[-1],
            "orders": count,
            "revenue": sum(day_totals.values(), Decimal("0")),
            "frequency": len(days) - 1,
            "recency": (days[-1] - days[0]).days,
            "T": (last_day - days[0]).days,
            "monetary_value": mean.quantize(Decimal("0.01"), ROUND_HALF_UP),
        }
    return rows


def summaries(store: Engine, end: datetime, timezone: str, **kwargs: Any) -> dict[str, Any]:
    with session_scope(store) as session:
        ids = dict(session.execute(select(col(Customer.external_id), col(Customer.id))).all())
    got = {}
    for row in customer_summaries(store, end, timezone, **kwargs):
        values = {name: getattr(row, name) for name in CUSTOMER_COLUMNS}
        assert values.pop("customer_id") == ids[row.external_id]
        got[row.external_id] = values
    return got


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(END, id="end-of-a-day"),
        pytest.param(at("2026-03-31T12:00"), id="now-in-the-afternoon"),
    ],
)
@pytest.mark.parametrize("timezone", [DHAKA, "America/New_York", "UTC"])
def test_every_column_matches_a_plain_recomputation(
    store: Engine, end: datetime, timezone: str
) -> None:
    build(store, HISTORY)
    got = summaries(store, end, timezone)
    assert got == expected(HISTORY, end, timezone)
    assert list(got) == sorted(got, key=lambda key: list(HISTORY).index(key))  # by customer id


def test_the_worked_out_values_in_dhaka(store: Engine) -> None:
    build(store, HISTORY)
    got = summaries(store, END, DHAKA)
    assert set(got) == {"once", "same_day", "midnight", "cancelled", "late", "half"}
    # one-time buyer: age from 10 January to 31 March
    assert got["once"] == {
        "external_id": "once",
        "email": "once@example.com",
        "first_order": date(2026, 1, 10),
        "last_order": date(2026, 1, 10),
        "orders": 1,
        "revenue": Decimal("500.00"),
        "frequency": 0,
        "recency": 0,
        "T": 80,
        "monetary_value": Decimal("0.00"),
    }
    same_day = got["same_day"]
    # days: 1 Feb (300.75), 15 Feb (300.00), 1 Mar (30.30); mean of the repeat days
    assert (same_day["orders"], same_day["frequency"], same_day["recency"]) == (5, 2, 28)
    assert same_day["monetary_value"] == Decimal("165.15")
    assert same_day["revenue"] == Decimal("631.05")
    midnight = got["midnight"]
    assert (midnight["first_order"], midnight["frequency"], midnight["recency"]) == (
        date(2026, 2, 1),
        1,
        1,
    )
    assert midnight["monetary_value"] == Decimal("45.45")
    assert got["cancelled"]["first_order"] == date(2026, 1, 20)
    assert got["cancelled"]["orders"] == 1
    late = got["late"]
    assert (late["orders"], late["last_order"], late["recency"], late["T"]) == (
        2,
        date(2026, 3, 31),
        21,
        21,
    )
    assert late["revenue"] == Decimal("140.33")
    assert got["half"]["monetary_value"] == Decimal("10.01")


def test_first_order_from_keeps_a_cohort(store: Engine) -> None:
    build(store, HISTORY)
    start = datetime(2026, 2, 1, tzinfo=ZoneInfo(DHAKA))
    got = summaries(store, END, DHAKA, first_order_from=start)
    # "midnight" first ordered at 00:30 on 1 February in Dhaka (31 January in UTC): in
    assert set(got) == {"same_day", "midnight", "late"}
    assert got == expected(HISTORY, END, DHAKA, start)


def test_an_empty_shop_has_no_rows(store: Engine) -> None:
    assert list(customer_summaries(store, END, DHAKA)) == []


def test_offsets_find_each_daylight_saving_switch_to_the_second() -> None:
    zone = ZoneInfo("America/New_York")
    found = offsets(zone, at("2026-01-01T00:00"), at("2027-01-01T00:00"))
    assert found == [
        (at("2026-01-01T00:00"), -5 * 3600),
        (at("2026-03-08T07:00"), -4 * 3600),
        (at("2026-11-01T06:00"), -5 * 3600),
    ]
    assert offsets(ZoneInfo(DHAKA), at("2020-01-01T00:00"), END) == [
        (at("2020-01-01T00:00"), 6 * 3600)
    ]
