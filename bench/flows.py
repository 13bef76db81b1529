"""Benchmark the triggers of a shop's year on a big shop: 1,000,000 customers, 3,000,000 orders.

    .venv/bin/python bench/flows.py                     # SQLite in a temp dir
    .venv/bin/python bench/flows.py --customers 100000  # a quick run
    .venv/bin/python bench/flows.py --url postgresql://postgres@127.0.0.1:5432/bench_flows

`bench/plan.py` times the four triggers the engine was founded on; this times
the nine that came with flows (inactive, date, nth_order, after_purchase,
product_added, back_in_stock, schedule, broadcast, checkout_abandoned) and the
store-credit reminder (credit_unused). The
shop is built so that every one of them has work at the moment planned
(`DUE`, noon in Dhaka on a fortnightly day): birthdays over the whole year,
last orders 90 days back, 2nd to 4th orders in the last days, tea and pantry
deliveries a month back, a new sari, restocks of products customers asked
for, checkouts left unfinished, customers in their first 90 days, a broadcast,
store credit granted over the last 120 days to 3 % of the customers (some of it
expiring, some of it spent).

For each trigger, its campaign alone: the due pass (the campaign's first, a
full pass over its whole lookback, which queues), the idle pass a minute later
and a full re-scan at the next `FULL_RESCAN` (nothing new to queue, the whole
lookback read again). Then every shipped campaign (all of campaigns/) together:
a catch-up pass and an idle pass. Peak memory is the planning process's
`ru_maxrss`. Beside each trigger, the same audience found by a straightforward
ORM loop (a customer at a time, its orders, messages and the rest loaded one
query at a time) over the first `--subset` customers, scaled to the full size;
those loops run in a child process before the passes, so what they find can be
compared with what the planner queues, and their memory is not the planner's.
The shop is built in a child process too, with Core `executemany` in chunks.

The slowest statement of every due pass is recorded; for a pass over its
target (or with `--explain`) its SQL and the database's plan for it are printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import column, event, select, table, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.plan.planner import plan  # noqa: E402
from engine.project.campaigns import Campaign  # noqa: E402
from engine.project.loader import Project, load_project  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.models import (  # noqa: E402
    BroadcastTime,
    Checkout,
    Credit,
    Customer,
    Message,
    MessageKind,
    MessageStatus,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    ProductWanted,
    Restock,
    Suppression,
)

# Noon in Dhaka on Monday 23 November 2026: a fortnightly day (every 14 days from
# 5 January), the birthdays' 10:00 has passed there, the broadcast's too.
DUE = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
D = timedelta(days=1)
CHUNK = 50_000
ZONES = [None] * 90 + ["Asia/Dhaka"] * 5 + ["America/New_York"] * 3 + ["Europe/London"] * 2
SHOP_ZONE = "Asia/Dhaka"
# (category, products): 200 products; saris the most.
CATEGORIES = [("sari", 30), ("quilt", 25), ("jute", 25), ("tea", 20), ("food", 20),
              ("clay", 20), ("home", 20), ("bag", 20), ("jewellery", 20)]  # fmt: skip
PRODUCTS = sum(n for _, n in CATEGORIES)
NEW_PRODUCT = PRODUCTS + 1  # a new sari, added 20 hours before DUE
RESTOCKED = list(range(PRODUCTS - 9, PRODUCTS - 3))  # six products back in the last 30 hours
WANTED_EACH = 1_500  # customers who asked for each restocked product
BROADCAST_AT = "2026-11-23 10:00"

# The bench's own campaigns for the two new triggers no shipped file uses.
BENCH_CAMPAIGNS = {
    "bench_nth_order": {
        "name": "bench_nth_order",
        "description": "The 2nd, 3rd and 4th orders (bench only)",
        "trigger": {"type": "nth_order", "n": [2, 3, 4]},
        "template": "thank_you",
        "subject": "Your order number {{ nth }}",
    },
    "bench_broadcast": {
        "name": "bench_broadcast",
        "description": "A broadcast to everyone, set with lifecycle broadcast (bench only)",
        "trigger": {"type": "broadcast"},
        "template": "fortnightly_update",
        "subject": "News from {{ shop.name }}",
    },
}

# (trigger, campaign) in the order planned.
TRIGGERS = [
    ("date (birthday)", "birthday"),
    ("inactive (90 days)", "win_back"),
    ("nth_order (2, 3, 4)", "bench_nth_order"),
    ("after_purchase (tea, food)", "replenish"),
    ("product_added (buyers)", "new_in_category"),
    ("back_in_stock (wanted)", "back_in_stock"),
    ("checkout_abandoned (1 h)", "abandoned_checkout"),
    ("schedule (14 d)", "fortnightly_update"),
    ("broadcast (everyone)", "bench_broadcast"),
    ("credit_unused (30 d, 14 d)", "credit_reminder"),
]

TARGET_IDLE = 0.5
TARGET_DUE = 15.0
TARGET_MB = 300

tables = {m.__tablename__: m.__table__ for m in (Customer, Order, OrderItem, Product, PriceChange, Message, Suppression, Checkout, Restock, ProductWanted, BroadcastTime, Credit)}  # type: ignore[union-attr]  # fmt: skip


# ---------------------------------------------------------------- the project


def bench_project() -> tuple[Project, list[str]]:
    """The shipped project with the bench's campaigns added; and the shipped campaigns' names."""
    project = load_project(ROOT / "config.yaml")
    shipped = sorted(p.stem for p in (ROOT / "campaigns").glob("*.yaml"))
    extra = {name: Campaign.model_validate(raw) for name, raw in BENCH_CAMPAIGNS.items()}
    return replace(project, campaigns={**project.campaigns, **extra}), shipped


def enabling(project: Project, names: list[str]) -> Project:
    """The project with exactly `names` enabled."""
    return replace(project, config=project.config.model_copy(update={"campaigns": names}))


# ---------------------------------------------------------------- building the shop


def _raw(name: str) -> Any:
    """The table without column types: the loader hands in values already in store format."""
    return table(name, *(column(c.name) for c in tables[name].columns))


class _Store:
    """Values in the store's own format (naive UTC, integer paisa, ISO dates), converted once."""

    def __init__(self, pg: bool):
        self.pg = pg

    def at(self, moment: datetime | None) -> Any:
        if moment is None:
            return None
        naive = moment.astimezone(UTC).replace(tzinfo=None)
        return naive if self.pg else naive.strftime("%Y-%m-%d %H:%M:%S.%f")

    def day(self, value: date | None) -> Any:
        return value if value is None or self.pg else value.isoformat()


