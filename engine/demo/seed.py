"""The demo shop: Nakshi Ghor, a small Bangladeshi shop whose data gives every campaign work.

`plan_demo(now, customers)` describes the shop as plain data, the same for the
same arguments; `seed_demo(session, now=…)` writes what of it is missing
through `engine.intake.shop` and returns a `DemoSummary`. Records have fixed ids and
random choices come from a `random.Random` seeded per customer, so seeding
twice changes nothing the second time.

Every time is relative to `now`, so each campaign is due whenever the demo is
seeded: first orders in the last hour (welcome, welcome_series), orders
delivered a few hours ago (thank_you), regular customers and a flash sale two
days ahead (holiday_preannounce), undelivered orders whose product then got
cheaper (price_drop_refund), last orders 90 to 96 days ago (win_back),
birthdays whose 10:00 has come (birthday), tea and food delivered a month ago
(replenish), a sold-out quilt back in stock hours ago for those who asked
(back_in_stock), a product added hours ago in a category customers bought
(new_in_category), customers in their first 90 days (fortnightly_update),
checkouts left 1 to 20 hours ago (abandoned_checkout) and orders delivered a week
ago (survey_after_delivery). Each scenario's customers are spread over Dhaka and the
diaspora (Sydney, London, New York, Kuala Lumpur, Los Angeles, Dubai), so at any
hour at least two of them are inside the 09:00–20:00 send window of their own
clock; the others wait for theirs, as the shop's customers would.
"""

from __future__ import annotations

import calendar
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from ..intake import record_order_referral, shop
from ..plan import mint_referral_codes
from ..store import (
    CASH_ON_DELIVERY,
    Checkout,
    Checkpoint,
    Customer,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    ProductWanted,
    Referral,
    ReferralStatus,
    Restock,
    ShopHoliday,
    SurveyAnswer,
    is_purchase,
)
from .customers import DEFAULT_CUSTOMERS, CustomerSeed, OrderSeed, plan_demo
from .tables import (
    BIRTHDAY_AT,
    CATALOGUE_AGE,
    NEW_PRODUCT,
    NEW_PRODUCT_HOURS_AGO,
    PRICE_DROPS,
    PRODUCTS,
    RESTOCKED_HOURS_AGO,
    RESTOCKED_SKU,
    SHOP_TIMEZONE,
    SOLD_OUT_DAYS,
    Role,
)

CHECKPOINT = "demo_seeded_at"

