"""Referral codes at the order intake (`order.placed`, the orders CSV) and directly, on
SQLite and PostgreSQL: the order is always recorded, the referral beside it, pending or
refused with its reason."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.errors import DataError, UnknownRecord
from engine.intake.eventapply import apply_events
from engine.intake.events import EventsRejected, parse_events
from engine.intake.importer import import_csv
from engine.intake.referrals import check_referral_code, record_order_referral
from engine.intake.shop import upsert_customer, upsert_product
from engine.store.db import session_scope
from engine.store.models import Customer, Order, Referral
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

PLACED = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
RAHIM = "RAHIM2345K"  # Rahim's referral code, as the planner would have minted it


@pytest.fixture
def shop(fresh_store: Engine, now: datetime) -> Engine:
    """Rahim (who refers, code RAHIM2345K), Nadia and Karim (new), a tea at 320.00."""
    with session_scope(fresh_store) as session:
        for ref, email in (
            ("C-1", "rahim@example.com"),
            ("C-2", "nadia@example.com"),
            ("C-3", "karim@example.com"),
        ):
            upsert_customer(session, external_id=ref, email=email, now=now - timedelta(days=30))
        upsert_product(session, sku="TEA-500G", name="Tea", price="320.00", now=now)
        session.execute(
            update(Customer).where(col(Customer.external_id) == "C-1").values(referral_code=RAHIM)
        )
    return fresh_store


def place_order(
    engine: Engine,
    order_id: str,
    code: str | None,
    *,
    customer: str = "C-2",
    placed_at: datetime = PLACED,
    cancelled: bool = False,
) -> None:
    """An `order.placed` event through the events API's own parse and apply."""
    order: dict[str, Any] = {
        "id": order_id,
        "customer_id": customer,
        "placed_at": placed_at.isoformat(),
        "items": [{"sku": "TEA-500G", "quantity": 1}],
        "cancelled": cancelled,
    }
    if code is not None:
        order["referral_code"] = code
    event = {"id": f"evt-{order_id}", "type": "order.placed", "order": order}
    apply_events(
        engine, parse_events(json.dumps(event).encode()), now=placed_at + timedelta(minutes=1)
    )


def referrals(engine: Engine) -> list[tuple[str, str, str | None, str, str, str]]:
    """(order, code, referrer, referred, status, reason) in the order recorded."""
    with Session(engine) as session:
        refs = dict(session.execute(select(Customer.id, Customer.external_id)).all())
        rows = session.execute(select(Referral).order_by(col(Referral.id))).scalars()
        return [
            (
                r.order_ref,
                r.code,
                refs.get(r.referrer_id) if r.referrer_id else None,
                refs[r.referred_id],
                str(r.status),
                r.reason,
            )
            for r in rows
        ]


def orders(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.execute(select(Order.external_id).order_by(Order.id)).scalars())


# ------------------------------------------------------------- the order intake


def test_a_first_order_with_a_code_is_a_pending_referral(shop: Engine) -> None:
    place_order(shop, "O-1", " rahim2345k ")
    assert referrals(shop) == [("O-1", RAHIM, "C-1", "C-2", "pending", "")]
    with Session(shop) as session:
        row = session.execute(select(Referral)).scalar_one()
        order = session.execute(select(Order).where(Order.external_id == "O-1")).scalar_one()
    assert (row.order_id, row.at, row.counted_at, row.reversed_at) == (
        order.id,
        PLACED + timedelta(minutes=1),
        None,
        None,
    )


@pytest.mark.parametrize(
    ("code", "customer", "first", "referrer", "reason"),
    [
        pytest.param("NOPE234567", "C-2", None, None, "unknown code", id="unknown"),
        pytest.param(
            RAHIM, "C-1", None, "C-1", "self-referral: the referrer's own order", id="own-code"
        ),
        pytest.param(RAHIM, "C-2", "O-0", "C-1", "not a first order", id="not-first"),
    ],
)
def test_a_refused_code_keeps_the_order_and_records_why(
    shop: Engine,
    caplog: pytest.LogCaptureFixture,
    code: str,
    customer: str,
    first: str | None,
    referrer: str | None,
    reason: str,
) -> None:
    if first is not None:
        place_order(shop, first, None, customer=customer, placed_at=PLACED - timedelta(days=9))
    with caplog.at_level(logging.WARNING, logger="engine.intake.referrals"):
        place_order(shop, "O-1", code, customer=customer)
    assert "O-1" in orders(shop)
    assert referrals(shop) == [("O-1", code, referrer, customer, "refused", reason)]
    assert [r.getMessage() for r in caplog.records] == [
        f"order O-1: referral code {code} refused (events api): {reason}"
    ]


def test_the_referrers_email_in_another_case_is_a_self_referral(shop: Engine) -> None:
    # The store keeps emails in lower case and each on one customer, so the same address
    # is the same customer; the check stands for a shop that sends it otherwise.
    with session_scope(shop) as session:
        check = check_referral_code(session, RAHIM, " Rahim@Example.COM ")
    assert check is not None and check.refusal is not None
    assert (check.refusal.value, check.reason) == (
        "self_referral",
        "self-referral: the same email as the referrer",
    )


def test_an_earlier_cancelled_order_does_not_make_the_next_one_a_repeat(shop: Engine) -> None:
    place_order(shop, "O-0", None, placed_at=PLACED - timedelta(days=9), cancelled=True)
    place_order(shop, "O-1", RAHIM)
    assert referrals(shop) == [("O-1", RAHIM, "C-1", "C-2", "pending", "")]


