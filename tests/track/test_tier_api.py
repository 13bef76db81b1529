"""`GET /api/customers/{id}/tier` over real HTTP, on SQLite and PostgreSQL: the tier the
planner worked out, its standing discount and history; an unknown customer; a wrong key."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine

from engine.intake import shop
from engine.plan import plan
from engine.project.loader import Project
from engine.store.db import session_scope
from tests.track import api_fixtures
from tests.track.api_fixtures import AUTH, NOW

fresh_store = api_fixtures.fresh_store
migrated_store = api_fixtures.migrated_store
project = api_fixtures.project
base = api_fixtures.base

D = timedelta(days=1)


@pytest.fixture
def gold(fresh_store: Engine, project: Project) -> None:
    """C-900 spent 10,500 (gold) after two orders (silver); C-901 bought once."""
    with session_scope(fresh_store) as s:
        shop.upsert_product(s, sku="BAG", name="Bag", price="350", now=NOW - 60 * D)
        for who in ("C-900", "C-901"):
            shop.upsert_customer(s, external_id=who, email=f"{who}@example.com", now=NOW - 90 * D)
        for order, who, quantity, days in (
            ("O1", "C-900", 1, 30),
            ("O2", "C-900", 1, 20),
            ("O3", "C-901", 1, 20),
        ):
            shop.record_order(
                s,
                external_id=order,
                customer_id=who,
                items=[shop.Line("BAG", quantity)],
                placed_at=NOW - days * D,
            )
    project = replace(project, config=project.config.model_copy(update={"campaigns": []}))
    plan(fresh_store, project, NOW - 10 * D)
    with session_scope(fresh_store) as s:
        shop.record_order(
            s,
            external_id="O4",
            customer_id="C-900",
            items=[shop.Line("BAG", 28)],
            placed_at=NOW - 5 * D,
        )
    plan(fresh_store, project, NOW - 5 * D)  # fmt: skip


def test_the_tier_its_discount_and_history(base: str, gold: None) -> None:
    answer = httpx.get(f"{base}/api/customers/C-900/tier", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {
        "customer": "C-900",
        "program": {"en": "Nakshi Club", "bn": "নকশি ক্লাব"},
        "tier": "gold",
        "name": {"en": "Gold", "bn": "সোনালি"},
        "since": "2026-11-17T06:00:00+00:00",
        "discount": "5.00",
        "history": [
            {"at": "2026-11-17T06:00:00+00:00", "from": "silver", "to": "gold", "direction": "up"},
            {"at": "2026-11-12T06:00:00+00:00", "from": None, "to": "silver", "direction": "start"},
        ],
    }


def test_a_customer_in_no_tier(base: str, gold: None) -> None:
    answer = httpx.get(f"{base}/api/customers/C-901/tier", headers=AUTH, timeout=10)
    body = answer.json()
    assert answer.status_code == 200
    assert (body["tier"], body["name"], body["since"], body["discount"], body["history"]) == (
        None, None, None, None, []
    )  # fmt: skip


def test_unknown_customer_and_wrong_key(base: str, gold: None) -> None:
    unknown = httpx.get(f"{base}/api/customers/C-404/tier", headers=AUTH, timeout=10)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "unknown customer 'C-404'"})
    for headers in ({}, {"authorization": "Bearer wrong"}):
        denied = httpx.get(f"{base}/api/customers/C-900/tier", headers=headers, timeout=10)
        assert denied.status_code == 401
        assert "gold" not in denied.text
