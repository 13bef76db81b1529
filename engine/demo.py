"""The demo shop: Nakshi Ghor, a small Bangladeshi shop whose data gives every campaign work.

`plan_demo(now, customers)` describes the shop as plain data, the same for the
same arguments; `seed_demo(session, now=…)` writes what of it is missing
through `engine.shop` and returns a `DemoSummary`. Records have fixed ids and
random choices come from a `random.Random` seeded per customer, so seeding
twice changes nothing the second time.

Every time is relative to `now`, so each campaign is due whenever the demo is
seeded: first orders in the last hour (welcome), orders delivered a few hours
ago (thank_you), regular customers and a flash sale two days ahead
(holiday_preannounce), and undelivered orders whose product then got cheaper
(price_drop_refund). Each scenario's customers are spread over Dhaka, Dubai,
London, New York, Toronto and Sydney, so some of them are inside the 09:00–20:00
send window of their own clock at any hour of the day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from . import shop
from .errors import DataError
from .models import (
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

SEED = "nakshi-ghor-demo"
SHOP_TIMEZONE = "Asia/Dhaka"
DEFAULT_CUSTOMERS = 300
MAX_CUSTOMERS = 20_000
CHECKPOINT = "demo_seeded_at"

FLASH_SALE_ID = "flash_sale"
FLASH_SALE_NAME = "Nakshi Ghor flash sale"
FLASH_SALE_NAME_BN = "নকশি ঘরের ফ্ল্যাশ সেল"
# The holiday campaign announces 3 days ahead and its email keeps 2 days: a sale
# two days after today (in Dhaka) was announced yesterday and is still ahead.
FLASH_SALE_DAYS_AHEAD = 2

CITIES: dict[str, str] = {
    "Dhaka": "Asia/Dhaka",
    "Chattogram": "Asia/Dhaka",
    "Sylhet": "Asia/Dhaka",
    "Rajshahi": "Asia/Dhaka",
    "Khulna": "Asia/Dhaka",
    "London": "Europe/London",
    "New York": "America/New_York",
    "Dubai": "Asia/Dubai",
    "Toronto": "America/Toronto",
    "Sydney": "Australia/Sydney",
}
HOME_CITIES = (
    "Dhaka",
    "Dhaka",
    "Dhaka",
    "Chattogram",
    "Chattogram",
    "Sylhet",
    "Rajshahi",
    "Khulna",
)
DIASPORA_CITIES = ("London", "London", "New York", "Dubai", "Dubai", "Toronto", "Sydney")
# A scenario's customers take these cities in turn. Between them the windows
# cover every hour: Sydney alone is inside 09:00–20:00 from 01:00 to 03:00 UTC.
SPREAD = ("Dhaka", "Sydney", "London", "New York", "Dubai", "Toronto", "Chattogram")


@dataclass(frozen=True)
class ProductSeed:
    sku: str
    name: str
    name_bn: str
    category: str
    price: Decimal
    stock: int


def _product(
    sku: str, name: str, name_bn: str, category: str, price: str, stock: int
) -> ProductSeed:
    return ProductSeed(sku, name, name_bn, category, Decimal(price), stock)


PRODUCTS = (
    _product("JUTE-BAG-01", "Jute tote bag", "পাটের টোট ব্যাগ", "bags", "450.00", 120),
    _product("JUTE-BAG-02", "Large jute shopping bag", "বড় পাটের বাজারের ব্যাগ", "bags", "650.00", 80),
    _product("TEA-500G", "Sylhet black tea, 500 g", "সিলেটের কালো চা, ৫০০ গ্রাম", "tea", "380.00", 200),
    _product(
        "TEA-GREEN-250G",
        "Srimangal green tea, 250 g",
        "শ্রীমঙ্গলের সবুজ চা, ২৫০ গ্রাম",
        "tea",
        "320.00",
        150,
    ),
    _product("SARI-JAM-01", "Dhakai Jamdani sari", "ঢাকাই জামদানি শাড়ি", "saris", "12500.00", 8),
    _product("SARI-TANT-01", "Tangail tant sari", "টাঙ্গাইলের তাঁতের শাড়ি", "saris", "3200.00", 25),
    _product("KANTHA-01", "Nakshi kantha quilt", "নকশি কাঁথা", "kantha", "6800.00", 10),
    _product("GAMCHA-01", "Handloom cotton gamcha", "তাঁতের সুতি গামছা", "textiles", "180.00", 300),
    _product("POT-SET-01", "Terracotta pottery set", "পোড়ামাটির বাসনের সেট", "pottery", "950.00", 40),
    _product("HONEY-500G", "Sundarbans honey, 500 g", "সুন্দরবনের মধু, ৫০০ গ্রাম", "food", "350.00", 90),
    _product("OIL-500ML", "Mustard oil, 500 ml", "সরিষার তেল, ৫০০ মিলি", "food", "120.00", 160),
    _product("GUR-1KG", "Date palm molasses, 1 kg", "খেজুরের গুড়, ১ কেজি", "food", "480.00", 60),
    _product("PATI-01", "Shital pati mat", "শীতল পাটি", "home", "1500.00", 15),
)
PRICES = {p.sku: p.price for p in PRODUCTS}


@dataclass(frozen=True)
class PriceDrop:
    """A product that got cheaper `hours_ago` hours before now."""

    sku: str
    before: Decimal
    after: Decimal
    hours_ago: int


# 350 → 336 is the 14-taka story; 120.00 → 119.86 shows a refund of 14 paisa is kept.
PRICE_DROPS = (
    PriceDrop("HONEY-500G", Decimal("350.00"), Decimal("336.00"), hours_ago=20),
    PriceDrop("OIL-500ML", Decimal("120.00"), Decimal("119.86"), hours_ago=14),
)
DROPPED = {d.sku for d in PRICE_DROPS}
# The catalogue's first prices date from before the oldest order.
CATALOGUE_AGE = timedelta(days=800)


class Role(StrEnum):
    WELCOME = "welcome"  # first order in the last hour
    THANK_YOU = "thank_you"  # an order delivered a few hours ago
    PRICE_DROP = "price_drop"  # an undelivered order, then the price fell
    REGULAR = "regular"  # 3+ orders in the last 180 days
    VIP = "vip"  # 20,000 taka or more in the last year
    LAPSED = "lapsed"  # nothing in the last 120 days
    OCCASIONAL = "occasional"  # one or two orders
    BROWSER = "browser"  # signed up, never ordered


# The first customers play these parts, in this order, each spread over SPREAD.
SCENARIOS = (
    (Role.WELCOME, 7),
    (Role.THANK_YOU, 7),
    (Role.PRICE_DROP, 7),
    (Role.REGULAR, 7),
    (Role.VIP, 4),
    (Role.LAPSED, 4),
)
MIN_CUSTOMERS = sum(n for _, n in SCENARIOS)
# Everyone after them gets a role by chance.
POPULATION = (
    (Role.OCCASIONAL, 35),
    (Role.REGULAR, 22),
    (Role.LAPSED, 20),
    (Role.BROWSER, 17),
    (Role.VIP, 6),
)

_F = "female"
_M = "male"
# (Bengali, Latin) given names and the family names that go with them.
GIVEN = {
    _F: (
        ("ফারজানা", "Farzana"),
        ("নুসরাত", "Nusrat"),
        ("তাসলিমা", "Taslima"),
        ("সাবরিনা", "Sabrina"),
        ("রুমানা", "Rumana"),
        ("শারমিন", "Sharmin"),
        ("আয়েশা", "Ayesha"),
        ("সুমাইয়া", "Sumaiya"),
        ("তানিয়া", "Tania"),
        ("মিতু", "Mitu"),
    ),
    _M: (
        ("রহিম", "Rahim"),
        ("তানভীর", "Tanvir"),
        ("করিম", "Karim"),
        ("আরিফ", "Arif"),
        ("সাকিব", "Sakib"),
        ("মাহমুদ", "Mahmud"),
        ("ইমরান", "Imran"),
        ("রাকিব", "Rakib"),
        ("জাহিদ", "Zahid"),
        ("সুমন", "Sumon"),
    ),
}
FAMILY = {
    _F: (
        ("আক্তার", "Akter"),
        ("জাহান", "Jahan"),
        ("খাতুন", "Khatun"),
        ("বেগম", "Begum"),
        ("ইসলাম", "Islam"),
        ("রহমান", "Rahman"),
        ("চৌধুরী", "Chowdhury"),
    ),
    _M: (
        ("উদ্দিন", "Uddin"),
        ("হাসান", "Hasan"),
        ("ইসলাম", "Islam"),
        ("রহমান", "Rahman"),
        ("চৌধুরী", "Chowdhury"),
        ("হোসেন", "Hossain"),
        ("আহমেদ", "Ahmed"),
    ),
}
# The first customers, as the shop's owner would name them in a demo.
FEATURED = (
    ("রহিম উদ্দিন", "Rahim Uddin", "bn_BD"),
    ("Farzana Akter", "Farzana Akter", "en"),
    ("Tanvir Hasan", "Tanvir Hasan", "en"),
    ("নুসরাত জাহান", "Nusrat Jahan", "bn_BD"),
)
TAGS = ("facebook", "instagram", "referral", "gift-buyer", "wholesale", "kantha-lover", "tea-club")
DOMAINS = ("example.com", "example.net", "example.org")
# Survey scores lean happy, as a small shop's regulars do.
SCORES = (0, 2, 4, 5, 6, 6, 7, 7, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 10)


@dataclass(frozen=True)
class OrderSeed:
    external_id: str
    placed_at: datetime
    delivered_at: datetime | None
    lines: tuple[shop.Line, ...]


@dataclass(frozen=True)
class CustomerSeed:
    external_id: str
    role: Role
    email: str
    name: str
    locale: str
    city: str
    timezone: str
    birthday: date | None
    tags: tuple[str, ...]
    consent: bool
    created_at: datetime
    orders: tuple[OrderSeed, ...] = ()
    survey: tuple[int, datetime] | None = None


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


def plan_demo(now: datetime, customers: int = DEFAULT_CUSTOMERS) -> list[CustomerSeed]:
    """The demo's customers with their orders, as data; the same for the same arguments."""
    _check_arguments(now, customers)
    roles = [role for role, n in SCENARIOS for _ in range(n)]
    return [
        _customer(i, roles[i - 1] if i <= len(roles) else None, now)
        for i in range(1, customers + 1)
    ]


