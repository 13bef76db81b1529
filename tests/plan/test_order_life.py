"""Cash on delivery through time: shipped, delivered, refused, returned.

The order life is moved by `engine.intake.orderlife` (and the events API); the
`order_shipped` and `order_returned` triggers follow it; a refused or returned
order is no purchase for the customer's figures, the `nth_order` ladder, the
`payment` segment rule or the refund credit. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.errors import ConfigError, DataError
from engine.intake import EventsRejected, apply_events, parse_events
from engine.intake.orderlife import order_status, payment_method, set_order_status, tracking_url
from engine.intake.shop import Line, mark_delivered, order_by_external_id, record_order
from engine.plan.segments import compile_rule
from engine.store.db import session_scope
from engine.store.models import Credit, Customer, OrderStatus
from tests.plan.test_planner import Shop
from tests.plan.test_triggers_purchases import (
    NAME,
    D,
    H,
    M,
    catalogue_shop,
    customer_id,
    passes,
    person,
    sent,
    write_campaign,
)

PLACED = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
TRACK = "https://courier.example.com/track/A1"


@pytest.fixture
def shop(store: Engine, project_dir: Any) -> Shop:
    return catalogue_shop(store, project_dir)


def cod(shop: Shop, order: str, customer: str, placed: datetime = PLACED, **kw: Any) -> None:
    with session_scope(shop.engine) as s:
        record_order(s, external_id=order, customer_id=customer, items=[Line("TEA-500G", 2)],
                     placed_at=placed, now=placed, payment=kw.pop("payment", "cod"), **kw)  # fmt: skip


def move(shop: Shop, order: str, status: str, at: datetime, **kw: Any) -> None:
    with session_scope(shop.engine) as s:
        set_order_status(s, order, OrderStatus(status), at=at, **kw)


def stored(shop: Shop, order: str) -> Any:
    with Session(shop.engine) as s:
        return order_by_external_id(s, order)


def orders_count(shop: Shop, name: str) -> int:
    with Session(shop.engine) as s:
        query = select(col(Customer.orders_count)).where(col(Customer.external_id) == name)
        return int(s.execute(query).scalar_one())


# ---------------------------------------------------------------- the life


def test_an_order_moves_forward_only_and_keeps_its_first_shipping_time(shop: Shop) -> None:
    person(shop, "ana")
    cod(shop, "A1", "ana")
    move(shop, "A1", "confirmed", PLACED + H)
    move(shop, "A1", "shipped", PLACED + D, tracking=TRACK)
    move(shop, "A1", "confirmed", PLACED + 2 * D)  # a late update: no step back
    move(shop, "A1", "out_for_delivery", PLACED + 2 * D)
    move(shop, "A1", "shipped", PLACED + 3 * D)
    order = stored(shop, "A1")
    assert (order.status, order.shipped_at, order.tracking_url) == (
        OrderStatus.OUT_FOR_DELIVERY,
        PLACED + D,
        TRACK,
    )
    assert order.payment_method == "cod" and order.total == 840
    move(shop, "A1", "delivered", PLACED + 3 * D)
    assert (stored(shop, "A1").status, stored(shop, "A1").delivered_at) == (
        OrderStatus.DELIVERED,
        PLACED + 3 * D,
    )
    with pytest.raises(DataError, match="A1 was delivered: it can be returned, not refused"):
        move(shop, "A1", "refused", PLACED + 4 * D)
    move(shop, "A1", "returned", PLACED + 9 * D)
    assert (stored(shop, "A1").status, stored(shop, "A1").returned_at) == (
        OrderStatus.RETURNED,
        PLACED + 9 * D,
    )
    with pytest.raises(DataError, match="A1 is returned: it cannot become shipped"):
        move(shop, "A1", "shipped", PLACED + 10 * D)


def test_a_refused_order_is_not_a_purchase_and_stays_ended(shop: Shop) -> None:
    person(shop, "ana")
    cod(shop, "A1", "ana")
    cod(shop, "A2", "ana", PLACED + D)
    assert orders_count(shop, "ana") == 2
    move(shop, "A2", "shipped", PLACED + 2 * D)
    move(shop, "A2", "refused", PLACED + 3 * D)
    assert orders_count(shop, "ana") == 1
    with Session(shop.engine) as s:
        ana = s.execute(select(Customer).where(col(Customer.external_id) == "ana")).scalar_one()
        assert (ana.last_order_at, ana.total_spent) == (PLACED, 840)
    # The parcel comes back to the shop: still refused's return time, and no purchase.
    move(shop, "A2", "returned", PLACED + 5 * D)
    assert (stored(shop, "A2").status, stored(shop, "A2").returned_at) == (
        OrderStatus.RETURNED,
        PLACED + 3 * D,
    )
    with (
        pytest.raises(DataError, match="A2 is returned and cannot be delivered"),
        session_scope(shop.engine) as s,
    ):
        mark_delivered(s, "A2", PLACED + 6 * D)
    assert orders_count(shop, "ana") == 1


def test_a_refused_order_takes_back_its_price_drop_credit(shop: Shop) -> None:
    shop.enable("price_drop_refund")
    person(shop, "ana")
    cod(shop, "A1", "ana")
    shop.price("TEA-500G", "400", PLACED + H)
    shop.plan(PLACED + 2 * H)
    with Session(shop.engine) as s:
        assert sum(c.amount for c in s.execute(select(Credit)).scalars()) == 40
    move(shop, "A1", "shipped", PLACED + D)
    move(shop, "A1", "refused", PLACED + 2 * D)
    with Session(shop.engine) as s:
        credits = list(s.execute(select(Credit).order_by(col(Credit.id))).scalars())
    assert [c.amount for c in credits] == [40, -40]
    assert credits[1].reason == "order refused: credit taken back"


def test_the_words_the_shop_sends_are_read_or_refused_by_name() -> None:
    assert [payment_method(v) for v in ("COD", "Cash on Delivery (COD)", "bKash", None)] == [
        "cod",
        "cod",
        "bkash",
        None,
    ]
    assert order_status("Out for delivery") == OrderStatus.OUT_FOR_DELIVERY
    with pytest.raises(DataError, match="status: expected one of placed, confirmed"):
        order_status("lost")
    with pytest.raises(DataError, match="payment_method: expected a word"):
        payment_method("bkash; drop table")
    with pytest.raises(DataError, match="tracking_url: expected an http:// or https://"):
        tracking_url("javascript:alert(1)")


# ---------------------------------------------------------------- the events API


def events(shop: Shop, *batch: dict[str, Any], at: datetime) -> None:
    parsed = parse_events(json.dumps(list(batch)).encode())
    apply_events(shop.engine, parsed, now=at)


def test_the_events_api_moves_an_order_along_its_life(shop: Shop) -> None:
    person(shop, "ana")
    order = {"id": "E1", "customer_id": "ana", "items": [{"sku": "TEA-500G", "quantity": 1}],
             "payment_method": "cod", "placed_at": PLACED.isoformat()}  # fmt: skip
    events(shop, {"id": "1", "type": "order.placed", "order": order}, at=PLACED)
    events(shop, {"id": "2", "type": "order.shipped", "order_id": "E1", "tracking_url": TRACK,
                  "at": (PLACED + D).isoformat()}, at=PLACED + D)  # fmt: skip
    assert (stored(shop, "E1").status, stored(shop, "E1").shipped_at) == ("shipped", PLACED + D)
    events(shop, {"id": "3", "type": "order.status_changed", "order_id": "E1",
                  "status": "out for delivery"}, at=PLACED + 2 * D)  # fmt: skip
    events(shop, {"id": "4", "type": "order.returned", "order_id": "E1", "refused": True},
           at=PLACED + 3 * D)  # fmt: skip
    order_now = stored(shop, "E1")
    assert (order_now.status, order_now.returned_at, order_now.tracking_url) == (
        "refused",
        PLACED + 3 * D,
        TRACK,
    )
    with pytest.raises(EventsRejected) as bad:  # read wrong: every problem is named
        events(
            shop,
            {"id": "5", "type": "order.status_changed", "order_id": "E1", "status": "lost"},
            {"id": "6", "type": "order.shipped", "order_id": "E1", "tracking_url": "ftp://x"},
            {"id": "7", "type": "order.placed", "order": order | {"payment_method": "a;b"}},
            at=PLACED + 4 * D,
        )
    found = [(p.index, p.field, p.reason[:40].strip()) for p in bad.value.problems]
    assert found == [
        (0, "status", "expected one of placed, confirmed, shipp"),
        (1, "tracking_url", "expected an http:// or https:// address"),
        (2, "order.payment_method", "expected a word of letters, digits and _"),
    ]
    for event, problem in (  # read right, but the order cannot do it
        ({"type": "order.status_changed", "order_id": "E1", "status": "delivered"},
         ("order_id", "order E1 is refused and cannot be delivered")),
        ({"type": "order.shipped", "order_id": "E9"}, ("order_id", "unknown order 'E9'")),
    ):  # fmt: skip
        with pytest.raises(EventsRejected) as bad:
            events(shop, {"id": "8", **event}, at=PLACED + 4 * D)
        assert [(p.field, p.reason) for p in bad.value.problems] == [problem]
    assert stored(shop, "E1").status == "refused"


# ---------------------------------------------------------------- the triggers


def test_the_shipping_email_once_per_order_while_it_is_on_its_way(shop: Shop) -> None:
    write_campaign(shop, {"type": "order_shipped", "delay": "10m"}, kind="transactional")
    for name in ("ana", "bob", "cy"):
        person(shop, name)
        cod(shop, f"{name}1", name)
    move(shop, "ana1", "shipped", PLACED + D)
    move(shop, "bob1", "out_for_delivery", PLACED + D)  # straight out, without shipped
    move(shop, "cy1", "shipped", PLACED + D)
    move(shop, "cy1", "delivered", PLACED + D + 5 * M)  # delivered before it was due
    at = PLACED + D
    assert passes(shop, [at + 9 * M, at + 10 * M, at + H, at + D]) == [0, 2, 0, 0]
    ana, bob = (sent(shop, name) for name in ("ana", "bob"))
    assert [m.occurrence for m in ana + bob] == [
        f"order-{stored(shop, 'ana1').id}",
        f"order-{stored(shop, 'bob1').id}",
    ]
    assert ana[0].dedupe_key == f"{NAME}:{customer_id(shop, 'ana')}:order-{stored(shop, 'ana1').id}"
    assert (ana[0].send_after, ana[0].expires_at) == (at + 10 * M, at + 10 * M + 2 * D)


def test_the_shipping_email_can_be_only_for_cash_on_delivery(shop: Shop) -> None:
    write_campaign(shop, {"type": "order_shipped", "payment": "cod"}, kind="transactional")
    for name, paid in (("ana", "cod"), ("bob", "bkash"), ("cy", None)):
        person(shop, name)
        cod(shop, f"{name}1", name, payment=paid)
        move(shop, f"{name}1", "shipped", PLACED + D)
    assert passes(shop, [PLACED + D + M]) == [1]
    assert [shop.owner(m) for m in sent(shop)] == ["ana"]


def test_the_follow_up_after_a_refusal_never_to_one_who_refused_twice(shop: Shop) -> None:
    write_campaign(shop, {"type": "order_returned", "delay": "1d"})
    shop.enable(NAME, "thank_you")
    person(shop, "ana")
    cod(shop, "A1", "ana")
    move(shop, "A1", "shipped", PLACED + D)
    move(shop, "A1", "refused", PLACED + 2 * D)
    due = PLACED + 3 * D
    assert passes(shop, [due - M, due, due + D]) == [0, 1, 0]
    assert shop.messages("thank_you") == []
    [follow_up] = sent(shop)
    assert (follow_up.occurrence, follow_up.expires_at) == (
        f"order-{stored(shop, 'A1').id}",
        due + 3 * D,
    )
    # She orders again and refuses again: no second follow-up.
    cod(shop, "A2", "ana", PLACED + 10 * D)
    move(shop, "A2", "shipped", PLACED + 11 * D)
    move(shop, "A2", "refused", PLACED + 12 * D)
    assert passes(shop, [PLACED + 13 * D, PLACED + 14 * D]) == [0, 0]
    assert len(sent(shop)) == 1


def test_a_refused_order_is_not_a_rung_of_the_ladder(shop: Shop) -> None:
    write_campaign(shop, {"type": "nth_order", "n": [2]})
    person(shop, "ana")
    cod(shop, "A1", "ana")
    cod(shop, "A2", "ana", PLACED + D)
    move(shop, "A2", "shipped", PLACED + D + H)
    move(shop, "A2", "refused", PLACED + D + 2 * H)
    assert passes(shop, [PLACED + 2 * D]) == [0]
    cod(shop, "A3", "ana", PLACED + 3 * D)
    assert passes(shop, [PLACED + 3 * D + H]) == [1]
    assert sent(shop)[0].order_id == stored(shop, "A3").id


# ---------------------------------------------------------------- the payment rule


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("cod", ["ana"]),
        ("prepaid", ["bob", "dee"]),
        ("bkash", ["bob"]),
        (["nagad", "cod"], ["ana", "dee"]),
    ],
)
def test_the_payment_rule_reads_the_latest_order_that_counts(
    shop: Shop, rule: Any, expected: list[str]
) -> None:
    # ana: bKash once, then COD; bob: COD refused, so bKash is his latest that counts;
    # cy: no word on payment; dee: nagad; eve: no orders.
    for name in ("ana", "bob", "cy", "dee", "eve"):
        person(shop, name)
    cod(shop, "a1", "ana", payment="bkash")
    cod(shop, "a2", "ana", PLACED + D)
    cod(shop, "b1", "bob", payment="bkash")
    cod(shop, "b2", "bob", PLACED + D)
    move(shop, "b2", "shipped", PLACED + 2 * D)
    move(shop, "b2", "refused", PLACED + 3 * D)
    cod(shop, "c1", "cy", payment=None)
    cod(shop, "d1", "dee", payment="nagad")
    condition = compile_rule({"payment": rule}, PLACED + 5 * D, "segments/x.yaml", ())
    with Session(shop.engine) as s:
        names = s.execute(
            select(col(Customer.external_id)).where(condition).order_by(col(Customer.external_id))
        ).scalars()
        assert list(names) == expected
    negated = compile_rule({"not": {"payment": "cod"}}, PLACED + 5 * D, "segments/x.yaml", ())
    with Session(shop.engine) as s:
        others = s.execute(select(col(Customer.external_id)).where(negated)).scalars()
        assert sorted(others) == ["bob", "cy", "dee", "eve"]


def test_a_campaign_file_with_an_unknown_payment_choice_is_refused(shop: Shop) -> None:
    write_campaign(shop, {"type": "order_shipped", "payment": "cash"})
    with pytest.raises(ConfigError) as refused:
        shop.project  # noqa: B018 - loading it is the test
    problem = str(refused.value)
    assert f"campaigns/{NAME}.yaml" in problem and "trigger.payment" in problem
    assert "'any', 'cod' or 'prepaid'" in problem
