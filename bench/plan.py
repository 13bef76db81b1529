"""Benchmark the planner on a big shop: 1,000,000 customers and 3,000,000 orders.

    .venv/bin/python bench/plan.py                    # SQLite in a temp dir
    .venv/bin/python bench/plan.py --customers 50000  # a quick run
    .venv/bin/python bench/plan.py --url postgresql://postgres@127.0.0.1:5432/bench  # an empty database

Measures, in one run: a planning pass when nothing new happened; a pass after
1,000 new orders (and 1,000 deliveries and one price drop); the holiday pass
that queues the regulars (and the pass after it, while the holiday is still
open); the peak memory of the process that plans. Beside each, the same
audience found by a straightforward ORM loop (one customer at a time, its
orders and messages loaded lazily) over a 100,000-customer subset, scaled to
the full size. The shop is built in a child process with bulk Core inserts
(executemany in 50k chunks, secondary indexes created after the load), so
its memory does not count towards the planner's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import column, func, select, table, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.plan.planner import plan  # noqa: E402
from engine.project.loader import load_project  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.models import (  # noqa: E402
    Customer,
    Message,
    MessageKind,
    MessageStatus,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    Suppression,
)

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)  # nothing open: Black Friday's notice is due 24 Nov
HOLIDAY_DUE = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka, three days before
CHUNK = 50_000
PRODUCTS = 200
ZONES = [None] * 90 + ["Asia/Dhaka"] * 5 + ["America/New_York"] * 3 + ["Europe/London"] * 2
D = timedelta(days=1)

tables = {m.__tablename__: m.__table__ for m in (Customer, Order, OrderItem, Product, PriceChange, Message, Suppression)}  # type: ignore[attr-defined]  # fmt: skip


# ---------------------------------------------------------------- building the shop


def _raw(name: str) -> Any:
    """The table without column types: the loader hands in values already in store format."""
    return table(name, *(column(c.name) for c in tables[name].columns))


class _Store:
    """Values in the store's own format (naive UTC, integer paisa), converted once."""

    def __init__(self, pg: bool):
        self.pg = pg

    def at(self, moment: datetime | None) -> Any:
        if moment is None:
            return None
        naive = moment.astimezone(UTC).replace(tzinfo=None)
        return naive if self.pg else naive.strftime("%Y-%m-%d %H:%M:%S.%f")


def build(url: str, customers: int, seed: int = 7) -> None:
    """Create the schema and load the shop (runs in a child process)."""
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(seed)
    big = [tables[name] for name in ("customer", "orders", "order_item", "message")]
    started = time.perf_counter()
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # rows arrive parents first; skip the checks
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        for table in big:
            for index in table.indexes:
                index.drop(conn)
        store = _Store(engine.dialect.name == "postgresql")
        prices = _load_products(conn, rng)
        counts = _load_customers_and_orders(conn, rng, customers, prices, store)
        counts["message"] = _load_history(conn, rng, customers, store)
        conn.execute(tables["suppression"].insert(), [
            {"email": f"c{i}@example.com", "reason": "bounce", "source": "bench", "created_at": NOW - 9 * D}
            for i in rng.sample(range(1, customers + 1), customers // 200)
        ])  # fmt: skip
        conn.commit()
    loaded = time.perf_counter()
    with engine.begin() as conn:
        for table in big:
            for index in table.indexes:
                index.create(conn)
        conn.execute(text("ANALYZE"))
    print(
        f"built {counts['customer']:,} customers, {counts['orders']:,} orders, "
        f"{counts['message']:,} past messages in {loaded - started:.0f} s "
        f"(+{time.perf_counter() - loaded:.0f} s indexes)",
        flush=True,
    )
    engine.dispose()


def _load_products(conn: Any, rng: random.Random) -> list[Decimal]:
    prices = [Decimal(rng.randrange(5_000, 300_000)) / 100 for _ in range(PRODUCTS)]
    conn.execute(tables["product"].insert(), [
        {"id": i + 1, "sku": f"SKU-{i + 1}", "name": f"Product {i + 1}", "price": p, "stock": 50,
         "updated_at": NOW - 800 * D}
        for i, p in enumerate(prices)
    ])  # fmt: skip
    conn.execute(tables["price_change"].insert(), [
        {"product_id": i + 1, "price": p, "changed_at": NOW - 800 * D} for i, p in enumerate(prices)
    ])  # fmt: skip
    return prices


def _load_customers_and_orders(
    conn: Any, rng: random.Random, customers: int, prices: list[Decimal], store: _Store
) -> dict[str, int]:
    counts = {"customer": 0, "orders": 0}
    buffers: dict[str, list[dict[str, Any]]] = {"customer": [], "orders": [], "order_item": []}

    def flush(name: str, force: bool = False) -> None:
        if buffers[name] and (force or len(buffers[name]) >= CHUNK):
            conn.execute(_raw(name).insert(), buffers[name])
            buffers[name] = []

    paisa = [int(p * 100) for p in prices]
    order_id = 0
    for cid in range(1, customers + 1):
        placed = sorted(
            NOW - timedelta(seconds=rng.randrange(3600, 730 * 86400))
            for _ in range(rng.randint(1, 5))
        )
        spent, counted = 0, []
        for at in placed:
            order_id += 1
            product = rng.randrange(PRODUCTS)
            quantity = rng.randint(1, 3)
            total = paisa[product] * quantity
            cancelled = rng.random() < 0.03
            delivered = at + timedelta(hours=rng.randint(20, 120))
            delivered_at = None if cancelled or delivered > NOW - timedelta(hours=1) else delivered
            status = (
                OrderStatus.CANCELLED
                if cancelled
                else (OrderStatus.DELIVERED if delivered_at else OrderStatus.PLACED)
            )
            buffers["orders"].append({"id": order_id, "external_id": f"o{order_id}", "customer_id": cid,
                                      "placed_at": store.at(at), "delivered_at": store.at(delivered_at), "status": status.value,
                                      "total": total})  # fmt: skip
            buffers["order_item"].append({"id": order_id, "order_id": order_id, "product_id": product + 1,
                                          "quantity": quantity, "unit_price": paisa[product]})  # fmt: skip
            if not cancelled:
                spent += total
                counted.append(at)
        created = placed[0] - timedelta(days=rng.randint(0, 30))
        buffers["customer"].append({
            "id": cid, "external_id": f"c{cid}", "email": f"c{cid}@example.com", "name": f"Customer {cid}",
            "locale": "bn_BD" if cid % 3 else "en", "timezone": rng.choice(ZONES),
            "marketing_consent": rng.random() < 0.8, "created_at": store.at(created), "updated_at": store.at(created),
            "first_order_at": store.at(counted[0]) if counted else None,
            "last_order_at": store.at(counted[-1]) if counted else None,
            "orders_count": len(counted), "total_spent": spent,
        })  # fmt: skip
        counts["customer"] += 1
        if len(buffers["orders"]) >= CHUNK or len(buffers["customer"]) >= CHUNK:
            for name in ("customer", "orders", "order_item"):  # parents first
                flush(name, force=True)
    for name in ("customer", "orders", "order_item"):
        flush(name, force=True)
    counts["orders"] = order_id
    return counts


def _load_history(conn: Any, rng: random.Random, customers: int, store: _Store) -> int:
    """Half a million sent messages over the last 60 days (for caps and dedupe look-ups)."""
    total = customers // 2
    for start in range(0, total, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, total)):
            at = store.at(NOW - timedelta(seconds=rng.randrange(60 * 86400)))
            rows.append({"dedupe_key": f"newsletter:{i}", "campaign": "newsletter", "kind": "marketing",
                         "customer_id": rng.randint(1, customers), "occurrence": str(i), "status": "sent",
                         "created_at": at, "send_after": at, "sent_at": at, "attempts": 1})  # fmt: skip
        conn.execute(_raw("message").insert(), rows)
    return total


def new_activity(engine: Engine, customers: int, at: datetime, seed: int = 11) -> None:
    """1,000 new orders (300 of them first orders of new customers), 1,000 deliveries, a price drop.

    All in the minute before `at`; they fall due 10 minutes (welcome) and 2 hours
    (thank-you, so delivered 1 h 52 min ago) later.
    """
    rng = random.Random(seed)
    with engine.begin() as conn:
        top = conn.execute(select(func.max(tables["orders"].c.id))).scalar_one()
        prices = {r.id: r.price for r in conn.execute(select(tables["product"]))}
        new_customers = [
            {"id": customers + i, "external_id": f"n{i}", "email": f"n{i}@example.com", "locale": "bn_BD",
             "marketing_consent": True, "created_at": at, "updated_at": at, "orders_count": 0,
             "total_spent": Decimal(0)}
            for i in range(1, 301)
        ]  # fmt: skip
        conn.execute(tables["customer"].insert(), new_customers)
        buyers = [c["id"] for c in new_customers] + [rng.randint(1, customers) for _ in range(700)]
        orders, items = [], []
        for n, cid in enumerate(buyers, start=1):
            product = rng.randint(1, PRODUCTS)
            placed = at - timedelta(seconds=rng.randint(1, 59))  # in the minute since the last pass
            orders.append({"id": top + n, "external_id": f"new{n}", "customer_id": cid, "placed_at": placed,
                           "status": "placed", "total": prices[product]})  # fmt: skip
            items.append({"id": top + n, "order_id": top + n, "product_id": product, "quantity": 1,
                          "unit_price": prices[product]})  # fmt: skip
        conn.execute(tables["orders"].insert(), orders)
        conn.execute(tables["order_item"].insert(), items)
        o = tables["orders"]
        undelivered = conn.execute(
            select(o.c.id).where(o.c.status == "placed", o.c.placed_at > at - 7 * D, o.c.placed_at < at - 2 * D).order_by(o.c.id).limit(1000)
        ).scalars().all()  # fmt: skip
        conn.execute(
            update(o)
            .where(o.c.id.in_(undelivered))
            .values(delivered_at=at - timedelta(minutes=112), status="delivered")
        )
        c = tables["customer"]
        counted = (o.c.customer_id == c.c.id) & (o.c.status != "cancelled")
        conn.execute(update(c).where(c.c.id.in_(buyers)).values(
            first_order_at=select(func.min(o.c.placed_at)).where(counted).scalar_subquery(),
            last_order_at=select(func.max(o.c.placed_at)).where(counted).scalar_subquery(),
            orders_count=select(func.count()).where(counted).scalar_subquery(),
        ))  # fmt: skip
        dropped = rng.randint(1, PRODUCTS)
        cheaper = (prices[dropped] * Decimal("0.9")).quantize(Decimal("0.01"))
        conn.execute(
            update(tables["product"]).where(tables["product"].c.id == dropped).values(price=cheaper)
        )
        conn.execute(tables["price_change"].insert(), [{"product_id": dropped, "price": cheaper, "changed_at": at - timedelta(seconds=30)}])  # fmt: skip


# ---------------------------------------------------------------- the ORM loop to compare with


def orm_event_audience(engine: Engine, project: Any, now: datetime, last_id: int) -> int:
    """Welcome and thank-you audiences, one customer at a time (the anti-pattern)."""
    found = 0
    cap = project.config.sending.frequency_cap
    with Session(engine) as s:
        for c in s.exec(select(Customer).where(col(Customer.id) <= last_id)).scalars():  # type: ignore[call-overload]
            orders = s.exec(select(Order).where(col(Order.customer_id) == c.id)).scalars().all()  # type: ignore[call-overload]
            messages = (
                s.exec(select(Message).where(col(Message.customer_id) == c.id)).scalars().all()
            )  # type: ignore[call-overload]
            if (
                not c.marketing_consent
                or s.exec(select(Suppression).where(col(Suppression.email) == c.email)).first()
            ):  # type: ignore[call-overload]
                continue
            keys = {m.dedupe_key for m in messages}
            recent = [m for m in messages if m.kind == MessageKind.MARKETING and m.created_at > now - cap.per
                      and m.status not in (MessageStatus.FAILED, MessageStatus.EXPIRED)]  # fmt: skip
            if len(recent) >= cap.max:
                continue
            live = [o for o in orders if o.status != OrderStatus.CANCELLED]
            if live and now - 3 * D < min(o.placed_at for o in live) + timedelta(minutes=10) <= now:
                found += f"welcome:{c.id}:first" not in keys
            for o in live:
                if o.delivered_at and now - 5 * D < o.delivered_at + 2 * timedelta(hours=1) <= now:
                    found += f"thank_you:{c.id}:order-{o.id}" not in keys
    return found


def orm_holiday_audience(engine: Engine, project: Any, now: datetime, last_id: int) -> int:
    """The regulars with consent, not suppressed, under the cap, not yet told."""
    found = 0
    cap = project.config.sending.frequency_cap
    with Session(engine) as s:
        for c in s.exec(select(Customer).where(col(Customer.id) <= last_id)).scalars():  # type: ignore[call-overload]
            orders = s.exec(select(Order).where(col(Order.customer_id) == c.id)).scalars().all()  # type: ignore[call-overload]
            recent_orders = [
                o
                for o in orders
                if o.status != OrderStatus.CANCELLED and o.placed_at >= now - 180 * D
            ]
            if len(recent_orders) < 3 or not c.marketing_consent:
                continue
            if s.exec(select(Suppression).where(col(Suppression.email) == c.email)).first():  # type: ignore[call-overload]
                continue
            messages = (
                s.exec(select(Message).where(col(Message.customer_id) == c.id)).scalars().all()
            )  # type: ignore[call-overload]
            recent = [
                m
                for m in messages
                if m.kind == MessageKind.MARKETING and m.created_at > now - cap.per
            ]
            if len(recent) < cap.max and not any(
                m.occurrence == "black_friday-2026" for m in messages
            ):
                found += 1
    return found


# ---------------------------------------------------------------- measuring


def timed(label: str, run: Any) -> tuple[float, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    seconds = time.perf_counter() - started
    print(
        f"  {label}: {seconds:.3f} s (cpu of this process {time.process_time() - cpu:.3f} s)",
        flush=True,
    )
    return seconds, result


def queued(report: Any) -> dict[str, int]:
    return {name: r.queued for name, r in report.campaigns.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=100_000, help="customers in the ORM loop")
    parser.add_argument("--url", help="an empty database (default: SQLite in a temp dir)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    url = args.url or f"sqlite:///{workdir / 'bench.db'}"
    subset = min(args.subset, args.customers)
    scale = args.customers / subset
    try:
        child = multiprocessing.get_context("spawn").Process(
            target=build, args=(url, args.customers)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            sys.exit(f"building the shop failed (exit {child.exitcode})")
        project = load_project(ROOT / "config.yaml")
        engine = make_engine(url)
        print("catching up (the first pass after the load, not measured)")
        timed("catch-up pass", lambda: plan(engine, project, NOW))
        print("planning passes")
        idle, report = timed("idle pass", lambda: plan(engine, project, NOW + timedelta(minutes=1)))
        print(f"    queued {queued(report)} (deliveries of the last hours falling due)")
        new_activity(engine, args.customers, NOW + timedelta(minutes=2))
        # The welcome is due 10 minutes after a first order, the thank-you 2 hours after
        # delivery: the pass at which they fall due.
        busy, report = timed(
            "pass after 1,000 new orders",
            lambda: plan(engine, project, NOW + timedelta(minutes=12)),
        )
        print(f"    queued {queued(report)}")
        holiday, report = timed("holiday pass", lambda: plan(engine, project, HOLIDAY_DUE))
        print(f"    queued {queued(report)}")
        again, report = timed(
            "next pass, holiday still open",
            lambda: plan(engine, project, HOLIDAY_DUE + timedelta(minutes=1)),
        )
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak memory of the planning process: {peak_mb:.0f} MB")
        print(f"ORM loop over {subset:,} customers, scaled x{scale:g}")
        orm_events, found = timed(
            "welcome + thank-you audience",
            lambda: orm_event_audience(engine, project, NOW + timedelta(minutes=3), subset),
        )
        print(f"    found {found:,} in the subset")
        orm_holiday, found = timed(
            "holiday audience",
            lambda: orm_holiday_audience(engine, project, HOLIDAY_DUE - D, subset),
        )
        print(f"    found {found:,} in the subset")
        rows = [
            ("idle pass", idle, orm_events * scale, 0.5),
            ("pass after 1,000 new orders", busy, orm_events * scale, 1.0),
            ("holiday pass", holiday, orm_holiday * scale, 15.0),
            ("next pass, holiday open", again, orm_holiday * scale, None),
        ]
        print(f"\n{'figure':32} {'planner':>10} {'ORM loop':>11} {'ratio':>8}  target")
        for name, sql_s, orm_s, target in rows:
            verdict = (
                ""
                if target is None
                else (f"<= {target:g} s " + ("met" if sql_s <= target else "MISSED"))
            )
            print(f"{name:32} {sql_s:9.3f}s {orm_s:10.1f}s {orm_s / sql_s:7.0f}x  {verdict}")
        print(
            f"{'peak memory':32} {peak_mb:8.0f}MB {'':>11} {'':>8}  <= 300 MB "
            + ("met" if peak_mb <= 300 else "MISSED")
        )
        engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
