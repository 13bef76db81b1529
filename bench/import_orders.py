"""Time the CSV import of a year of a busy shop: 100k orders, ~200k lines.

Generates customers.csv (20k), products.csv (200) and orders.csv in a temp
dir, imports them into a fresh database, then imports orders.csv again and
checks that the second run changed nothing. Prints the figures, and the
orders import's rate (lines/s) and the process's peak memory beside their
targets.

    .venv/bin/python bench/import_orders.py                  # SQLite file in the temp dir
    .venv/bin/python bench/import_orders.py --orders 20000   # smaller
    .venv/bin/python bench/import_orders.py --orders 350000  # ~700,000 lines
    .venv/bin/python bench/import_orders.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from engine.intake.importer import import_csv
from engine.store.db import make_engine, upgrade
from engine.store.models import Customer, Order, OrderItem, PriceChange, Product

SHOP_TZ = "Asia/Dhaka"
TARGET_LINES_PER_S = 20_000  # orders import on SQLite
TARGET_PEAK_MB = 300  # the whole process, at any file size


def write_files(folder: Path, customers: int, products: int, orders: int) -> dict[str, Path]:
    """The three CSV files of a synthetic shop, seeded so every run is the same."""
    rng = random.Random(20261122)
    paths = {name: folder / f"{name}.csv" for name in ("customers", "products", "orders")}
    with paths["customers"].open("w", newline="", encoding="utf-8") as out:
        rows = csv.writer(out)
        rows.writerow(["id", "email", "name", "city", "tags", "marketing_consent", "created_at"])
        for n in range(customers):
            rows.writerow(
                [
                    f"C{n:06d}",
                    f"customer{n}@example.com",
                    f"Customer {n}",
                    rng.choice(["Dhaka", "Chattogram", "Khulna", "Sylhet"]),
                    rng.choice(["", "vip", "wholesale;vip", ""]),
                    rng.choice(["yes", "no"]),
                    f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00",
                ]
            )
    prices = {}
    with paths["products"].open("w", newline="", encoding="utf-8") as out:
        rows = csv.writer(out)
        rows.writerow(["sku", "name", "category", "price", "stock"])
        for n in range(products):
            prices[n] = f"{rng.randint(50, 5000)}.{rng.randint(0, 99):02d}"
            rows.writerow(
                [f"SKU-{n:04d}", f"Product {n}", "general", prices[n], rng.randint(0, 500)]
            )
    start = datetime(2025, 11, 1, 9, 0)
    with paths["orders"].open("w", newline="", encoding="utf-8") as out:
        rows = csv.writer(out)
        rows.writerow(
            [
                "order_id",
                "customer_id",
                "placed_at",
                "delivered_at",
                "status",
                "sku",
                "quantity",
                "unit_price",
            ]
        )
        for n in range(orders):
            customer = f"C{rng.randrange(customers):06d}"
            placed = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
            delivered = (placed + timedelta(days=3)).isoformat() if rng.random() < 0.7 else ""
            status = "cancelled" if rng.random() < 0.03 else ""
            for sku in rng.sample(range(products), rng.choice([1, 2, 2, 3])):
                price = prices[sku] if rng.random() < 0.5 else ""
                rows.writerow(
                    [
                        f"O{n:07d}",
                        customer,
                        placed.isoformat(),
                        delivered,
                        status,
                        f"SKU-{sku:04d}",
                        rng.randint(1, 3),
                        price,
                    ]
                )
    return paths


def counts(engine: Engine) -> dict[str, object]:
    """Row counts and sums that any change to the store would move."""
    with engine.connect() as conn:
        return {
            "customers": conn.scalar(select(func.count()).select_from(Customer)),
            "orders": conn.scalar(select(func.count()).select_from(Order)),
            "order_items": conn.scalar(select(func.count()).select_from(OrderItem)),
            "price_changes": conn.scalar(select(func.count()).select_from(PriceChange)),
            "products": conn.scalar(select(func.count()).select_from(Product)),
            "total_spent": conn.scalar(select(func.sum(Customer.__table__.c.total_spent))),
            "orders_count": conn.scalar(select(func.sum(Customer.__table__.c.orders_count))),
            "last_updated": conn.scalar(select(func.max(Customer.__table__.c.updated_at))),
        }


@dataclass(frozen=True)
class Timing:
    """One import: wall-clock and this process's CPU seconds (CPU resists a busy machine)."""

    wall: float
    cpu: float
    rows: int
    summary: str

    def __str__(self) -> str:
        return f"{self.wall:6.2f} s wall {self.cpu:6.2f} s cpu  ({self.summary})"


def timed(engine: Engine, kind: str, path: Path, now: datetime) -> Timing:
    began, cpu = time.perf_counter(), time.process_time()
    result = import_csv(engine, kind, path, now=now, shop_timezone=SHOP_TZ)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    summary = f"{result.rows} rows: {result.created} created, {result.updated} updated, {result.unchanged} unchanged"
    return Timing(wall, cpu, result.rows, summary)


def peak_mb() -> int:
    """The process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def verdict(first: Timing, peak: int) -> str:
    """The orders import's rate and the peak memory, each beside its target."""
    wall_rate, cpu_rate = first.rows / first.wall, first.rows / first.cpu
    rate_ok = "ok" if wall_rate >= TARGET_LINES_PER_S else "MISSED"
    peak_ok = "ok" if peak <= TARGET_PEAK_MB else "MISSED"
    return "\n".join(
        [
            f"{'':<28}{'target':>12}{'measured':>12}",
            f"{'orders lines/s (wall)':<28}{f'>= {TARGET_LINES_PER_S:,}':>12}"
            f"{wall_rate:>12,.0f}  {rate_ok}",
            f"{'orders lines/s (cpu)':<28}{'':>12}{cpu_rate:>12,.0f}",
            f"{'peak memory, MB':<28}{f'<= {TARGET_PEAK_MB}':>12}{peak:>12,}  {peak_ok}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument(
        "--orders", type=int, default=100_000, help="orders in the file (~2 lines each)"
    )
    parser.add_argument("--postgres", help="a PostgreSQL URL; a throwaway schema is used")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        paths = write_files(folder, args.customers, args.products, args.orders)
        with paths["orders"].open(encoding="utf-8") as f:
            lines = sum(1 for _ in f) - 1
        print(
            f"generated {args.orders} orders ({lines} lines) in {time.perf_counter() - began:.1f} s"
        )
        url, cleanup = _database(folder, args.postgres)
        engine = make_engine(url)
        try:
            upgrade(engine)
            now = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
            timings = {}
            for kind in ("customers", "products", "orders"):
                timings[kind] = timed(engine, kind, paths[kind], now)
                print(f"import {kind:<12} {timings[kind]}")
            before = counts(engine)
            later = now + timedelta(hours=1)
            print(f"re-import orders    {timed(engine, 'orders', paths['orders'], later)}")
            print(f"re-import customers {timed(engine, 'customers', paths['customers'], later)}")
            after = counts(engine)
            assert before == after, f"re-import changed the store: {before} != {after}"
            print(f"re-import changed nothing: {after}")
            print(verdict(timings["orders"], peak_mb()))
        finally:
            engine.dispose()
            cleanup()


def _database(folder: Path, postgres: str | None) -> tuple[str, object]:
    if not postgres:
        return f"sqlite:///{folder / 'bench.db'}", lambda: None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(postgres)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    sep = "&" if "?" in postgres else "?"
    return f"{postgres}{sep}options=-csearch_path%3D{schema}", drop


if __name__ == "__main__":
    main()
