"""Triggers on the catalogue and the basket, through time: a new product, a product back in
stock, a checkout left behind; on SQLite and PostgreSQL.

Products and restocks come in through the intake functions, as the shop's sync brings them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake.shop import (
    CartLine,
    product_by_sku,
    start_checkout,
    upsert_product,
    want_product,
)
from engine.store.db import session_scope
from engine.store.models import Checkout, Restock
from tests.plan.test_planner import NOW, Shop
from tests.plan.test_triggers_purchases import (
    NAME,
    buy,
    catalogue_shop,
    customer_id,
    occurrences,
    passes,
    person,
    sent,
    write_campaign,
)

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture
def shop(store: Engine, project_dir: Any) -> Shop:
    """ana bought tea, bob a bag, cat nothing yet."""
    shop = catalogue_shop(store, project_dir)
    shop.edit("config.yaml", lambda c: c["sending"].update(frequency_cap=None))
    for name in ("ana", "bob", "cat"):
        person(shop, name)
    buy(shop, "a1", "ana", NOW - 20 * D, sku="TEA-500G")
    buy(shop, "b1", "bob", NOW - 20 * D, sku="JUTE-BAG-01")
    return shop


def stock(shop: Shop, sku: str, count: int, at: Any, category: str = "tea") -> int:
    """Create or update a product with `count` in stock at `at`; its id."""
    with session_scope(shop.engine) as s:
        product = upsert_product(s, sku=sku, name=sku.title(), price="300", stock=count,
                                 category=category, now=at)  # fmt: skip
        return product.id  # type: ignore[return-value]


def product_id(shop: Shop, sku: str) -> int:
    with Session(shop.engine) as s:
        return product_by_sku(s, sku).id  # type: ignore[return-value]


def owners(shop: Shop) -> list[tuple[str, str]]:
    return sorted((shop.owner(m), m.occurrence) for m in sent(shop))


# ---------------------------------------------------------------- product_added


@pytest.mark.parametrize(
    ("categories", "announced"),
    [
        pytest.param(["tea"], {("ana", "GREEN-TEA")}, id="tea-only"),
        pytest.param([], {("ana", "GREEN-TEA"), ("bob", "BAG-NEW")}, id="any-category"),
    ],
)
def test_a_new_product_goes_to_those_who_bought_in_its_category(
    shop: Shop, categories: list[str], announced: set[tuple[str, str]]
) -> None:
    write_campaign(shop, {"type": "product_added", "audience": "buyers", "categories": categories})
    green = stock(shop, "GREEN-TEA", 10, NOW)
    stock(shop, "WHITE-TEA", 0, NOW)  # sold out: not announced
    bag = stock(shop, "BAG-NEW", 5, NOW, category="bags")
    ids = {"GREEN-TEA": green, "BAG-NEW": bag}
    assert passes(shop, [NOW + H, NOW + D, NOW + 4 * D]) == [len(announced), 0, 0]
    assert set(owners(shop)) == {(name, f"product-{ids[sku]}") for name, sku in announced}
    [tea] = sent(shop, "ana")
    assert tea.context == {"product_id": green}
    assert tea.dedupe_key == f"{NAME}:{customer_id(shop, 'ana')}:product-{green}"
    assert (tea.send_after, tea.expires_at) == (NOW + H, NOW + 3 * D)


def test_a_new_product_to_the_whole_segment(shop: Shop) -> None:
    write_campaign(shop, {"type": "product_added", "audience": "segment", "categories": ["tea"]})
    green = stock(shop, "GREEN-TEA", 10, NOW)
    stock(shop, "WHITE-TEA", 0, NOW)
    assert passes(shop, [NOW + H, NOW + D]) == [3, 0]
    assert owners(shop) == [(name, f"product-{green}") for name in ("ana", "bob", "cat")]


def test_products_known_before_the_lookback_are_not_news(shop: Shop) -> None:
    write_campaign(shop, {"type": "product_added", "audience": "segment"})
    stock(shop, "GREEN-TEA", 10, NOW - 4 * D)  # older than the 3 days' default expiry
    assert passes(shop, [NOW, NOW + D]) == [0, 0]
    assert sent(shop) == []


# ---------------------------------------------------------------- back_in_stock


def restocks(shop: Shop) -> list[int]:
    with Session(shop.engine) as s:
        query = select(col(Restock.id)).order_by(col(Restock.id))
        return list(s.execute(query).scalars())


@pytest.mark.parametrize(
    ("audience", "told"),
    [
        pytest.param(["wanted"], ["ana", "cat"], id="wanted"),
        pytest.param(["bought"], ["ana", "bob"], id="bought"),
        # ana both asked and bought: told once per restock all the same.
        pytest.param(["wanted", "bought"], ["ana", "bob", "cat"], id="wanted-and-bought"),
    ],
)
def test_each_restock_is_news_again(shop: Shop, audience: list[str], told: list[str]) -> None:
    write_campaign(shop, {"type": "back_in_stock", "audience": audience})
    buy(shop, "b2", "bob", NOW - 19 * D, sku="TEA-500G")  # ana bought tea too; cat nothing
    with session_scope(shop.engine) as s:
        for name in ("ana", "cat"):
            want_product(s, customer_id=name, sku="TEA-500G", at=NOW - 10 * D)
    tea = product_id(shop, "TEA-500G")  # created without stock: sold out
    stock(shop, "TEA-500G", 5, NOW)
    assert passes(shop, [NOW + H, NOW + D]) == [len(told), 0]
    stock(shop, "TEA-500G", 0, NOW + D + H)  # sold out
    assert passes(shop, [NOW + 2 * D]) == [0]
    stock(shop, "TEA-500G", 3, NOW + 3 * D)  # and back again
    assert passes(shop, [NOW + 3 * D + H, NOW + 4 * D, NOW + 6 * D]) == [len(told), 0, 0]
    first, second = restocks(shop)
    for name in told:
        assert occurrences(shop, name) == [f"restock-{first}", f"restock-{second}"]
        assert [m.context for m in sent(shop, name)] == [
            {"product_id": tea, "restock_id": first},
            {"product_id": tea, "restock_id": second},
        ]
    assert sorted({shop.owner(m) for m in sent(shop)}) == told
    assert len(sent(shop)) == 2 * len(told)


def test_a_product_sold_out_again_before_the_pass_is_not_announced(shop: Shop) -> None:
    write_campaign(shop, {"type": "back_in_stock", "audience": ["wanted"]})
    with session_scope(shop.engine) as s:
        want_product(s, customer_id="ana", sku="TEA-500G", at=NOW - 10 * D)
    stock(shop, "TEA-500G", 2, NOW)
    stock(shop, "TEA-500G", 0, NOW + 30 * M)
    assert passes(shop, [NOW + H, NOW + D, NOW + 3 * D]) == [0, 0, 0]
    assert len(restocks(shop)) == 1 and sent(shop) == []


# ---------------------------------------------------------------- checkout_abandoned


def checkout(shop: Shop, cart: str, customer: str) -> int:
    with session_scope(shop.engine) as s:
        row = start_checkout(s, cart_id=cart, customer_id=customer,
                             items=[CartLine("TEA-500G", 2)], amount="840",
                             started_at=NOW, now=NOW)  # fmt: skip
        return row.id  # type: ignore[return-value]


def cart_of(shop: Shop, cart: str) -> Checkout:
    with Session(shop.engine) as s:
        query = select(Checkout).where(col(Checkout.cart_id) == cart)
        return s.execute(query).scalar_one()


def test_a_checkout_left_for_an_hour_gets_one_email(shop: Shop) -> None:
    write_campaign(shop, {"type": "checkout_abandoned", "wait": "1h"})
    left = checkout(shop, "c1", "ana")
    checkout(shop, "c2", "bob")
    buy(shop, "b2", "bob", NOW + 30 * M, sku="TEA-500G", cart_id="c2")  # within the hour
    assert passes(shop, [NOW + 59 * M, NOW + H, NOW + 2 * H, NOW + D]) == [0, 1, 0, 0]
    [nudge] = sent(shop)
    assert shop.owner(nudge) == "ana"
    assert nudge.occurrence == f"cart-{left}"
    assert nudge.dedupe_key == f"{NAME}:{customer_id(shop, 'ana')}:cart-{left}"
    assert nudge.context == {"cart_id": "c1"}
    assert (nudge.send_after, nudge.expires_at) == (NOW + H, NOW + H + D)
    assert cart_of(shop, "c2").order_id is not None


def test_an_order_after_the_first_step_stops_the_second(shop: Shop) -> None:
    steps = [
        {"id": "nudge", "template": "welcome", "subject": "Your basket"},
        {"id": "again", "after": "1d", "template": "thank_you", "subject": "Still there?"},
    ]
    write_campaign(shop, {"type": "checkout_abandoned", "wait": "1h"}, steps=steps)
    ana_cart = checkout(shop, "c1", "ana")
    bob_cart = checkout(shop, "c2", "bob")
    assert passes(shop, [NOW + H, NOW + 2 * H]) == [2, 0]
    buy(shop, "b2", "bob", NOW + 3 * H, sku="TEA-500G", cart_id="c2")
    assert passes(shop, [NOW + D + H - M, NOW + D + H, NOW + 2 * D + 2 * H]) == [0, 1, 0]
    assert [m.step for m in sent(shop, "ana")] == ["nudge", "again"]
    assert [m.step for m in sent(shop, "bob")] == ["nudge"]
    ana = customer_id(shop, "ana")
    assert [m.dedupe_key for m in sent(shop, "ana")] == [
        f"{NAME}:{ana}:cart-{ana_cart}:nudge",
        f"{NAME}:{ana}:cart-{ana_cart}:again",
    ]
    assert occurrences(shop, "bob") == [f"cart-{bob_cart}"]
    assert sent(shop, "ana")[1].send_after == NOW + D + H
