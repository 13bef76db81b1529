"""WooCommerce's webhooks over real HTTP, on SQLite and PostgreSQL.

The payloads and headers are tests/fixtures/connectors/woocommerce (written from
WooCommerce's REST API v3 documentation; their README says where each shape comes
from); each delivery is signed here as WooCommerce signs it: the base64 HMAC-SHA256
of the raw body with the webhook's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.project.loader import Project, Secrets
from engine.store.models import (
    Customer,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    WebhookDelivery,
)
from engine.track.app import create_app
from tests import store_fixtures
from tests.track.api_fixtures import NOW, project  # noqa: F401
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

FIXTURES = Path(__file__).parents[1] / "fixtures" / "connectors" / "woocommerce"
SECRET = "wc-webhook-secret-0123456789"
HEADERS = json.loads((FIXTURES / "headers.json").read_text(encoding="utf-8"))
ENGINES: dict[str, Engine] = {}  # each test server's store, by its webhook URL


@pytest.fixture
def shop(fresh_store: Engine, project: Project) -> Iterator[str]:  # noqa: F811
    secrets = Secrets(secret="s" * 32, api_key="k" * 32, woocommerce_secret=SECRET)
    app = create_app(fresh_store, lambda: project, secrets, clock=lambda: NOW)
    with serving(app) as url:
        ENGINES[url + "/webhooks/woocommerce"] = fresh_store
        yield url + "/webhooks/woocommerce"


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data | changes


def deliver(
    url: str, name: str, body: dict[str, Any] | bytes | None = None, **headers: str
) -> httpx.Response:
    """POST a fixture (or `body`) with its recorded headers, signed with SECRET."""
    raw = body if isinstance(body, bytes) else json.dumps(body or payload(name)).encode()
    sent = dict(HEADERS.get(name, {})) | {"X-WC-Webhook-Signature": sign(raw)} | headers
    return httpx.post(url, content=raw, headers=sent, timeout=10)


def take(
    url: str, name: str, body: dict[str, Any] | bytes | None = None, **headers: str
) -> tuple[str, list[str]]:
    """Deliver, check it was kept, and wait until the app has applied it: its status
    (`applied` or `problem`) and problems."""
    answer = deliver(url, name, body, **headers)
    assert answer.status_code == 200, answer.text
    delivery = (dict(HEADERS.get(name, {})) | headers)["X-WC-Webhook-Delivery-ID"]
    return settled(ENGINES[url], "woocommerce", delivery)


def settled(engine: Engine, source: str, delivery_id: str) -> tuple[str, list[str]]:
    deadline = time.monotonic() + 15
    while True:
        with Session(engine) as session:
            row = session.execute(
                select(WebhookDelivery).where(
                    col(WebhookDelivery.source) == source,
                    col(WebhookDelivery.delivery_id) == delivery_id,
                )
            ).scalar()
        if row is not None and row.status != "pending":
            return row.status, (row.problems or "").splitlines()
        assert time.monotonic() < deadline, f"delivery {delivery_id} was not applied"
        time.sleep(0.02)


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def order(engine: Engine, number: str) -> Order | None:
    with Session(engine) as session:
        return session.execute(select(Order).where(col(Order.external_id) == number)).scalar()


def buyer_and_lines(engine: Engine, placed: Order) -> tuple[Customer, list[Any]]:
    """An order's customer, and its lines as (quantity, unit price), sorted."""
    with Session(engine) as session:
        customer = session.get_one(Customer, placed.customer_id)
        lines = session.execute(
            select(OrderItem.quantity, OrderItem.unit_price).where(
                col(OrderItem.order_id) == placed.id
            )
        ).all()
    return customer, sorted(lines)


def counts(engine: Engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        return tuple(  # type: ignore[return-value]
            session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Customer, Order, Product)
        )