def test_a_customer_already_referred_is_refused_a_second_time(shop: Engine) -> None:
    place_order(shop, "O-1", RAHIM)
    # Reported after O-1 but placed before it: O-2 is their first order, yet they are referred.
    place_order(shop, "O-2", RAHIM, placed_at=PLACED - timedelta(hours=1))
    assert referrals(shop) == [
        ("O-1", RAHIM, "C-1", "C-2", "pending", ""),
        ("O-2", RAHIM, "C-1", "C-2", "refused", "already referred"),
    ]


def test_the_same_order_again_changes_nothing(shop: Engine) -> None:
    place_order(shop, "O-1", RAHIM)
    with session_scope(shop) as session:
        again = record_order_referral(session, "nope234567", "O-1", now=PLACED, source="x")
    assert again is not None
    assert (again.status, again.referrer, again.repeat) == ("pending", "C-1", True)
    assert referrals(shop) == [("O-1", RAHIM, "C-1", "C-2", "pending", "")]


def test_an_order_without_a_code_records_no_referral(shop: Engine) -> None:
    place_order(shop, "O-1", None)
    with session_scope(shop) as session:
        assert record_order_referral(session, "  ", "O-1", now=PLACED, source="x") is None
    assert referrals(shop) == [] and orders(shop) == ["O-1"]


def test_a_code_for_an_order_not_stored_is_an_error(shop: Engine) -> None:
    with session_scope(shop) as session, pytest.raises(UnknownRecord, match="unknown order 'O-9'"):
        record_order_referral(session, RAHIM, "O-9", now=PLACED, source="x")
    with session_scope(shop) as session, pytest.raises(DataError, match="timezone-aware"):
        record_order_referral(session, RAHIM, "O-9", now=PLACED.replace(tzinfo=None), source="x")


def test_a_code_longer_than_64_characters_is_a_problem_of_the_event(shop: Engine) -> None:
    with pytest.raises(EventsRejected) as rejected:
        place_order(shop, "O-1", "X" * 65)
    [problem] = rejected.value.problems
    assert (problem.index, problem.field) == (0, "order.referral_code")
    assert "at most 64 characters" in problem.reason
    assert orders(shop) == []


# ------------------------------------------------------------------ the orders CSV

ORDERS = """\
order_id,customer_id,placed_at,sku,quantity,referral_code
O-1,C-2,2026-11-21T16:00:00,TEA-500G,1,rahim2345k
O-1,C-2,2026-11-21T16:00:00,TEA-500G,2,RAHIM2345K
O-2,C-3,2026-11-21T17:00:00,TEA-500G,1,WHO2345678
O-3,C-1,2026-11-21T18:00:00,TEA-500G,1,RAHIM2345K
O-4,C-3,2026-11-21T19:00:00,TEA-500G,1,
"""


def test_the_orders_csv_records_each_orders_referral_once(
    shop: Engine, tmp_path: Path, now: datetime
) -> None:
    (tmp_path / "orders.csv").write_text(ORDERS, encoding="utf-8")
    for _ in range(2):  # importing the file again changes nothing
        import_csv(shop, "orders", tmp_path / "orders.csv", now=now, shop_timezone="Asia/Dhaka")
        assert referrals(shop) == [
            ("O-1", RAHIM, "C-1", "C-2", "pending", ""),
            ("O-2", "WHO2345678", None, "C-3", "refused", "unknown code"),
            ("O-3", RAHIM, "C-1", "C-1", "refused", "self-referral: the referrer's own order"),
        ]
    assert orders(shop) == ["O-1", "O-2", "O-3", "O-4"]


def test_lines_of_one_order_with_different_referral_codes_are_a_bad_row(
    shop: Engine, tmp_path: Path, now: datetime
) -> None:
    text = ORDERS.replace("TEA-500G,2,RAHIM2345K", "TEA-500G,2,OTHER23456")
    file = tmp_path / "orders.csv"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(Exception) as rejected:
        import_csv(shop, "orders", file, now=now, shop_timezone="Asia/Dhaka")
    assert (
        f'{file}:3: referral_code: order O-1 has referral_code "RAHIM2345K" on an earlier '
        'line, got "OTHER23456"' in [str(bad) for bad in rejected.value.bad]
    )  # type: ignore[attr-defined]
    assert referrals(shop) == [] and orders(shop) == []


# ------------------------------------------------------------- the checkout's question


@pytest.mark.parametrize(
    ("email", "refusal"),
    [
        pytest.param(None, None, id="no-email"),
        pytest.param("new@example.com", None, id="a-new-customer"),
        pytest.param("nadia@example.com", None, id="a-customer-without-orders"),
        pytest.param("rahim@example.com", "self_referral", id="the-referrer"),
        pytest.param("karim@example.com", "not_first_order", id="has-ordered"),
    ],
)
def test_the_checkout_asks_about_a_code_for_a_customer(
    shop: Engine, email: str | None, refusal: str | None
) -> None:
    place_order(shop, "O-0", None, customer="C-3")
    with Session(shop) as session:
        check = check_referral_code(session, RAHIM.lower(), email)
        assert check is not None
        assert (check.code, check.referrer.external_id) == (RAHIM, "C-1")
        assert (check.refusal.value if check.refusal else None) == refusal
        assert check_referral_code(session, "NOPE234567", email) is None
    assert referrals(shop) == []


def test_the_checkout_is_told_a_customer_already_referred(shop: Engine) -> None:
    place_order(shop, "O-1", RAHIM, cancelled=True)  # pending, no order that counts yet
    with Session(shop) as session:
        check = check_referral_code(session, RAHIM, "nadia@example.com")
    assert check is not None and check.refusal is not None
    assert (check.refusal.value, check.reason) == ("already_referred", "already referred")
