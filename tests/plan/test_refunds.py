"""The refund ledger around its edges: cancellations, late reports, prices by time.

Every test runs on SQLite and on PostgreSQL and checks the ledger to the paisa.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake import shop
from engine.intake.importer import import_csv
from engine.store.db import session_scope
from engine.store.models import Message, MessageStatus, Order, OrderItem, OrderStatus
from tests import store_fixtures
from tests.plan.test_planner import NOW, D, H, Shop, _shop

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

PLACED = NOW - 10 * D
ORDER_CSV = "order_id,customer_id,placed_at,delivered_at,status,sku,quantity,unit_price\n"


@pytest.fixture
def refunds(fresh_store: Engine, project_dir: Path) -> Shop:
    """The shipped project with only the refund campaign, on SQLite and PostgreSQL."""
    refunds = _shop(fresh_store, project_dir)
    refunds.enable("price_drop_refund")
    refunds.customer("ana", consent=False)
    return refunds


def amounts(refunds: Shop) -> list[Decimal]:
    return [c.amount for c in refunds.credits()]


def notices(refunds: Shop) -> list[tuple[MessageStatus, str, str]]:
    """Each refund notice: its status, and the new price and amount it tells."""
    found = []
    for m in refunds.messages("price_drop_refund"):
        assert m.context is not None
        found.append((m.status, m.context["new_price"], m.context["amount"]))
    return found


def import_orders(refunds: Shop, text: str, now: datetime) -> None:
    path = refunds.dir / "orders.csv"
    path.write_text(ORDER_CSV + text, encoding="utf-8")
    import_csv(refunds.engine, "orders", path, now=now, shop_timezone="UTC")


def order(refunds: Shop, external_id: str) -> Order:
    with Session(refunds.engine) as s:
        return s.execute(select(Order).where(col(Order.external_id) == external_id)).scalar_one()


def paid(refunds: Shop) -> list[Decimal]:
    with Session(refunds.engine) as s:
        query = select(col(OrderItem.unit_price)).order_by(col(OrderItem.id))
        return list(s.execute(query).scalars())


# ---------------------------------------------------------------- cancellation


def _credited_then_cancelled(refunds: Shop, cancel: Callable[[], None]) -> None:
    refunds.order("o1", "ana", PLACED, quantity=2)
    refunds.price("JUTE-BAG-01", "336", PLACED + D)
    assert refunds.plan(PLACED + D + H)["price_drop_refund"]["queued"] == 1
    assert notices(refunds) == [(MessageStatus.QUEUED, "336.00", "28.00")]
    cancel()
    assert order(refunds, "o1").status == OrderStatus.CANCELLED
    # The credit is taken back exactly, and the notice of it never goes.
    assert amounts(refunds) == [Decimal("28.00"), Decimal("-28.00")]
    assert [n[0] for n in notices(refunds)] == [MessageStatus.SUPPRESSED]
    # A deeper drop later owes a cancelled order nothing.
    refunds.price("JUTE-BAG-01", "300", PLACED + 3 * D)
    assert refunds.plan(PLACED + 3 * D + H)["price_drop_refund"]["queued"] == 0
    assert sum(amounts(refunds)) == 0
    with Session(refunds.engine) as s:
        assert shop.customer_by_external_id(s, "ana").orders_count == 0


def test_cancel_order_takes_back_unused_credits_and_drops_the_unsent_notice(
    refunds: Shop,
) -> None:
    def cancel() -> None:
        with session_scope(refunds.engine) as s:
            shop.cancel_order(s, "o1", now=PLACED + 2 * D)

    _credited_then_cancelled(refunds, cancel)


def test_recording_an_order_again_as_cancelled_cancels_it(refunds: Shop) -> None:
    def cancel() -> None:
        with session_scope(refunds.engine) as s:
            shop.record_order(s, external_id="o1", customer_id="ana", placed_at=PLACED,
                              items=[shop.Line("JUTE-BAG-01", 2)], cancelled=True)  # fmt: skip

    _credited_then_cancelled(refunds, cancel)


def test_reimporting_an_order_as_cancelled_cancels_it(refunds: Shop) -> None:
    line = "o1,ana,{placed},,{status},JUTE-BAG-01,2,\n"
    placed = PLACED.isoformat()
    import_orders(refunds, line.format(placed=placed, status=""), PLACED)

    def cancel() -> None:
        import_orders(refunds, line.format(placed=placed, status="cancelled"), PLACED + 2 * D)

    _credited_then_cancelled(refunds, cancel)


def test_a_delivered_order_cancelled_later_is_reversed_too(refunds: Shop) -> None:
    refunds.order("o1", "ana", PLACED, quantity=3)
    refunds.price("JUTE-BAG-01", "349.99", PLACED + D)
    refunds.plan(PLACED + D + H)
    with session_scope(refunds.engine) as s:
        shop.mark_delivered(s, "o1", PLACED + 2 * D)
    refunds.plan(PLACED + 2 * D + H)  # the notice has gone out meanwhile: it stays sent
    with session_scope(refunds.engine) as s:
        s.execute(Message.__table__.update().values(status=MessageStatus.SENT.value))  # type: ignore[attr-defined]
        shop.cancel_order(s, "o1", now=PLACED + 5 * D)
        shop.cancel_order(s, "o1", now=PLACED + 6 * D)  # again: nothing more
    assert amounts(refunds) == [Decimal("0.03"), Decimal("-0.03")]
    assert [n[0] for n in notices(refunds)] == [MessageStatus.SENT]


def test_an_order_without_credits_is_cancelled_without_a_ledger_entry(refunds: Shop) -> None:
    refunds.order("o1", "ana", PLACED)
    with session_scope(refunds.engine) as s:
        shop.cancel_order(s, "o1", now=PLACED + D)
    assert order(refunds, "o1").status == OrderStatus.CANCELLED
    assert amounts(refunds) == []


# ---------------------------------------------------------------- the price when placed


def test_a_late_order_without_unit_price_pays_the_price_when_it_was_placed(
    refunds: Shop,
) -> None:
    refunds.price("JUTE-BAG-01", "336", PLACED + D)
    refunds.price("JUTE-BAG-01", "330", PLACED + 2 * D)
    refunds.order("late", "ana", PLACED, quantity=2)  # reported after both drops
    refunds.order("mid", "ana", PLACED + D + H)
    assert paid(refunds) == [Decimal("350.00"), Decimal("336.00")]
    refunds.plan(PLACED + 2 * D + H)
    assert sorted(amounts(refunds)) == [Decimal("6.00"), Decimal("40.00")]


def test_a_late_imported_order_without_unit_price_pays_the_price_when_it_was_placed(
    refunds: Shop,
) -> None:
    refunds.price("JUTE-BAG-01", "336", PLACED + D)
    text = (
        f"late,ana,{PLACED.isoformat()},,,JUTE-BAG-01,2,\n"
        f"late,ana,{PLACED.isoformat()},,,TEA-500G,1,\n"
        f"mid,ana,{(PLACED + D + H).isoformat()},,,JUTE-BAG-01,1,\n"
        f"paid,ana,{PLACED.isoformat()},,,JUTE-BAG-01,1,340.00\n"
    )
    import_orders(refunds, text, PLACED + 2 * D)
    assert paid(refunds) == [Decimal("350.00"), Decimal("420.00"), Decimal("336.00"),
                             Decimal("340.00")]  # fmt: skip
    assert order(refunds, "late").total == Decimal("1120.00")
    refunds.plan(PLACED + 2 * D + H)
    assert sorted(amounts(refunds)) == [Decimal("4.00"), Decimal("28.00")]


def test_an_order_placed_before_the_first_known_price_pays_that_price(refunds: Shop) -> None:
    refunds.order("old", "ana", NOW - 900 * D)  # before the product was recorded
    assert paid(refunds) == [Decimal("350.00")]


# ---------------------------------------------------------------- prices dated ahead


def bag_price(refunds: Shop) -> Decimal:
    with Session(refunds.engine) as s:
        return shop.product_by_sku(s, "JUTE-BAG-01").price


def test_a_price_dated_in_the_future_applies_from_its_time(refunds: Shop) -> None:
    with session_scope(refunds.engine) as s:
        shop.set_price(s, "JUTE-BAG-01", "300", now=PLACED, at=PLACED + 3 * D)
    assert bag_price(refunds) == Decimal("350.00")
    refunds.order("before", "ana", PLACED + D)
    refunds.order("after", "ana", PLACED + 4 * D)
    assert paid(refunds) == [Decimal("350.00"), Decimal("300.00")]
    assert refunds.plan(PLACED + 2 * D)["price_drop_refund"]["queued"] == 0
    with session_scope(refunds.engine) as s:
        assert shop.apply_due_prices(s, PLACED + 2 * D) == 0
    assert bag_price(refunds) == Decimal("350.00")
    with session_scope(refunds.engine) as s:
        assert shop.apply_due_prices(s, PLACED + 3 * D) == 1
    assert bag_price(refunds) == Decimal("300.00")
    assert refunds.plan(PLACED + 3 * D + H)["price_drop_refund"]["queued"] == 1
    assert amounts(refunds) == [Decimal("50.00")]


def test_a_planning_pass_puts_a_price_dated_ahead_into_effect(refunds: Shop) -> None:
    """The daemon's tick and `lifecycle plan` switch the price: offers read it at once."""
    with session_scope(refunds.engine) as s:
        shop.set_price(s, "JUTE-BAG-01", "300", now=PLACED, at=PLACED + 3 * D)
    refunds.plan(PLACED + 2 * D)
    assert bag_price(refunds) == Decimal("350.00")
    refunds.plan(PLACED + 3 * D)
    assert bag_price(refunds) == Decimal("300.00")


