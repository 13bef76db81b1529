"""Shopify's webhooks over real HTTP, on SQLite and PostgreSQL.

The payloads and headers are tests/fixtures/connectors/shopify (written from
Shopify's webhook and REST Admin API documentation, version 2024-07; their README
says where each shape comes from); each delivery is signed here as Shopify signs
it: `X-Shopify-Hmac-Sha256`, the base64 HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.project.loader import Project, Secrets
from engine.store.models import Customer, OrderStatus, Product
from engine.track.app import create_app
from tests import store_fixtures
from tests.track.api_fixtures import NOW, project  # noqa: F401
from tests.track.test_webhooks_woocommerce import buyer_and_lines, counts, order, settled, sign
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

FIXTURES = Path(__file__).parents[1] / "fixtures" / "connectors" / "shopify"
SECRET = "shpss-webhook-secret-0123456789"
HEADERS = json.loads((FIXTURES / "headers.json").read_text(encoding="utf-8"))


@pytest.fixture
def shop(fresh_store: Engine, project: Project) -> Iterator[str]:  # noqa: F811
    secrets = Secrets(secret="s" * 32, shopify_secret=SECRET)
    app = create_app(fresh_store, lambda: project, secrets, clock=lambda: NOW)
    with serving(app) as url:
        yield url + "/webhooks/shopify"


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data | changes


def deliver(
    url: str, name: str, body: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    raw = json.dumps(body or payload(name)).encode()
    sent = dict(HEADERS[name]) | {"X-Shopify-Hmac-Sha256": sign(raw, SECRET)} | headers
    return httpx.post(url, content=raw, headers=sent, timeout=10)


def take(
    engine: Engine, url: str, name: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[str, list[str]]:
    """Deliver, check it was kept, and wait until it is applied: status and problems."""
    answer = deliver(url, name, body, **headers)
    assert answer.status_code == 200, answer.text
    return settled(engine, "shopify", (dict(HEADERS[name]) | headers)["X-Shopify-Webhook-Id"])


def test_a_cash_on_delivery_order_is_delivered_when_paid_at_the_door(
    shop: str, fresh_store: Engine
) -> None:
    assert take(fresh_store, shop, "orders_create_cod.json") == ("applied", [])
    again = deliver(shop, "orders_create_cod.json")  # Shopify retries with the same id
    assert again.json() == {"ok": True, "kept": False, "duplicate": True}
    placed = order(fresh_store, "1042")
    assert placed is not None and placed.status == OrderStatus.PLACED
    assert placed.placed_at == datetime(2024, 10, 6, 13, 45, 12, tzinfo=UTC)
    customer, lines = buyer_and_lines(fresh_store, placed)
    assert (customer.external_id, customer.email) == (
        "shopify-7208812345678",
        "tahmina.akter@example.com",
    )
    assert sorted(lines) == [(1, Decimal("2200.00")), (2, Decimal("650.00"))]
    # handed to the courier: not delivered yet
    assert take(fresh_store, shop, "orders_fulfilled.json") == ("applied", [])
    shipped = order(fresh_store, "1042")
    assert shipped is not None and shipped.delivered_at is None
    # the courier collected the cash: delivered when it was paid
    assert take(fresh_store, shop, "orders_updated_paid.json") == ("applied", [])
    paid = order(fresh_store, "1042")
    assert paid is not None and paid.status == OrderStatus.DELIVERED
    assert paid.delivered_at == datetime(2024, 10, 9, 7, 2, 44, tzinfo=UTC)


def test_a_cancelled_order_is_cancelled_or_left_out(shop: str, fresh_store: Engine) -> None:
    cancel = {"X-Shopify-Webhook-Id": "w-cancel-1"}
    take(fresh_store, shop, "orders_cancelled.json", **cancel)  # never recorded: left out
    assert order(fresh_store, "1043") is None
    live = payload("orders_cancelled.json", cancelled_at=None, financial_status="pending")
    take(fresh_store, shop, "orders_create_cod.json", live, **{"X-Shopify-Webhook-Id": "w-1043"})
    assert order(fresh_store, "1043") is not None
    take(fresh_store, shop, "orders_cancelled.json")
    cancelled = order(fresh_store, "1043")
    assert cancelled is not None and cancelled.status == OrderStatus.CANCELLED


def test_customers_bring_their_consent_and_products_their_variants(
    shop: str, fresh_store: Engine
) -> None:
    take(fresh_store, shop, "customers_create.json")
    withdrawn = payload("customers_create.json")
    withdrawn["email_marketing_consent"] = withdrawn["email_marketing_consent"] | {
        "state": "unsubscribed"
    }
    update = {"X-Shopify-Topic": "customers/update", "X-Shopify-Webhook-Id": "w-2"}
    take(fresh_store, shop, "customers_create.json", withdrawn, **update)
    take(fresh_store, shop, "products_update.json")
    with Session(fresh_store) as session:
        customer = session.execute(select(Customer)).scalar_one()
        saree = session.execute(select(Product)).scalar_one()
    assert (customer.name, customer.city, customer.marketing_consent) == (
        "Tahmina Akter",
        "Chattogram",
        False,
    )
    assert (saree.sku, saree.price, saree.stock, saree.category) == (
        "SAREE-HL-001",
        Decimal("2200.00"),
        12,
        "Saree",
    )


def test_forged_unsigned_and_other_deliveries(
    shop: str,
    fresh_store: Engine,
    project: Project,  # noqa: F811
) -> None:
    raw = json.dumps(payload("orders_create_cod.json")).encode()
    headers = dict(HEADERS["orders_create_cod.json"])
    forged = httpx.post(
        shop, content=raw, headers=headers | {"X-Shopify-Hmac-Sha256": sign(raw, "x")}
    )
    unsigned = httpx.post(shop, content=raw, headers=headers)
    assert (forged.status_code, unsigned.status_code) == (401, 401)
    other = deliver(shop, "orders_create_cod.json", **{"X-Shopify-Topic": "carts/update"})
    assert other.json() == {"ok": True, "ignored": "carts/update"}
    assert counts(fresh_store) == (0, 0, 0)
    app = create_app(fresh_store, lambda: project, Secrets(secret="s" * 32), clock=lambda: NOW)
    with serving(app) as url:
        off = deliver(url + "/webhooks/shopify", "orders_create_cod.json")
    assert off.status_code == 503 and "LIFECYCLE_SHOPIFY_SECRET" in off.json()["error"]
