"""The demo shop: Nakshi Ghor, a small Bangladeshi shop whose data gives every campaign work.

`plan_demo(now, customers)` describes the shop as plain data, the same for the
same arguments; `seed_demo(session, now=…)` writes what of it is missing
through `engine.intake.shop` and returns a `DemoSummary`. Records have fixed ids and
random choices come from a `random.Random` seeded per customer, so seeding
twice changes nothing the second time.

Every time is relative to `now`, so each campaign is due whenever the demo is
seeded: first orders in the last hour (welcome), orders delivered a few hours
ago (thank_you), regular customers and a flash sale two days ahead
(holiday_preannounce), and undelivered orders whose product then got cheaper
(price_drop_refund). Each scenario's customers are spread over Dhaka and the
diaspora (Sydney, London, New York, Kuala Lumpur, Los Angeles, Dubai), so at any
hour at least two of them are inside the 09:00–20:00 send window of their own
clock; the others wait for theirs, as the shop's customers would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from ..intake import shop
from ..store import (
    Checkpoint,
    Customer,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    ShopHoliday,
    SurveyAnswer,
)
from .customers import DEFAULT_CUSTOMERS, CustomerSeed, OrderSeed, plan_demo
from .tables import CATALOGUE_AGE, PRICE_DROPS, PRODUCTS, SHOP_TIMEZONE

CHECKPOINT = "demo_seeded_at"

FLASH_SALE_ID = "flash_sale"
FLASH_SALE_NAME = "Nakshi Ghor flash sale"
FLASH_SALE_NAME_BN = "নকশি ঘরের ফ্ল্যাশ সেল"
# The holiday campaign announces 3 days ahead and its email keeps 2 days: a sale
# two days after today (in Dhaka) was announced yesterday and is still ahead.
FLASH_SALE_DAYS_AHEAD = 2


@dataclass
class DemoSummary:
    """What the database holds after seeding, and what this run added."""

    now: datetime
    seeded_at: datetime
    created: dict[str, int] = field(default_factory=dict)
    customers: int = 0
    products: int = 0
    orders: int = 0
    first_orders_last_hour: int = 0
    delivered_hours_ago: int = 0
    price_drop_items: int = 0
    regulars: int = 0
    vip: int = 0
    lapsed: int = 0
    flash_sale: date | None = None
    survey_answers: int = 0
    nps: int | None = None

    def lines(self) -> list[str]:
        """The summary as short lines for the terminal."""
        added = ", ".join(f"{n} {what}" for what, n in self.created.items()) or "nothing"
        drops = ", ".join(f"{d.sku} {d.before} → {d.after}" for d in PRICE_DROPS)
        out = [
            f"Nakshi Ghor demo shop at {self.now:%Y-%m-%d %H:%M} UTC: added {added}",
            f"  {self.customers} customers, {self.products} products, {self.orders} orders",
            f"  welcome: {self.first_orders_last_hour} first orders placed in the last hour",
            f"  thank_you: {self.delivered_hours_ago} orders delivered 2 to 24 hours ago",
            f"  holiday_preannounce: {FLASH_SALE_NAME} on {self.flash_sale}, "
            f"{self.regulars} regulars (3+ orders in 180 days) with consent",
            f"  price_drop_refund: {self.price_drop_items} undelivered order lines "
            f"bought before a lower price ({drops})",
            f"  also: {self.vip} VIP customers (20,000 taka in a year), {self.lapsed} lapsed "
            f"(no order in 120 days), {self.survey_answers} survey answers (NPS {self.nps})",
        ]
        if self.seeded_at != self.now:
            out.append(
                f"  note: the demo was first seeded at {self.seeded_at:%Y-%m-%d %H:%M} UTC and "
                "its recent orders are only recent then; delete the database for fresh ones"
            )
        return out


def flash_sale_day(now: datetime) -> date:
    """The flash sale's date: two days after today in Dhaka."""
    return now.astimezone(ZoneInfo(SHOP_TIMEZONE)).date() + timedelta(days=FLASH_SALE_DAYS_AHEAD)


# ---------------------------------------------------------------- writing


def seed_demo(
    session: Session, *, now: datetime, customers: int = DEFAULT_CUSTOMERS
) -> DemoSummary:
    """Write the demo shop's missing records; the caller commits. Returns the summary.

    Raises DataError for a naive `now` or a customer count out of range.
    """
    plan = plan_demo(now, customers)
    created = {
        "products": _seed_products(session, now),
        "customers": 0,
        "orders": 0,
        "survey answers": 0,
    }
    known_customers = set(session.exec(select(Customer.external_id)))
    known_orders = set(session.exec(select(Order.external_id)))
    for seed in plan:
        if seed.external_id not in known_customers:
            _seed_customer(session, seed)
            created["customers"] += 1
        for order in seed.orders:
            if order.external_id not in known_orders:
                _seed_order(session, seed, order)
                created["orders"] += 1
    _drop_prices(session, now)
    created["survey answers"] = _seed_surveys(session, plan)
    if session.get(ShopHoliday, FLASH_SALE_ID) is None:
        shop.add_holiday(
            session,
            holiday_id=FLASH_SALE_ID,
            day=flash_sale_day(now),
            name=FLASH_SALE_NAME,
            name_bn=FLASH_SALE_NAME_BN,
            now=now,
        )
        created["flash sale"] = 1
    seeded_at = _seeded_at(session, now)
    session.flush()
    return summarize(session, now, seeded_at, {k: v for k, v in created.items() if v})


