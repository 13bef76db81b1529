"""`GET /api/customers/{id}/credit` and the `credit.redeemed` event over real HTTP, on
SQLite and PostgreSQL: the exact answer, an unknown customer, a wrong key."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from engine.intake import shop, wallet
from engine.store.db import session_scope
from engine.store.models import Credit, OrderItem
from tests.track import api_fixtures
from tests.track.api_fixtures import AUTH, KEY, NOW

fresh_store = api_fixtures.fresh_store
migrated_store = api_fixtures.migrated_store
project = api_fixtures.project
base = api_fixtures.base

D = timedelta(days=1)


def customer(engine: Engine, external_id: str) -> int:
    with session_scope(engine) as session:
        row = shop.upsert_customer(
            session, external_id=external_id, email="nadia@example.com", now=NOW - 90 * D
        )
        assert row.id is not None
        return row.id


@pytest.fixture
def nadia(fresh_store: Engine) -> int:
    """Two credits (a refund of O-8001; one that expired yesterday), 40.50 of them
    redeemed a week ago for O-9001."""
    nadia = customer(fresh_store, "C-900")
    with session_scope(fresh_store) as session:
        shop.upsert_product(session, sku="TEA-500G", name="Tea", price="420", now=NOW - 60 * D)
        order = shop.record_order(
            session, external_id="O-8001", customer_id="C-900",
            items=[shop.Line("TEA-500G", 2)], placed_at=NOW - 40 * D,
        )  # fmt: skip
        session.flush()
        item = session.execute(select(OrderItem.id).where(OrderItem.order_id == order.id))
        refunded = item.scalar_one()
        for key, amount, created, expires, item_id in [
            ("a", "120.75", NOW - 30 * D, None, refunded),
            ("b", "30.25", NOW - 20 * D, NOW - D, None),
        ]:
            session.add(
                Credit(dedupe_key=key, customer_id=nadia, amount=Decimal(amount),
                       reason="price drop before delivery", created_at=created,
                       expires_at=expires, order_item_id=item_id)
            )  # fmt: skip
        session.flush()
        wallet.redeem(session, nadia, "40.50", "O-9001", "evt-7", NOW - 7 * D)
    return nadia


def test_the_balance_and_the_entries_newest_first(base: str, nadia: int) -> None:
    answer = httpx.get(f"{base}/api/customers/C-900/credit", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {
        "customer": "C-900",
        "balance": "110.50",  # 120.75 + 30.25 − 40.50, less 30.25 − 30.25 expired yesterday
        "currency": "BDT",
        "entries": [
            {"at": "2026-11-15T06:00:00+00:00", "amount": "-10.25", "reason": "redeemed for order O-9001",
             "expires_at": None, "order_id": "O-9001"},
            {"at": "2026-11-15T06:00:00+00:00", "amount": "-30.25", "reason": "redeemed for order O-9001",
             "expires_at": "2026-11-21T06:00:00+00:00", "order_id": "O-9001"},
            {"at": "2026-11-02T06:00:00+00:00", "amount": "30.25", "reason": "price drop before delivery",
             "expires_at": "2026-11-21T06:00:00+00:00", "order_id": None},
            {"at": "2026-10-23T06:00:00+00:00", "amount": "120.75", "reason": "price drop before delivery",
             "expires_at": None, "order_id": "O-8001"},
        ],
        "more": False,
    }  # fmt: skip


def test_a_customer_without_credit_has_none(base: str, fresh_store: Engine) -> None:
    customer(fresh_store, "C/7")  # an id with a slash, sent as %2F
    answer = httpx.get(f"{base}/api/customers/C%2F7/credit", headers=AUTH, timeout=10)
    assert (answer.status_code, answer.json()) == (
        200,
        {"customer": "C/7", "balance": "0.00", "currency": "BDT", "entries": [], "more": False},
    )


def test_at_most_500_entries_and_a_flag_for_more(base: str, fresh_store: Engine) -> None:
    ana = customer(fresh_store, "ana")
    rows = [
        {"dedupe_key": f"k{i}", "customer_id": ana, "amount": Decimal("0.01"),
         "reason": "a reward", "created_at": NOW - timedelta(minutes=i)}
        for i in range(501)
    ]  # fmt: skip
    with session_scope(fresh_store) as session:
        session.execute(insert(Credit), rows)
    body = httpx.get(f"{base}/api/customers/ana/credit", headers=AUTH, timeout=10).json()
    assert (body["balance"], len(body["entries"]), body["more"]) == ("5.01", 500, True)
    assert body["entries"][0]["at"] == "2026-11-22T06:00:00+00:00"


def test_an_unknown_customer_is_a_404(base: str) -> None:
    answer = httpx.get(f"{base}/api/customers/C-404/credit", headers=AUTH, timeout=10)
    assert (answer.status_code, answer.json()) == (404, {"error": "unknown customer 'C-404'"})


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"authorization": "Bearer wrong-key"}, id="wrong-key"),
        pytest.param({}, id="no-key"),
        pytest.param({"authorization": f"Basic {KEY}"}, id="not-bearer"),
    ],
)
def test_a_wrong_key_is_a_401_and_says_nothing_of_the_customer(
    base: str, nadia: int, headers: dict[str, str]
) -> None:
    answer = httpx.get(f"{base}/api/customers/C-900/credit", headers=headers, timeout=10)
    assert (answer.status_code, answer.json()) == (
        401,
        {"error": "missing or wrong API key (Authorization: Bearer <key>)"},
    )


def test_redeeming_beyond_the_balance_is_a_422_and_nothing_is_applied(
    base: str, nadia: int
) -> None:
    batch = [
        {"id": "evt-20", "type": "credit.redeemed", "customer": "C-900", "amount": "100.00",
         "order_id": "O-9100"},
        {"id": "evt-21", "type": "credit.redeemed", "customer": "C-900", "amount": 10.51,
         "order_id": "O-9101"},
    ]  # fmt: skip
    answer = httpx.post(f"{base}/api/events", json=batch, headers=AUTH, timeout=10)
    assert (answer.status_code, answer.json()) == (
        422,
        {
            "error": "no event was applied",
            "problem_count": 1,
            "problems": [
                {
                    "index": 1,
                    "field": "amount",
                    "reason": "amount 10.51 is more than the credit balance of 10.50",
                }
            ],
        },
    )
    credit = httpx.get(f"{base}/api/customers/C-900/credit", headers=AUTH, timeout=10).json()
    assert (credit["balance"], len(credit["entries"])) == ("110.50", 4)
    # The first alone is applied, once.
    for _ in range(2):
        answer = httpx.post(f"{base}/api/events", json=batch[:1], headers=AUTH, timeout=10)
        assert answer.status_code == 200
    credit = httpx.get(f"{base}/api/customers/C-900/credit", headers=AUTH, timeout=10).json()
    assert (credit["balance"], len(credit["entries"])) == ("10.50", 5)
    assert credit["entries"][0] == {
        "at": "2026-11-22T06:00:00+00:00",
        "amount": "-100.00",
        "reason": "redeemed for order O-9100",
        "expires_at": None,
        "order_id": "O-9100",
    }
