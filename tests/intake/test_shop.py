"""The shop API: upserts by the shop's ids, price history, order figures, consent log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from engine.errors import DataError, UnknownRecord
from engine.intake import shop
from engine.intake.shop import Line
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import (
    ConsentChange,
    Customer,
    CustomerTag,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    ProductWanted,
    ShopHoliday,
)
from tests import store_fixtures
from tests.store_fixtures import _postgres_schema

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def seed(session: Session) -> None:
    """Two customers and two products, as every test here starts."""
    shop.upsert_customer(session, external_id="C1", email="rahim@example.com", now=NOW)
    shop.upsert_customer(session, external_id="C2", email="karim@example.com", now=NOW)
    shop.upsert_product(session, sku="TEA-500G", name="Tea 500 g", price="320.00", now=NOW)
    shop.upsert_product(session, sku="BAG-01", name="Jute bag", price="450", stock=3, now=NOW)


@pytest.fixture
def seeded(fresh_store: Engine) -> Engine:
    with session_scope(fresh_store) as session:
        seed(session)
    return fresh_store


def count(engine: Engine, model: Any, *where: Any) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def customer(session: Session, external_id: str) -> Customer:
    return shop.customer_by_external_id(session, external_id)


# ---------------------------------------------------------------- customers and consent


def test_a_customer_is_created_once_and_updated_by_the_shops_id(seeded: Engine) -> None:
    later = NOW + timedelta(hours=1)
    with session_scope(seeded) as session:
        shop.upsert_customer(
            session,
            external_id="C1",
            email="Rahim@Example.COM",
            name="Rahim Uddin",
            locale="bn-BD",
            timezone="Asia/Dhaka",
            tags=["vip", " regular ", ""],
            now=later,
        )
    with session_scope(seeded) as session:
        shop.upsert_customer(session, external_id="C1", email="rahim@example.com", now=later)
        rahim = customer(session, "C1")
        assert (rahim.email, rahim.name, rahim.locale, rahim.timezone) == (
            "rahim@example.com",
            "Rahim Uddin",  # left out the second time: kept
            "bn_BD",
            "Asia/Dhaka",
        )
        assert (rahim.created_at, rahim.updated_at) == (NOW, later)
        tags = session.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == rahim.id))
        assert sorted(tags.scalars()) == ["regular", "vip"]
    assert count(seeded, Customer) == 2


def test_an_email_belongs_to_one_customer(seeded: Engine) -> None:
    with (
        session_scope(seeded) as session,
        pytest.raises(DataError, match=r"email karim@example\.com already belongs to customer C2"),
    ):
        shop.upsert_customer(session, external_id="C1", email="KARIM@example.com", now=NOW)


def test_the_consent_log_only_grows(seeded: Engine) -> None:
    times = [NOW + timedelta(days=n) for n in range(4)]
    with session_scope(seeded) as session:
        rahim = customer(session, "C1")
        assert shop.set_consent(session, rahim, True, source="checkout", now=times[0])
        assert not shop.set_consent(session, rahim, True, source="again", now=times[1])
        assert shop.set_consent(session, rahim, False, source="unsubscribe", now=times[2])
        shop.upsert_customer(
            session,
            external_id="C1",
            email="rahim@example.com",
            marketing_consent=True,
            consent_source="survey",
            now=times[3],
        )
    with Session(seeded) as session:
        rahim = customer(session, "C1")
        assert (rahim.marketing_consent, rahim.consent_at, rahim.consent_source) == (
            True,
            times[3],
            "survey",
        )
        log = session.execute(select(ConsentChange).order_by(ConsentChange.id)).scalars().all()
        assert [(c.consent, c.at, c.source) for c in log] == [
            (True, times[0], "checkout"),
            (False, times[2], "unsubscribe"),
            (True, times[3], "survey"),
        ]


# ---------------------------------------------------------------- products and prices


def test_every_new_price_is_appended_to_the_price_history(seeded: Engine) -> None:
    days = [NOW + timedelta(days=n) for n in range(1, 5)]
    with session_scope(seeded) as session:
        shop.upsert_product(session, sku="TEA-500G", name="Tea 500 g", price="320", now=days[0])
        shop.set_price(session, "TEA-500G", Decimal("299.99"), now=days[1])
        shop.set_price(session, "TEA-500G", "299.99", now=days[2])
        shop.upsert_product(session, sku="TEA-500G", name="Tea (500 g)", price="310", now=days[3])
        tea = shop.product_by_sku(session, "TEA-500G")
        history = session.execute(
            select(PriceChange.price, PriceChange.changed_at)
            .where(PriceChange.product_id == tea.id)
            .order_by(PriceChange.changed_at)
        ).all()
        assert [tuple(row) for row in history] == [
            (Decimal("320.00"), NOW),
            (Decimal("299.99"), days[1]),
            (Decimal("310.00"), days[3]),
        ]
        assert (tea.name, tea.price, tea.stock) == ("Tea (500 g)", Decimal("310.00"), 0)
        bag = shop.product_by_sku(session, "BAG-01")
        shop.upsert_product(session, sku="BAG-01", name="Jute bag", price="450", now=days[0])
        assert bag.stock == 3  # not given: kept


# ---------------------------------------------------------------- orders


def test_order_figures_exclude_cancelled_orders_and_recording_twice_changes_nothing(
    seeded: Engine,
) -> None:
    placed = [NOW - timedelta(days=n) for n in (30, 20, 10)]
    with session_scope(seeded) as session:
        shop.record_order(
            session,
            external_id="1001",
            customer_id="C1",
            items=[Line("TEA-500G", 2), Line("BAG-01", 1, "400.50")],
            placed_at=placed[0],
        )
        shop.record_order(
            session,
            external_id="1002",
            customer_id="C1",
            items=[Line("BAG-01", 1)],
            placed_at=placed[1],
            delivered_at=placed[1] + timedelta(days=2),
        )
        shop.record_order(
            session,
            external_id="1003",
            customer_id="C1",
            items=[Line("TEA-500G", 5)],
            placed_at=placed[2],
            cancelled=True,
        )
    for _ in range(2):  # the same order again returns the stored one
        with session_scope(seeded) as session:
            again = shop.record_order(
                session,
                external_id="1001",
                customer_id="C1",
                items=[Line("TEA-500G", 9)],
                placed_at=NOW,
            )
            assert (again.total, again.placed_at) == (Decimal("1040.50"), placed[0])
    assert (count(seeded, Order), count(seeded, OrderItem)) == (3, 4)
    with Session(seeded) as session:
        rahim = customer(session, "C1")
        assert (rahim.orders_count, rahim.total_spent) == (2, Decimal("1490.50"))
        assert (rahim.first_order_at, rahim.last_order_at) == (placed[0], placed[1])
        statuses = dict(session.execute(select(Order.external_id, Order.status)).all())
        assert statuses == {
            "1001": OrderStatus.PLACED,
            "1002": OrderStatus.DELIVERED,
            "1003": OrderStatus.CANCELLED,
        }
        karim = customer(session, "C2")
        assert (karim.orders_count, karim.total_spent, karim.first_order_at) == (
            0,
            Decimal("0.00"),
            None,
        )


def test_an_order_is_recorded_at_now_and_recording_it_again_keeps_that_time(
    seeded: Engine,
) -> None:
    with session_scope(seeded) as session:
        for at in (NOW, NOW + timedelta(hours=1)):  # the second time: a repeat
            shop.record_order(session, external_id="1", customer_id="C1",
                              items=[Line("TEA-500G", 1)], placed_at=NOW - timedelta(days=8),
                              now=at)  # fmt: skip
        shop.record_order(session, external_id="2", customer_id="C2",
                          items=[Line("TEA-500G", 1)], placed_at=NOW)  # fmt: skip
    with Session(seeded) as session:
        recorded = dict(session.execute(select(Order.external_id, Order.recorded_at)).all())
    assert recorded == {"1": NOW, "2": None}  # without `now`, when is unknown


def test_an_order_line_is_paid_at_the_price_of_its_day(seeded: Engine) -> None:
    with session_scope(seeded) as session:
        shop.record_order(
            session, external_id="1", customer_id="C2", items=[Line("TEA-500G", 1)], placed_at=NOW
        )
        shop.set_price(session, "TEA-500G", "250", now=NOW + timedelta(days=1))
        shop.record_order(
            session,
            external_id="2",
            customer_id="C2",
            items=[Line("TEA-500G", 1)],
            placed_at=NOW + timedelta(days=2),
        )
        paid = session.execute(select(OrderItem.unit_price).order_by(OrderItem.id)).scalars()
        assert list(paid) == [Decimal("320.00"), Decimal("250.00")]


def test_mark_delivered_keeps_the_first_delivery_time(seeded: Engine) -> None:
    with session_scope(seeded) as session:
        for external_id, cancelled in (("1", False), ("2", True)):
            shop.record_order(
                session,
                external_id=external_id,
                customer_id="C1",
                items=[Line("BAG-01", 1)],
                placed_at=NOW,
                cancelled=cancelled,
            )
    first, second = NOW + timedelta(days=1), NOW + timedelta(days=2)
    with session_scope(seeded) as session:
        order = shop.mark_delivered(session, "1", first)
        assert (order.status, order.delivered_at) == (OrderStatus.DELIVERED, first)
    with session_scope(seeded) as session:
        assert shop.mark_delivered(session, "1", second).delivered_at == first
    with session_scope(seeded) as session:
        with pytest.raises(DataError, match="order 2 is cancelled and cannot be delivered"):
            shop.mark_delivered(session, "2", first)
        with pytest.raises(UnknownRecord, match="unknown order '404'"):
            shop.mark_delivered(session, "404", first)


def test_mark_delivered_refuses_a_time_before_placing(seeded: Engine) -> None:
    with session_scope(seeded) as session:
        shop.record_order(
            session, external_id="1", customer_id="C1", items=[Line("BAG-01", 1)], placed_at=NOW
        )
        with pytest.raises(DataError, match="order 1: delivered_at is before placed_at"):
            shop.mark_delivered(session, "1", NOW - timedelta(seconds=1))
        assert shop.mark_delivered(session, "1", NOW).delivered_at == NOW


# ---------------------------------------------------------------- holidays


def test_a_shop_holiday_is_added_then_moved(seeded: Engine) -> None:
    with session_scope(seeded) as session:
        shop.add_holiday(
            session, holiday_id="flash_sale", day=date(2026, 12, 5), name="Flash sale", now=NOW
        )
    with session_scope(seeded) as session:
        shop.add_holiday(
            session,
            holiday_id="flash_sale",
            day=date(2026, 12, 12),
            name="Flash sale",
            name_bn="ফ্ল্যাশ সেল",
            now=NOW,
        )
    with Session(seeded) as session:
        rows = session.execute(select(ShopHoliday)).scalars().all()
        assert [(h.id, h.date, h.name_bn, h.created_at) for h in rows] == [
            ("flash_sale", date(2026, 12, 12), "ফ্ল্যাশ সেল", NOW)
        ]


# ---------------------------------------------------------------- checkouts and wishes


def test_a_cart_is_completed_by_its_first_order_only(seeded: Engine) -> None:
    with session_scope(seeded) as session:
        for external_id in ("1", "2"):  # two orders name the cart: the first completes it
            shop.record_order(session, external_id=external_id, customer_id="C1",
                              items=[Line("BAG-01", 1)], placed_at=NOW, cart_id="cart-9")  # fmt: skip
        checkout = shop.start_checkout(
            session,
            cart_id="cart-9",
            customer_id="C1",
            items=[shop.CartLine("BAG-01", 1)],
            amount="450",
            started_at=NOW - timedelta(hours=1),
            now=NOW,
        )
        first = shop.order_by_external_id(session, "1")
        assert (checkout.order_id, first.cart_id) == (first.id, "cart-9")
        shop.record_order(session, external_id="3", customer_id="C1",
                          items=[Line("BAG-01", 1)], placed_at=NOW, cart_id="cart-9")  # fmt: skip
        session.refresh(checkout)
        assert checkout.order_id == first.id


def test_a_wish_is_recorded_once_and_needs_a_known_customer_and_product(seeded: Engine) -> None:
    with session_scope(seeded) as session:
        assert shop.want_product(session, customer_id="C1", sku="BAG-01", at=NOW) is True
        later = NOW + timedelta(days=1)
        assert shop.want_product(session, customer_id="C1", sku="BAG-01", at=later) is False
        with pytest.raises(UnknownRecord, match="unknown product sku 'NOPE'"):
            shop.want_product(session, customer_id="C1", sku="NOPE", at=NOW)
        with pytest.raises(UnknownRecord, match="unknown customer 'C9'"):
            shop.want_product(session, customer_id="C9", sku="BAG-01", at=NOW)
    with Session(seeded) as session:
        assert session.execute(select(ProductWanted.at)).scalars().all() == [NOW]


# ---------------------------------------------------------------- invalid input


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One seeded store per dialect for the invalid-input table (which must write nothing)."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('shop') / 'shop.db'}"
    else:
        schema = _postgres_schema()  # a schema of its own, apart from fresh_store's
        url = next(schema)
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        seed(session)
        shop.record_order(
            session, external_id="1", customer_id="C1", items=[Line("BAG-01", 1)], placed_at=NOW
        )
    yield engine
    engine.dispose()
    if schema is not None:
        schema.close()  # drops the schema


def _order(**kw: Any) -> Callable[[Session], Any]:
    args: dict[str, Any] = {
        "external_id": "9",
        "customer_id": "C1",
        "items": [Line("TEA-500G", 1)],
        "placed_at": NOW,
    }
    return lambda s: shop.record_order(s, **(args | kw))


def _customer(**kw: Any) -> Callable[[Session], Any]:
    args: dict[str, Any] = {"external_id": "C9", "email": "new@example.com", "now": NOW}
    return lambda s: shop.upsert_customer(s, **(args | kw))


def _product(**kw: Any) -> Callable[[Session], Any]:
    args: dict[str, Any] = {"sku": "MUG-01", "name": "Mug", "price": "150", "now": NOW}
    return lambda s: shop.upsert_product(s, **(args | kw))


def _checkout(**kw: Any) -> Callable[[Session], Any]:
    args: dict[str, Any] = {
        "cart_id": "cart-1",
        "customer_id": "C1",
        "items": [shop.CartLine("TEA-500G", 1)],
        "amount": "320",
        "started_at": NOW,
        "now": NOW,
    }
    return lambda s: shop.start_checkout(s, **(args | kw))


INVALID = [
    pytest.param(
        _customer(email="new@"), 'email: expected an email address, got "new@"', id="bad-email"
    ),
    pytest.param(_customer(locale="xx_QQ_zz"), "locale: expected a locale", id="bad-locale"),
    pytest.param(
        _customer(timezone="Mars/Base"), "timezone: expected a timezone", id="bad-timezone"
    ),
    pytest.param(
        _customer(now=datetime(2026, 11, 22)), "now must be a timezone-aware", id="naive-now"
    ),
    pytest.param(
        _customer(created_at=datetime(2026, 1, 1)),
        "created_at must be a timezone-aware",
        id="naive-created",
    ),
    pytest.param(_customer(tags="vip"), "tags must be a list of tags", id="tags-as-text"),
    pytest.param(
        _customer(name="Rahim\r\nUddin"), "name must be one line, got a line break", id="name-crlf"
    ),
    pytest.param(
        _customer(external_id="C1", email="rahim@example.com", name="Rahim\rBcc: x@example.com"),
        "name must be one line, got a line break",
        id="stored-customer-name-cr",
    ),
    pytest.param(
        _customer(city="Dhaka\nMirpur"), "city must be one line, got a line break", id="city-lf"
    ),
    pytest.param(
        _product(name="Mug\u2028large"), "name must be one line, got a line break", id="product-ls"
    ),
    pytest.param(
        _product(price="-1.00"), "price must not be negative, got: -1.00", id="negative-price"
    ),
    pytest.param(
        _product(price="1.005"), "price has more than two decimal places", id="three-decimals"
    ),
    pytest.param(
        _product(price=1.5), "price must be an amount like 120.50, got: 1.5", id="float-price"
    ),
    pytest.param(_product(price="abc"), "price must be an amount like 120.50", id="text-price"),
    pytest.param(
        _product(stock=-1), "stock must be a whole number of zero or more", id="negative-stock"
    ),
    pytest.param(_product(category="x" * 101), "category is longer than 100", id="long-category"),
    pytest.param(
        lambda s: shop.set_stock(s, shop.product_by_sku(s, "BAG-01"), -2, at=NOW),
        "stock must be a whole number of zero or more, got: -2",
        id="set-stock-negative",
    ),
    pytest.param(
        lambda s: shop.set_price(s, "TEA-500G", "-5", now=NOW),
        "price must not be negative",
        id="set-price-negative",
    ),
    pytest.param(
        lambda s: shop.set_price(s, "NOPE", "5", now=NOW),
        "unknown product sku 'NOPE'",
        id="set-price-unknown",
    ),
    pytest.param(
        _order(items=[Line("TEA-500G", 1.5)]),  # type: ignore[arg-type]
        "quantity of TEA-500G must be a whole number of 1 or more, got: 1.5",
        id="fractional-quantity",
    ),
    pytest.param(
        _order(items=[Line("TEA-500G", "2")]),  # type: ignore[arg-type]
        "must be a whole number of 1 or more, got: '2'",
        id="text-quantity",
    ),
    pytest.param(_order(items=[Line("TEA-500G", 0)]), "got: 0", id="zero-quantity"),
    pytest.param(
        _order(items=[Line("TEA-500G", 1, "9.999")]), "more than two decimal", id="bad-unit-price"
    ),
    pytest.param(_order(customer_id="C404"), "unknown customer 'C404'", id="unknown-customer"),
    pytest.param(
        _order(items=[Line("TEA-500G", 1), Line("NOPE", 1)]),
        "unknown product sku 'NOPE'",
        id="unknown-sku",
    ),
    pytest.param(
        _order(placed_at=datetime(2026, 11, 1)),
        "placed_at must be a timezone-aware",
        id="naive-placed",
    ),
    pytest.param(
        _order(delivered_at=NOW - timedelta(hours=1)),
        "order 9: delivered_at is before placed_at",
        id="delivered-first",
    ),
    pytest.param(_order(items=[]), "order 9 has no items", id="no-items"),
    pytest.param(_order(cart_id="cart\n1"), "cart_id must be one line", id="two-line-cart"),
    pytest.param(_checkout(cart_id=" "), "cart_id is required", id="blank-cart-id"),
    pytest.param(_checkout(cart_id="c" * 65), "cart_id is longer than 64", id="long-cart-id"),
    pytest.param(_checkout(amount="-1"), "amount must not be negative", id="negative-amount"),
    pytest.param(_checkout(items=[]), "items of checkout cart-1 must hold", id="empty-cart"),
    pytest.param(
        _checkout(items=[shop.CartLine("TEA-500G", 0)]),
        "items[0].quantity must be a whole number of 1 or more, got: 0",
        id="cart-zero-quantity",
    ),
    pytest.param(
        _checkout(items=[shop.CartLine("TEA-500G", 1), shop.CartLine("NOPE", 1)]),
        "items[1].sku: unknown product sku 'NOPE'",
        id="cart-unknown-sku",
    ),
    pytest.param(
        _checkout(items=[shop.CartLine("TEA-500G", 1, name="Tea\nBcc: x")]),
        "items[0].name must be one line",
        id="cart-two-line-name",
    ),
    pytest.param(_checkout(customer_id="C404"), "unknown customer 'C404'", id="cart-customer"),
    pytest.param(
        _checkout(started_at=datetime(2026, 11, 1)),
        "started_at must be a timezone-aware",
        id="naive-started",
    ),
    pytest.param(
        lambda s: shop.add_holiday(
            s, holiday_id="Flash Sale", day=date(2026, 12, 1), name="x", now=NOW
        ),
        "holiday id: expected a name of lowercase letters",
        id="bad-holiday-id",
    ),
    pytest.param(
        lambda s: shop.add_holiday(s, holiday_id="sale", day=date(2026, 12, 1), name=" ", now=NOW),
        "name is required",
        id="holiday-without-name",
    ),
]


@pytest.mark.parametrize(("call", "message"), INVALID)
def test_invalid_input_is_refused_by_name_and_writes_nothing(
    shared: Engine, call: Callable[[Session], Any], message: str
) -> None:
    before = _dump(shared)
    with Session(shared) as session:
        with pytest.raises(DataError) as caught:
            call(session)
        # A caller that goes on after the error must not commit half of it.
        session.commit()
    assert message in str(caught.value)
    assert _dump(shared) == before


def _dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(table.select())), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }
