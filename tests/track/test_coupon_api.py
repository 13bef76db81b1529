"""The checkout's coupon API over real HTTP, against the tracking app as the daemon serves it,
on SQLite and PostgreSQL: every answer, and nothing changed by a refusal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.intake.shop import Line, cancel_order, record_order, upsert_customer, upsert_product
from engine.project.loader import Secrets, load_project
from engine.store.db import session_scope
from engine.store.models import Coupon, CouponUse, Customer
from engine.track.app import create_app
from tests import store_fixtures
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

KEY = "shop-api-key-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(days=7)
KEY_ERROR = {"error": "missing or wrong API key (Authorization: Bearer <key>)"}


@pytest.fixture
def shop(fresh_store: Engine) -> Engine:
    """Rahim and Karim, a tea at 320.00, and Rahim's order O-9 of two teas (640.00)."""
    with session_scope(fresh_store) as session:
        for ref, email in (("C-1", "rahim@example.com"), ("C-2", "karim@example.com")):
            upsert_customer(session, external_id=ref, email=email, now=NOW - timedelta(days=30))
        upsert_product(session, sku="TEA-500G", name="Tea", price="320.00", now=NOW)
        record_order(session, external_id="O-9", customer_id="C-1",
                     items=[Line("TEA-500G", 2)], placed_at=NOW - timedelta(hours=1))  # fmt: skip
    return fresh_store


def add_coupon(engine: Engine, code: str, **fields: Any) -> None:
    values: dict[str, Any] = {"percent_off": Decimal("10.00"), "expires_at": EXPIRES, **fields}
    with session_scope(engine) as session:
        owner = session.execute(select(Customer.id).where(Customer.external_id == "C-1"))
        session.add(Coupon(code=code, customer_id=owner.scalar_one(), campaign="welcome",
                           created_at=NOW - timedelta(days=1), **values))  # fmt: skip


