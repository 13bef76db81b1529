"""What is left of each credit, in SQL (`credits_left`), agrees with the allocation a
redemption makes (`_allocate`), and `soonest_expiries`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.intake import shop, wallet
from engine.intake.wallet import _allocate, _ledger
from engine.store.db import session_scope
from engine.store.models import OrderItem
from tests import store_fixtures
from tests.intake.test_wallet import LATER, NOW, SOON, credit, customer, redeem

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

D = timedelta(days=1)


def left(engine: Engine, customer_id: int, now: datetime = NOW) -> dict[int, Decimal]:
    """Each credit not expired at `now` with something left, and how much (SQL)."""
    rows = credits(engine, customer_id)
    return {
        cid: Decimal(paisa) / 100
        for cid, expires, paisa in rows
        if paisa > 0 and (expires is None or expires > now)
    }


def credits(engine: Engine, customer_id: int) -> list[tuple[int, datetime | None, int]]:
    found = wallet.credits_left([customer_id])
    with Session(engine) as session:
        query = select(found.c.id, found.c.expires_at, found.c.left).order_by(found.c.id)
        return [(r.id, r.expires_at, int(r.left)) for r in session.execute(query)]


def allocated(engine: Engine, customer_id: int, now: datetime = NOW) -> dict[int, Decimal]:
    """What a redemption of the whole balance would draw from each credit (Python)."""
    with Session(engine) as session:
        whole = wallet.balance(session, customer_id, now)
        drawn = _allocate(_ledger(session, customer_id), whole, now)
    assert drawn is not None
    return {source.id: taken for source, taken in drawn}


def item_of(engine: Engine, order: str, customer_name: str) -> int:
    with session_scope(engine) as session:
        shop.upsert_product(session, sku="TEA-500G", name="Tea", price="420", now=NOW - 30 * D)
        row = shop.record_order(
            session, external_id=order, customer_id=customer_name,
            items=[shop.Line("TEA-500G", 1)], placed_at=NOW - 20 * D,
        )  # fmt: skip
        session.flush()
        return int(
            session.execute(select(OrderItem.id).where(OrderItem.order_id == row.id)).scalar_one()
        )


def test_what_is_left_after_redemptions_and_an_expiry(fresh_store: Engine) -> None:
    ana = customer(fresh_store)
    forever = credit(fresh_store, ana, "100.00", NOW - 10 * D)
    soon = credit(fresh_store, ana, "30.25", NOW - 2 * D, SOON)
    later = credit(fresh_store, ana, "20.00", NOW - D, LATER)
    redeem(fresh_store, ana, "40.50", "evt-1")
    expected = {forever: Decimal("100.00"), later: Decimal("9.75")}
    assert left(fresh_store, ana) == expected == allocated(fresh_store, ana)
    assert soon not in left(fresh_store, ana)
    redeem(fresh_store, ana, "9.76", "evt-2")
    assert left(fresh_store, ana) == {forever: Decimal("99.99")} == allocated(fresh_store, ana)
    # An expired credit keeps nothing to spend, whatever was left of it.
    expiring = credit(fresh_store, ana, "5.00", NOW - D, SOON, key="five")
    assert left(fresh_store, ana, SOON) == {forever: Decimal("99.99")}
    assert left(fresh_store, ana)[expiring] == Decimal("5.00")


def test_what_was_taken_back_falls_on_the_items_credits_first_to_expire(
    fresh_store: Engine,
) -> None:
    """Two refunds of one item (50.00 expiring SOON, then 20.00 LATER) of which 60.00
    was taken back: 10.00 is left, of the later one; another credit is untouched."""
    ana = customer(fresh_store)
    item = item_of(fresh_store, "o1", "ana")
    first = credit(fresh_store, ana, "50.00", NOW - 5 * D, SOON, order_item_id=item, key="a")
    second = credit(fresh_store, ana, "20.00", NOW - 4 * D, LATER, order_item_id=item, key="b")
    other = credit(fresh_store, ana, "7.00", NOW - 3 * D, key="c")
    credit(fresh_store, ana, "-60.00", NOW - 2 * D, order_item_id=item, key="refund-reversal:1")
    expected = {second: Decimal("10.00"), other: Decimal("7.00")}
    assert left(fresh_store, ana) == expected == allocated(fresh_store, ana)
    assert first not in left(fresh_store, ana)
    redeem(fresh_store, ana, "12.00", "evt-1")  # 10.00 of the item's, 2.00 of the other
    assert left(fresh_store, ana) == {other: Decimal("5.00")} == allocated(fresh_store, ana)


def test_a_redemption_before_the_take_back_is_counted_first(fresh_store: Engine) -> None:
    """30.00 of an item's 50.00 refund was spent; then 15.00 of the refund was taken
    back: 5.00 is left, as a later redemption finds it."""
    ana = customer(fresh_store)
    item = item_of(fresh_store, "o1", "ana")
    refund = credit(fresh_store, ana, "50.00", NOW - 5 * D, SOON, order_item_id=item, key="a")
    redeem(fresh_store, ana, "30.00", "evt-1", at=NOW - 4 * D)
    credit(fresh_store, ana, "-15.00", NOW - 2 * D, order_item_id=item, key="refund-reversal:1")
    assert left(fresh_store, ana) == {refund: Decimal("5.00")} == allocated(fresh_store, ana)


def test_the_soonest_expiry_and_what_is_left_of_it(fresh_store: Engine) -> None:
    ana, bob, cat = (customer(fresh_store, name) for name in ("ana", "bob", "cat"))
    credit(fresh_store, ana, "100.00", NOW - 10 * D)
    credit(fresh_store, ana, "30.25", NOW - 2 * D, SOON, key="a1")
    credit(fresh_store, ana, "4.75", NOW - 2 * D, SOON, key="a2")
    credit(fresh_store, ana, "20.00", NOW - D, LATER, key="a3")
    redeem(fresh_store, ana, "10.00", "evt-1")  # from the 30.25 first
    credit(fresh_store, bob, "80.00", NOW - D)  # never expires
    credit(fresh_store, cat, "9.99", NOW - D, NOW + D, key="c1")
    redeem(fresh_store, cat, "9.99", "evt-2")  # all of it: the next is LATER
    credit(fresh_store, cat, "1.00", NOW - D, LATER, key="c2")
    with Session(fresh_store) as session:
        found = wallet.soonest_expiries(session, [ana, bob, cat], NOW)
        assert found == {ana: (SOON, Decimal("25.00")), cat: (LATER, Decimal("1.00"))}
        # At SOON the first ones have expired; what is left expires LATER.
        assert wallet.soonest_expiries(session, [ana], SOON) == {ana: (LATER, Decimal("20.00"))}
