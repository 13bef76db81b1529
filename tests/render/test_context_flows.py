"""Template data of flow steps and of the triggers of a shop's year, from real rows.

The campaigns here are written into the test's copy of the project, one per
trigger, so these tests do not depend on the shipped campaign files. Messages
are inserted the way the planner writes them (occurrence, step, context).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.intake import shop
from engine.project.loader import Project, load_project
from engine.render.context import ContextError, load_contexts
from engine.store.models import Checkout, Message, Restock
from tests.render.test_context import NOW, links

# name: (trigger, extra keys) of the campaigns written into the project.
CAMPAIGNS = {
    "lapsed": "{type: inactive, days: 60}",
    "birthday_note": "{type: date, field: birthday}",
    "ladder": "{type: nth_order, n: [2, 3]}",
    "tea_again": "{type: after_purchase, delay: 20d, categories: [tea]}",
    "new_arrival": "{type: product_added}",
    "restocked": "{type: back_in_stock}",
    "fortnight": "{type: schedule, every: 14d}",
    "basket": "{type: checkout_abandoned}",
    "big_news": '{type: broadcast, at: "2026-12-10 10:00"}',
}
STEPS = """steps:
  - id: hello
    template: flowtest
    subject: "Hello {{ customer.first_name }}"
  - id: reminder
    after: 3d
    template: flowtest_reminder
    subject: "Step {{ step.number }} of {{ step.of }}"
    preheader: "{{ step.id }}"