def build(url: str, customers: int, seed: int = 7) -> None:
    """Create the schema and load the shop (runs in a child process)."""
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(seed)
    big = [tables[name] for name in ("customer", "orders", "order_item", "message", "checkout")]
    started = time.perf_counter()
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # rows arrive parents first; skip the checks
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        for big_table in big:
            for index in big_table.indexes:
                index.drop(conn)
        store = _Store(engine.dialect.name == "postgresql")
        categories = _load_products(conn, rng)
        counts = _load_customers_and_orders(conn, rng, customers, categories, store)
        counts["message"] = _load_history(conn, rng, customers, store)
        counts["checkout"] += _load_abandoned(conn, rng, customers)
        counts["product_wanted"] = _load_wanted(conn, rng, customers)
        counts["credit"] = _load_credits(conn, rng, customers, store)
        conn.execute(tables["suppression"].insert(), [
            {"email": f"c{i}@example.com", "reason": "bounce", "source": "bench", "created_at": DUE - 9 * D}
            for i in rng.sample(range(1, customers + 1), customers // 200)
        ])  # fmt: skip
        conn.execute(tables["broadcast"].insert(), [
            {"campaign": "bench_broadcast", "local_at": BROADCAST_AT, "created_at": DUE - 2 * D}
        ])  # fmt: skip
        conn.commit()
    loaded = time.perf_counter()
    with engine.begin() as conn:
        for big_table in big:
            for index in big_table.indexes:
                index.create(conn)
        conn.execute(text("ANALYZE"))
    print(
        f"built {counts['customer']:,} customers, {counts['orders']:,} orders, "
        f"{counts['message']:,} past messages, {counts['checkout']:,} checkouts, "
        f"{counts['product_wanted']:,} wishes, {counts['credit']:,} credit entries in "
        f"{loaded - started:.0f} s "
        f"(+{time.perf_counter() - loaded:.0f} s indexes)",
        flush=True,
    )
    engine.dispose()


def _load_products(conn: Any, rng: random.Random) -> list[str]:
    """200 products in nine categories, a new sari, six restocks (and older ones)."""
    categories = [name for name, n in CATEGORIES for _ in range(n)]
    rows = []
    for i, category in enumerate(categories, start=1):
        price = Decimal(rng.randrange(5_000, 300_000)) / 100
        rows.append({"id": i, "sku": f"SKU-{i}", "name": f"Product {i}", "category": category,
                     "price": price, "stock": 40, "updated_at": DUE - 800 * D,
                     "created_at": None if i % 2 else DUE - 800 * D})  # fmt: skip
    rows.append({"id": NEW_PRODUCT, "sku": "SARI-NEW-01", "name": "A new sari", "category": "sari",
                 "price": Decimal("4200.00"), "stock": 30, "updated_at": DUE - 20 * timedelta(hours=1),
                 "created_at": DUE - 20 * timedelta(hours=1)})  # fmt: skip
    conn.execute(tables["product"].insert(), rows)
    conn.execute(tables["price_change"].insert(), [
        {"product_id": r["id"], "price": r["price"], "changed_at": r["updated_at"]} for r in rows
    ])  # fmt: skip
    restocks = [
        {"product_id": rng.randint(1, PRODUCTS), "stock": 20, "at": DUE - rng.randint(3, 700) * D}
        for _ in range(1_000)
    ]
    restocks += [
        {"product_id": p, "stock": 40, "at": DUE - timedelta(hours=2 + 5 * n)}
        for n, p in enumerate(RESTOCKED)
    ]
    conn.execute(tables["restock"].insert(), restocks)
    return categories


def _load_customers_and_orders(
    conn: Any, rng: random.Random, customers: int, categories: list[str], store: _Store
) -> dict[str, int]:
    counts = {"customer": 0, "orders": 0, "checkout": 0}
    buffers: dict[str, list[dict[str, Any]]] = {
        "customer": [], "orders": [], "order_item": [], "checkout": []
    }  # fmt: skip
    catalogue = tables["product"]
    prices = [int(p * 100) for p in conn.execute(select(catalogue.c.price).order_by(catalogue.c.id)).scalars()]  # fmt: skip

    def flush() -> None:
        for name in ("customer", "orders", "order_item"):  # parents first
            if buffers[name]:
                conn.execute(_raw(name).insert(), buffers[name])
                buffers[name] = []
        if buffers["checkout"]:
            conn.execute(tables["checkout"].insert(), buffers["checkout"])
            buffers["checkout"] = []

    order_id = 0
    for cid in range(1, customers + 1):
        placed = sorted(
            DUE - timedelta(seconds=rng.randrange(3600, 730 * 86400))
            for _ in range(rng.randint(1, 5))
        )
        spent, counted = 0, []
        for at in placed:
            order_id += 1
            product = rng.randrange(PRODUCTS)
            quantity = rng.randint(1, 3)
            total = prices[product] * quantity
            cancelled = rng.random() < 0.03
            delivered = at + timedelta(hours=rng.randint(20, 120))
            delivered_at = None if cancelled or delivered > DUE - timedelta(hours=1) else delivered
            status = (
                OrderStatus.CANCELLED
                if cancelled
                else (OrderStatus.DELIVERED if delivered_at else OrderStatus.PLACED)
            )
            # Six in ten orders of the last 60 days came through a checkout the shop reported.
            cart = f"k{order_id}" if at > DUE - 60 * D and rng.random() < 0.6 else None
            buffers["orders"].append({"id": order_id, "external_id": f"o{order_id}", "customer_id": cid,
                                      "placed_at": store.at(at), "delivered_at": store.at(delivered_at),
                                      "status": status.value, "total": total, "cart_id": cart,
                                      "recorded_at": store.at(at)})  # fmt: skip
            buffers["order_item"].append({"id": order_id, "order_id": order_id, "product_id": product + 1,
                                          "quantity": quantity, "unit_price": prices[product]})  # fmt: skip
            if cart is not None:
                buffers["checkout"].append(_checkout(cart, cid, at - timedelta(minutes=rng.randint(2, 40)),
                                                     product + 1, quantity, prices[product],
                                                     order_id if rng.random() < 0.8 else None))  # fmt: skip
            if not cancelled:
                spent += total
                counted.append(at)
        created = placed[0] - timedelta(days=rng.randint(0, 30))
        birthday = None
        if rng.random() < 0.7:
            birthday = date(rng.randint(1950, 2006), 1, 1) + timedelta(days=rng.randrange(365))
        buffers["customer"].append({
            "id": cid, "external_id": f"c{cid}", "email": f"c{cid}@example.com", "name": f"Customer {cid}",
            "locale": "bn_BD" if cid % 3 else "en", "timezone": rng.choice(ZONES),
            "birthday": store.day(birthday),
            "marketing_consent": rng.random() < 0.8, "created_at": store.at(created), "updated_at": store.at(created),
            "first_order_at": store.at(counted[0]) if counted else None,
            "last_order_at": store.at(counted[-1]) if counted else None,
            "orders_count": len(counted), "total_spent": spent,
        })  # fmt: skip
        counts["customer"] += 1
        if len(buffers["orders"]) >= CHUNK or len(buffers["customer"]) >= CHUNK:
            counts["checkout"] += len(buffers["checkout"])
            flush()
    counts["checkout"] += len(buffers["checkout"])
    flush()
    counts["orders"] = order_id
    return counts


def _checkout(
    cart: str,
    cid: int,
    started: datetime,
    product: int,
    quantity: int,
    paisa: int,
    order: int | None,
) -> dict[str, Any]:
    price = Decimal(paisa) / 100
    return {"cart_id": cart, "customer_id": cid, "started_at": started, "amount": price * quantity,
            "items": [{"sku": f"SKU-{product}", "name": f"Product {product}", "quantity": quantity,
                       "unit_price": str(price)}],
            "order_id": order, "recorded_at": started}  # fmt: skip


def _load_abandoned(conn: Any, rng: random.Random, customers: int) -> int:
    """One cart in 25 customers left unfinished over the last 60 days."""
    rows = [
        _checkout(f"a{n}", rng.randint(1, customers), DUE - timedelta(seconds=rng.randrange(60, 60 * 86400)),
                  rng.randint(1, PRODUCTS), 1, 150_000, None)
        for n in range(customers // 25)
    ]  # fmt: skip
    for start in range(0, len(rows), CHUNK):
        conn.execute(tables["checkout"].insert(), rows[start : start + CHUNK])
    return len(rows)


def _load_wanted(conn: Any, rng: random.Random, customers: int) -> int:
    """1,500 customers asked for each restocked product; one in 20 asked for something else."""
    pairs = {(rng.randint(1, customers), p) for p in RESTOCKED for _ in range(WANTED_EACH)}
    pairs |= {(rng.randint(1, customers), rng.randint(1, PRODUCTS)) for _ in range(customers // 20)}
    rows = [
        {"customer_id": c, "product_id": p, "at": DUE - rng.randint(3, 300) * D} for c, p in pairs
    ]
    for start in range(0, len(rows), CHUNK):
        conn.execute(tables["product_wanted"].insert(), rows[start : start + CHUNK])
    return len(rows)


def _load_credits(conn: Any, rng: random.Random, customers: int, store: _Store) -> int:
    """Store credit for 3 % of the customers, granted over the last 120 days (four in ten
    expiring 90 days after), three in ten of them partly or wholly spent since."""
    credits, spends = [], []
    for n, cid in enumerate(rng.sample(range(1, customers + 1), customers * 3 // 100)):
        created = DUE - timedelta(seconds=rng.randrange(86_400, 120 * 86_400))
        expires = created + 90 * D if rng.random() < 0.4 else None
        amount = rng.randrange(1_000, 80_000)  # paisa
        credits.append({"dedupe_key": f"bench:credit:{n}", "customer_id": cid, "amount": amount,
                        "reason": "price drop before delivery", "created_at": store.at(created),
                        "expires_at": store.at(expires)})  # fmt: skip
        spent_at = created + timedelta(seconds=rng.randrange(3_600, 40 * 86_400))
        if rng.random() < 0.3 and spent_at < DUE and (expires is None or spent_at < expires):
            spends.append((n, cid, rng.randrange(100, amount + 1), spent_at, expires))
    for start in range(0, len(credits), CHUNK):
        conn.execute(_raw("credit").insert(), credits[start : start + CHUNK])
    ids = dict(conn.execute(text("SELECT dedupe_key, id FROM credit")).all())
    rows = [{"dedupe_key": f"redemption:bench-{n}:1", "customer_id": cid, "amount": -taken,
             "reason": f"redeemed for order B-{n}", "created_at": store.at(at),
             "expires_at": store.at(expires), "source_id": ids[f"bench:credit:{n}"],
             "order_ref": f"B-{n}"} for n, cid, taken, at, expires in spends]  # fmt: skip
    for start in range(0, len(rows), CHUNK):
        conn.execute(_raw("credit").insert(), rows[start : start + CHUNK])
    return len(credits) + len(rows)


def _load_history(conn: Any, rng: random.Random, customers: int, store: _Store) -> int:
    """Half a million sent messages over the last 60 days (for caps and dedupe look-ups)."""
    total = customers // 2
    for start in range(0, total, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, total)):
            at = store.at(DUE - timedelta(seconds=rng.randrange(60 * 86400)))
            rows.append({"dedupe_key": f"newsletter:{i}", "campaign": "newsletter", "kind": "marketing",
                         "customer_id": rng.randint(1, customers), "occurrence": str(i), "status": "sent",
                         "created_at": at, "send_after": at, "sent_at": at, "attempts": 1})  # fmt: skip
        conn.execute(_raw("message").insert(), rows)
    return total


# ---------------------------------------------------------------- the ORM loops to compare with


@dataclass
class Shopper:
    """One customer as the ORM loop sees it: loaded, with its orders and message keys."""

    session: Session
    customer: Customer
    orders: list[Order]
    keys: set[str]

    @property
    def live(self) -> list[Order]:
        return sorted(
            (o for o in self.orders if o.status != OrderStatus.CANCELLED),
            key=lambda o: (o.placed_at, o.id or 0),
        )

    def new(self, key: str) -> int:
        return int(f"{key}" not in self.keys)

    def ordered_after(self, moment: datetime) -> bool:
        return any(o.placed_at > moment for o in self.live)

    def categories(self, order: Order) -> set[str | None]:
        items = self.session.exec(select(OrderItem).where(col(OrderItem.order_id) == order.id)).scalars()  # type: ignore[call-overload]  # fmt: skip
        return {self.session.get(Product, item.product_id).category for item in items}  # type: ignore[union-attr]


def _zone(c: Customer) -> ZoneInfo:
    return ZoneInfo(c.timezone or SHOP_ZONE)


def _local_due(c: Customer, day: date, hour: int) -> datetime:
    return datetime.combine(day, clock(hour), _zone(c))


def orm_birthday(s: Shopper, now: datetime) -> int:
    c, found = s.customer, 0
    if c.birthday is None:
        return 0
    today = now.astimezone(_zone(c)).date()
    for back in range(4):
        day = today - back * D
        due = _local_due(c, day, 10)
        if now - 2 * D < due <= now and (c.birthday.month, c.birthday.day) == (day.month, day.day):
            found += s.new(f"birthday:{c.id}:birthday-{day.year}")
    return found


def orm_win_back(s: Shopper, now: datetime) -> int:
    live = s.live
    if not live:
        return 0
    last = live[-1].placed_at
    if now - 7 * D < last + 90 * D <= now:
        return s.new(f"win_back:{s.customer.id}:lapse-{last:%Y%m%d%H%M%S}")
    return 0


def orm_nth_order(s: Shopper, now: datetime) -> int:
    live, found = s.live, 0
    for n in (2, 3, 4):
        if len(live) >= n and now - 3 * D < live[n - 1].placed_at <= now:
            found += s.new(f"bench_nth_order:{s.customer.id}:nth-{n}")
    return found


def orm_replenish(s: Shopper, now: datetime) -> int:
    found = 0
    for o in s.live:
        delivered = o.delivered_at
        if delivered is None or not now - 3 * D < delivered + 30 * D <= now:
            continue
        if s.categories(o) & {"tea", "food"} and not s.ordered_after(delivered):
            found += s.new(f"replenish:{s.customer.id}:order-{o.id}")
    return found


def orm_new_in_category(s: Shopper, now: datetime) -> int:
    new = s.session.exec(select(Product).where(col(Product.created_at) > now - 3 * D, col(Product.created_at) <= now, col(Product.stock) > 0)).scalars().all()  # type: ignore[call-overload]  # fmt: skip
    if not new:
        return 0
    bought: set[str | None] = set()
    for o in s.live:
        bought |= s.categories(o)
    return sum(s.new(f"new_in_category:{s.customer.id}:product-{p.id}") for p in new if p.category in bought)  # fmt: skip


def orm_back_in_stock(s: Shopper, now: datetime) -> int:
    found = 0
    wanted = s.session.exec(select(ProductWanted).where(col(ProductWanted.customer_id) == s.customer.id)).scalars().all()  # type: ignore[call-overload]  # fmt: skip
    for wish in wanted:
        product = s.session.get(Product, wish.product_id)
        restocks = s.session.exec(select(Restock).where(col(Restock.product_id) == wish.product_id, col(Restock.at) > now - 2 * D, col(Restock.at) <= now)).scalars()  # type: ignore[call-overload]  # fmt: skip
        for r in restocks:
            if product is not None and product.stock > 0:
                found += s.new(f"back_in_stock:{s.customer.id}:restock-{r.id}")
    return found


def orm_abandoned_checkout(s: Shopper, now: datetime) -> int:
    found = 0
    carts = s.session.exec(select(Checkout).where(col(Checkout.customer_id) == s.customer.id)).scalars().all()  # type: ignore[call-overload]  # fmt: skip
    for cart in carts:
        due = cart.started_at + timedelta(hours=1)
        if cart.order_id is not None or not now - D < due <= now:
            continue
        if any(o.cart_id == cart.cart_id for o in s.orders) or s.ordered_after(due):
            continue
        found += s.new(f"abandoned_checkout:{s.customer.id}:cart-{cart.id}")
    return found


def orm_fortnightly(s: Shopper, now: datetime) -> int:
    c = s.customer
    first = c.first_order_at
    if first is None or not now - 90 * D <= first <= now - 10 * D:
        return 0
    day = now.astimezone(_zone(c)).date()
    if (day - date(2026, 1, 5)).days % 14 or not now - D < _local_due(c, day, 10) <= now:
        return 0
    return s.new(f"fortnightly_update:{c.id}:every-{day.isoformat()}")


def orm_broadcast(s: Shopper, now: datetime) -> int:
    at = datetime.strptime(BROADCAST_AT, "%Y-%m-%d %H:%M")
    if now - D < _local_due(s.customer, at.date(), at.hour) <= now:
        return s.new(f"bench_broadcast:{s.customer.id}:broadcast-{BROADCAST_AT}")
    return 0


def orm_credit_reminder(s: Shopper, now: datetime) -> int:
    """The shipped credit_reminder: 30 days unspent, or expiring within 14; from 50 taka."""
    entries = s.session.exec(select(Credit).where(col(Credit.customer_id) == s.customer.id)).scalars().all()  # type: ignore[call-overload]  # fmt: skip
    drawn = {e.source_id: e.amount for e in entries if e.source_id is not None}
    live = [e for e in entries if e.amount > 0 and (e.expires_at is None or e.expires_at > now)
            and e.amount + drawn.get(e.id, Decimal(0)) > 0]  # fmt: skip
    balance = sum((e.amount for e in entries if e.expires_at is None or e.expires_at > now), Decimal(0))  # fmt: skip
    if not live or balance < 50:
        return 0
    expired = [e.expires_at for e in entries if e.amount > 0 and e.expires_at and e.expires_at <= now]  # fmt: skip
    changes = [e.created_at for e in entries if e.amount < 0] + expired
    expiring = [e for e in live if e.expires_at is not None]
    if expiring:
        soonest = min(expiring, key=lambda e: (e.expires_at, e.id))
        entry = max([soonest.expires_at - 14 * D, *expired])
        if now - 3 * D < entry <= now:
            first = min(e.id for e in entries if e.amount > 0 and e.expires_at == soonest.expires_at)  # fmt: skip
            return s.new(f"credit_reminder:{s.customer.id}:credit-{first}")
    oldest = min(live, key=lambda e: (e.created_at, e.id))
    if now - 3 * D < max([oldest.created_at, *changes]) + 30 * D <= now:
        return s.new(f"credit_reminder:{s.customer.id}:credit-{oldest.id}")
    return 0


ORM_CHECKS: dict[str, Callable[[Shopper, datetime], int]] = {
    "birthday": orm_birthday,
    "win_back": orm_win_back,
    "bench_nth_order": orm_nth_order,
    "replenish": orm_replenish,
    "new_in_category": orm_new_in_category,
    "back_in_stock": orm_back_in_stock,
    "abandoned_checkout": orm_abandoned_checkout,
    "fortnightly_update": orm_fortnightly,
    "bench_broadcast": orm_broadcast,
    "credit_reminder": orm_credit_reminder,
}


def orm_audience(engine: Engine, check: Callable[[Shopper, datetime], int], now: datetime, last_id: int) -> int:  # fmt: skip
    """One trigger's audience, one customer at a time (the anti-pattern)."""
    found = 0
    cap_max, cap_per = 3, 7 * D
    with Session(engine) as s:
        for c in s.exec(select(Customer).where(col(Customer.id) <= last_id)).scalars():  # type: ignore[call-overload]
            if not c.marketing_consent:
                continue
            if s.exec(select(Suppression).where(col(Suppression.email) == c.email)).first():  # type: ignore[call-overload]
                continue
            orders = s.exec(select(Order).where(col(Order.customer_id) == c.id)).scalars().all()  # type: ignore[call-overload]
            messages = s.exec(select(Message).where(col(Message.customer_id) == c.id)).scalars().all()  # type: ignore[call-overload]  # fmt: skip
            recent = [m for m in messages if m.kind == MessageKind.MARKETING and m.created_at > now - cap_per
                      and m.status not in (MessageStatus.FAILED, MessageStatus.EXPIRED, MessageStatus.SUPPRESSED)]  # fmt: skip
            if len(recent) >= cap_max:
                continue
            found += check(Shopper(s, c, list(orders), {m.dedupe_key for m in messages}), now)
    return found


def orm_loops(url: str, last_id: int) -> dict[str, tuple[float, int]]:
    """Every trigger's ORM loop over the first `last_id` customers (runs in a child process)."""
    engine = make_engine(url)
    out = {}
    for label, name in TRIGGERS:
        started = time.perf_counter()
        found = orm_audience(engine, ORM_CHECKS[name], DUE, last_id)
        out[name] = (time.perf_counter() - started, found)
        print(f"  ORM loop, {label}: {out[name][0]:.1f} s, found {found:,}", flush=True)
    engine.dispose()
    return out


# ---------------------------------------------------------------- measuring


@dataclass
class Statement:
    seconds: float
    sql: str
    parameters: Any


class StatementClock:
    """Times every statement the engine runs; remembers the slowest since `reset`."""

    def __init__(self, engine: Engine):
        self.slowest: Statement | None = None
        self.count = 0
        self.times: list[tuple[float, str]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.slowest, self.count, self.times = None, 0, []

    def _before(self, conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, many: bool) -> None:  # fmt: skip
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, many: bool) -> None:  # fmt: skip
        seconds = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        self.count += 1
        self.times.append((seconds, sql))
        if self.slowest is None or seconds > self.slowest.seconds:
            self.slowest = Statement(seconds, sql, parameters)


def explain(engine: Engine, statement: Statement) -> str:
    """The database's plan for a statement (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL)."""
    pg = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement.sql, statement.parameters).all()
        conn.rollback()
    if pg:
        return "\n".join(row[0] for row in rows)
    return "\n".join(f"{row[0]:>4} {row[1]:>4} {row[-1]}" for row in rows)


def timed(label: str, run: Callable[[], Any]) -> tuple[float, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    seconds = time.perf_counter() - started
    print(
        f"  {label}: {seconds:.3f} s (cpu of this process {time.process_time() - cpu:.3f} s)",
        flush=True,
    )
    return seconds, result


@dataclass
class Row:
    label: str
    campaign: str
    queued: int = 0
    due: float = 0.0
    idle: float = 0.0
    rescan: float = 0.0
    orm: float = 0.0
    orm_found: float = 0.0
    slow_due: Statement | None = None
    slow_idle: Statement | None = None


def tiers_as_of(engine: Engine, moment: datetime) -> None:
    """Date the last tier recomputation `moment`: a pass then does not recompute tiers.

    A full re-scan recomputes them (at DUE + 2 min); the next trigger's due pass, back at
    DUE, would otherwise recompute them again because the clock went back. In a shop
    they are recomputed once a quarter hour, in whichever pass comes then (the
    rewards upkeep row times one)."""
    with engine.begin() as conn:
        stored = conn.execute(text("SELECT value FROM checkpoint WHERE name = 'tiers'")).scalar()
        if stored:
            fingerprint = stored.partition(" ")[2]
            conn.execute(
                text("UPDATE checkpoint SET value = :v WHERE name = 'tiers'"),
                {"v": f"{moment.isoformat()} {fingerprint}"},
            )


def measure_trigger(engine: Engine, clock_: StatementClock, project: Project, row: Row) -> None:
    """The campaign alone: its due pass, the idle pass after it, a full re-scan."""
    only = enabling(project, [row.campaign])
    tiers_as_of(engine, DUE)
    clock_.reset()
    row.due, report = timed(f"{row.campaign}: due pass", lambda: plan(engine, only, DUE))
    result = report.campaigns[row.campaign]
    if result.error:
        print(f"    FAILED: {result.error}", flush=True)
    row.queued, row.slow_due = result.queued, clock_.slowest
    skipped = (result.skipped_consent, result.skipped_suppressed, result.skipped_cap)
    print(f"    queued {row.queued:,}; skipped (consent, suppressed, cap) {skipped}; "
          f"{clock_.count} statements, the slowest {_slowest(row.slow_due)}", flush=True)  # fmt: skip
    for seconds, sql in sorted(clock_.times, reverse=True)[1:4]:
        print(f"      then {_slowest(Statement(seconds, sql, None))}", flush=True)
    clock_.reset()
    row.idle, report = timed(f"{row.campaign}: idle pass", lambda: plan(engine, only, DUE + timedelta(minutes=1)))  # fmt: skip
    row.slow_idle = clock_.slowest
    print(f"    queued {report.campaigns[row.campaign].queued}; the slowest statement {_slowest(row.slow_idle)}")  # fmt: skip
    row.rescan, report = timed(
        f"{row.campaign}: full re-scan",
        lambda: plan(engine, only, DUE + timedelta(minutes=2), rescan=True),
    )
    print(f"    queued {report.campaigns[row.campaign].queued}", flush=True)


def _slowest(statement: Statement | None) -> str:
    if statement is None:
        return "-"
    first = " ".join(statement.sql.split())[:90]
    return f"{statement.seconds:.3f} s ({first} …)"


def _verdict(seconds: float, target: float) -> str:
    return "met" if seconds <= target else "MISSED"


def report_rows(rows: list[Row], scale: float, all_full: float, all_idle: float, peak_mb: float) -> None:  # fmt: skip
    print(f"\n{'trigger':28} {'queued':>9} {'due pass':>9} {'idle':>7} {'re-scan':>8} "
          f"{'ORM loop':>9} {'due/ORM':>8} {'idle/ORM':>9}  targets (due <= {TARGET_DUE:g} s, idle <= {TARGET_IDLE:g} s)")  # fmt: skip
    for r in rows:
        print(f"{r.label:28} {r.queued:9,} {r.due:8.3f}s {r.idle:6.3f}s {r.rescan:7.3f}s "
              f"{r.orm:8.0f}s {r.orm / r.due:7.0f}x {r.orm / r.idle:8.0f}x  "
              f"due {_verdict(r.due, TARGET_DUE)}, idle {_verdict(r.idle, TARGET_IDLE)}; "
              f"ORM found {r.orm_found:,.0f} (scaled)")  # fmt: skip
    print(f"{'all shipped campaigns':28} {'':9} {all_full:8.3f}s {all_idle:6.3f}s {'':8} "
          f"{'':9} {'':8} {'':9}  idle {_verdict(all_idle, TARGET_IDLE)} (the due column: the catch-up pass)")  # fmt: skip
    print(f"{'peak memory':28} {peak_mb:8.0f}MB  <= {TARGET_MB} MB {'met' if peak_mb <= TARGET_MB else 'MISSED'}")  # fmt: skip
    print(f"(ORM loop scaled x{scale:g}; ratios are ORM loop / planner)", flush=True)


def show_slow(engine: Engine, rows: list[Row], always: bool) -> None:
    for r in rows:
        for which, seconds, target, statement in (
            ("due", r.due, TARGET_DUE, r.slow_due),
            ("idle", r.idle, TARGET_IDLE, r.slow_idle),
        ):
            if statement is None or not (seconds > target or (always and which == "due")):
                continue
            print(f"\n---- {r.campaign}, {which} pass {seconds:.3f} s: its slowest statement "
                  f"({statement.seconds:.3f} s)\n{statement.sql}\n-- parameters: {statement.parameters!r}")  # fmt: skip
            try:
                print(f"-- plan:\n{explain(engine, statement)}", flush=True)
            except Exception as exc:  # the figures above still stand
                print(f"-- no plan: {type(exc).__name__}: {exc}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=10_000, help="customers in the ORM loops")
    parser.add_argument("--url", help="an empty database (default: SQLite in a temp dir)")
    parser.add_argument("--explain", action="store_true", help="show every due pass's slowest statement and its plan")  # fmt: skip
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    url = args.url or f"sqlite:///{workdir / 'bench.db'}"
    subset = min(args.subset, args.customers)
    scale = args.customers / subset
    spawn = multiprocessing.get_context("spawn")
    try:
        child = spawn.Process(target=build, args=(url, args.customers))
        child.start()
        child.join()
        if child.exitcode != 0:
            sys.exit(f"building the shop failed (exit {child.exitcode})")
        print(
            f"ORM loops over {subset:,} customers (a child process, before the passes)", flush=True
        )
        with spawn.Pool(1) as pool:
            orm = pool.apply(orm_loops, (url, subset))
        project, shipped = bench_project()
        engine = make_engine(url)
        clock_ = StatementClock(engine)
        rows = [Row(label, name) for label, name in TRIGGERS]
        print("the rewards upkeep of a first pass (referral codes for every customer, tiers placed), no campaign")  # fmt: skip
        upkeep, _ = timed("rewards upkeep, first pass", lambda: plan(engine, enabling(project, []), DUE - timedelta(minutes=1)))  # fmt: skip
        again, _ = timed("rewards upkeep, tiers recomputed", lambda: plan(engine, enabling(project, []), DUE - timedelta(seconds=30), rescan=True))  # fmt: skip
        print("planning passes, each trigger's campaign alone")
        for row in rows:
            measure_trigger(engine, clock_, project, row)
            row.orm, row.orm_found = orm[row.campaign][0] * scale, orm[row.campaign][1] * scale
        print(f"every shipped campaign together ({len(shipped)}: {', '.join(shipped)})")
        everything = enabling(project, shipped)
        all_full, report = timed("catch-up pass", lambda: plan(engine, everything, DUE + timedelta(minutes=3)))  # fmt: skip
        print(f"    queued {json.dumps({n: r.queued for n, r in report.campaigns.items()})}")
        errors = {n: r.error for n, r in report.campaigns.items() if r.error}
        if errors:
            print(f"    FAILED: {errors}")
        all_idle, report = timed("idle pass", lambda: plan(engine, everything, DUE + timedelta(minutes=4)))  # fmt: skip
        print(f"    queued {sum(r.queued for r in report.campaigns.values())}")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report_rows(rows, scale, all_full, all_idle, peak_mb)
        print(f"{'rewards upkeep, first pass':28} {'':9} {upkeep:8.3f}s  (then each full re-scan; tiers recomputed again: {again:.3f} s)")  # fmt: skip
        show_slow(engine, rows, args.explain)
        engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