def _check_arguments(now: datetime, customers: int) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise DataError(f"now must be a timezone-aware datetime, got: {now!r}")
    if isinstance(customers, bool) or not isinstance(customers, int):
        raise DataError(f"customers must be a whole number, got: {customers!r}")
    if not MIN_CUSTOMERS <= customers <= MAX_CUSTOMERS:
        raise DataError(
            f"the demo needs between {MIN_CUSTOMERS} and {MAX_CUSTOMERS} customers "
            f"to set up every scenario, got: {customers}"
        )


def _customer(index: int, scenario: Role | None, now: datetime) -> CustomerSeed:
    rng = random.Random(f"{SEED}:{index}")
    if scenario is not None:
        role = scenario
        position = index - 1 - sum(n for r, n in SCENARIOS[: _scenario_number(role)])
        city = SPREAD[position % len(SPREAD)]
    else:
        role = rng.choices([r for r, _ in POPULATION], [w for _, w in POPULATION])[0]
        city = rng.choice(HOME_CITIES if rng.random() < 0.75 else DIASPORA_CITIES)
    home = CITIES[city] == SHOP_TIMEZONE
    locale = "bn_BD" if rng.random() < (0.92 if home else 0.45) else "en"
    if index <= len(FEATURED):
        locale = FEATURED[index - 1][2]
    name, latin = _name(rng, index, locale)
    external_id = f"NG-C{index:05d}"
    orders = _orders(rng, role, index, now)
    first = orders[0].placed_at if orders else now - timedelta(days=rng.randint(1, 400))
    created_at = first - timedelta(minutes=rng.randint(3, 60 * 24 * 30))
    if role is Role.WELCOME:
        created_at = first - timedelta(minutes=rng.randint(2, 20))
    consent = _consent(rng, role, scenario is not None, index)
    return CustomerSeed(
        external_id=external_id,
        role=role,
        email=f"{latin.lower().replace(' ', '.')}.{index}@{rng.choice(DOMAINS)}",
        name=name,
        locale=locale,
        city=city,
        timezone=CITIES[city],
        birthday=_birthday(rng),
        tags=tuple(sorted(rng.sample(TAGS, k=rng.choice((0, 0, 1, 1, 2))))),
        consent=consent,
        created_at=created_at,
        orders=orders,
        survey=_survey(rng, orders, now),
    )