"""
TEMPLATE = """{% extends "_base.html" %}
{% block content %}<p>TEMPLATE step {{ step.number }}/{{ step.of }}</p>{% endblock %}
"""
TEXT = "TEMPLATE step {{ step.number }}/{{ step.of }}\n{{ shop.address }}\n{{ unsubscribe_url }}\n"


def write_flow_project(project_dir: Path) -> Project:
    """The shipped project plus one campaign per new trigger; `lapsed` has two steps."""
    emails = project_dir / "templates" / "emails"
    for name in ("flowtest", "flowtest_reminder"):
        (emails / f"{name}.html").write_text(TEMPLATE.replace("TEMPLATE", name), encoding="utf-8")
        (emails / f"{name}.txt").write_text(TEXT.replace("TEMPLATE", name), encoding="utf-8")
    for name, trigger in CAMPAIGNS.items():
        body = STEPS if name == "lapsed" else 'template: flowtest\nsubject: "Hi"\n'
        (project_dir / "campaigns" / f"{name}.yaml").write_text(
            f"name: {name}\ntrigger: {trigger}\nsegment: everyone\n{body}", encoding="utf-8"
        )
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def project(project_dir: Path) -> Project:
    return write_flow_project(project_dir)


@dataclass
class YearShop:
    """Rahima (Bengali) loves saris; Sam (English) tied tea and bags, bags bought last."""

    rahima: int
    sam: int
    products: dict[str, int]  # sku → id
    last_order: int  # Rahima's latest order that is not cancelled
    sam_order: int
    restock: int


def fill_year_shop(session: Session, now: datetime = NOW) -> YearShop:
    catalogue = [
        ("JUTE-BAG-01", "Jute tote bag", "পাটের ব্যাগ", "bags", "450", 12),
        ("TEA-500G", "Sylhet tea", None, "tea", "10.10", 0),
        ("SARI-JAM-01", "Jamdani sari", "জামদানি শাড়ি", "saris", "8500", 3),
        ("SARI-SILK-03", "Rajshahi silk sari", None, "saris", "6750.50", 0),  # out of stock
        ("SARI-05", "Sari five", "শাড়ি পাঁচ", "saris", "1000", 1),
        ("SARI-06", "Sari six", None, "saris", "1100", 1),
        ("SARI-07", "Sari seven", None, "saris", "1200", 1),
        ("SARI-08", "Sari eight", None, "saris", "1300", 1),
        ("SARI-09", "Sari nine", None, "saris", "1400", 1),
        ("SARI-TANT-02", "Tangail tant sari", None, "saris", "3200", 5),  # newest, bought
        ("TEA-GREEN", "Green tea", None, "tea", "300", 9),
    ]
    products = {}
    for sku, name, name_bn, category, price, stock in catalogue:
        row = shop.upsert_product(
            session, sku=sku, name=name, name_bn=name_bn, category=category, price=price,
            stock=stock, now=now - timedelta(days=90),
        )  # fmt: skip
        assert row.id
        products[sku] = row.id
    rahima = shop.upsert_customer(
        session, external_id="c1", email="rahima@example.com", name="রহিমা খাতুন",
        locale="bn_BD", timezone="Asia/Dhaka", now=now - timedelta(days=90),
    )  # fmt: skip
    sam = shop.upsert_customer(
        session, external_id="c2", email="sam@example.com", name="Sam Smith", locale="en",
        now=now - timedelta(days=90),
    )  # fmt: skip

    def order(number: str, customer: str, days_ago: float, *lines: tuple[str, int]) -> int:
        row = shop.record_order(
            session, external_id=number, customer_id=customer,
            items=[shop.Line(sku, qty) for sku, qty in lines],
            placed_at=now - timedelta(days=days_ago),
        )  # fmt: skip
        assert row.id
        return row.id

    # Rahima: bags 2 and saris 2, saris bought last; a cancelled order of 5 teas counts for nothing.
    order("NG-1", "c1", 30, ("JUTE-BAG-01", 2), ("SARI-JAM-01", 1))
    last = order("NG-3", "c1", 10.5, ("SARI-TANT-02", 1))
    order("NG-4", "c1", 1, ("TEA-500G", 5))
    shop.cancel_order(session, "NG-4", now=now)
    # Sam: one tea, then one bag: a tie, and the bag was bought last.
    order("NG-2", "c2", 20, ("TEA-500G", 1))
    sam_order = order("NG-5", "c2", 5, ("JUTE-BAG-01", 1))
    restock = Restock(product_id=products["TEA-500G"], stock=4, at=now - timedelta(hours=1))
    session.add(restock)
    session.add(
        Checkout(
            cart_id="cart-77", customer_id=rahima.id or 0, started_at=now - timedelta(hours=3),
            amount=Decimal("3850.40"), recorded_at=now - timedelta(hours=3),
            items=[
                {"sku": "JUTE-BAG-01", "name": "Jute tote bag", "quantity": 3,
                 "unit_price": "450.10"},
                {"sku": "KANTHA-1", "name": "Nakshi kantha", "quantity": 2,
                 "unit_price": "1250.05"},
            ],
        )
    )  # fmt: skip
    session.flush()
    assert rahima.id and sam.id and restock.id
    return YearShop(rahima.id, sam.id, products, last, sam_order, restock.id)


_serial = iter(range(1, 1_000_000))


def queue(session: Session, campaign: str, customer_id: int, **values: Any) -> Message:
    """Insert a queued message the way the planner writes it."""
    n = next(_serial)
    step = values.get("step")
    message = Message(
        dedupe_key=f"{campaign}:{customer_id}:occ-{n}" + (f":{step}" if step else ""),
        campaign=campaign,
        customer_id=customer_id,
        occurrence=f"occ-{n}",
        created_at=NOW,
        send_after=NOW,
        **values,
    )
    session.add(message)
    session.flush()
    return message


def one(session: Session, project: Project, message: Message) -> dict[str, Any]:
    [context] = load_contexts(session, project, [message], links, now=NOW)
    assert isinstance(context, dict), context
    return context


def every_trigger(session: Session, data: YearShop, customer: int) -> list[Message]:
    """One message per new trigger for `customer`, with the planner's context."""
    return [
        queue(session, "lapsed", customer, step="hello", order_id=data.last_order,
              context={"inactive_days": 10}),
        queue(session, "birthday_note", customer,
              context={"date_field": "birthday", "date": "2026-12-01", "years": 30}),
        queue(session, "ladder", customer, order_id=data.last_order, context={"nth": 2}),
        queue(session, "tea_again", customer, order_id=data.last_order),
        queue(session, "new_arrival", customer,
              context={"product_id": data.products["SARI-JAM-01"]}),
        queue(session, "restocked", customer,
              context={"product_id": data.products["TEA-500G"], "restock_id": data.restock}),
        queue(session, "fortnight", customer, context={"period_start": "2026-11-16"}),
        queue(session, "basket", customer, context={"cart_id": "cart-77"}),
        queue(session, "big_news", customer, context={"broadcast_at": "2026-12-10 10:00"}),
    ]  # fmt: skip


