"""The demo shop: every campaign has work at any hour, and seeding twice changes nothing."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.cli import main
from engine.demo.club import place_in_tiers
from engine.demo.seed import CustomerSeed, flash_sale_day, plan_demo, seed_demo
from engine.demo.tables import (
    CITIES,
    MIN_CUSTOMERS,
    NEW_PRODUCT,
    PRODUCTS,
    RESTOCKED_SKU,
    Role,
)
from engine.errors import DataError
from engine.plan.planner import plan
from engine.project.loader import load_project
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import (
    Checkout,
    Checkpoint,
    ConsentChange,
    Customer,
    CustomerTag,
    Message,
    MessageStatus,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    ProductWanted,
    Restock,
    ShopHoliday,
    SurveyAnswer,
)
from tests.conftest import POSTGRES_URL, REPO, skip_or_fail

SMALL = MIN_CUSTOMERS + 4  # every scenario plus a few chance customers; seeds in about a second
WINDOW = (time(9, 0), time(20, 0))
# The scenarios spread over the seven clocks of SPREAD (the birthday's eighth was born on 29 February).
SCENARIO_ROLES = (
    Role.WELCOME,
    Role.THANK_YOU,
    Role.PRICE_DROP,
    Role.REGULAR,
    Role.LAPSING,
    Role.BIRTHDAY,
    Role.REPLENISH,
    Role.WANTED,
    Role.HOME_BUYER,
    Role.NEWCOMER,
    Role.CART,
    Role.LADDER,
    Role.SURVEY,
    Role.CLUB,
    Role.REFERRER,
    Role.FRIEND,
)
# The campaigns the shipped config.yaml runs.
CAMPAIGNS = set(load_project(REPO / "config.yaml").config.campaigns)

# Times to seed at: any hour, any date, across midnight in Dhaka and DST changes.
AT = [
    pytest.param(datetime(2026, 11, 22, 6, 0, tzinfo=UTC), id="dhaka-noon"),
    pytest.param(datetime(2026, 11, 22, 17, 58, tzinfo=UTC), id="dhaka-23h58"),
    pytest.param(datetime(2026, 11, 22, 18, 2, tzinfo=UTC), id="dhaka-00h02"),
    pytest.param(datetime(2026, 11, 23, 2, 0, tzinfo=UTC), id="only-sydney-awake"),
    pytest.param(datetime(2026, 3, 8, 7, 30, tzinfo=UTC), id="new-york-dst-starts"),
    pytest.param(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), id="london-dst-starts"),
    pytest.param(datetime(2026, 4, 5, 15, 30, tzinfo=UTC), id="sydney-dst-ends"),
    pytest.param(datetime(2026, 10, 4, 16, 30, tzinfo=UTC), id="sydney-dst-starts"),
    pytest.param(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), id="new-york-dst-ends"),
    pytest.param(datetime(2028, 2, 29, 22, 45, tzinfo=UTC), id="leap-day"),
    pytest.param(datetime(2026, 12, 31, 23, 50, tzinfo=UTC), id="new-year"),
]


def by_role(plan: list[CustomerSeed], role: Role) -> list[CustomerSeed]:
    return [c for c in plan if c.role is role]


def in_window(timezone: str, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(timezone)).time()
    return WINDOW[0] <= local < WINDOW[1]


# ---------------------------------------------------------------- the plan, at any time


@pytest.mark.parametrize("now", AT)
def test_every_time_in_the_plan_is_consistent_with_now(now: datetime) -> None:
    plan = plan_demo(now, 150)
    assert len({c.email for c in plan}) == len(plan) == 150
    for customer in plan:
        assert customer.created_at <= now
        for order in customer.orders:
            assert customer.created_at <= order.placed_at <= now, order.external_id
            if order.delivered_at is not None:
                assert order.placed_at <= order.delivered_at <= now, order.external_id


@pytest.mark.parametrize("now", AT)
def test_each_scenario_is_due_now(now: datetime) -> None:
    plan = plan_demo(now, SMALL)
    for customer in by_role(plan, Role.WELCOME):
        (order,) = customer.orders  # a first order, the only one
        assert now - timedelta(hours=1) <= order.placed_at <= now - timedelta(minutes=10)
        assert order.delivered_at is None
    for customer in by_role(plan, Role.THANK_YOU):
        last = customer.orders[-1]
        assert len(customer.orders) >= 2  # a returning customer, not a welcome
        assert last.delivered_at is not None
        assert now - timedelta(hours=6) <= last.delivered_at <= now - timedelta(hours=2)
    for customer in by_role(plan, Role.PRICE_DROP):
        last = customer.orders[-1]
        assert last.delivered_at is None
        assert now - timedelta(hours=48) <= last.placed_at <= now - timedelta(hours=24)
        assert {line.sku for line in last.lines} & {"HONEY-500G", "OIL-500ML"}
    for customer in by_role(plan, Role.REGULAR):
        recent = [o for o in customer.orders if o.placed_at >= now - timedelta(days=180)]
        assert len(recent) >= 3
        assert customer.consent


@pytest.mark.parametrize("now", AT)
def test_each_flow_scenario_is_due_now(now: datetime) -> None:
    """win_back, birthday, replenish, back_in_stock, fortnightly_update, abandoned_checkout."""
    plan = plan_demo(now, SMALL)
    for customer in by_role(plan, Role.LAPSING):  # inactive 90 days, kept 7
        last = customer.orders[-1].placed_at
        assert now - timedelta(days=97) < last <= now - timedelta(days=90, hours=1)
    for customer in by_role(plan, Role.BIRTHDAY)[:7]:  # 10:00 on their clock, kept 2 days
        assert customer.birthday is not None
        local = now.astimezone(ZoneInfo(customer.timezone))
        due = datetime.combine(
            customer.birthday.replace(year=local.year), time(10, 0), tzinfo=local.tzinfo
        )
        if due > local + timedelta(days=2):  # the birthday was on 31 December
            due = due.replace(year=local.year - 1)
        assert due <= local < due + timedelta(days=2), customer.external_id
    assert by_role(plan, Role.BIRTHDAY)[7].birthday == date(1996, 2, 29)
    for customer in by_role(plan, Role.REPLENISH):  # after_purchase 30 days, kept 3
        pantry = [
            o
            for o in customer.orders
            if {line.sku for line in o.lines}
            & {p.sku for p in PRODUCTS if p.category in ("tea", "food")}
        ]
        delivered = max(o.delivered_at for o in pantry if o.delivered_at is not None)
        assert now - timedelta(days=33) < delivered <= now - timedelta(days=30)
    for customer in by_role(plan, Role.WANTED):
        assert customer.wants is not None and customer.wants[0] == RESTOCKED_SKU
        assert customer.wants[1] < now - timedelta(hours=6)
    for customer in by_role(plan, Role.HOME_BUYER):
        assert any(line.sku == "PATI-01" for o in customer.orders for line in o.lines)
    for customer in by_role(plan, Role.NEWCOMER):  # the first_90_days segment
        assert now - timedelta(days=90) < customer.orders[0].placed_at < now - timedelta(days=10)
    for customer in by_role(plan, Role.LADDER):  # 2 days after delivery, kept 3 days
        assert 2 <= len(customer.orders) <= 4
        last = customer.orders[-1]
        assert last.delivered_at is not None
        assert now - timedelta(days=4) <= last.delivered_at <= now - timedelta(days=2, hours=2)
        assert all(o.placed_at < now - timedelta(days=10) for o in customer.orders[:-1])
    for customer in by_role(plan, Role.SURVEY):  # after_purchase 7 days, kept 3
        delivered = customer.orders[-1].delivered_at
        assert delivered is not None
        assert now - timedelta(days=9, hours=1) <= delivered <= now - timedelta(days=7, hours=1)
    for customer in by_role(plan, Role.CLUB):  # one order before the club began, one since
        first, second = customer.orders
        assert first.placed_at < now - timedelta(days=20)
        assert now - timedelta(days=2) <= second.placed_at <= now - timedelta(days=1, hours=1)
        assert second.delivered_at is None
    for customer in by_role(plan, Role.CART):  # wait 1 hour, kept 1 day
        assert customer.checkout is not None
        assert now - timedelta(hours=20) <= customer.checkout.started_at
        assert customer.checkout.started_at <= now - timedelta(hours=1)
        assert customer.checkout.amount > 0


@pytest.mark.parametrize("now", AT)
def test_some_customers_of_every_scenario_are_inside_their_send_window(now: datetime) -> None:
    plan = plan_demo(now, SMALL)
    for role in SCENARIO_ROLES:
        awake = [c.city for c in by_role(plan, role) if in_window(c.timezone, now)]
        assert awake, f"no {role} customer is inside 09:00-20:00 at {now:%H:%M} UTC"


@pytest.mark.parametrize(
    "day",
    [
        pytest.param(datetime(2026, 1, 15, tzinfo=UTC), id="january"),
        pytest.param(datetime(2026, 7, 15, tzinfo=UTC), id="july"),
        pytest.param(datetime(2026, 3, 8, tzinfo=UTC), id="new-york-dst-day"),
        pytest.param(datetime(2026, 10, 4, tzinfo=UTC), id="sydney-dst-day"),
        pytest.param(datetime(2026, 11, 1, tzinfo=UTC), id="new-york-dst-ends"),
    ],
)
def test_scenario_timezones_cover_every_quarter_hour(day: datetime) -> None:
    """No hour of the demo rests on one customer's clock: two or more are awake."""
    plan = plan_demo(day, SMALL)
    for role in SCENARIO_ROLES:
        customers = by_role(plan, role)[:7]
        assert len({c.timezone for c in customers}) == len(customers) == 7
        for quarter in range(96):
            at = day + timedelta(minutes=15 * quarter)
            awake = [c.city for c in customers if in_window(c.timezone, at)]
            assert len(awake) >= 2, f"{role} at {at:%H:%M} UTC: only {awake}"