def test_a_cash_on_delivery_order_is_recorded_once_then_delivered(
    shop: str,
    fresh_store: Engine,
) -> None:
    first = deliver(shop, "order_cod_processing.json")
    assert first.json() == {"ok": True, "kept": True, "duplicate": False}
    assert settled(fresh_store, "woocommerce", "c0071df83eb97fc9d6d56bd8ce279f5b") == (
        "applied",
        [],
    )
    again = deliver(shop, "order_cod_processing.json")  # the same delivery id
    assert again.json() == {"ok": True, "kept": False, "duplicate": True}
    placed = order(fresh_store, "1287")
    assert placed is not None and placed.status == OrderStatus.PLACED
    assert placed.placed_at == datetime(2024, 10, 5, 8, 22, 10, tzinfo=UTC)  # date_created_gmt
    customer, lines = buyer_and_lines(fresh_store, placed)
    assert (customer.external_id, customer.email, customer.name, customer.city) == (
        "wc-17",
        "nusrat.jahan@example.com",
        "Nusrat Jahan",
        "Dhaka",
    )
    # each line's price before the order's coupon: subtotal / quantity
    assert sorted(lines) == [(1, Decimal("2200.00")), (2, Decimal("650.00"))]
    assert placed.total == Decimal("3500.00")
    assert take(shop, "order_cod_completed.json") == ("applied", [])
    delivered = order(fresh_store, "1287")
    assert delivered is not None and delivered.status == OrderStatus.DELIVERED
    assert delivered.delivered_at == datetime(2024, 10, 8, 11, 40, 5, tzinfo=UTC)
    assert counts(fresh_store) == (1, 1, 2)


def test_forged_and_unsigned_deliveries_are_refused_and_record_nothing(
    shop: str,
    fresh_store: Engine,
) -> None:
    raw = json.dumps(payload("order_cod_processing.json")).encode()
    forged = deliver(
        shop, "order_cod_processing.json", raw, **{"X-WC-Webhook-Signature": sign(raw, "guess")}
    )
    assert forged.status_code == 401
    headers = {k: v for k, v in HEADERS["order_cod_processing.json"].items()}
    unsigned = httpx.post(shop, content=raw, headers=headers, timeout=10)
    assert unsigned.status_code == 401
    tampered = raw.replace(b'"quantity": 2', b'"quantity": 20')
    changed = httpx.post(
        shop, content=tampered, headers=headers | {"X-WC-Webhook-Signature": sign(raw)}
    )
    assert changed.status_code == 401
    assert counts(fresh_store) == (0, 0, 0)
    with Session(fresh_store) as session:
        assert session.execute(select(func.count()).select_from(WebhookDelivery)).scalar() == 0