@pytest.fixture
def session(sqlite_store: Engine) -> Iterator[Session]:
    with Session(sqlite_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


@pytest.fixture
def both_session(store: Engine) -> Iterator[Session]:
    with Session(store, expire_on_commit=False) as session:
        yield session
        session.rollback()


@pytest.fixture
def data(session: Session) -> YearShop:
    return fill_year_shop(session)


# ---------------------------------------------------------------- the keys, on both dialects


def test_every_new_key_from_real_rows(both_session: Session, project: Project) -> None:
    session = both_session
    data = fill_year_shop(session)
    found = load_contexts(
        session, project, every_trigger(session, data, data.rahima), links, now=NOW
    )
    contexts = [c for c in found if isinstance(c, dict)]
    assert len(contexts) == len(found), found
    lapsed, birthday, ladder, tea, new, restocked, fortnight, basket, news = contexts
    for context in contexts:
        # Saris and bags tie at 2; saris were bought last. The newest saris in stock
        # she has not bought, four of them: not the tant sari she bought, not silk (none).
        assert context["favourite"] == {
            "category": "saris",
            "products": [
                {"name": "Sari nine", "sku": "SARI-09", "price": Decimal("1400.00"),
                 "category": "saris"},
                {"name": "Sari eight", "sku": "SARI-08", "price": Decimal("1300.00"),
                 "category": "saris"},
                {"name": "Sari seven", "sku": "SARI-07", "price": Decimal("1200.00"),
                 "category": "saris"},
                {"name": "Sari six", "sku": "SARI-06", "price": Decimal("1100.00"),
                 "category": "saris"},
            ],
        }  # fmt: skip
        # The cancelled order of the day before is not her last order.
        assert context["last_order"]["number"] == "NG-3"
        assert context["last_order"]["items"][0]["sku"] == "SARI-TANT-02"
        assert context["customer"]["days_since_order"] == 10
    assert lapsed["step"] == {"id": "hello", "number": 1, "of": 2}
    assert lapsed["order"]["number"] == "NG-3"
    assert birthday["occasion"] == {"field": "birthday", "date": date(2026, 12, 1), "years": 30}
    assert (ladder["nth"], ladder["order"]["number"]) == (2, "NG-3")
    assert tea["order"]["number"] == "NG-3"
    assert new["product"] == {
        "name": "জামদানি শাড়ি", "sku": "SARI-JAM-01", "price": Decimal("8500.00"),
        "category": "saris", "in_stock": True, "stock": 3,
    }  # fmt: skip
    assert restocked["product"]["name"] == "Sylhet tea"  # no Bengali name: the English one
    assert (restocked["product"]["in_stock"], restocked["product"]["stock"]) == (False, 0)
    assert fortnight["period"] == {"start": date(2026, 11, 16)}
    assert basket["cart"] == {
        "id": "cart-77",
        "items": [
            {"name": "পাটের ব্যাগ", "sku": "JUTE-BAG-01", "quantity": 3,
             "unit_price": Decimal("450.10"), "total": Decimal("1350.30")},
            {"name": "Nakshi kantha", "sku": "KANTHA-1", "quantity": 2,
             "unit_price": Decimal("1250.05"), "total": Decimal("2500.10")},
        ],
        "amount": Decimal("3850.40"),
        "started_at": NOW - timedelta(hours=3),
    }  # fmt: skip
    assert str(basket["cart"]["items"][0]["total"]) == "1350.30"  # exact, two places
    for context in (news, new, basket):
        assert context["order"] is None and context["step"] == {"id": None, "number": 1, "of": 1}
    assert (news["product"], news["cart"], news["occasion"], news["period"], news["nth"]) == (
        None, None, None, None, None,
    )  # fmt: skip


def test_the_founding_triggers_leave_the_new_keys_empty(
    session: Session, project: Project, data: YearShop
) -> None:
    context = one(
        session, project, queue(session, "thank_you", data.rahima, order_id=data.last_order)
    )
    assert context["favourite"] == {"category": None, "products": []}
    assert context["last_order"] is None and context["customer"]["days_since_order"] is None
    assert context["step"] == {"id": None, "number": 1, "of": 1}
    assert [context[k] for k in ("product", "cart", "occasion", "period", "nth")] == [None] * 5


def test_a_tie_goes_to_the_category_bought_last_in_english(
    session: Session, project: Project, data: YearShop
) -> None:
    context = one(session, project, queue(session, "fortnight", data.sam,
                                          context={"period_start": "2026-11-16"}))  # fmt: skip
    # One tea (20 days ago) and one bag (5 days ago): bags. He has the tote already.
    assert context["favourite"]["category"] == "bags"
    assert context["favourite"]["products"] == []  # the only bag in stock is the one he has
    assert context["last_order"]["number"] == "NG-5"
    assert context["customer"]["days_since_order"] == 5
    shop.upsert_product(
        session, sku="BAG-2", name="Canvas bag", category="bags", price="99.5", stock=4, now=NOW
    )
    again = one(session, project, queue(session, "fortnight", data.sam,
                                        context={"period_start": "2026-11-16"}))  # fmt: skip
    assert again["favourite"]["products"] == [
        {"name": "Canvas bag", "sku": "BAG-2", "price": Decimal("99.50"), "category": "bags"}
    ]


def test_a_customer_without_orders_has_no_favourite(
    session: Session, project: Project, data: YearShop
) -> None:
    new = shop.upsert_customer(session, external_id="c3", email="n@example.com", now=NOW)
    assert new.id
    context = one(session, project, queue(session, "big_news", new.id))
    assert context["favourite"] == {"category": None, "products": []}
    assert context["last_order"] is None and context["customer"]["days_since_order"] is None


# ---------------------------------------------------------------- steps


def test_each_step_sees_where_it_stands(session: Session, project: Project, data: YearShop) -> None:
    message = queue(session, "lapsed", data.sam, step="reminder", order_id=data.sam_order)
    assert one(session, project, message)["step"] == {"id": "reminder", "number": 2, "of": 2}


@pytest.mark.parametrize(
    ("campaign", "step", "reason"),
    [
        pytest.param("lapsed", "gone", "step gone is no longer in campaign lapsed "
                     "(its steps now: hello, reminder)", id="removed-step"),
        pytest.param("lapsed", None, "its one email (a campaign without steps) is no longer in "
                     "campaign lapsed (its steps now: hello, reminder)", id="steps-added"),
        pytest.param("big_news", "hello", "step hello is no longer in campaign big_news "
                     "(its steps now: email)", id="steps-removed"),
    ],
)  # fmt: skip
def test_a_message_whose_step_left_the_file_is_a_context_error(
    session: Session, project: Project, data: YearShop, campaign: str, step: str | None, reason: str
) -> None:
    bad = queue(session, campaign, data.sam, step=step, order_id=data.sam_order)
    good = queue(session, "lapsed", data.sam, step="hello", order_id=data.sam_order)
    contexts = load_contexts(session, project, [bad, good], links, now=NOW)
    assert isinstance(contexts[0], ContextError)
    assert str(contexts[0]) == f"message {bad.id}: {reason}"
    assert isinstance(contexts[1], dict)


# ---------------------------------------------------------------- what the planner wrote


@pytest.mark.parametrize(
    ("campaign", "context", "reason"),
    [
        pytest.param("new_arrival", {}, "product_id is missing from the message's context",
                     id="no-product"),
        pytest.param("new_arrival", {"product_id": "x"}, "product_id must be a whole number, "
                     "got 'x'", id="junk-product"),
        pytest.param("restocked", {"product_id": 4242}, "product 4242 does not exist",
                     id="gone-product"),
        pytest.param("basket", {}, "cart_id is missing from the message's context", id="no-cart"),
        pytest.param("basket", {"cart_id": 7}, "cart_id must be a text, got 7", id="junk-cart"),
        pytest.param("basket", {"cart_id": "cart-0"}, "cart cart-0 does not exist",
                     id="gone-cart"),
        pytest.param("birthday_note", {"date_field": "wedding", "date": "2026-12-01",
                     "years": 3}, "date_field must be birthday, first_order or signup, got "
                     "'wedding'", id="junk-field"),
        pytest.param("birthday_note", {"date_field": "birthday", "date": "01/12/2026",
                     "years": 3}, "date must be a date like 2026-12-10, got '01/12/2026'",
                     id="junk-date"),
        pytest.param("birthday_note", {"date_field": "birthday", "date": "2026-12-01"},
                     "years is missing from the message's context", id="no-years"),
        pytest.param("ladder", {"nth": True}, "nth must be a whole number, got True",
                     id="bool-nth"),
        pytest.param("ladder", {"nth": 2.5}, "nth must be a whole number, got 2.5",
                     id="float-nth"),
        pytest.param("fortnight", {"period_start": None}, "period_start is missing from the "
                     "message's context", id="no-period"),
        pytest.param("basket", ["cart-77"], "its context is not an object: ['cart-77']",
                     id="not-an-object"),
    ],
)  # fmt: skip
def test_bad_planner_context_fails_that_message_only(
    session: Session,
    project: Project,
    data: YearShop,
    campaign: str,
    context: Any,
    reason: str,
) -> None:
    bad = queue(session, campaign, data.sam, context=context, order_id=data.sam_order)
    good = queue(session, "big_news", data.sam)
    contexts = load_contexts(session, project, [bad, good], links, now=NOW)
    assert isinstance(contexts[0], ContextError)
    assert str(contexts[0]) == f"message {bad.id}: {reason}"
    assert isinstance(contexts[1], dict)


def test_a_bad_cart_line_names_the_cart_and_line(
    session: Session, project: Project, data: YearShop
) -> None:
    session.add(
        Checkout(
            cart_id="cart-bad", customer_id=data.sam, started_at=NOW, amount=Decimal("1"),
            recorded_at=NOW, items=[{"sku": "A", "quantity": 1, "unit_price": "1.00"},
                                    {"sku": "B", "quantity": 1, "unit_price": 1.5}],
        )
    )  # fmt: skip
    session.flush()
    bad = queue(session, "basket", data.sam, context={"cart_id": "cart-bad"})
    [error] = load_contexts(session, project, [bad], links, now=NOW)
    assert isinstance(error, ContextError)
    assert str(error) == (
        f"message {bad.id}: cart cart-bad item 2: unit_price money must not be a float, got: 1.5"
    )


# ---------------------------------------------------------------- cost


def test_a_batch_of_every_trigger_loads_in_a_bounded_number_of_queries(
    both_session: Session, project: Project, store: Engine
) -> None:
    session = both_session
    data = fill_year_shop(session)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def queries(messages: list[Message]) -> int:
        statements.clear()
        event.listen(store, "before_cursor_execute", count)
        try:
            contexts = load_contexts(session, project, messages, links, now=NOW)
        finally:
            event.remove(store, "before_cursor_execute", count)
        assert all(isinstance(c, dict) for c in contexts), contexts
        return len(statements)

    small = queries(every_trigger(session, data, data.rahima))
    large = [
        m
        for _ in range(6)
        for c in (data.rahima, data.sam)
        for m in every_trigger(session, data, c)
    ]
    # customers, last orders, checkouts, lines, orders, products by sku and by id,
    # what was bought, the favourite categories' products: one query each.
    assert queries(large) == small <= 9, statements
