"""Retention metrics on hand-built order histories whose answers are worked out below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from engine.intake.importer import import_csv
from engine.report.retention import (
    ReportError,
    buckets,
    figures,
    percent,
    retention,
    rounded,
)
from engine.store.db import session_scope
from engine.store.models import Customer, Order, OrderStatus, SurveyAnswer

HOUR = timedelta(hours=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Period: the year 2025, [2025-01-01, 2026-01-01) UTC, activity window W = 365 days.
# start − W = 2024-01-02 (2024 is a leap year); end − W = 2025-01-01.
HISTORY = {
    # in S (2024-03-01) and in E (2025-02-10): retained; ordered before: returning
    "a": [("2024-03-01", "100"), ("2025-02-10", "200")],
    # in S, nothing since: lost
    "b": [("2024-06-01", "50")],
    # first order ever inside the period: new; in E; not returning
    "c": [("2025-05-05", "300"), ("2025-08-08", "100")],
    # comes back after a gap longer than W: not in S, in E, not new, returning
    "d": [("2022-01-01", "80"), ("2025-09-09", "120")],
    # only cancelled orders: counts nowhere
    "f": [("2024-05-05", "-"), ("2025-03-03", "-")],
    # in S; its order in the period was cancelled, so lost and not ordering
    "g": [("2024-12-31", "40"), ("2025-04-04", "-")],
    # ordered before the window: not in S, nothing in the period
    "h": [("2023-12-31", "60")],
    # ordered exactly at start − W (the window's lower bound is inclusive): in S, lost
    "i": [("2024-01-02", "10")],
}


def build(engine: Engine, history: dict[str, list[tuple[str, str]]]) -> None:
    created = at("2020-01-01")
    with session_scope(engine) as session:
        for key, orders in history.items():
            customer = Customer(
                external_id=key, email=f"{key}@example.com", created_at=created, updated_at=created
            )
            session.add(customer)
            session.flush()
            for n, (day, total) in enumerate(orders):
                cancelled = total == "-"
                session.add(
                    Order(
                        external_id=f"{key}-{n}",
                        customer_id=customer.id,
                        placed_at=at(day),
                        status=OrderStatus.CANCELLED if cancelled else OrderStatus.PLACED,
                        total=Decimal("999") if cancelled else Decimal(total),
                    )
                )


def answers(engine: Engine, scores: list[tuple[str, int]]) -> None:
    with session_scope(engine) as session:
        customer = Customer(
            external_id="survey",
            email="survey@example.com",
            created_at=at("2020-01-01"),
            updated_at=at("2020-01-01"),
        )
        session.add(customer)
        session.flush()
        for day, score in scores:
            session.add(SurveyAnswer(customer_id=customer.id, score=score, at=at(day)))


def test_year_figures_follow_the_definitions(store: Engine) -> None:
    build(store, HISTORY)
    with session_scope(store) as session:
        got = figures(session, at("2025-01-01"), at("2026-01-01"))
    # S = {a, b, g, i} = 4; E = {a, c, d} = 3; N = {c} = 1; retained = {a}; lost = {b, g, i}
    assert got["customers_at_start"] == 4
    assert got["customers_at_end"] == 3
    assert got["new_customers"] == 1
    assert got["retained_customers"] == 1
    assert got["lost_customers"] == 3
    # CRR = (3 − 1) / 4 × 100; churn = 3 / 4 × 100
    assert got["retention_rate"] == Decimal("50.00")
    assert got["churn_rate"] == Decimal("75.00")
    # ordering = {a, c, d}; returning (ordered before) = {a, d}; repeat (2+ counted orders
    # up to the end) = {a, d, and c, new but twice in the period}: 3 / 3 × 100
    assert got["ordering_customers"] == 3
    assert got["returning_customers"] == 2
    assert got["repeat_customers"] == 3
    assert got["repeat_customer_rate"] == Decimal("100.00")
    # 4 counted orders (a 200, c 300 + 100, d 120) = 720 taka; 4 / 3 per customer, unrounded
    assert got["orders"] == 4
    assert got["revenue"] == Decimal("720.00")
    assert got["purchase_frequency"] == Decimal(4) / Decimal(3)
    assert got["average_order_value"] == Decimal("180.00")
    assert got["purchases_per_year"] == Decimal(4) / Decimal(3)
    # CLV = 180 × (4 / 3) × 0.5 = 120 taka (from the unrounded 4/3, not 1.33)
    assert got["customer_lifetime_value"] == Decimal("120.00")
    assert got["nps"] == {
        "answers": 0,
        "promoters": 0,
        "passives": 0,
        "detractors": 0,
        "score": None,
    }


def test_a_month_bucket_uses_its_own_start_and_end(store: Engine) -> None:
    build(store, HISTORY)
    with session_scope(store) as session:
        report = retention(session, at("2025-01-01"), at("2025-03-01"), by="month", timezone="UTC")
    january, february = report["buckets"]
    assert (january["label"], february["label"]) == ("2025-01", "2025-02")
    # February: S = active at Feb 1 = orders in [2024-02-02, 2025-02-01) = {a, b, g} (i is
    # older); E = orders in [2024-03-01, 2025-03-01) = {a, b, g}; N = 0.
    assert february["customers_at_start"] == 3
    assert february["customers_at_end"] == 3
    assert february["retention_rate"] == Decimal("100.00")
    assert february["churn_rate"] == Decimal("0.00")
    # Only a ordered in February, and had ordered before: 1 / 1
    assert february["repeat_customer_rate"] == Decimal("100.00")
    # January: nobody ordered, so no repeat rate and no order value
    assert january["ordering_customers"] == 0
    assert january["repeat_customer_rate"] is None
    assert january["average_order_value"] is None
    assert report["total"]["start"] == at("2025-01-01")


def test_an_empty_period_is_no_data_not_a_division_by_zero(store: Engine) -> None:
    build(store, HISTORY)
    with session_scope(store) as session:
        got = figures(session, at("2030-01-01"), at("2030-02-01"))
    assert got["customers_at_start"] == 0
    for name in (
        "retention_rate",
        "churn_rate",
        "repeat_customer_rate",
        "purchase_frequency",
        "average_order_value",
        "purchases_per_year",
        "customer_lifetime_value",
    ):
        assert got[name] is None, name
    assert got["revenue"] == Decimal("0.00")
    assert got["nps"]["score"] is None


def test_net_promoter_score_counts_answers_in_the_period(store: Engine) -> None:
    answers(
        store,
        [
            ("2025-03-01", 10),
            ("2025-03-02", 9),
            ("2025-03-03", 9),  # promoters
            ("2025-03-04", 8),  # passive
            ("2025-03-05", 3),  # detractor
            ("2024-12-31", 0),  # before the period: ignored
            ("2025-03-06", 11),  # not a 0–10 answer: ignored
        ],
    )
    with session_scope(store) as session:
        got = figures(session, at("2025-01-01"), at("2026-01-01"))["nps"]
    # 3 / 5 promoters − 1 / 5 detractors = 60 − 20
    assert got == {
        "answers": 5,
        "promoters": 3,
        "passives": 1,
        "detractors": 1,
        "score": Decimal("40.00"),
    }


def test_months_follow_the_shop_timezone() -> None:
    start = datetime(2025, 1, 15, tzinfo=UTC)
    end = datetime(2025, 3, 10, tzinfo=UTC)
    got = buckets(start, end, "month", "Asia/Dhaka")
    assert [b.label for b in got] == ["2025-01", "2025-02", "2025-03"]
    # February begins at midnight in Dhaka (UTC+6): 18:00 UTC on 31 January
    assert got[0].end == got[1].start == datetime(2025, 1, 31, 18, tzinfo=UTC)
    assert got[0].start == start and got[-1].end == end
    assert [b.label for b in buckets(start, end, "year", "UTC")] == ["2025"]
    assert len(buckets(start, start + timedelta(days=3), "day", "UTC")) == 3


@pytest.mark.parametrize(
    ("start", "end", "by"),
    [
        pytest.param(at("2025-02-01"), at("2025-01-01"), "month", id="backwards"),
        pytest.param(at("2025-01-01"), at("2025-01-01"), "month", id="empty"),
        pytest.param(at("2025-01-01"), at("2025-02-01"), "week", id="unknown-bucket"),
    ],
)
def test_impossible_periods_are_refused(start: datetime, end: datetime, by: str) -> None:
    with pytest.raises(ReportError, match=r"period|bucket size"):
        buckets(start, end, by, "UTC")


def test_percent_is_unrounded_with_two_places_at_least_and_knows_no_data() -> None:
    assert str(percent(1, 8)) == "12.50"
    assert str(percent(1, 2)) == "50.00"
    assert str(percent(2, 3)) == "66.66666666666666666666666667"  # 28 significant digits
    assert percent(5, 0) is None
    assert rounded(percent(2, 3)) == Decimal("66.67")  # as the pages show it
    assert rounded(Decimal("0.125")) == Decimal("0.13")  # half up


def test_a_shorter_activity_window(store: Engine) -> None:
    build(store, HISTORY)
    with session_scope(store) as session:
        got = figures(session, at("2025-01-01"), at("2026-01-01"), activity_days=180)
    # W = 180 days: S = orders in [2024-07-05, 2025-01-01) = {g}; E = orders in
    # [2025-07-05, 2026-01-01) = {c, d}; N = {c}; g is lost.
    assert (got["customers_at_start"], got["customers_at_end"], got["new_customers"]) == (1, 2, 1)
    assert got["lost_customers"] == 1 and got["retained_customers"] == 0
    # (2 − 1) / 1: d, back after a gap, is in E − N although not in S
    assert got["retention_rate"] == Decimal("100.00")
    assert got["churn_rate"] == Decimal("100.00")
    # purchases per year still look at the whole year before the end: 4 orders / 3 customers
    assert got["purchases_per_year"] == Decimal(4) / Decimal(3)


def test_repeat_customers_in_a_shops_first_year_and_over_the_whole_history(store: Engine) -> None:
    """Half of a new shop's customers bought twice: the rate says 50 %, not 0 % (nobody
    ordered before the period, the old definition's only way to repeat)."""
    build(
        store,
        {
            "once": [("2025-03-01", "100")],
            "twice": [("2025-03-01", "100"), ("2025-06-01", "100")],
            "cancelled second": [("2025-03-01", "100"), ("2025-07-01", "-")],
            "later second": [("2025-04-01", "100"), ("2026-02-01", "100")],
        },
    )
    with session_scope(store) as session:
        year = figures(session, at("2025-01-01"), at("2026-01-01"))
        history = figures(session, at("2020-01-01"), at("2027-01-01"))
        spring = figures(session, at("2025-03-01"), at("2025-05-01"))
    # 2025: four ordering, only "twice" has two counted orders by its end
    assert (year["ordering_customers"], year["repeat_customers"]) == (4, 1)
    assert year["repeat_customer_rate"] == Decimal("25.00")
    # the whole history: "twice" and "later second" among the four who ordered
    assert (history["repeat_customers"], history["repeat_customer_rate"]) == (2, Decimal("50.00"))
    # March-April: one order each, nobody's second yet
    assert (spring["ordering_customers"], spring["repeat_customers"]) == (4, 0)
    assert year["returning_customers"] == 0 and history["returning_customers"] == 0