FLASH_SALE_ID = "flash_sale"
FLASH_SALE_NAME = "Nakshi Ghor flash sale"
FLASH_SALE_NAME_BN = "নকশি ঘরের ফ্ল্যাশ সেল"
# The holiday campaign announces 3 days ahead and its email keeps 2 days: a sale
# two days after today (in Dhaka) was announced yesterday and is still ahead.
FLASH_SALE_DAYS_AHEAD = 2
# The demo courier's tracking pages (an example address: nothing answers there).
COURIER_TRACKING = "https://courier.example.com/track/"


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
    shipped_cod: int = 0
    refused: int = 0
    regulars: int = 0
    vip: int = 0
    lapsed: int = 0
    lapsing: int = 0
    birthdays: int = 0
    wanted: int = 0
    new_product_buyers: int = 0
    first_90_days: int = 0
    open_checkouts: int = 0
    replenish_orders: int = 0
    ladder_orders: int = 0
    survey_orders: int = 0
    flash_sale: date | None = None
    survey_answers: int = 0
    nps: int | None = None
    referred_orders: int = 0
    club_moves: int = 0

    def lines(self) -> list[str]:
        """The summary as short lines for the terminal."""
        added = ", ".join(f"{n} {what}" for what, n in self.created.items()) or "nothing"
        drops = ", ".join(f"{d.sku} {d.before} → {d.after}" for d in PRICE_DROPS)
        out = [
            f"Nakshi Ghor demo shop at {self.now:%Y-%m-%d %H:%M} UTC: added {added}",
            f"  {self.customers} customers, {self.products} products, {self.orders} orders",
            f"  welcome, welcome_series: {self.first_orders_last_hour} first orders placed in the "
            "last hour",
            f"  thank_you: {self.delivered_hours_ago} orders delivered 2 to 24 hours ago",
            f"  holiday_preannounce: {FLASH_SALE_NAME} on {self.flash_sale}, "
            f"{self.regulars} regulars (3+ orders in 180 days) with consent",
            f"  price_drop_refund: {self.price_drop_items} undelivered order lines "
            f"bought before a lower price ({drops})",
            f"  order_shipped: {self.shipped_cod} cash on delivery orders handed to the courier "
            "in the last hour (keep the total ready)",
            f"  order_returned: {self.refused} cash on delivery orders refused at the door 1 to 3 "
            "days ago (a polite follow-up a day after)",
            f"  win_back: {self.lapsing} customers whose last order was 90 to 97 days ago",
            f"  birthday: {self.birthdays} customers whose birthday wishes are due "
            "(10:00 on their clock, kept two days)",
            f"  replenish: {self.replenish_orders} orders of tea or food delivered 30 to 33 days ago",
            f"  back_in_stock: {RESTOCKED_SKU} back {RESTOCKED_HOURS_AGO} hours ago, "
            f"asked for by {self.wanted} customers",
            f"  new_in_category: {NEW_PRODUCT.sku} added {NEW_PRODUCT_HOURS_AGO} hours ago, "
            f"{self.new_product_buyers} customers bought in {NEW_PRODUCT.category}",
            f"  fortnightly_update: {self.first_90_days} customers 10 to 90 days after their "
            "first order",
            f"  abandoned_checkout: {self.open_checkouts} checkouts left 1 to 25 hours ago",
            f"  loyalty_ladder: {self.ladder_orders} 2nd to 4th orders delivered 2 to 5 days ago "
            "(a coupon sized by the order number)",
            f"  survey_after_delivery: {self.survey_orders} orders delivered 7 to 10 days ago "
            "(asked how likely they are to recommend us)",
            f"  tier_changed: {self.club_moves} customers placed their 2nd order in a year in the "
            "last 3 days, since the Nakshi Club began (silver)",
            f"  referral_reward: {self.referred_orders} friends' first orders carried a referral "
            "code and were delivered (each referrer earns 100 taka of credit)",
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
        "wanted products": 0,
        "checkouts": 0,
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
        if seed.wants is not None:
            sku, asked = seed.wants
            added = shop.want_product(session, customer_id=seed.external_id, sku=sku, at=asked)
            created["wanted products"] += added
        created["checkouts"] += _seed_checkout(session, seed)
    _drop_prices(session, now)
    created["shipped"] = _ship_recent(session, now)
    created["restocks"] = _restock(session, now)
    created["survey answers"] = _seed_surveys(session, plan)
    created["referrals"] = _seed_referrals(session, plan)
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
    new = NEW_PRODUCT
    if new.sku not in known:
        shop.upsert_product(
            session,
            sku=new.sku,
            name=new.name,
            name_bn=new.name_bn,
            category=new.category,
            price=new.price,
            stock=new.stock,
            now=now - timedelta(hours=NEW_PRODUCT_HOURS_AGO),
        )
    return len([p for p in (*PRODUCTS, new) if p.sku not in known])


def _restock(session: Session, now: datetime) -> int:
    """The quilt sold out SOLD_OUT_DAYS ago and came back RESTOCKED_HOURS_AGO hours ago, once."""
    product = shop.product_by_sku(session, RESTOCKED_SKU)
    done = session.exec(select(Restock.id).where(col(Restock.product_id) == product.id)).first()
    if done is not None:
        return 0
    stock = product.stock
    shop.set_stock(session, product, 0, at=now - timedelta(days=SOLD_OUT_DAYS))
    shop.set_stock(session, product, stock, at=now - timedelta(hours=RESTOCKED_HOURS_AGO))
    session.flush()
    return 1


def _seed_checkout(session: Session, seed: CustomerSeed) -> int:
    cart = seed.checkout
    if (
        cart is None
        or session.exec(select(Checkout.id).where(col(Checkout.cart_id) == cart.cart_id)).first()
    ):
        return 0
    shop.start_checkout(
        session,
        cart_id=cart.cart_id,
        customer_id=seed.external_id,
        items=[shop.CartLine(line.sku, line.quantity, line.unit_price) for line in cart.lines],
        amount=cart.amount,
        started_at=cart.started_at,
        now=cart.started_at,
    )
    return 1


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
        payment="cod" if order.refused_at else _payment(order.external_id),
    )
    if order.refused_at is not None:  # shipped half way to the refusal, refused at the door
        shipped = order.placed_at + (order.refused_at - order.placed_at) / 2
        shop.set_order_status(session, order.external_id, OrderStatus.SHIPPED, at=shipped)
        shop.set_order_status(session, order.external_id, OrderStatus.REFUSED, at=order.refused_at)