def _scenario_number(role: Role) -> int:
    return next(i for i, (r, _) in enumerate(SCENARIOS) if r is role)


def _consent(rng: random.Random, role: Role, scenario: bool, index: int) -> bool:
    if role is Role.PRICE_DROP:
        # The refund notice is transactional: some of these buyers never opted in.
        return index % 3 != 0
    if scenario:
        return True
    return rng.random() < 0.85


def _name(rng: random.Random, index: int, locale: str) -> tuple[str, str]:
    if index <= len(FEATURED):
        shown, latin, _ = FEATURED[index - 1]
        return shown, latin
    gender = rng.choice((_F, _M))
    given_bn, given_en = rng.choice(GIVEN[gender])
    family_bn, family_en = rng.choice(FAMILY[gender])
    latin = f"{given_en} {family_en}"
    bengali_script = locale == "bn_BD" and rng.random() < 0.8
    return (f"{given_bn} {family_bn}" if bengali_script else latin), latin


def _birthday(rng: random.Random) -> date | None:
    if rng.random() < 0.1:
        return None
    return date(rng.randint(1962, 2004), rng.randint(1, 12), rng.randint(1, 28))


def _orders(rng: random.Random, role: Role, index: int, now: datetime) -> tuple[OrderSeed, ...]:
    """Past orders (all delivered, none in the last 10 days) plus the scenario's recent one."""
    past: list[tuple[datetime, tuple[shop.Line, ...]]] = []
    recent: list[tuple[datetime, datetime | None, tuple[shop.Line, ...]]] = []
    if role is Role.WELCOME:
        placed = now - timedelta(minutes=12 + (index * 7) % 44)
        recent.append((placed, None, _basket(rng, avoid=DROPPED)))
    elif role is Role.THANK_YOU:
        past += _past(rng, now, rng.randint(1, 3), 10, 300)
        delivered = now - timedelta(minutes=135 + (index * 37) % 225)
        placed = delivered - timedelta(hours=rng.randint(20, 60))
        recent.append((placed, delivered, _basket(rng, avoid=DROPPED)))
    elif role is Role.PRICE_DROP:
        past += _past(rng, now, rng.randint(1, 2), 10, 300)
        placed = now - timedelta(hours=26 + index % 20, minutes=rng.randint(0, 59))
        recent.append((placed, None, _dropped_lines(index)))
    elif role is Role.REGULAR:
        past += _past(rng, now, rng.randint(3, 6), 10, 170)
        past += _past(rng, now, rng.randint(0, 3), 190, 700)
    elif role is Role.VIP:
        past += [
            (at, (shop.Line("SARI-JAM-01", 1, PRICES["SARI-JAM-01"]), *lines))
            for at, lines in _past(rng, now, 2, 10, 330)
        ]
        past += _past(rng, now, rng.randint(2, 5), 10, 330, expensive=True)
    elif role is Role.LAPSED:
        past += _past(rng, now, rng.randint(1, 4), 130, 700)
    elif role is Role.OCCASIONAL:
        past += _past(rng, now, rng.randint(1, 2), 10, 400)
    timeline = sorted(
        [(at, at + timedelta(hours=rng.randint(20, 120)), lines) for at, lines in past] + recent,
        key=lambda order: order[0],
    )
    return tuple(
        OrderSeed(f"NG-{index:05d}-{n:02d}", placed, delivered, lines)
        for n, (placed, delivered, lines) in enumerate(timeline, start=1)
    )


