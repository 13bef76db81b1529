"""Triggers on a customer's buying, through time: win-back, the order ladder, replenishment.

Each test writes its campaign into the project, moves the clock (freezegun for
anything that reads it, the planner's `now` for the passes) and counts what was
queued, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import yaml
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake.shop import (
    Line,
    cancel_order,
    mark_delivered,
    order_by_external_id,
    record_order,
    upsert_customer,
    upsert_product,
)
from engine.store.db import session_scope
from engine.store.models import Customer, Message
from tests.plan.test_planner import NOW, Shop, _shop

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
NAME = "trig"


# ---------------------------------------------------------------- shared by the trigger tests


def write_campaign(shop: Shop, trigger: dict[str, Any], **extra: Any) -> None:
    """Write and enable campaign `trig` with `trigger` (one email unless `steps` is given)."""
    body: dict[str, Any] = {"name": NAME, "trigger": trigger, **extra}
    if "steps" not in extra:
        body.update(template="welcome", subject="Hello")
    (shop.dir / "campaigns" / f"{NAME}.yaml").write_text(yaml.safe_dump(body))
    shop.enable(NAME)


def catalogue_shop(engine: Engine, project_dir: Any) -> Shop:
    """The planner tests' shop, its two products in categories (tea, bags)."""
    shop = _shop(engine, project_dir)
    with session_scope(engine) as s:
        for sku, name, price, category in (
            ("JUTE-BAG-01", "Jute bag", "350", "bags"),
            ("TEA-500G", "Tea", "420", "tea"),
        ):
            upsert_product(s, sku=sku, name=name, price=price, category=category, now=NOW - 500 * D)
    return shop


def person(
    shop: Shop,
    name: str,
    *,
    tz: str | None = None,
    birthday: date | None = None,
    signed_up: datetime | None = None,
) -> None:
    with session_scope(shop.engine) as s:
        upsert_customer(s, external_id=name, email=f"{name}@example.com", now=NOW - 400 * D,
                        marketing_consent=True, timezone=tz, birthday=birthday,
                        created_at=signed_up)  # fmt: skip


def buy(
    shop: Shop,
    order: str,
    customer: str,
    placed: datetime,
    *,
    sku: str = "JUTE-BAG-01",
    delivered: datetime | None = None,
    cancelled: bool = False,
    cart_id: str | None = None,
) -> None:
    with session_scope(shop.engine) as s:
        record_order(s, external_id=order, customer_id=customer, items=[Line(sku, 1)],
                     placed_at=placed, delivered_at=delivered, cancelled=cancelled,
                     now=placed, cart_id=cart_id)  # fmt: skip


def order_id(shop: Shop, order: str) -> int:
    with Session(shop.engine) as s:
        return order_by_external_id(s, order).id  # type: ignore[return-value]


def customer_id(shop: Shop, name: str) -> int:
    with Session(shop.engine) as s:
        query = select(col(Customer.id)).where(col(Customer.external_id) == name)
        return int(s.execute(query).scalar_one())


def sent(shop: Shop, customer: str | None = None) -> list[Message]:
    """The campaign's messages (of one customer), in the order they were queued."""
    return [m for m in shop.messages(NAME) if customer is None or shop.owner(m) == customer]


def occurrences(shop: Shop, customer: str | None = None) -> list[str]:
    return [m.occurrence for m in sent(shop, customer)]


@contextmanager
def clock(start: datetime) -> Iterator[Any]:
    """A frozen clock for everything that reads it; `move_to` it before each pass."""
    with freeze_time(start) as frozen:
        yield frozen


def passes(shop: Shop, moments: Iterable[datetime]) -> list[int]:
    """One planning pass at each moment, the wall clock frozen there too: queued per pass."""
    moments = list(moments)
    queued = []
    with clock(moments[0]) as frozen:
        for at in moments:
            frozen.move_to(at)
            queued.append(shop.plan(at)[NAME]["queued"])
    return queued


def days(start: datetime, count: int, step: timedelta = D) -> list[datetime]:
    return [start + i * step for i in range(count)]


@pytest.fixture
def shop(store: Engine, project_dir: Any) -> Shop:
    return catalogue_shop(store, project_dir)


# ---------------------------------------------------------------- inactive