def test_a_price_reported_late_does_not_undo_a_later_one(refunds: Shop) -> None:
    with session_scope(refunds.engine) as s:
        shop.set_price(s, "JUTE-BAG-01", "320", now=PLACED + 2 * D)
        shop.set_price(s, "JUTE-BAG-01", "340", now=PLACED + 3 * D, at=PLACED + D)
    assert bag_price(refunds) == Decimal("320.00")


# ---------------------------------------------------------------- deliveries reported late


def _late_delivery(refunds: Shop, passes: list[datetime]) -> None:
    refunds.order("o1", "ana", PLACED, quantity=1)
    refunds.price("JUTE-BAG-01", "336", PLACED + D)
    for at in passes:
        refunds.plan(at)
    refunds.price("JUTE-BAG-01", "330", PLACED + 3 * D)
    refunds.plan(PLACED + 3 * D + H)
    assert sum(amounts(refunds)) == Decimal("20.00")  # undelivered, as far as we knew


def _delivered(refunds: Shop, *, by: str) -> None:
    """The delivery at PLACED + 2 days, reported at PLACED + 4 days."""
    if by == "api":
        with session_scope(refunds.engine) as s:
            shop.mark_delivered(s, "o1", PLACED + 2 * D, now=PLACED + 4 * D)
    else:
        text = f"o1,ana,{PLACED.isoformat()},{(PLACED + 2 * D).isoformat()},,JUTE-BAG-01,1,\n"
        import_orders(refunds, text, PLACED + 4 * D)


