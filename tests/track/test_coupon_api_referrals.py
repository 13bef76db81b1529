"""A referral code at the checkout's coupon API, over real HTTP against the tracking app as
the daemon serves it, on SQLite and PostgreSQL: valid with the friend's first-order discount,
refused for the referrer or a repeat customer, and never redeemed like a coupon."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import Secrets, load_project
from engine.store.db import session_scope
from engine.store.models import Coupon, CouponUse, Customer, Referral
from engine.track.app import create_app
from tests import store_fixtures
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

KEY = "shop-api-key-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
CODE = "RAHIM2345K"
KEY_ERROR = {"error": "missing or wrong API key (Authorization: Bearer <key>)"}
VALID = {
    "code": CODE,
    "kind": "referral",
    "status": "valid",
    "percent_off": "10.00",
    "amount_off": None,
    "min_order": "500.00",
    "expires_at": None,
    "customer": None,
    "first_order_only": True,
    "referrer": {"id": "C-1"},
}


@pytest.fixture
def shop(fresh_store: Engine) -> Engine:
    """Rahim (code RAHIM2345K), Karim who has ordered, Nadia who has not."""
    with session_scope(fresh_store) as session:
        for ref, email in (
            ("C-1", "rahim@example.com"),
            ("C-2", "karim@example.com"),
            ("C-3", "nadia@example.com"),
        ):
            upsert_customer(session, external_id=ref, email=email, now=NOW - timedelta(days=30))
        upsert_product(session, sku="TEA-500G", name="Tea", price="320.00", now=NOW)
        record_order(
            session,
            external_id="O-9",
            customer_id="C-2",
            items=[Line("TEA-500G", 2)],
            placed_at=NOW - timedelta(hours=1),
        )
        session.execute(
            update(Customer).where(col(Customer.external_id) == "C-1").values(referral_code=CODE)
        )
    return fresh_store


def client(engine: Engine, project_dir: Path, headers: dict[str, str]) -> Iterator[httpx.Client]:
    project = load_project(project_dir / "config.yaml")
    app = create_app(
        engine, lambda: project, Secrets(secret="s" * 32, api_key=KEY), clock=lambda: NOW
    )
    with serving(app) as url, httpx.Client(base_url=url, headers=headers) as http:
        yield http


@pytest.fixture
def api(shop: Engine, project_dir: Path) -> Iterator[httpx.Client]:
    yield from client(shop, project_dir, AUTH)


def stored(engine: Engine) -> tuple[int, int, int]:
    """Coupons, coupon uses and referrals: what asking must not change."""
    with Session(engine) as session:
        return tuple(  # type: ignore[return-value]
            len(session.execute(select(table.id)).all())  # type: ignore[attr-defined]
            for table in (Coupon, CouponUse, Referral)
        )


def test_a_referral_code_is_valid_with_the_friends_first_order_discount(
    api: httpx.Client, shop: Engine
) -> None:
    for asked in (CODE, " rahim2345k "):
        response = api.get(f"/api/coupons/{asked}")
        assert (response.status_code, response.json()) == (200, VALID)
    assert stored(shop) == (0, 0, 0)


@pytest.mark.parametrize(
    ("email", "status", "body"),
    [
        pytest.param("new@example.com", 200, VALID, id="someone-new"),
        pytest.param("Nadia@Example.com", 200, VALID, id="a-customer-yet-to-order"),
        pytest.param(
            "RAHIM@example.com",
            409,
            {
                "code": CODE,
                "kind": "referral",
                "status": "self_referral",
                "error": "self-referral: the same email as the referrer",
                "referrer": {"id": "C-1"},
            },
            id="the-referrer",
        ),
        pytest.param(
            "karim@example.com",
            409,
            {
                "code": CODE,
                "kind": "referral",
                "status": "not_first_order",
                "error": "not a first order",
                "referrer": {"id": "C-1"},
            },
            id="a-repeat-customer",
        ),
        pytest.param(
            "not-an-address",
            422,
            {"field": "email", "error": "expected an email address, got 'not-an-address'"},
            id="a-bad-address",
        ),
        pytest.param(
            "a" * 250 + "@x.example",
            422,
            {"field": "email", "error": "must be at most 254 characters, got 260"},
            id="too-long",
        ),
    ],
)
def test_with_the_customers_email_the_code_is_checked_for_them(
    api: httpx.Client, shop: Engine, email: str, status: int, body: dict[str, Any]
) -> None:
    response = api.get(f"/api/coupons/{CODE}", params={"email": email})
    assert (response.status_code, response.json()) == (status, body)
    assert stored(shop) == (0, 0, 0)


def test_an_unknown_code_is_still_a_404(api: httpx.Client) -> None:
    response = api.get("/api/coupons/NOPE234567", params={"email": "new@example.com"})
    assert response.status_code == 404
    assert response.json() == {
        "code": "NOPE234567",
        "status": "unknown",
        "error": "no coupon has the code NOPE234567",
    }


def test_without_a_friend_coupon_the_code_is_valid_with_no_discount(
    shop: Engine, project_dir: Path
) -> None:
    config = project_dir / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["referrals"].pop("friend_coupon")
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    for http in client(shop, project_dir, AUTH):
        body = http.get(f"/api/coupons/{CODE}").json()
    assert (body["status"], body["percent_off"], body["amount_off"], body["min_order"]) == (
        "valid",
        None,
        None,
        None,
    )


def test_a_referral_code_is_not_redeemed_like_a_coupon(api: httpx.Client, shop: Engine) -> None:
    response = api.post(f"/api/coupons/{CODE}/redeem", json={"order_id": "O-1"})
    assert response.status_code == 409
    assert response.json() == {
        "code": CODE,
        "kind": "referral",
        "status": "referral",
        "error": "a referral code is not redeemed: send it with the order as referral_code "
        "(order.placed, or the orders CSV)",
    }
    assert stored(shop) == (0, 0, 0)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"authorization": "Bearer wrong-key-0123456789abcdef"}, id="wrong-key"),
    ],
)
def test_without_the_right_key_it_is_a_401(
    shop: Engine, project_dir: Path, headers: dict[str, str]
) -> None:
    for http in client(shop, project_dir, headers):
        asked = http.get(f"/api/coupons/{CODE}", params={"email": "new@example.com"})
        redeemed = http.post(f"/api/coupons/{CODE}/redeem", json={"order_id": "O-1"})
    assert (asked.status_code, asked.json()) == (401, KEY_ERROR)
    assert (redeemed.status_code, redeemed.json()) == (401, KEY_ERROR)
    assert stored(shop) == (0, 0, 0)