def _payment(order_id: str) -> str:
    """Three orders in four are paid at the door, the rest by bKash (as the shop's are)."""
    return "bkash" if zlib.crc32(order_id.encode()) % 4 == 0 else "cod"


def _ship_recent(session: Session, now: datetime) -> int:
    """Cash on delivery orders placed one to three days ago and not delivered go to the
    courier an hour ago, with a tracking page: the shipping emails of the demo."""
    waiting = session.exec(
        select(Order.external_id).where(
            col(Order.status).in_((OrderStatus.PLACED, OrderStatus.CONFIRMED)),
            col(Order.payment_method) == CASH_ON_DELIVERY,
            col(Order.placed_at) >= now - timedelta(days=3),
            col(Order.placed_at) <= now - timedelta(days=1),
        )
    ).all()
    for number in waiting:
        shop.set_order_status(
            session,
            number,
            OrderStatus.SHIPPED,
            at=now - timedelta(hours=1),
            tracking=f"{COURIER_TRACKING}{number}",
        )
    return len(waiting)


def _seed_referrals(session: Session, plan: list[CustomerSeed]) -> int:
    """Each friend's first order carries the referral code of the referrer of the same
    place in their scenarios (codes minted for every customer, as the planner would)."""
    referrers = [seed for seed in plan if seed.role is Role.REFERRER]
    friends = [seed for seed in plan if seed.role is Role.FRIEND]
    mint_referral_codes(session.connection())
    recorded = 0
    for referrer, friend in zip(referrers, friends, strict=True):
        code = session.exec(
            select(Customer.referral_code).where(Customer.external_id == referrer.external_id)
        ).one()
        first = friend.orders[0]
        record = record_order_referral(
            session, code, first.external_id, now=first.placed_at, source="demo"
        )
        recorded += record is not None and not record.repeat
    return recorded


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

    counted = is_purchase(col(Order.status))
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
        .where(col(Order.delivered_at).is_(None), counted, later_lower)
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
    summary.refused = count(
        select(func.count()).where(
            col(Order.status).in_((OrderStatus.REFUSED, OrderStatus.RETURNED)),
            col(Order.returned_at) > now - timedelta(days=4),
        )
    )
    summary.shipped_cod = count(
        select(func.count()).where(
            col(Order.status) == OrderStatus.SHIPPED,
            col(Order.payment_method) == CASH_ON_DELIVERY,
            col(Order.shipped_at) >= now - timedelta(hours=1),
        )
    )
    summary.lapsed = count(
        select(func.count()).where(col(Customer.last_order_at) < now - timedelta(days=120))
    )
    summary.lapsing = count(
        select(func.count()).where(
            col(Customer.last_order_at) <= now - timedelta(days=90),
            col(Customer.last_order_at) > now - timedelta(days=97),
        )
    )
    summary.birthdays = _birthdays_due(session, now)
    summary.wanted = count(
        select(func.count())
        .select_from(ProductWanted)
        .join(Product, col(Product.id) == ProductWanted.product_id)
        .where(col(Product.sku) == RESTOCKED_SKU)
    )
    home_buyers = (
        select(Order.customer_id)
        .join(OrderItem, col(OrderItem.order_id) == Order.id)
        .join(Product, col(Product.id) == OrderItem.product_id)
        .where(counted, col(Product.category) == NEW_PRODUCT.category)
        .distinct()
    )
    summary.new_product_buyers = count(select(func.count()).select_from(home_buyers.subquery()))
    summary.first_90_days = count(
        select(func.count()).where(
            col(Customer.first_order_at) > now - timedelta(days=90),
            col(Customer.first_order_at) <= now - timedelta(days=10),
        )
    )
    summary.open_checkouts = count(
        select(func.count()).where(
            col(Checkout.order_id).is_(None),
            col(Checkout.started_at) > now - timedelta(hours=25),
            col(Checkout.started_at) <= now - timedelta(hours=1),
        )
    )
    pantry = (
        select(Order.id)
        .join(OrderItem, col(OrderItem.order_id) == Order.id)
        .join(Product, col(Product.id) == OrderItem.product_id)
        .where(
            counted,
            col(Product.category).in_(("tea", "food")),
            col(Order.delivered_at) <= now - timedelta(days=30),
            col(Order.delivered_at) > now - timedelta(days=33),
        )
        .distinct()
    )
    summary.replenish_orders = count(select(func.count()).select_from(pantry.subquery()))
    summary.ladder_orders = _ladder_orders(session, now)
    summary.survey_orders = count(
        select(func.count()).where(
            counted,
            col(Order.delivered_at) <= now - timedelta(days=7),
            col(Order.delivered_at) > now - timedelta(days=10),
        )
    )
    second = (
        select(Order.customer_id)
        .where(counted, col(Order.placed_at) >= now - timedelta(days=365))
        .group_by(col(Order.customer_id))
        .having(func.count() == 2, func.max(Order.placed_at) > now - timedelta(days=3))
    )
    summary.club_moves = count(select(func.count()).select_from(second.subquery()))
    summary.referred_orders = count(
        select(func.count())
        .select_from(Referral)
        .join(Order, col(Order.id) == Referral.order_id)
        .where(col(Referral.status) != ReferralStatus.REFUSED, col(Order.delivered_at).is_not(None))
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


def _ladder_orders(session: Session, now: datetime) -> int:
    """Orders delivered 2 to 5 days ago that are a customer's 2nd, 3rd or 4th."""
    rank = (
        func.row_number()
        .over(partition_by=col(Order.customer_id), order_by=(col(Order.placed_at), col(Order.id)))
        .label("n")
    )
    numbered = (
        select(col(Order.delivered_at), rank).where(is_purchase(col(Order.status))).subquery()
    )
    query = select(func.count()).where(
        numbered.c.n.between(2, 4),
        numbered.c.delivered_at <= now - timedelta(days=2),
        numbered.c.delivered_at > now - timedelta(days=5),
    )
    return int(session.exec(query).one())


def _birthdays_due(session: Session, now: datetime) -> int:
    """Customers whose birthday's 10:00 on their own clock was within the last two days."""
    due = 0
    rows = session.execute(
        select(col(Customer.birthday), col(Customer.timezone)).where(
            col(Customer.birthday).is_not(None)
        )
    )
    for birthday, timezone in rows:
        local = now.astimezone(ZoneInfo(timezone or SHOP_TIMEZONE))
        latest = local.date() - timedelta(days=0 if local.time() >= BIRTHDAY_AT else 1)
        days = (latest, latest - timedelta(days=1))
        due += any(_yearly(birthday, day.year) == day for day in days)
    return due


def _yearly(birthday: date, year: int) -> date:
    """The birthday in `year`: 29 February falls on 28 February in other years."""
    if (birthday.month, birthday.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)