@pytest.mark.parametrize("by", ["api", "csv"])
def test_a_delivery_reported_late_takes_back_credit_for_drops_after_it(
    refunds: Shop, by: str
) -> None:
    _late_delivery(refunds, [])
    assert notices(refunds) == [(MessageStatus.QUEUED, "330.00", "20.00")]
    _delivered(refunds, by=by)
    assert amounts(refunds) == [Decimal("20.00"), Decimal("-6.00")]
    # The unsent notice now tells what is owed: the drop before delivery.
    assert notices(refunds) == [(MessageStatus.QUEUED, "336.00", "14.00")]
    assert refunds.plan(PLACED + 5 * D)["price_drop_refund"]["queued"] == 0
    assert sum(amounts(refunds)) == Decimal("14.00")


@pytest.mark.parametrize("by", ["api", "csv"])
def test_a_late_delivery_drops_the_notice_of_a_drop_after_it(refunds: Shop, by: str) -> None:
    _late_delivery(refunds, [PLACED + D + H])
    _delivered(refunds, by=by)
    assert amounts(refunds) == [Decimal("14.00"), Decimal("6.00"), Decimal("-6.00")]
    assert notices(refunds) == [
        (MessageStatus.QUEUED, "336.00", "14.00"),
        (MessageStatus.SUPPRESSED, "330.00", "6.00"),
    ]


def test_a_delivery_reported_in_time_changes_no_credit(refunds: Shop) -> None:
    refunds.order("o1", "ana", PLACED)
    refunds.price("JUTE-BAG-01", "336", PLACED + D)
    refunds.plan(PLACED + D + H)
    with session_scope(refunds.engine) as s:
        shop.mark_delivered(s, "o1", PLACED + 2 * D, now=PLACED + 2 * D)
    assert amounts(refunds) == [Decimal("14.00")]
    assert notices(refunds) == [(MessageStatus.QUEUED, "336.00", "14.00")]
