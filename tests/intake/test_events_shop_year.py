"""The events behind a shop's year of triggers: new products, restocks, checkouts, wishes.

Through POST /api/events on a real store: every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.project.loader import Project, Secrets, load_project
from engine.store.models import (
    Checkout,
    Customer,
    Order,
    Product,
    ProductWanted,
    ReceivedEvent,
    Restock,
)
from engine.track.app import create_app
from tests import store_fixtures

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

KEY = "shop-api-key-0123456789abcdef"
fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store


@pytest.fixture
def db(fresh_store: Engine) -> Engine:
    """An empty store of this test's own, on each dialect (migrated once per module)."""
    return fresh_store


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def client(db: Engine, project: Project, now: datetime) -> TestClient:
    app = create_app(db, lambda: project, Secrets(secret="s" * 32, api_key=KEY), clock=lambda: now)
    return TestClient(app)


def post(client: TestClient, body: Any) -> Any:
    return client.post(
        "/api/events",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"},
    )


def applied(client: TestClient, body: Any) -> Any:
    response = post(client, body)
    assert response.status_code == 200, response.text
    return response.json()


def count(db: Engine, model: Any) -> int:
    with Session(db) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


CUSTOMER = {
    "id": "e-c1",
    "type": "customer.upserted",
    "customer": {"id": "c-1", "email": "rahim@example.com", "marketing_consent": True},
}


def product(event_id: str, at: str, stock: int | None, price: str = "450.00") -> dict[str, Any]:
    data: dict[str, Any] = {"sku": "TEA-500G", "name": "Sylhet tea 500 g", "price": price}
    if stock is not None:
        data["stock"] = stock
    return {"id": event_id, "type": "product.upserted", "at": at, "product": data}


def checkout(event_id: str, at: str, **fields: Any) -> dict[str, Any]:
    body = {
        "id": event_id,
        "type": "checkout.started",
        "at": at,
        "customer": "c-1",
        "cart_id": "cart-77",
        "items": [{"sku": "TEA-500G", "quantity": 2}],
        "amount": "900.00",
    }
    return {k: v for k, v in {**body, **fields}.items() if v is not None}


def order(event_id: str, **fields: Any) -> dict[str, Any]:
    data = {
        "id": "o-1",
        "customer_id": "c-1",
        "placed_at": "2026-11-21T12:00:00Z",
        "items": [{"sku": "TEA-500G", "quantity": 2}],
        **fields,
    }
    return {"id": event_id, "type": "order.placed", "order": data}


def wanted(event_id: str, sku: str = "TEA-500G", at: str | None = None) -> dict[str, Any]:
    event = {"id": event_id, "type": "product.wanted", "customer": "c-1", "sku": sku}
    return event | ({"at": at} if at else {})


T1, T2, T3, T4 = (f"2026-11-{day}T10:00:00+06:00" for day in (10, 11, 12, 13))


def stored_checkout(db: Engine) -> Checkout:
    with Session(db) as session:
        return session.execute(select(Checkout)).scalar_one()


# ---------------------------------------------------------------- products: created_at, restocks


def test_a_product_is_created_when_first_learnt_of_and_that_never_changes(client, db):
    applied(client, [product("p1", T1, 5)])
    applied(client, [product("p2", T2, 8, price="500.00")])
    with Session(db) as session:
        stored = session.execute(select(Product)).scalar_one()
        assert (stored.created_at, stored.updated_at) == (utc(T1), utc(T2))


def test_only_stock_going_from_nothing_to_something_is_a_restock(client, db):
    applied(client, [product("p1", T1, 5)])  # new with stock: not a restock
    applied(client, [product("p2", T1, 3)])  # more stock, still in: not one either
    applied(client, [product("p3", T2, 0), product("p4", T3, 12)])  # out, in
    applied(client, [product("p5", T3, None, price="460.00")])  # no stock given: unchanged
    applied(client, [product("p6", T4, 0), product("p7", T4, 4)])  # out, in again
    with Session(db) as session:
        restocks = session.execute(
            select(col(Restock.stock), col(Restock.at)).order_by(col(Restock.id))
        ).all()
        assert [(stock, at.astimezone(UTC)) for stock, at in restocks] == [
            (12, utc(T3)),
            (4, utc(T4)),
        ]
        assert session.execute(select(col(Product.stock))).scalar_one() == 4


def test_a_repeated_restock_event_is_applied_once(client, db):
    applied(client, [product("p1", T1, 0)])
    applied(client, [product("p2", T2, 9)])
    assert applied(client, [product("p2", T2, 9)])["duplicates"] == 1
    assert count(db, Restock) == 1


# ---------------------------------------------------------------- checkout.started


def test_a_checkout_is_stored_with_names_and_prices_filled_in(client, db):
    items = [
        {"sku": "TEA-500G", "quantity": 2},
        {"sku": "TEA-500G", "quantity": 1, "unit_price": "400.00", "name": "Tea (gift)"},
    ]
    applied(client, [CUSTOMER, product("p1", T1, 5), checkout("k1", T2, items=items)])
    stored = stored_checkout(db)
    assert stored.items == [
        {"sku": "TEA-500G", "name": "Sylhet tea 500 g", "quantity": 2, "unit_price": "450.00"},
        {"sku": "TEA-500G", "name": "Tea (gift)", "quantity": 1, "unit_price": "400.00"},
    ]
    assert (stored.cart_id, stored.amount, stored.order_id) == ("cart-77", Decimal("900.00"), None)
    assert stored.started_at == utc(T2)
    with Session(db) as session:
        assert session.get(Customer, stored.customer_id).external_id == "c-1"  # type: ignore[union-attr]


def test_the_same_cart_again_replaces_items_and_amount_and_keeps_its_start(client, db):
    applied(client, [CUSTOMER, product("p1", T1, 5), checkout("k1", T2)])
    again = checkout("k2", T3, items=[{"sku": "TEA-500G", "quantity": 5}], amount="2250")
    applied(client, [again])
    stored = stored_checkout(db)
    assert (stored.started_at, stored.amount) == (utc(T2), Decimal("2250.00"))
    assert [item["quantity"] for item in stored.items or []] == [5]
    assert count(db, Checkout) == 1


def test_a_repeated_checkout_event_id_changes_nothing(client, db):
    applied(client, [CUSTOMER, product("p1", T1, 5), checkout("k1", T2)])
    answer = applied(client, [checkout("k1", T3, amount="1.00")])
    assert answer == {
        "applied": 0,
        "duplicates": 1,
        "events": [{"id": "k1", "status": "duplicate"}],
    }
    assert stored_checkout(db).amount == Decimal("900.00")


def test_an_order_with_the_cart_id_completes_the_checkout_started_before(client, db):
    applied(client, [CUSTOMER, product("p1", T1, 5), checkout("k1", T2)])
    applied(client, [order("o1", cart_id="cart-77")])
    with Session(db) as session:
        placed = session.execute(select(Order)).scalar_one()
    assert placed.cart_id == "cart-77"
    assert stored_checkout(db).order_id == placed.id


def test_a_checkout_reported_after_its_order_is_completed_at_once(client, db):
    applied(client, [CUSTOMER, product("p1", T1, 5), order("o1", cart_id="cart-77")])
    applied(client, [checkout("k1", T2)])
    with Session(db) as session:
        placed_id = session.execute(select(col(Order.id))).scalar_one()
    assert stored_checkout(db).order_id == placed_id


def test_an_order_for_another_cart_leaves_the_checkout_open(client, db):
    applied(client, [CUSTOMER, product("p1", T1, 5), checkout("k1", T2)])
    applied(client, [order("o1", cart_id="cart-78"), order("o2", id="o-2")])
    assert stored_checkout(db).order_id is None


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        pytest.param(checkout("k1", T2, cart_id=None), "cart_id", "missing", id="no-cart-id"),
        pytest.param(checkout("k1", T2, cart_id=""), "cart_id", "at least 1", id="empty-cart-id"),
        pytest.param(checkout("k1", T2, cart_id="   "), "cart_id", "required", id="blank-cart-id"),
        pytest.param(checkout("k1", T2, cart_id="c" * 65), "cart_id", "at most 64", id="long"),
        pytest.param(checkout("k1", T2, amount=None), "amount", "missing", id="no-amount"),
        pytest.param(checkout("k1", T2, items=[]), "items", "at least 1", id="no-items"),
        pytest.param(
            checkout("k1", T2, customer="c-404"), "customer", "unknown customer", id="customer"
        ),
        pytest.param(
            checkout("k1", T2, items=[{"sku": "NOPE", "quantity": 1}]),
            "items[0].sku",
            "unknown product sku 'NOPE'",
            id="unknown-sku",
        ),
        pytest.param(
            checkout("k1", T2, items=[{"sku": "TEA-500G", "quantity": 1, "name": "a\nb"}]),
            "items[0].name",
            "one line",
            id="two-line-name",
        ),
    ],
)
def test_a_bad_checkout_is_a_422_naming_the_field_and_nothing_is_applied(
    client, db, event, field, reason
):
    response = post(client, [CUSTOMER, product("p1", T1, 5), event])
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert (problem["index"], problem["field"]) == (2, field)
    assert reason in problem["reason"]
    assert [count(db, m) for m in (Customer, Product, Checkout, ReceivedEvent)] == [0, 0, 0, 0]


# ---------------------------------------------------------------- product.wanted


def test_a_wanted_product_is_stored_once(client, db):
    applied(client, [CUSTOMER, product("p1", T1, 0), wanted("w1", at=T2)])
    applied(client, [wanted("w2", at=T3)])  # asked again, as a new event: no change
    assert applied(client, [wanted("w1", at=T4)])["duplicates"] == 1
    with Session(db) as session:
        [(customer_id, at)] = session.execute(
            select(col(ProductWanted.customer_id), col(ProductWanted.at))
        ).all()
        assert at.astimezone(UTC) == utc(T2)
        assert session.get(Customer, customer_id).external_id == "c-1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        pytest.param(wanted("w1", sku="NOPE"), "sku", "unknown product sku 'NOPE'", id="sku"),
        pytest.param(
            {**wanted("w1"), "customer": "c-404"}, "customer", "unknown customer", id="customer"
        ),
        pytest.param(
            {k: v for k, v in wanted("w1").items() if k != "sku"}, "sku", "missing", id="no-sku"
        ),
    ],
)
def test_a_bad_wish_is_a_422_naming_the_field_and_nothing_is_applied(
    client, db, event, field, reason
):
    response = post(client, [CUSTOMER, product("p1", T1, 0), event])
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert (problem["index"], problem["field"]) == (2, field)
    assert reason in problem["reason"]
    assert [count(db, m) for m in (Customer, Product, ProductWanted, ReceivedEvent)] == [0, 0, 0, 0]
