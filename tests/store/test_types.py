"""Money stays exact and times come back aware UTC, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError

from engine.store.models import Checkpoint, Credit, Customer
from engine.store.types import CENT, MAX_MINOR, Money, UTCDateTime, to_money
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
DHAKA = ZoneInfo("Asia/Dhaka")


def add_customer(conn: object, **values: object) -> None:
    row = {
        "external_id": "C1",
        "email": "c1@example.com",
        "name": "",
        "locale": "en",
        "marketing_consent": False,
        "created_at": NOW,
        "updated_at": NOW,
        "orders_count": 0,
        "total_spent": Decimal("0"),
    }
    conn.execute(insert(Customer.__table__), [row | values])  # type: ignore[attr-defined]


def test_ten_thousand_paisa_credits_sum_to_exactly_one_hundred_taka(fresh_store: Engine) -> None:
    credits = [
        {
            "dedupe_key": f"refund:{n}",
            "customer_id": 1,
            "amount": Decimal("0.01"),
            "reason": "price drop",
            "created_at": NOW,
        }
        for n in range(10_000)
    ]
    with fresh_store.begin() as conn:
        add_customer(conn)
        conn.execute(insert(Credit.__table__), credits)  # type: ignore[attr-defined]
        total = conn.execute(select(func.sum(Credit.amount))).scalar_one()
        smallest = conn.execute(select(func.min(Credit.amount))).scalar_one()
    assert total == Decimal("100.00") and isinstance(total, Decimal)
    assert str(total) == "100.00"
    assert smallest == Decimal("0.01")


def test_amounts_come_back_as_they_went_in(sqlite_store: Engine) -> None:
    amounts = [Decimal("0.00"), Decimal("0.10"), Decimal("14.37"), Decimal("999999999999.99")]
    with sqlite_store.begin() as conn:
        for n, amount in enumerate(amounts):
            add_customer(conn, external_id=f"C{n}", email=f"c{n}@example.com", total_spent=amount)
        stored = conn.execute(select(Customer.total_spent).order_by(Customer.id)).scalars().all()
    assert stored == amounts


def test_times_come_back_aware_utc_and_aggregates_too(fresh_store: Engine) -> None:
    dhaka_evening = datetime(2026, 11, 22, 21, 15, 30, 123456, tzinfo=DHAKA)
    with fresh_store.begin() as conn:
        add_customer(conn, created_at=dhaka_evening, first_order_at=NOW - timedelta(days=1))
        created, first = conn.execute(select(Customer.created_at, Customer.first_order_at)).one()
        # SQLite hands aggregates back as text: they must come back as times all the same.
        latest = conn.execute(select(func.max(Customer.created_at))).scalar_one()
    for value in (created, first, latest):
        assert value.tzinfo is UTC
    assert created == dhaka_evening and created.hour == 15 and created.microsecond == 123456
    assert latest == dhaka_evening
    assert first == NOW - timedelta(days=1)


def test_a_naive_time_is_refused_before_it_reaches_the_database(sqlite_store: Engine) -> None:
    with sqlite_store.begin() as conn, pytest.raises(StatementError) as caught:
        conn.execute(
            insert(Checkpoint.__table__),  # type: ignore[attr-defined]
            [{"name": "x", "value": "1", "updated_at": datetime(2026, 11, 22, 6, 0)}],
        )
    assert isinstance(caught.value.orig, ValueError)
    assert "naive datetime refused" in str(caught.value.orig)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        pytest.param(1.1, TypeError, "money must not be a float, got: 1.1", id="float"),
        pytest.param(Decimal("1.005"), ValueError, "more than two decimal places", id="3-places"),
        pytest.param("NaN", ValueError, "money must be a finite number", id="nan"),
        pytest.param("Infinity", ValueError, "money must be a finite number", id="infinity"),
        pytest.param("lots", ValueError, "money must be a number, got: 'lots'", id="word"),
        pytest.param(Decimal("1e30"), ValueError, "money out of range", id="huge"),
    ],
)
def test_money_refuses_floats_fractions_of_a_paisa_and_non_numbers(
    value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Money().process_bind_param(value, sqlite.dialect())


def test_money_is_stored_as_whole_paisa() -> None:
    money = Money()
    assert money.process_bind_param(Decimal("14.37"), sqlite.dialect()) == 1437
    assert money.process_bind_param(" 320 ", sqlite.dialect()) == 32000
    assert money.process_result_value(1437, sqlite.dialect()) == Decimal("14.37")
    assert to_money("0.5") == Decimal("0.5")


def test_utc_datetime_refuses_what_is_not_a_time() -> None:
    with pytest.raises(TypeError, match="expected a datetime, got: '2026-11-22'"):
        UTCDateTime().process_bind_param("2026-11-22", sqlite.dialect())


def test_the_largest_amount_a_column_holds_goes_in_and_one_paisa_more_does_not(
    fresh_store: Engine,
) -> None:
    largest = Decimal(MAX_MINOR) / 100
    with fresh_store.begin() as conn:
        add_customer(conn, total_spent=largest)
        assert conn.execute(select(Customer.total_spent)).scalar_one() == largest
    with fresh_store.begin() as conn, pytest.raises(StatementError) as caught:
        add_customer(conn, external_id="C2", email="c2@example.com", total_spent=largest + CENT)
    assert isinstance(caught.value.orig, ValueError)
    assert "money out of range" in str(caught.value.orig)