def _past(
    rng: random.Random,
    now: datetime,
    count: int,
    newest: int,
    oldest: int,
    *,
    expensive: bool = False,
) -> list[tuple[datetime, tuple[shop.Line, ...]]]:
    """`count` orders placed between `newest` and `oldest` days ago."""
    return [
        (
            now - timedelta(minutes=rng.randint(newest * 1440, oldest * 1440)),
            _basket(rng, expensive=expensive),
        )
        for _ in range(count)
    ]


def _basket(
    rng: random.Random, *, avoid: set[str] | frozenset[str] = frozenset(), expensive: bool = False
) -> tuple[shop.Line, ...]:
    everyday = [p for p in PRODUCTS if p.price < 1000 and p.sku not in avoid]
    pool = [p for p in PRODUCTS if p.sku not in avoid] if expensive else everyday
    chosen = rng.sample(pool, k=rng.randint(1, 3))
    return tuple(
        shop.Line(p.sku, rng.randint(1, 3) if p.price < 1000 else 1, p.price)
        for p in sorted(chosen, key=lambda p: p.sku)
    )


def _dropped_lines(index: int) -> tuple[shop.Line, ...]:
    honey = shop.Line("HONEY-500G", 2, PRICES["HONEY-500G"])
    oil = shop.Line("OIL-500ML", 1, PRICES["OIL-500ML"])
    gamcha = shop.Line("GAMCHA-01", 2, PRICES["GAMCHA-01"])
    return ((honey,), (oil, gamcha), (honey, oil))[index % 3]


def _survey(
    rng: random.Random, orders: tuple[OrderSeed, ...], now: datetime
) -> tuple[int, datetime] | None:
    delivered = [o.delivered_at for o in orders if o.delivered_at is not None]
    if not delivered or rng.random() >= 0.25:
        return None
    at = max(delivered) + timedelta(hours=rng.randint(6, 72))
    return rng.choice(SCORES), min(at, now)


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