PLACED = datetime(2026, 8, 1, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka
LAPSE = PLACED + 90 * D


def test_a_lapse_gets_one_email_and_a_second_lapse_another(shop: Shop) -> None:
    write_campaign(shop, {"type": "inactive", "days": 90})
    person(shop, "ana")
    buy(shop, "o1", "ana", PLACED)
    queued = passes(shop, [LAPSE - 5 * D, LAPSE - M, LAPSE, LAPSE + H, *days(LAPSE + D, 10)])
    assert queued == [0, 0, 1] + [0] * 11
    [first] = sent(shop)
    ana = customer_id(shop, "ana")
    assert first.occurrence == "lapse-20260801060000"
    assert first.dedupe_key == f"{NAME}:{ana}:lapse-20260801060000"
    assert first.order_id == order_id(shop, "o1")
    assert first.context == {"inactive_days": 90}
    assert (first.send_after, first.expires_at) == (LAPSE, LAPSE + 7 * D)
    # She comes back, then lapses again: a new occurrence, one more email.
    back = PLACED + 120 * D
    buy(shop, "o2", "ana", back)
    assert passes(shop, [back + H, back + 60 * D, back + 90 * D - M]) == [0, 0, 0]
    assert passes(shop, [*days(back + 90 * D, 5)]) == [1, 0, 0, 0, 0]
    assert occurrences(shop) == ["lapse-20260801060000", "lapse-20261129060000"]
    assert sent(shop)[1].order_id == order_id(shop, "o2")


def test_a_cancelled_order_is_not_the_last_order(shop: Shop) -> None:
    write_campaign(shop, {"type": "inactive", "days": 90})
    person(shop, "ana")
    person(shop, "bob")
    buy(shop, "a1", "ana", PLACED)
    buy(shop, "a2", "ana", PLACED + 30 * D, cancelled=True)
    buy(shop, "b1", "bob", PLACED)
    buy(shop, "b2", "bob", PLACED + 30 * D)
    with session_scope(shop.engine) as s:  # cancelled a week after it was placed
        cancel_order(s, "b2", now=PLACED + 37 * D)
    assert passes(shop, days(LAPSE - D, 3)) == [0, 2, 0]
    assert passes(shop, days(LAPSE + 28 * D, 5)) == [0] * 5
    for name, first in (("ana", "a1"), ("bob", "b1")):
        [lapse] = sent(shop, name)
        assert (lapse.occurrence, lapse.order_id) == ("lapse-20260801060000", order_id(shop, first))


def test_a_lapse_older_than_the_default_week_is_not_sent_when_first_enabled(shop: Shop) -> None:
    write_campaign(shop, {"type": "inactive", "days": 90})  # expires_after: 7d by default
    for name, lapsed in (("old", 8 * D), ("edge", 7 * D), ("fresh", 6 * D)):
        person(shop, name)
        buy(shop, f"{name}1", name, NOW - 90 * D - lapsed)
    assert passes(shop, [NOW, NOW + D]) == [1, 0]
    [fresh] = sent(shop)
    assert shop.owner(fresh) == "fresh"
    assert (fresh.send_after, fresh.expires_at) == (NOW, NOW + D)


# ---------------------------------------------------------------- nth_order


def no_cap(shop: Shop) -> None:
    shop.edit("config.yaml", lambda c: c["sending"].update(frequency_cap=None))


def test_each_rung_of_the_ladder_once(shop: Shop) -> None:
    no_cap(shop)  # three rungs in three days: the cap has a test of its own below
    write_campaign(shop, {"type": "nth_order", "n": [2, 3, 4]})
    person(shop, "ana")
    start = NOW - 10 * D
    for i in range(1, 6):
        buy(shop, f"o{i}", "ana", start + (i - 1) * D + H)
    assert passes(shop, days(start, 8)) == [0, 0, 1, 1, 1, 0, 0, 0]
    ana = customer_id(shop, "ana")
    messages = sent(shop)
    assert [m.occurrence for m in messages] == ["nth-2", "nth-3", "nth-4"]
    assert [m.dedupe_key for m in messages] == [f"{NAME}:{ana}:nth-{n}" for n in (2, 3, 4)]
    assert [m.order_id for m in messages] == [order_id(shop, f"o{n}") for n in (2, 3, 4)]
    assert [m.context for m in messages] == [{"nth": n} for n in (2, 3, 4)]
    assert [m.step for m in messages] == [None, None, None]
    # Her first order cancelled: the count shifts, but no rung goes twice.
    with session_scope(shop.engine) as s:
        cancel_order(s, "o1", now=start + 8 * D)
    assert passes(shop, days(start + 8 * D, 3)) == [0, 0, 0]


def test_a_rung_already_queued_takes_no_place_under_the_cap(shop: Shop) -> None:
    # The shipped cap: 3 marketing emails per 7 days; nth-2 and nth-3 leave room for nth-4.
    write_campaign(shop, {"type": "nth_order", "n": [2, 3, 4]})
    person(shop, "ana")
    start = NOW - 10 * D
    for i in range(1, 5):
        buy(shop, f"o{i}", "ana", start + (i - 1) * D + H)
    assert passes(shop, days(start, 5)) == [0, 0, 1, 1, 1]


def test_a_cancelled_order_is_not_counted_on_the_ladder(shop: Shop) -> None:
    write_campaign(shop, {"type": "nth_order", "n": [2, 3, 4]})
    person(shop, "bob")
    start = NOW - 10 * D
    buy(shop, "b1", "bob", start + H)
    buy(shop, "b2", "bob", start + D + H, cancelled=True)
    buy(shop, "b3", "bob", start + 2 * D + H)
    assert passes(shop, days(start, 5)) == [0, 0, 0, 1, 0]
    [second] = sent(shop)
    assert (second.occurrence, second.order_id) == ("nth-2", order_id(shop, "b3"))
    assert second.context == {"nth": 2}
    assert second.send_after == start + 3 * D  # placed 07:00 UTC (13:00 Dhaka), planned next day


# ---------------------------------------------------------------- after_purchase

DELIVERED = datetime(2026, 10, 20, 5, 0, tzinfo=UTC)  # 11:00 in Dhaka


@pytest.mark.parametrize(
    "bought",
    [
        pytest.param({"categories": ["tea"]}, id="category"),
        pytest.param({"skus": ["TEA-500G"]}, id="sku"),
    ],
)
def test_a_delivered_purchase_is_followed_up_once_after_its_delay(
    shop: Shop, bought: dict[str, Any]
) -> None:
    write_campaign(shop, {"type": "after_purchase", "delay": "30d", **bought})
    for name in ("ana", "bob", "cat"):
        person(shop, name)
    buy(shop, "a1", "ana", DELIVERED - 2 * D, sku="TEA-500G", delivered=DELIVERED)
    buy(shop, "b1", "bob", DELIVERED - 2 * D, sku="JUTE-BAG-01", delivered=DELIVERED)
    buy(shop, "c1", "cat", DELIVERED - 2 * D, sku="TEA-500G")  # never delivered
    due = DELIVERED + 30 * D
    assert passes(shop, [DELIVERED, due - 10 * D, due - M, due, due + H, due + D]) == [0] * 3 + [
        1,
        0,
        0,
    ]
    [reminder] = sent(shop)
    assert shop.owner(reminder) == "ana"
    ana = customer_id(shop, "ana")
    assert reminder.occurrence == f"order-{order_id(shop, 'a1')}"
    assert reminder.dedupe_key == f"{NAME}:{ana}:order-{order_id(shop, 'a1')}"
    assert reminder.order_id == order_id(shop, "a1")
    assert (reminder.send_after, reminder.expires_at) == (due, due + 3 * D)


def test_an_order_delivered_later_is_followed_up_from_its_delivery(shop: Shop) -> None:
    write_campaign(shop, {"type": "after_purchase", "delay": "30d", "categories": ["tea"]})
    person(shop, "cat")
    buy(shop, "c1", "cat", DELIVERED - 2 * D, sku="TEA-500G")
    assert passes(shop, days(DELIVERED, 3)) == [0, 0, 0]
    with session_scope(shop.engine) as s:
        mark_delivered(s, "c1", DELIVERED + 2 * D + H)
    due = DELIVERED + 32 * D + H
    assert passes(shop, [due - M, due, due + D]) == [0, 1, 0]
    assert occurrences(shop, "cat") == [f"order-{order_id(shop, 'c1')}"]


def test_an_order_after_the_rungs_first_step_ends_its_flow(shop: Shop) -> None:
    steps = [
        {"id": "thanks", "template": "thank_you", "subject": "Thank you again"},
        {"id": "later", "after": "3d", "template": "welcome", "subject": "How is it?"},
    ]
    write_campaign(shop, {"type": "nth_order", "n": [2]}, steps=steps, exit=["ordered"])
    person(shop, "ana")
    buy(shop, "o1", "ana", NOW - 10 * D)
    buy(shop, "o2", "ana", NOW - H)
    assert passes(shop, [NOW]) == [1]
    buy(shop, "o3", "ana", NOW + D)  # a third order: she leaves the flow
    passes(shop, [NOW + 3 * D])
    assert [m.step for m in sent(shop)] == ["thanks"]


def test_an_order_campaign_without_an_expiry_queues_under_the_cap(shop: Shop) -> None:
    """Its NULL expiry goes through the cap's ranking as a timestamp (PostgreSQL refused
    a NULL of unknown type there as text)."""
    write_campaign(shop, {"type": "first_order"})
    person(shop, "ana")
    buy(shop, "a1", "ana", NOW - H)
    assert shop.plan(NOW)[NAME]["queued"] == 1
    [message] = sent(shop)
    assert (message.occurrence, message.expires_at) == ("first", None)