def test_the_creation_ping_and_other_topics_are_answered_and_ignored(
    shop: str,
    fresh_store: Engine,
) -> None:
    ping = (FIXTURES / "ping.txt").read_bytes()
    answer = httpx.post(
        shop, content=ping, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (answer.status_code, answer.json()["ping"]) == (200, True)
    coupon = deliver(
        shop,
        "order_cod_processing.json",
        {"id": 5, "code": "eid10"},
        **{"X-WC-Webhook-Topic": "coupon.created"},
    )
    assert coupon.json() == {"ok": True, "ignored": "coupon.created"}
    assert counts(fresh_store) == (0, 0, 0)


def test_without_a_secret_the_connector_is_off_and_a_huge_body_is_refused(
    fresh_store: Engine,
    project: Project,  # noqa: F811
) -> None:
    app = create_app(fresh_store, lambda: project, Secrets(secret="s" * 32), clock=lambda: NOW)
    with serving(app) as url:
        off = deliver(url + "/webhooks/woocommerce", "order_cod_processing.json")
    assert off.status_code == 503 and "LIFECYCLE_WOOCOMMERCE_SECRET" in off.json()["error"]
    secrets = Secrets(secret="s" * 32, woocommerce_secret=SECRET)
    app = create_app(fresh_store, lambda: project, secrets, clock=lambda: NOW)
    with serving(app) as url:
        huge = deliver(url + "/webhooks/woocommerce", "order_cod_processing.json", b"x" * 2_000_000)
    assert huge.status_code == 413
    assert counts(fresh_store) == (0, 0, 0)


def test_a_guest_paying_by_bkash_is_known_by_email(
    shop: str,
    fresh_store: Engine,
) -> None:
    assert take(shop, "order_bkash_on_hold.json") == ("applied", [])
    held = order(fresh_store, "1288")
    assert held is not None and held.status == OrderStatus.PLACED
    with Session(fresh_store) as session:
        guest = session.get_one(Customer, held.customer_id)
    assert guest.external_id == "rahima.khatun@example.com"
    # the same person registering later is the same customer, whatever WooCommerce's id
    registered = payload("customer_created.json", id=99, email="Rahima.Khatun@example.com")
    take(shop, "customer_created.json", registered)
    assert counts(fresh_store)[0] == 1


def test_cancelled_refunded_failed_and_deleted_orders(
    shop: str,
    fresh_store: Engine,
) -> None:
    take(shop, "order_cod_processing.json")
    cancelled = payload("order_cancelled.json", id=1287)
    take(shop, "order_cancelled.json", cancelled, **{"X-WC-Webhook-Delivery-ID": "c-1287"})
    gone = order(fresh_store, "1287")
    assert gone is not None and gone.status == OrderStatus.CANCELLED
    # never recorded: a cancelled, refunded, failed or pending order stays out
    for name in ("order_cancelled.json", "order_refunded.json", "order_failed.json"):
        assert take(shop, name) == ("applied", []), name
    assert take(shop, "order_pending.json") == ("applied", [])
    assert [order(fresh_store, n) for n in ("1289", "1290", "1291", "1292")] == [None] * 4
    # recorded while on hold, then deleted (trashed) in WooCommerce: cancelled
    held = payload("order_bkash_on_hold.json", id=1291)
    take(shop, "order_bkash_on_hold.json", held, **{"X-WC-Webhook-Delivery-ID": "h-1291"})
    take(shop, "order_deleted.json")
    deleted = order(fresh_store, "1291")
    assert deleted is not None and deleted.status == OrderStatus.CANCELLED


def test_a_products_price_drop_and_restock_reach_the_engine(
    shop: str,
    fresh_store: Engine,
) -> None:
    take(shop, "product_created.json")
    take(shop, "product_updated.json")
    with Session(fresh_store) as session:
        saree = session.execute(select(Product).where(col(Product.sku) == "SAREE-HL-001")).scalar()
        assert saree is not None
        prices = session.execute(
            select(PriceChange.price)
            .where(col(PriceChange.product_id) == saree.id)
            .order_by(col(PriceChange.changed_at))
        ).scalars()
        assert list(prices) == [Decimal("2450.00"), Decimal("2200.00")]
    assert (saree.price, saree.stock, saree.category) == (Decimal("2200.00"), 12, "Sarees")


def test_what_cannot_be_used_is_answered_and_the_rest_applied(
    shop: str,
    fresh_store: Engine,
) -> None:
    odd = payload("order_cod_processing.json", id=1400, status="awaiting-courier")
    assert take(shop, "order_cod_processing.json", odd, **{"X-WC-Webhook-Delivery-ID": "d1"}) == (
        "problem",
        ["order 1400: status 'awaiting-courier' is not one the engine knows: not applied"],
    )
    anonymous = payload("order_cod_processing.json", id=1401)
    anonymous["billing"] = anonymous["billing"] | {"email": ""}
    assert take(
        shop, "order_cod_processing.json", anonymous, **{"X-WC-Webhook-Delivery-ID": "d2"}
    ) == ("problem", ["order 1401 has no billing email: not recorded"])
    status, problems = take(
        shop, "order_cod_processing.json", b"{not json", **{"X-WC-Webhook-Delivery-ID": "d3"}
    )
    assert status == "problem" and problems[0].startswith("the body is not JSON")
    # a problem holds up nothing: the next delivery is applied
    assert take(shop, "order_bkash_on_hold.json") == ("applied", [])
    assert counts(fresh_store) == (1, 1, 1)
