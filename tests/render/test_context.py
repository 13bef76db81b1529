"""Template contexts from the database: the right data, per language, in a few queries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake import shop
from engine.project.campaigns import Offer
from engine.project.loader import Project, load_project
from engine.render.context import ContextError, load_contexts
from engine.store.models import Credit, Message, MessageKind, OrderItem

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def links(message_id: int) -> dict[str, str]:
    return {
        "unsubscribe_url": f"U{message_id}",
        "pixel_url": f"P{message_id}",
        "survey_url": f"S{message_id}",
    }


@dataclass
class ShopData:
    """A small shop: a Bengali and an English customer, each with an order."""

    rahima: int
    sam: int
    order_bn: int
    order_en: int
    tea_line: int  # Sam's tea line (the refund's order item)
    credit: int


def fill_shop(session: Session, now: datetime = NOW) -> ShopData:
    shop.upsert_product(
        session, sku="JUTE-BAG-01", name="Jute tote bag", name_bn="পাটের ব্যাগ", price="450",
        stock=12, now=now,
    )  # fmt: skip
    shop.upsert_product(session, sku="TEA-500G", name="Sylhet tea", price="10.10", stock=0, now=now)
    shop.upsert_product(
        session, sku="SARI-JAM-01", name="Jamdani sari", name_bn="জামদানি শাড়ি", price="8500",
        stock=3, now=now,
    )  # fmt: skip
    rahima = shop.upsert_customer(
        session, external_id="c1", email="rahima@example.com", name="রহিমা খাতুন",
        locale="bn_BD", timezone="Asia/Dhaka", now=now,
    )  # fmt: skip
    sam = shop.upsert_customer(
        session, external_id="c2", email="sam@example.com", name="Sam Smith", locale="en",
        timezone="Europe/London", now=now,
    )  # fmt: skip
    order_bn = shop.record_order(
        session, external_id="NG-1", customer_id="c1",
        items=[shop.Line("JUTE-BAG-01", 2), shop.Line("SARI-JAM-01", 1)],
        placed_at=now - timedelta(days=3), delivered_at=now - timedelta(hours=3),
    )  # fmt: skip
    order_en = shop.record_order(
        session, external_id="NG-2", customer_id="c2", items=[shop.Line("TEA-500G", 3)],
        placed_at=now - timedelta(days=2),
    )  # fmt: skip
    tea_line = session.execute(
        select(OrderItem.id).where(col(OrderItem.order_id) == order_en.id)
    ).scalar_one()
    credit = Credit(
        dedupe_key="refund:tea", customer_id=sam.id, order_item_id=tea_line,
        amount=Decimal("0.30"), reason="price drop", created_at=now - timedelta(minutes=5),
    )  # fmt: skip
    session.add(credit)
    session.flush()
    assert rahima.id and sam.id and order_bn.id and order_en.id and credit.id
    return ShopData(rahima.id, sam.id, order_bn.id, order_en.id, tea_line, credit.id)


_serial = iter(range(1, 1_000_000))


def queue(session: Session, campaign: str, customer_id: int, **values: Any) -> Message:
    """Insert a queued message the way the planner does."""
    n = next(_serial)
    message = Message(
        dedupe_key=f"{campaign}:{customer_id}:{n}",
        campaign=campaign,
        customer_id=customer_id,
        occurrence=str(n),
        created_at=NOW,
        send_after=NOW,
        **values,
    )
    session.add(message)
    session.flush()
    return message


def refund(session: Session, data: ShopData, **context: Any) -> Message:
    values = {
        "credit_id": data.credit,
        "old_price": "10.10",
        "new_price": "10.00",
        "quantity": 3,
        "amount": "0.30",
    }
    values.update(context)
    return queue(
        session, "price_drop_refund", data.sam, kind=MessageKind.TRANSACTIONAL,
        order_id=data.order_en, order_item_id=data.tea_line, context=values,
    )  # fmt: skip


def holiday(session: Session, customer_id: int, name: Any = None) -> Message:
    return queue(
        session, "holiday_preannounce", customer_id, holiday="black_friday",
        holiday_date=date(2026, 11, 27),
        context={"holiday_name": name or {"en": "Black Friday", "bn": "ব্ল্যাক ফ্রাইডে"}},
    )  # fmt: skip


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def session(sqlite_store: Engine) -> Iterator[Session]:
    """SQLite is enough where the SQL is not dialect-specific."""
    with Session(sqlite_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


@pytest.fixture
def both_session(store: Engine) -> Iterator[Session]:
    """A session on SQLite and on PostgreSQL, for the queries themselves."""
    with Session(store, expire_on_commit=False) as session:
        yield session
        session.rollback()


@pytest.fixture
def data(session: Session) -> ShopData:
    return fill_shop(session)


def one(session: Session, project: Project, message: Message) -> dict[str, Any]:
    [context] = load_contexts(session, project, [message], links)
    assert isinstance(context, dict), context
    return context


def test_order_context_per_language(both_session: Session, project: Project) -> None:
    session = both_session
    data = fill_shop(session)
    message = queue(session, "thank_you", data.rahima, order_id=data.order_bn)
    bn = one(session, project, message)
    assert bn["customer"] == {
        "name": "রহিমা খাতুন",
        "first_name": "রহিমা",
        "email": "rahima@example.com",
        "locale": "bn_BD",
        "days_since_order": None,  # only the triggers of a shop's year count it
        "credit_balance": Decimal("0.00"),  # no store credit
        "credit_expires_at": None,
        "credit_expiring": None,
        "tier": None,  # in no loyalty tier
    }
    assert (bn["locale"], bn["lang"], bn["timezone"], bn["currency"]) == (
        "bn_BD", "bn", "Asia/Dhaka", "BDT",
    )  # fmt: skip
    order = bn["order"]
    assert order["number"] == "NG-1"
    assert order["total"] == Decimal("9400.00")
    assert order["delivered_at"] == NOW - timedelta(hours=3)
    assert [(i["product_name"], i["quantity"], i["line_total"]) for i in order["items"]] == [
        ("পাটের ব্যাগ", 2, Decimal("900.00")),
        ("জামদানি শাড়ি", 1, Decimal("8500.00")),
    ]
    assert bn["shop"]["story"].startswith("২০১৯ সালে")
    assert bn["shop"]["address"] == project.config.shop.address
    assert bn["is_marketing"] is True
    assert (bn["unsubscribe_url"], bn["pixel_url"]) == (f"U{message.id}", f"P{message.id}")
    assert (bn["holiday"], bn["item"], bn["credit"], bn["offers"]) == (None, None, None, [])

    en = one(session, project, queue(session, "welcome", data.sam, order_id=data.order_en))
    assert en["order"]["items"][0]["product_name"] == "Sylhet tea"
    assert en["shop"]["story"].startswith("Nakshi Ghor began")
    assert en["timezone"] == "Europe/London"


def test_holiday_offers_read_prices_and_stock_now(
    session: Session, project: Project, data: ShopData, caplog: pytest.LogCaptureFixture
) -> None:
    shop.set_price(session, "JUTE-BAG-01", "500", now=NOW)  # changed after queueing: read now
    message = holiday(session, data.rahima)
    with caplog.at_level(logging.WARNING, logger="engine.render.contextparts"):
        ctx = one(session, project, message)
    assert ctx["holiday"] == {
        "id": "black_friday",
        "name": "ব্ল্যাক ফ্রাইডে",
        "date": date(2026, 11, 27),
    }
    assert ctx["order"] is None
    assert ctx["offers"] == [
        {
            "sku": "JUTE-BAG-01",
            "name": "পাটের ব্যাগ",
            "old_price": Decimal("500.00"),
            "discount": Decimal("20"),
            "new_price": Decimal("400.00"),
            "stock": 12,
        },
        {
            "sku": "TEA-500G",
            "name": "Sylhet tea",  # no Bengali name: the English one
            "old_price": Decimal("10.10"),
            "discount": Decimal("10"),
            "new_price": Decimal("9.09"),
            "stock": 0,
        },
        {
            "sku": "SARI-JAM-01",
            "name": "জামদানি শাড়ি",
            "old_price": Decimal("8500.00"),
            "discount": Decimal("15"),
            "new_price": Decimal("7225.00"),
            "stock": 3,
        },
    ]
    assert not caplog.records


def test_offer_price_rounds_half_up_and_vanished_products_are_skipped(
    session: Session, project: Project, data: ShopData, caplog: pytest.LogCaptureFixture
) -> None:
    shop.set_price(session, "TEA-500G", "10.15", now=NOW)  # 10% off: 9.135 → 9.14, not 9.13
    campaign = project.campaigns["holiday_preannounce"]
    offers = [Offer(sku="GONE-01", discount=Decimal("5")), *campaign.offers[:2]]
    changed = {**project.campaigns, campaign.name: campaign.model_copy(update={"offers": offers})}
    project = replace(project, campaigns=changed)
    with caplog.at_level(logging.WARNING, logger="engine.render.contextparts"):
        ctx = one(session, project, holiday(session, data.sam, "Black Friday"))
    assert [(o["sku"], o["new_price"]) for o in ctx["offers"]] == [
        ("JUTE-BAG-01", Decimal("360.00")),
        ("TEA-500G", Decimal("9.14")),
    ]
    assert ctx["holiday"]["name"] == "Black Friday"
    assert "offered product GONE-01 no longer exists" in caplog.text


def test_refund_context(session: Session, project: Project, data: ShopData) -> None:
    ctx = one(session, project, refund(session, data))
    assert ctx["item"] == {
        "product_name": "Sylhet tea",
        "sku": "TEA-500G",
        "quantity": 3,
        "unit_price_paid": Decimal("10.10"),
        "new_price": Decimal("10.00"),
        "order_number": "NG-2",
    }
    assert ctx["credit"] == {"amount": Decimal("0.30"), "created_at": NOW - timedelta(minutes=5)}
    assert ctx["is_marketing"] is False
    assert ctx["order"]["number"] == "NG-2"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"amount": "lots"}, "amount is not a number: 'lots'", id="junk-amount"),
        pytest.param({"amount": 0.3}, "amount must be a decimal string", id="float-amount"),
        pytest.param({"new_price": None}, "new_price must be a decimal string", id="no-new-price"),
        pytest.param({"quantity": "two"}, "quantity is not a whole number", id="bad-quantity"),
    ],
)
def test_bad_refund_data_fails_that_message_only(
    session: Session, project: Project, data: ShopData, change: dict[str, Any], reason: str
) -> None:
    bad = refund(session, data, **change)
    good = refund(session, data)
    contexts = load_contexts(session, project, [bad, good], links)
    assert isinstance(contexts[0], ContextError)
    assert f"message {bad.id}: {reason}" in str(contexts[0])
    assert isinstance(contexts[1], dict)


def test_missing_rows_and_unknown_campaigns_are_context_errors(
    session: Session, project: Project, data: ShopData
) -> None:
    gone = queue(session, "thank_you", data.sam, order_id=data.order_en)
    session.execute(select(Message.id))  # keep the session busy with the rows above
    messages = [
        gone,
        queue(session, "no_such_campaign", data.sam),
        Message(id=999, dedupe_key="x", campaign="welcome", customer_id=4242, occurrence="x",
                created_at=NOW, send_after=NOW),
        Message(id=998, dedupe_key="y", campaign="welcome", customer_id=data.sam, occurrence="y",
                order_id=4242, created_at=NOW, send_after=NOW),
    ]  # fmt: skip
    contexts = load_contexts(session, project, messages, links)
    assert isinstance(contexts[0], dict)
    assert str(contexts[1]) == f"message {messages[1].id}: no campaign named 'no_such_campaign'"
    assert str(contexts[2]) == "message 999: customer 4242 does not exist"
    assert str(contexts[3]) == "message 998: order 4242 does not exist"


def test_a_customer_without_a_name_is_greeted_as_a_friend(
    session: Session, project: Project, data: ShopData
) -> None:
    shop.upsert_customer(session, external_id="c3", email="x@example.com", locale="bn_BD", now=NOW)
    nameless = shop.customer_by_external_id(session, "c3")
    assert nameless.id
    ctx = one(session, project, queue(session, "welcome", nameless.id))
    assert ctx["customer"]["first_name"] == "বন্ধু"
    assert ctx["order"] is None


def test_a_batch_of_50_loads_in_a_bounded_number_of_queries(
    both_session: Session, project: Project, store: Engine
) -> None:
    session = both_session
    data = fill_shop(session)
    messages = []
    for i in range(50):
        kind = i % 4
        if kind == 0:
            messages.append(queue(session, "thank_you", data.rahima, order_id=data.order_bn))
        elif kind == 1:
            messages.append(queue(session, "welcome", data.sam, order_id=data.order_en))
        elif kind == 2:
            messages.append(holiday(session, data.rahima if i % 8 == 2 else data.sam))
        else:
            messages.append(refund(session, data))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store, "before_cursor_execute", count)
    try:
        contexts = load_contexts(session, project, messages, links)
    finally:
        event.remove(store, "before_cursor_execute", count)
    assert all(isinstance(c, dict) for c in contexts)
    # customers, lines, orders, products, credits, credit balances, and when the credit of
    # those with a balance expires
    assert len(statements) <= 7, statements
    assert contexts[3]["item"]["order_number"] == "NG-2"
    assert contexts[2]["offers"][0]["name"] == "পাটের ব্যাগ"