@pytest.fixture
def api(shop: Engine, project_dir: Path) -> Iterator[httpx.Client]:
    add_coupon(shop, "SAVE-7KQ2")
    add_coupon(shop, "MIN-700", percent_off=None, amount_off=Decimal("50.00"),
               min_order=Decimal("700.00"))  # fmt: skip
    add_coupon(shop, "OLD-1", expires_at=NOW - timedelta(seconds=1))
    add_coupon(shop, "USED-1", used_at=NOW - timedelta(days=1), used_order="O-7")
    project = load_project(project_dir / "config.yaml")
    secrets = Secrets(secret="s" * 32, api_key=KEY)
    app = create_app(shop, lambda: project, secrets, clock=lambda: NOW)
    with serving(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        yield client


def stored(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every coupon's use and every recorded presentation: what a refusal must not change."""
    with Session(engine) as session:
        coupons = session.execute(
            select(Coupon.code, Coupon.used_at, Coupon.used_order).order_by(Coupon.code)
        )
        uses = session.execute(
            select(CouponUse.code, CouponUse.order_ref, CouponUse.redeemed, CouponUse.source)
        )
        return [tuple(row) for row in coupons], [tuple(row) for row in uses]


RAHIM = {"id": "C-1", "email": "rahim@example.com"}
SAVE = {
    "code": "SAVE-7KQ2",
    "percent_off": "10.00",
    "amount_off": None,
    "min_order": None,
    "expires_at": "2026-11-29T06:00:00Z",
    "customer": RAHIM,
}

# ------------------------------------------------------------------------ GET


def test_a_valid_code_is_described(api: httpx.Client) -> None:
    response = api.get("/api/coupons/SAVE-7KQ2")
    assert response.status_code == 200
    assert response.json() == {**SAVE, "status": "valid"}


def test_the_code_is_read_without_spaces_and_in_any_case(api: httpx.Client) -> None:
    response = api.get("/api/coupons/%20save-7kq2%20")
    assert (response.status_code, response.json()["code"]) == (200, "SAVE-7KQ2")


def test_a_fixed_amount_with_a_minimum_is_described_exactly(api: httpx.Client) -> None:
    body = api.get("/api/coupons/MIN-700").json()
    assert (body["percent_off"], body["amount_off"], body["min_order"]) == (
        None,
        "50.00",
        "700.00",
    )


@pytest.mark.parametrize(
    ("code", "status", "body"),
    [
        pytest.param(
            "NOPE-1",
            404,
            {"code": "NOPE-1", "status": "unknown", "error": "no coupon has the code NOPE-1"},
            id="unknown",
        ),
        pytest.param(
            "X" * 65,
            404,
            {
                "code": "X" * 64 + "…",
                "status": "unknown",
                "error": "no coupon has a code longer than 64 characters",
            },
            id="too-long",
        ),
        pytest.param(
            "USED-1",
            409,
            {
                "code": "USED-1",
                "status": "used",
                "used_order": "O-7",
                "error": "already used by order O-7",
            },
            id="used",
        ),
        pytest.param(
            "OLD-1",
            410,
            {
                "code": "OLD-1",
                "status": "expired",
                "expires_at": "2026-11-22T05:59:59Z",
                "error": "expired at 2026-11-22T05:59:59Z",
            },
            id="expired",
        ),
    ],
)
def test_a_code_no_order_can_use_is_answered_with_why(
    api: httpx.Client, shop: Engine, code: str, status: int, body: dict[str, Any]
) -> None:
    before = stored(shop)
    response = api.get(f"/api/coupons/{code}")
    assert (response.status_code, response.json()) == (status, body)
    assert stored(shop) == before


# --------------------------------------------------------------------- redeem


def test_a_redeem_marks_the_coupon_used_by_the_order_once(api: httpx.Client, shop: Engine) -> None:
    first = api.post("/api/coupons/save-7kq2/redeem", json={"order_id": "O-1", "total": "500"})
    expected = {**SAVE, "status": "redeemed", "order_id": "O-1",
                "redeemed_at": "2026-11-22T06:00:00Z"}  # fmt: skip
    assert (first.status_code, first.json()) == (200, expected)
    again = api.post("/api/coupons/SAVE-7KQ2/redeem", json={"order_id": "O-1"})
    assert (again.status_code, again.json()) == (200, expected)
    coupons, uses = stored(shop)
    assert ("SAVE-7KQ2", NOW, "O-1") in coupons
    assert uses == [("SAVE-7KQ2", "O-1", True, "checkout api")]
    after = api.get("/api/coupons/SAVE-7KQ2")
    assert (after.status_code, after.json()["used_order"]) == (409, "O-1")


@pytest.mark.parametrize(
    ("code", "body", "status", "answer"),
    [
        pytest.param(
            "SAVE-7KQ2",
            {"order_id": "O-2", "customer_id": "C-2"},
            422,
            {
                "code": "SAVE-7KQ2",
                "status": "other_customer",
                "field": "customer_id",
                "min_order": None,
                "error": "made for another customer than C-2",
            },
            id="other-customer",
        ),
        pytest.param(
            "MIN-700",
            {"order_id": "O-2", "total": "699.99"},
            422,
            {
                "code": "MIN-700",
                "status": "below_minimum",
                "field": "total",
                "min_order": "700.00",
                "error": "the order's total 699.99 is below the coupon's minimum order of 700.00",
            },
            id="below-minimum",
        ),
        pytest.param(
            "MIN-700",
            {"order_id": "O-9"},
            422,
            {
                "code": "MIN-700",
                "status": "below_minimum",
                "field": "total",
                "min_order": "700.00",
                "error": "the order's total 640.00 is below the coupon's minimum order of 700.00",
            },
            id="stored-order-below-minimum",
        ),
        pytest.param(
            "MIN-700",
            {"order_id": "O-2"},
            422,
            {
                "code": "MIN-700",
                "status": "total_missing",
                "field": "total",
                "min_order": "700.00",
                "error": "the order's total is needed: the coupon's minimum order is 700.00",
            },
            id="total-missing",
        ),
        pytest.param(
            "USED-1",
            {"order_id": "O-2"},
            409,
            {
                "code": "USED-1",
                "status": "used",
                "used_order": "O-7",
                "error": "already used by order O-7",
            },
            id="used-by-another-order",
        ),
        pytest.param(
            "OLD-1",
            {"order_id": "O-2"},
            410,
            {
                "code": "OLD-1",
                "status": "expired",
                "expires_at": "2026-11-22T05:59:59Z",
                "error": "expired at 2026-11-22T05:59:59Z",
            },
            id="expired",
        ),
        pytest.param(
            "NOPE-1",
            {"order_id": "O-2"},
            404,
            {"code": "NOPE-1", "status": "unknown", "error": "no coupon has the code NOPE-1"},
            id="unknown",
        ),
    ],
)
def test_a_refused_redeem_says_why_and_changes_nothing(
    api: httpx.Client,
    shop: Engine,
    code: str,
    body: dict[str, Any],
    status: int,
    answer: dict[str, Any],
) -> None:
    before = stored(shop)
    response = api.post(f"/api/coupons/{code}/redeem", json=body)
    assert (response.status_code, response.json()) == (status, answer)
    assert stored(shop) == before


def test_a_second_order_after_a_redeem_is_a_conflict(api: httpx.Client, shop: Engine) -> None:
    assert api.post("/api/coupons/SAVE-7KQ2/redeem", json={"order_id": "O-1"}).status_code == 200
    before = stored(shop)
    response = api.post("/api/coupons/SAVE-7KQ2/redeem", json={"order_id": "O-2"})
    assert (response.status_code, response.json()["used_order"]) == (409, "O-1")
    assert stored(shop) == before


def test_the_stored_orders_total_can_reach_the_minimum(api: httpx.Client) -> None:
    response = api.post("/api/coupons/MIN-700/redeem", json={"order_id": "O-9", "total": "700"})
    assert (response.status_code, response.json()["order_id"]) == (200, "O-9")


@pytest.mark.parametrize(
    ("content", "status", "answer"),
    [
        pytest.param(
            b"{",
            400,
            {
                "error": "the body is not valid JSON: Expecting property name enclosed "
                "in double quotes: line 1 column 2 (char 1)"
            },
            id="not-json",
        ),
        pytest.param(
            b'["O-1"]',
            422,
            {"error": 'expected a JSON object like {"order_id": "O-1001"}'},
            id="not-an-object",
        ),
        pytest.param(
            b"{}", 422, {"field": "order_id", "error": "required field is missing"}, id="no-order"
        ),
        pytest.param(
            b'{"order_id": 1001}',
            422,
            {"field": "order_id", "error": "expected a text of 1 to 64 characters, got 1001"},
            id="order-id-number",
        ),
        pytest.param(
            b'{"order_id": "O-1\\nO-2"}',
            422,
            {"field": "order_id", "error": "must be one line of printable text, got 'O-1\\nO-2'"},
            id="order-id-two-lines",
        ),
        pytest.param(
            b'{"order_id": "O-1", "coupon": "X"}',
            422,
            {"field": "coupon", "error": "unknown field; expected order_id, total, customer_id"},
            id="unknown-field",
        ),
        pytest.param(
            b'{"order_id": "O-1", "total": "abc"}',
            422,
            {"field": "total", "error": 'expected an amount like 120.50, got "abc"'},
            id="total-text",
        ),
        pytest.param(
            b'{"order_id": "O-1", "total": true}',
            422,
            {"field": "total", "error": "expected an amount like 120.50, got true"},
            id="total-bool",
        ),
        pytest.param(
            b'{"order_id": "O-1", "total": -1}',
            422,
            {"field": "total", "error": "must not be negative, got -1"},
            id="total-negative",
        ),
        pytest.param(
            b'{"order_id": "O-1", "total": 12.345}',
            422,
            {"field": "total", "error": "has more than two decimal places, got 12.345"},
            id="total-three-decimals",
        ),
        pytest.param(
            b'{"order_id": "O-1", "total": "1e99"}',
            422,
            {"field": "total", "error": 'must be at most 10000000.00, got "1e99"'},
            id="total-huge",
        ),
        pytest.param(
            b'{"order_id": "O-1", "customer_id": ""}',
            422,
            {"field": "customer_id", "error": "expected a text of 1 to 64 characters, got ''"},
            id="customer-empty",
        ),
        pytest.param(
            b'{"order_id": "' + b"O" * 5000 + b'"}',
            413,
            {"error": "the body is larger than 4096 bytes"},
            id="too-large",
        ),
    ],
)
def test_a_bad_body_is_answered_naming_the_field_and_changes_nothing(
    api: httpx.Client, shop: Engine, content: bytes, status: int, answer: dict[str, Any]
) -> None:
    before = stored(shop)
    response = api.post(
        "/api/coupons/SAVE-7KQ2/redeem",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert (response.status_code, response.json()) == (status, answer)
    assert stored(shop) == before


# ------------------------------------------------------------------------ key


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"authorization": ""}, id="missing"),
        pytest.param({"authorization": "Bearer wrong"}, id="wrong"),
        pytest.param({"authorization": f"Basic {KEY}"}, id="not-bearer"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/coupons/SAVE-7KQ2"), ("POST", "/api/coupons/SAVE-7KQ2/redeem")],
    ids=["look-up", "redeem"],
)
def test_without_the_right_key_it_is_a_401_and_nothing_changes(
    api: httpx.Client, shop: Engine, headers: dict[str, str], method: str, path: str
) -> None:
    before = stored(shop)
    response = api.request(method, path, json={"order_id": "O-1"}, headers=headers)
    assert (response.status_code, response.json()) == (401, KEY_ERROR)
    assert response.headers["www-authenticate"] == "Bearer"
    assert stored(shop) == before


def test_a_coupon_comes_back_when_its_order_is_cancelled(api: httpx.Client, shop: Engine) -> None:
    first = api.post("/api/coupons/SAVE-7KQ2/redeem", json={"order_id": "O-9"})
    assert first.json()["status"] == "redeemed"
    with session_scope(shop) as session:
        cancel_order(session, "O-9", now=NOW)
    assert api.get("/api/coupons/SAVE-7KQ2").json()["status"] == "valid"
    again = api.post("/api/coupons/SAVE-7KQ2/redeem", json={"order_id": "O-9"})
    assert (again.status_code, again.json()["status"], again.json()["error"]) == (
        409, "released", "order O-9 was cancelled")  # fmt: skip
    other = api.post("/api/coupons/SAVE-7KQ2/redeem", json={"order_id": "O-11", "total": "500"})
    assert (other.status_code, other.json()["status"]) == (200, "redeemed")