def _seed_products(session: Session, now: datetime) -> int:
    known = set(session.exec(select(Product.sku)))
    for product in PRODUCTS:
        if product.sku not in known:
            shop.upsert_product(
                session,
                sku=product.sku,
                name=product.name,
                name_bn=product.name_bn,
                category=product.category,
                price=product.price,
                stock=product.stock,
                now=now - CATALOGUE_AGE,
            )
    return len([p for p in PRODUCTS if p.sku not in known])


def _drop_prices(session: Session, now: datetime) -> None:
    """Lower each dropped product's price once, after the undelivered orders were placed."""
    for drop in PRICE_DROPS:
        product = shop.product_by_sku(session, drop.sku)
        lowered = session.exec(
            select(func.count())
            .select_from(PriceChange)
            .where(col(PriceChange.product_id) == product.id, col(PriceChange.price) == drop.after)
        ).one()
        if not lowered and product.price == drop.before:
            shop.set_price(session, drop.sku, drop.after, now=now - timedelta(hours=drop.hours_ago))


def _seed_customer(session: Session, seed: CustomerSeed) -> None:
    shop.upsert_customer(
        session,
        external_id=seed.external_id,
        email=seed.email,
        name=seed.name,
        locale=seed.locale,
        timezone=seed.timezone,
        city=seed.city,
        birthday=seed.birthday,
        tags=seed.tags,
        marketing_consent=seed.consent,
        consent_source="signup form",
        created_at=seed.created_at,
        now=seed.created_at,
    )


def _seed_order(session: Session, seed: CustomerSeed, order: OrderSeed) -> None:
    shop.record_order(
        session,
        external_id=order.external_id,
        customer_id=seed.external_id,
        items=order.lines,
        placed_at=order.placed_at,
        delivered_at=order.delivered_at,
    )


def _seed_surveys(session: Session, plan: list[CustomerSeed]) -> int:
    answered = set(session.exec(select(SurveyAnswer.customer_id)))
    ids = dict(session.exec(select(Customer.external_id, Customer.id)).all())
    added = 0
    for seed in plan:
        customer_id = ids.get(seed.external_id)
        if seed.survey is None or customer_id is None or customer_id in answered:
            continue
        score, at = seed.survey
        session.add(SurveyAnswer(customer_id=customer_id, score=score, at=at))
        added += 1
    return added


def _seeded_at(session: Session, now: datetime) -> datetime:
    mark = session.get(Checkpoint, CHECKPOINT)
    if mark is None:
        session.add(
            Checkpoint(name=CHECKPOINT, value=now.astimezone(UTC).isoformat(), updated_at=now)
        )
        return now
    return datetime.fromisoformat(mark.value)


# ---------------------------------------------------------------- summary


def summarize(
    session: Session, now: datetime, seeded_at: datetime, created: dict[str, int]
) -> DemoSummary:
    """Count what each campaign will find in the database at `now`."""

    def count(query: SelectOfScalar[int]) -> int:
        return session.exec(query).one()

    counted = col(Order.status) != OrderStatus.CANCELLED
    summary = DemoSummary(now=now, seeded_at=seeded_at, created=created)
    summary.customers = count(select(func.count()).select_from(Customer))
    summary.products = count(select(func.count()).select_from(Product))
    summary.orders = count(select(func.count()).select_from(Order))
    summary.first_orders_last_hour = count(
        select(func.count()).where(col(Customer.first_order_at) >= now - timedelta(hours=1))
    )
    summary.delivered_hours_ago = count(
        select(func.count()).where(
            col(Order.delivered_at) >= now - timedelta(hours=24),
            col(Order.delivered_at) <= now - timedelta(hours=2),
        )
    )
    later_lower = (
        select(PriceChange.id)
        .where(
            col(PriceChange.product_id) == OrderItem.product_id,
            col(PriceChange.changed_at) > Order.placed_at,
            col(PriceChange.changed_at) <= now,
            col(PriceChange.price) < OrderItem.unit_price,
        )
        .exists()
    )
    summary.price_drop_items = count(
        select(func.count())
        .select_from(OrderItem)
        .join(Order, col(Order.id) == OrderItem.order_id)
        .where(col(Order.status) == OrderStatus.PLACED, later_lower)
    )
    recent = (
        select(Order.customer_id)
        .where(counted, col(Order.placed_at) >= now - timedelta(days=180))
        .group_by(col(Order.customer_id))
        .having(func.count() >= 3)
    )
    summary.regulars = count(
        select(func.count()).where(col(Customer.id).in_(recent), col(Customer.marketing_consent))
    )
    big = (
        select(Order.customer_id)
        .where(counted, col(Order.placed_at) >= now - timedelta(days=365))
        .group_by(col(Order.customer_id))
        .having(func.sum(col(Order.total)) >= Decimal("20000"))
    )
    summary.vip = count(select(func.count()).select_from(big.subquery()))
    summary.lapsed = count(
        select(func.count()).where(col(Customer.last_order_at) < now - timedelta(days=120))
    )
    sale = session.get(ShopHoliday, FLASH_SALE_ID)
    summary.flash_sale = sale.date if sale else None
    scores = list(session.exec(select(SurveyAnswer.score)))
    summary.survey_answers = len(scores)
    if scores:
        promoters = sum(1 for s in scores if s >= 9)
        detractors = sum(1 for s in scores if s <= 6)
        summary.nps = round(100 * (promoters - detractors) / len(scores))
    return summary