def test_a_dhaka_shop_sees_an_order_at_half_past_midnight_on_new_years_day_in_the_new_year(
    store: Engine, tmp_path: Path
) -> None:
    """Imported without a zone, 2026-01-01 00:30 is read in Asia/Dhaka (18:30 UTC on 31
    December), stored in UTC, and counted in January and in 2026 by Dhaka's calendar."""
    files = {
        "customers": "id,email\nrina,rina@example.com\n",
        "products": "sku,name,price\nbag,Jute bag,350\n",
        "orders": "order_id,customer_id,placed_at,sku,quantity\no1,rina,2026-01-01 00:30,bag,1\n",
    }
    for kind, text in files.items():
        (tmp_path / f"{kind}.csv").write_text(text, encoding="utf-8")
        import_csv(store, kind, tmp_path / f"{kind}.csv", now=at("2026-02-01"), shop_timezone="Asia/Dhaka")  # fmt: skip
    with session_scope(store) as session:
        placed = session.execute(select(col(Order.placed_at))).scalar_one()
        by_year = retention(
            session, at("2025-01-01") - 6 * HOUR, at("2027-01-01") - 6 * HOUR, by="year", timezone="Asia/Dhaka"
        )  # fmt: skip
        by_month = retention(
            session, at("2025-12-01") - 6 * HOUR, at("2026-02-01") - 6 * HOUR, by="month", timezone="Asia/Dhaka"
        )  # fmt: skip
    assert placed == at("2025-12-31T18:30")
    assert [(b["label"], b["orders"]) for b in by_year["buckets"]] == [("2025", 0), ("2026", 1)]
    assert [(b["label"], b["orders"]) for b in by_month["buckets"]] == [
        ("2025-12", 0),
        ("2026-01", 1),
    ]
    assert by_month["buckets"][1]["start"] == at("2025-12-31T18:00")  # midnight in Dhaka