@pytest.mark.parametrize("now", AT)
def test_the_flash_sale_announcement_is_due_in_every_timezone(now: datetime) -> None:
    """holiday_preannounce: 3 days before, at 10:00 local, for 2 days; the sale still ahead."""
    sale = flash_sale_day(now)
    assert sale == now.astimezone(ZoneInfo("Asia/Dhaka")).date() + timedelta(days=2)
    for zone in set(CITIES.values()):
        tz = ZoneInfo(zone)
        due = datetime.combine(sale - timedelta(days=3), time(10, 0), tzinfo=tz)
        assert due <= now < due + timedelta(days=2), zone
        assert now < datetime.combine(sale, time(0, 0), tzinfo=tz), zone


def test_the_plan_is_the_same_for_the_same_arguments() -> None:
    now = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    assert plan_demo(now, SMALL) == plan_demo(now, SMALL)
    # More customers add to the shop; the first ones stay who they were.
    assert plan_demo(now, SMALL + 20)[:SMALL] == plan_demo(now, SMALL)


def test_the_shop_has_bengali_and_english_customers_at_home_and_abroad() -> None:
    plan = plan_demo(datetime(2026, 11, 22, 6, 0, tzinfo=UTC))
    locales = [c.locale for c in plan]
    assert locales.count("bn_BD") > len(plan) / 2
    assert locales.count("en") >= 10
    assert {c.city for c in plan} == set(CITIES)
    assert any("\u0980" <= ch <= "\u09ff" for c in plan for ch in c.name)  # Bengali script
    assert 0.6 < sum(c.consent for c in plan) / len(plan) < 1
    assert sum(c.birthday is not None for c in plan) > len(plan) / 2
    assert any(c.tags for c in plan)
    assert {c.role for c in plan} == set(Role)


