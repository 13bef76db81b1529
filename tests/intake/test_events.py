"""The shop's events API: POST /api/events through the tracking app, on a real store."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.intake.events import MAX_BODY_BYTES
from engine.project.loader import Project, Secrets, load_project
from engine.store.models import (
    ConsentChange,
    Customer,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    ReceivedEvent,
    ShopHoliday,
)
from engine.track.app import create_app
from tests.conftest import BOTH_DIALECTS

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

KEY = "shop-api-key-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def client(db: Engine, project: Project, now: datetime) -> TestClient:
    app = create_app(db, lambda: project, Secrets(secret="s" * 32, api_key=KEY), clock=lambda: now)
    return TestClient(app)


def post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/api/events",
        content=data,
        headers={"content-type": "application/json", **(AUTH if headers is None else headers)},
    )


def count(db: Engine, model: Any) -> int:
    with Session(db) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


CUSTOMER = {
    "id": "e-1",
    "type": "customer.upserted",
    "at": "2026-11-21T10:00:00+06:00",
    "customer": {
        "id": "c-1",
        "email": "Rahim@Example.com",
        "name": "Rahim Uddin",
        "locale": "bn_BD",
        "timezone": "Asia/Dhaka",
        "marketing_consent": True,
        "tags": ["dhaka"],
    },
}
PRODUCT = {
    "id": "e-2",
    "type": "product.upserted",
    "product": {"sku": "TEA-500G", "name": "Sylhet tea 500 g", "price": 450.5, "stock": 30},
}
ORDER = {
    "id": "e-3",
    "type": "order.placed",
    "order": {
        "id": "o-1",
        "customer_id": "c-1",
        "placed_at": "2026-11-21T12:00:00Z",
        "items": [{"sku": "TEA-500G", "quantity": 2}],
    },
}
DELIVERED = {
    "id": "e-4",
    "type": "order.delivered",
    "order_id": "o-1",
    "delivered_at": "2026-11-23T09:00:00Z",
}
PRICE = {"id": "e-5", "type": "product.price_changed", "sku": "TEA-500G", "price": "420.00"}


@BOTH_DIALECTS
def test_a_batch_of_every_event_type_is_applied(client, db):
    response = post(client, [CUSTOMER, PRODUCT, ORDER, PRICE, DELIVERED])
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 5
    with Session(db) as session:
        customer = session.execute(select(Customer)).scalar_one()
        assert (customer.email, customer.locale, customer.marketing_consent) == (
            "rahim@example.com",
            "bn_BD",
            True,
        )
        assert customer.orders_count == 1 and customer.total_spent == Decimal("901.00")
        product = session.execute(select(Product)).scalar_one()
        assert product.price == Decimal("420.00") and product.stock == 30
        order = session.execute(select(Order)).scalar_one()
        assert order.status == OrderStatus.DELIVERED
        item = session.execute(select(OrderItem)).scalar_one()
        assert (item.quantity, item.unit_price) == (2, Decimal("450.50"))
        prices = session.execute(select(PriceChange.price).order_by(PriceChange.id)).scalars()
        assert list(prices) == [Decimal("450.50"), Decimal("420.00")]
        consent = session.execute(select(ConsentChange)).scalar_one()
        assert consent.source == "events api"
    assert count(db, ReceivedEvent) == 5


@BOTH_DIALECTS
def test_an_order_is_cancelled_once_and_an_unknown_one_is_named(client, db):
    cancel = {"id": "e-9", "type": "order.cancelled", "order_id": "o-1"}
    assert post(client, [CUSTOMER, PRODUCT, ORDER, cancel]).status_code == 200
    again = post(client, {**cancel, "id": "e-10"})
    assert again.status_code == 200  # cancelling a cancelled order changes nothing
    with Session(db) as session:
        order = session.execute(select(Order)).scalar_one()
        customer = session.execute(select(Customer)).scalar_one()
    assert order.status == OrderStatus.CANCELLED
    assert (customer.orders_count, customer.total_spent) == (0, Decimal("0.00"))
    unknown = post(client, {"id": "e-11", "type": "order.cancelled", "order_id": "o-404"})
    assert unknown.status_code == 422
    assert unknown.json()["problems"][0]["field"] == "order_id"


def test_one_event_object_is_accepted(client, db):
    response = post(client, CUSTOMER)
    assert response.json() == {
        "applied": 1,
        "duplicates": 0,
        "events": [{"id": "e-1", "status": "applied"}],
    }


def test_a_repeated_id_is_accepted_and_ignored(client, db):
    assert post(client, [CUSTOMER, PRODUCT]).status_code == 200
    again = {**PRODUCT, "product": {**PRODUCT["product"], "price": 999}}
    response = post(client, [again, PRODUCT])
    assert response.status_code == 200
    assert response.json()["duplicates"] == 2
    with Session(db) as session:
        assert session.execute(select(Product.price)).scalar_one() == Decimal("450.50")


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        pytest.param({**PRICE, "price": -5}, "price", "must not be negative", id="negative-price"),
        pytest.param(
            {**PRODUCT, "product": {**PRODUCT["product"], "price": "12.345"}},
            "product.price",
            "more than two decimal places",
            id="three-decimals",
        ),
        pytest.param(
            {**PRICE, "type": "product.deleted"}, "type", "unknown event type", id="unknown-type"
        ),
        pytest.param({"id": "x", "sku": "A"}, "type", "missing", id="no-type"),
        pytest.param({**PRICE, "colour": "red"}, "colour", "unknown field", id="unknown-field"),
        pytest.param({k: v for k, v in PRICE.items() if k != "id"}, "id", "missing", id="no-id"),
        pytest.param(
            {**ORDER, "order": {**ORDER["order"], "placed_at": "2026-11-21T12:00:00"}},
            "order.placed_at",
            "timezone",
            id="naive-time",
        ),
        pytest.param(
            {**ORDER, "order": {**ORDER["order"], "items": [{"sku": "TEA-500G", "quantity": 0}]}},
            "order.items[0].quantity",
            "greater than or equal to 1",
            id="zero-quantity",
        ),
        pytest.param(
            {
                **CUSTOMER,
                "id": "e-9",
                "customer": {**CUSTOMER["customer"], "email": "not-an-email"},
            },
            "customer.email",
            "expected an email address",
            id="bad-email",
        ),
        pytest.param(
            {**ORDER, "order": {**ORDER["order"], "customer_id": "c-404"}},
            "order.customer_id",
            "unknown customer 'c-404'",
            id="unknown-customer",
        ),
        pytest.param(
            {**ORDER, "order": {**ORDER["order"], "items": [{"sku": "NOPE", "quantity": 1}]}},
            "order.items[0].sku",
            "unknown product sku 'NOPE'",
            id="unknown-sku",
        ),
        pytest.param(
            {**DELIVERED, "order_id": "o-404"}, "order_id", "unknown order", id="unknown-order"
        ),
    ],
)
def test_an_invalid_event_rejects_the_whole_batch(client, db, event, field, reason):
    response = post(client, [CUSTOMER, PRODUCT, event])
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert problem["index"] == 2
    assert problem["field"] == field
    assert reason in problem["reason"]
    assert (count(db, Customer), count(db, Product), count(db, ReceivedEvent)) == (0, 0, 0)


def test_every_schema_problem_is_listed(client):
    response = post(client, [{**PRICE, "price": -1}, {"id": "b", "type": "nope"}])
    problems = response.json()["problems"]
    assert [(p["index"], p["field"]) for p in problems] == [(0, "price"), (1, "type")]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_bad_json_is_400(client, db, body):
    response = post(client, body)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["problems"][0]["reason"]


@pytest.mark.parametrize(
    "body", [pytest.param([], id="empty-list"), pytest.param(["x"], id="not-an-object")]
)
def test_bodies_without_events_are_422(client, body):
    assert post(client, body).status_code == 422


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"authorization": "Bearer wrong"}, id="wrong"),
        pytest.param({"authorization": KEY}, id="no-scheme"),
        pytest.param({"authorization": f"Basic {KEY}"}, id="basic"),
    ],
)
def test_a_wrong_or_missing_key_is_401(client, db, headers):
    response = post(client, CUSTOMER, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert count(db, Customer) == 0


def test_without_a_configured_key_the_api_is_503(db, project):
    app = create_app(db, lambda: project, Secrets(secret="s" * 32))
    response = post(TestClient(app), CUSTOMER)
    assert response.status_code == 503
    assert "LIFECYCLE_API_KEY" in response.json()["error"]


def test_a_body_over_the_cap_is_413(client, db):
    big = [
        {**CUSTOMER, "id": f"e-{i}", "customer": {**CUSTOMER["customer"], "name": "x" * 190}}
        for i in range(MAX_BODY_BYTES // 200)
    ]
    response = post(client, big)
    assert response.status_code == 413
    assert count(db, Customer) == 0


def test_a_lying_content_length_is_still_capped(client):
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    response = client.post("/api/events", content=chunks(), headers=AUTH)
    assert response.status_code == 413


def test_a_declared_holiday_is_dated(client, db):
    event = {
        "id": "h1",
        "type": "holiday.announced",
        "holiday": {"id": "flash_sale", "date": "2026-12-05"},
    }
    assert post(client, event).status_code == 200
    with Session(db) as session:
        row = session.execute(select(ShopHoliday)).scalar_one()
    assert (row.id, row.date, row.name, row.name_bn) == (
        "flash_sale",
        date(2026, 12, 5),
        "Nakshi Ghor flash sale",
        "নকশি ঘরের ফ্ল্যাশ সেল",
    )


def test_an_undeclared_holiday_is_refused(client, db):
    event = {
        "id": "h1",
        "type": "holiday.announced",
        "holiday": {"id": "mega_sale", "date": "2026-12-05"},
    }
    response = post(client, event)
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem["field"] == "holiday.id" and "flash_sale" in problem["reason"]
    assert count(db, ShopHoliday) == 0


@BOTH_DIALECTS
def test_a_price_change_dated_ahead_applies_from_its_time(client, db, now):
    ahead = {**PRICE, "at": (now + timedelta(days=2)).isoformat()}
    response = post(client, [PRODUCT, ahead])
    assert response.status_code == 200, response.text
    with Session(db) as session:
        assert session.execute(select(Product.price)).scalar_one() == Decimal("450.50")
        changes = session.execute(select(PriceChange.changed_at, PriceChange.price)).all()
        assert [(at.replace(tzinfo=UTC), price) for at, price in changes][-1] == (
            now + timedelta(days=2),
            Decimal("420.00"),
        )


@BOTH_DIALECTS
@pytest.mark.parametrize(
    ("at", "placed"),
    [
        pytest.param(None, datetime(2026, 11, 22, 6, 0, tzinfo=UTC), id="arrival"),
        pytest.param(
            "2026-11-22T11:30:00+06:00", datetime(2026, 11, 22, 5, 30, tzinfo=UTC), id="event-at"
        ),
    ],
)
def test_an_order_without_placed_at_is_placed_when_the_event_happened(client, db, at, placed):
    order = {"id": "o-2", "customer_id": "c-1", "items": [{"sku": "TEA-500G", "quantity": 1}]}
    event = {"id": "e-9", "type": "order.placed", "order": order} | ({"at": at} if at else {})
    response = post(client, [CUSTOMER, PRODUCT, event])
    assert response.status_code == 200, response.text
    with Session(db) as session:
        stored = session.execute(select(Order)).scalar_one()
        customer = session.execute(select(Customer)).scalar_one()
    assert stored.placed_at == placed and customer.first_order_at == placed