@pytest.mark.parametrize(
    ("now", "customers", "message"),
    [
        pytest.param(datetime(2026, 11, 22, 6), 300, "timezone-aware", id="naive-now"),
        pytest.param(datetime(2026, 11, 22, tzinfo=UTC), 5, "got: 5", id="too-few"),
        pytest.param(datetime(2026, 11, 22, tzinfo=UTC), 10**6, "got: 1000000", id="too-many"),
        pytest.param(datetime(2026, 11, 22, tzinfo=UTC), "300", "whole number", id="text"),
    ],
)
def test_bad_arguments_are_refused(now: datetime, customers: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        plan_demo(now, customers)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the database


NOW = datetime(2026, 11, 22, 17, 58, tzinfo=UTC)  # 23:58 in Dhaka


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def shop_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One demo shop per dialect, seeded at NOW, shared by the tests that only read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
        cleanup = None
    else:
        if not POSTGRES_URL:
            skip_or_fail("LIFECYCLE_TEST_POSTGRES_URL is not set")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        cleanup = make_engine(POSTGRES_URL)
        with cleanup.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        seed_demo(session, now=NOW, customers=SMALL)
    place_in_tiers(engine, load_project(REPO / "config.yaml"), NOW)  # as `lifecycle demo` does
    yield engine
    engine.dispose()
    if cleanup is not None:
        with cleanup.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        cleanup.dispose()


@pytest.fixture
def seeded(store: Engine) -> Iterator[Engine]:
    """A demo shop of its own, for tests that seed again."""
    with session_scope(store) as session:
        seed_demo(session, now=NOW, customers=SMALL)
    yield store


def snapshot(engine: Engine) -> tuple[dict[str, int], str]:
    """Row counts per table and a checksum of the columns a campaign reads."""
    columns = {
        Customer: (
            Customer.external_id,
            Customer.email,
            Customer.name,
            Customer.locale,
            Customer.timezone,
            Customer.marketing_consent,
            Customer.consent_at,
            Customer.created_at,
            Customer.updated_at,
            Customer.orders_count,
            Customer.total_spent,
            Customer.first_order_at,
            Customer.last_order_at,
        ),
        CustomerTag: (CustomerTag.customer_id, CustomerTag.tag),
        Product: (Product.sku, Product.price, Product.stock, Product.updated_at),
        PriceChange: (PriceChange.product_id, PriceChange.price, PriceChange.changed_at),
        Order: (Order.external_id, Order.placed_at, Order.delivered_at, Order.status, Order.total),
        OrderItem: (
            OrderItem.order_id,
            OrderItem.product_id,
            OrderItem.quantity,
            OrderItem.unit_price,
        ),
        ConsentChange: (ConsentChange.customer_id, ConsentChange.consent, ConsentChange.at),
        SurveyAnswer: (SurveyAnswer.customer_id, SurveyAnswer.score, SurveyAnswer.at),
        ShopHoliday: (ShopHoliday.id, ShopHoliday.date),
        Checkpoint: (Checkpoint.name, Checkpoint.value),
        Restock: (Restock.product_id, Restock.stock, Restock.at),
        ProductWanted: (ProductWanted.customer_id, ProductWanted.product_id, ProductWanted.at),
        Checkout: (Checkout.cart_id, Checkout.started_at, Checkout.amount, Checkout.order_id),
    }
    counts: dict[str, int] = {}
    digest = hashlib.sha256()
    with Session(engine) as session:
        for model, cols in columns.items():
            rows = sorted(map(repr, session.exec(select(*cols)).all()))
            counts[model.__tablename__] = len(rows)  # type: ignore[attr-defined]
            digest.update("\n".join(rows).encode())
    return counts, digest.hexdigest()


def test_seeding_twice_changes_nothing_and_later_adds_only_what_is_missing(
    seeded: Engine,
) -> None:
    before = snapshot(seeded)
    with session_scope(seeded) as session:
        summary = seed_demo(session, now=NOW, customers=SMALL)
    assert summary.created == {}
    assert snapshot(seeded) == before

    with session_scope(seeded) as session:
        summary = seed_demo(session, now=NOW + timedelta(days=1), customers=SMALL + 2)
    assert summary.created["customers"] == 2
    assert summary.seeded_at == NOW
    assert "first seeded at 2026-11-22 17:58 UTC" in "\n".join(summary.lines())
    counts, after = before[0], snapshot(seeded)[0]
    assert after["customer"] == counts["customer"] + 2
    assert after["price_change"] == counts["price_change"]  # prices drop once
    assert after["shop_holiday"] == 1
    assert after["restock"] == counts["restock"] == 1  # the quilt comes back once
    assert after["checkout"] == counts["checkout"] == 7


def test_the_database_holds_the_planned_shop(shop_db: Engine) -> None:
    plan = plan_demo(NOW, SMALL)
    counts, _ = snapshot(shop_db)
    assert counts["customer"] == SMALL
    assert counts["orders"] == sum(len(c.orders) for c in plan)
    assert counts["product"] >= 10
    with Session(shop_db) as session:
        stock = dict(session.exec(select(Product.sku, Product.stock)).all())
        for sku in ("JUTE-BAG-01", "TEA-500G", "SARI-JAM-01"):  # the holiday offers
            assert stock[sku] > 0
        names = set(session.exec(select(Product.name_bn)).scalars())
        assert "নকশি কাঁথা" in names
        # Order figures follow the orders.
        rahim = session.exec(select(Customer).where(Customer.external_id == "NG-C00001")).one()[0]
        assert rahim.name == "রহিম উদ্দিন"
        assert rahim.orders_count == 1
        assert rahim.first_order_at is not None


def test_a_first_order_was_placed_within_the_hour(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        new = session.exec(
            select(Customer.timezone).where(
                col(Customer.first_order_at) >= NOW - timedelta(hours=1),
                col(Customer.first_order_at) <= NOW - timedelta(minutes=10),
                col(Customer.orders_count) == 1,
                col(Customer.marketing_consent),
            )
        ).all()
    assert len({zone for (zone,) in new}) == 7


def test_orders_were_delivered_a_few_hours_ago(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        delivered = session.exec(
            select(Customer.timezone)
            .join(Order, col(Order.customer_id) == Customer.id)
            .where(
                col(Order.status) == OrderStatus.DELIVERED,
                col(Order.delivered_at) >= NOW - timedelta(hours=6),
                col(Order.delivered_at) <= NOW - timedelta(hours=2),
                col(Customer.orders_count) >= 2,
            )
        ).all()
    assert len({zone for (zone,) in delivered}) == 7


def test_there_are_regulars_with_consent(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        recent = (
            select(Order.customer_id)
            .where(col(Order.placed_at) >= NOW - timedelta(days=180))
            .group_by(col(Order.customer_id))
            .having(func.count() >= 3)
        )
        zones = session.exec(
            select(Customer.timezone).where(
                col(Customer.id).in_(recent), col(Customer.marketing_consent)
            )
        ).all()
    assert len(zones) >= 7
    assert len({zone for (zone,) in zones}) == 7


def test_undelivered_orders_were_followed_by_a_lower_price(shop_db: Engine) -> None:
    """The 14-taka story: what each line overpaid, by the price history alone."""
    with Session(shop_db) as session:
        rows = session.exec(
            select(
                Product.sku,
                OrderItem.quantity,
                OrderItem.unit_price,
                func.min(PriceChange.price),
                Customer.marketing_consent,
            )
            .join(Order, col(Order.id) == OrderItem.order_id)
            .join(Product, col(Product.id) == OrderItem.product_id)
            .join(Customer, col(Customer.id) == Order.customer_id)
            .join(PriceChange, col(PriceChange.product_id) == Product.id)
            .where(
                col(Order.delivered_at).is_(None),
                col(PriceChange.changed_at) > Order.placed_at,
                col(PriceChange.changed_at) <= NOW,
            )
            .group_by(
                col(OrderItem.id),
                col(Product.sku),
                col(OrderItem.quantity),
                col(OrderItem.unit_price),
                col(Customer.marketing_consent),
            )
        ).all()
    refunds = {(sku, (paid - lowest) * quantity) for sku, quantity, paid, lowest, _ in rows}
    assert ("HONEY-500G", Decimal("28.00")) in refunds  # 350.00 → 336.00, two jars
    assert ("OIL-500ML", Decimal("0.14")) in refunds  # 120.00 → 119.86: kept, not rounded
    assert all(amount > 0 for _, amount in refunds)
    assert not all(consent for *_, consent in rows)  # transactional: some never opted in


def test_no_delivered_order_is_owed_a_refund(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        owed = session.exec(
            select(func.count())
            .select_from(OrderItem)
            .join(Order, col(Order.id) == OrderItem.order_id)
            .join(PriceChange, col(PriceChange.product_id) == OrderItem.product_id)
            .where(
                col(Order.delivered_at).is_not(None),
                col(PriceChange.changed_at) > Order.placed_at,
                col(PriceChange.changed_at) < Order.delivered_at,
                col(PriceChange.price) < OrderItem.unit_price,
            )
        ).one()[0]
    assert owed == 0


def test_the_quilt_came_back_for_those_who_asked(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        quilt = session.exec(select(Product).where(Product.sku == RESTOCKED_SKU)).one()[0]
        (restock,) = session.exec(select(Restock)).scalars()
        asked = list(session.exec(select(ProductWanted)).scalars())
    assert restock.product_id == quilt.id and quilt.stock == restock.stock > 0
    assert NOW - timedelta(days=2) < restock.at < NOW
    assert len(asked) == 7
    assert all(w.product_id == quilt.id and w.at < restock.at for w in asked)


def test_a_product_was_added_in_a_category_customers_bought(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        new = session.exec(select(Product).where(Product.sku == NEW_PRODUCT.sku)).one()[0]
        buyers = session.exec(
            select(func.count(func.distinct(Order.customer_id)))
            .join(OrderItem, col(OrderItem.order_id) == Order.id)
            .join(Product, col(Product.id) == OrderItem.product_id)
            .where(col(Product.category) == new.category)
        ).one()[0]
        old = session.exec(select(func.max(Product.created_at)).where(Product.sku != new.sku))
    assert new.created_at is not None and NOW - timedelta(days=3) < new.created_at < NOW
    assert new.stock > 0
    assert old.one()[0] < NOW - timedelta(days=365)  # the rest of the catalogue is old
    assert buyers >= 7


def test_checkouts_were_left_without_an_order(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        carts = list(session.exec(select(Checkout)).scalars())
        completed = session.exec(
            select(func.count()).select_from(Order).where(col(Order.cart_id).is_not(None))
        ).one()[0]
    assert len(carts) == 7 and completed == 0
    for cart in carts:
        assert cart.order_id is None
        assert NOW - timedelta(hours=20) <= cart.started_at <= NOW - timedelta(hours=1)
        assert cart.items and cart.amount == sum(
            Decimal(line["unit_price"]) * line["quantity"] for line in cart.items
        )


def test_the_flash_sale_is_dated_two_days_after_today_in_dhaka(shop_db: Engine) -> None:
    with Session(shop_db) as session:
        sale = session.get(ShopHoliday, "flash_sale")
        assert sale is not None
        assert sale.date.isoformat() == "2026-11-24"  # 23:58 on the 22nd in Dhaka
        assert sale.name_bn == "নকশি ঘরের ফ্ল্যাশ সেল"
        scores = list(session.exec(select(SurveyAnswer.score)).scalars())
    assert scores and all(0 <= s <= 10 for s in scores)


def test_the_summary_names_each_scenario(shop_db: Engine) -> None:
    with session_scope(shop_db) as session:
        summary = seed_demo(session, now=NOW, customers=SMALL)
    text = "\n".join(summary.lines())
    assert summary.customers == SMALL
    assert summary.first_orders_last_hour == 7
    assert summary.delivered_hours_ago == 7
    assert summary.regulars >= 7
    assert summary.price_drop_items >= 7
    assert summary.flash_sale is not None
    assert summary.lapsing >= 7
    assert summary.birthdays >= 7
    assert summary.replenish_orders >= 7
    assert summary.wanted == 7
    assert summary.new_product_buyers >= 7
    assert summary.first_90_days >= 7
    assert summary.open_checkouts == 7
    named = {name for line in text.splitlines() for name in re.findall(r"(\w+)[:,]", line)}
    assert CAMPAIGNS | {"welcome"} <= named
    assert "added nothing" in text


# ---------------------------------------------------------------- with the planner


def due_now(engine: Engine, now: datetime) -> dict[str, int]:
    """Per campaign, the queued emails the dispatcher would send at `now`."""
    with Session(engine) as session:
        rows = session.exec(
            select(Message.campaign, func.count())
            .where(
                col(Message.status) == MessageStatus.QUEUED,
                col(Message.send_after) <= now,
                col(Message.expires_at).is_(None) | (col(Message.expires_at) > now),
            )
            .group_by(col(Message.campaign))
        ).all()
    return {campaign: count for campaign, count in rows}


def test_the_demo_first_plan_queues_for_every_shipped_campaign(
    sqlite_store: Engine, project_dir: Path
) -> None:
    """Every campaign config.yaml enables has work in the demo's first plan."""
    project = load_project(project_dir / "config.yaml")
    with session_scope(sqlite_store) as session:
        seed_demo(session, now=NOW, customers=MIN_CUSTOMERS)
    place_in_tiers(sqlite_store, project, NOW)
    report = plan(sqlite_store, project, NOW).as_dict()["campaigns"]
    assert set(report) == set(project.config.campaigns) == CAMPAIGNS
    queued = {name: result.get("queued", 0) for name, result in report.items()}
    assert all(n > 0 for n in queued.values()), report
    assert report["welcome_series"]["steps"]["hello"]["queued"] == 7


def test_every_campaign_has_an_email_to_send_right_away(shop_db: Engine, project_dir: Path) -> None:
    """What `make demo` promises: at 23:58 in Dhaka, each campaign sends at once."""
    plan(shop_db, load_project(project_dir / "config.yaml"), NOW)
    assert set(due_now(shop_db, NOW)) == CAMPAIGNS


def test_every_campaign_sends_when_only_sydney_is_awake(
    sqlite_store: Engine, project_dir: Path
) -> None:
    """02:00 UTC in the week New York moves its clocks: 09:00-20:00 only in Sydney."""
    now = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)
    with session_scope(sqlite_store) as session:
        seed_demo(session, now=now, customers=MIN_CUSTOMERS)
    project = load_project(project_dir / "config.yaml")
    place_in_tiers(sqlite_store, project, now)
    plan(sqlite_store, project, now)
    assert set(due_now(sqlite_store, now)) == CAMPAIGNS


# ---------------------------------------------------------------- the command


def test_the_demo_command_seeds_once(project_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"LIFECYCLE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    args = ["demo", "--config", str(project_dir / "config.yaml"), "--customers", str(MIN_CUSTOMERS)]
    first = runner.invoke(main, [*args, "--at", "2026-11-22T23:58+06:00"], env=env)
    assert first.exit_code == 0, first.output
    assert f"added {len(PRODUCTS) + 1} products, {MIN_CUSTOMERS} customers" in first.output
    assert "flash sale on 2026-11-24" in first.output
    again = runner.invoke(main, [*args, "--at", "2026-11-22T17:58:00Z"], env=env)
    assert again.exit_code == 0, again.output
    assert "added nothing" in again.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["--at", "2026-11-22T06:00"], 2, "with its offset", id="naive-at"),
        pytest.param(["--at", "yesterday"], 2, "expected a time like", id="garbage-at"),
        pytest.param(
            ["--customers", "5"],
            2,
            f"5 is not in the range {MIN_CUSTOMERS}<=x<=20000",
            id="too-few",
        ),
        pytest.param(
            ["--customers", "many"], 2, "'many' is not a valid integer", id="not-a-number"
        ),
    ],
)
def test_the_demo_command_refuses_bad_options(
    project_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    env = {"LIFECYCLE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    result = CliRunner().invoke(
        main, ["demo", "--config", str(project_dir / "config.yaml"), *args], env=env
    )
    assert result.exit_code == code
    assert message in " ".join(result.output.split())
