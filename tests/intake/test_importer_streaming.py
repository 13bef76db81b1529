"""CSV import of a big orders file: read as a stream, still all or nothing, bad rows bounded."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from engine.intake.importer import ImportRejected, ImportResult, import_csv
from engine.store.models import Order, OrderItem

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
HEADER = "order_id,customer_id,placed_at,delivered_at,status,sku,quantity,unit_price\n"
CUSTOMERS = 50


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., ImportResult]:
    def run_import(engine: Engine, kind: str, text: str, **kw: Any) -> ImportResult:
        path = tmp_path / f"{kind}.csv"
        path.write_text(text, encoding="utf-8")
        return import_csv(
            engine, kind, path, now=NOW, shop_timezone="Asia/Dhaka", shown=path.name, **kw
        )

    return run_import


@pytest.fixture
def shop(store: Engine, run: Callable[..., ImportResult]) -> Engine:
    """A store with CUSTOMERS customers and two products, on SQLite and PostgreSQL."""
    people = "".join(f"C{n},c{n}@example.com\n" for n in range(CUSTOMERS))
    run(store, "customers", "id,email\n" + people)
    run(store, "products", "sku,name,price\nTEA-500G,Tea 500 g,320\nBAG-01,Jute bag,450.50\n")
    return store


def order_lines(orders: int) -> str:
    """`orders` orders of two lines each (one with its price, one at the product's)."""
    return "".join(
        f"O{n:07d},C{n % CUSTOMERS},2026-{n % 12 + 1:02d}-10T10:{n % 60:02d}:00,"
        f"{'2027-01-05T09:00:00' if n % 3 else ''},,TEA-500G,{n % 4 + 1},300.00\n"
        f"O{n:07d},C{n % CUSTOMERS},2026-{n % 12 + 1:02d}-10T10:{n % 60:02d}:00,"
        f"{'2027-01-05T09:00:00' if n % 3 else ''},,BAG-01,1,\n"
        for n in range(orders)
    )


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(table.select())), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model)) or 0


def test_a_big_orders_file_is_not_held_in_memory(
    shop: Engine, run: Callable[..., ImportResult]
) -> None:
    # 30,000 lines: held as rows, they take over 40 MB of Python objects; read as a
    # stream, a chunk of 5,000 lines and what is remembered of the store take about 10.
    text = HEADER + order_lines(15_000)
    tracemalloc.start()
    try:
        result = run(shop, "orders", text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.rows, result.created) == (30_000, 15_000)
    assert count(shop, Order) == 15_000 and count(shop, OrderItem) == 30_000
    assert peak < 25 * 1024 * 1024, f"the import peaked at {peak / 1024 / 1024:.1f} MB"
    again = run(shop, "orders", text)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 15_000)


def test_a_bad_last_line_of_a_big_file_leaves_the_store_as_it_was(
    shop: Engine, run: Callable[..., ImportResult]
) -> None:
    before = dump(shop)
    last = "O9999999,C1,2026-11-10T10:00:00,,,NOPE-1,1,\n"
    with pytest.raises(ImportRejected) as caught:
        run(shop, "orders", HEADER + order_lines(10_000) + last)
    assert [str(bad) for bad in caught.value.bad] == [
        'orders.csv:20002: sku: unknown product sku "NOPE-1"'
    ]
    assert str(caught.value) == "orders.csv: 1 bad row of 20001, nothing imported"
    assert dump(shop) == before


def test_the_first_thousand_bad_rows_are_listed_and_all_are_counted(
    shop: Engine, run: Callable[..., ImportResult]
) -> None:
    before = dump(shop)
    unknown = "".join(f"X{n},C404,2026-11-10T10:00:00,,,TEA-500G,1,\n" for n in range(1_500))
    text = HEADER + order_lines(10) + unknown
    with pytest.raises(ImportRejected) as caught:
        run(shop, "orders", text)
    rejected = caught.value
    assert (rejected.count, len(rejected.bad)) == (1_500, 1_000)
    assert [bad.line for bad in rejected.bad] == list(range(22, 1_022))
    assert str(rejected.bad[0]) == 'orders.csv:22: customer_id: unknown customer "C404"'
    assert str(rejected) == (
        "orders.csv: 1500 bad rows of 1520, nothing imported (the first 1000 are listed)"
    )
    assert dump(shop) == before
    result = run(shop, "orders", text, skip_bad=True)
    assert (result.created, result.skipped_count, len(result.skipped)) == (10, 1_500, 1_000)
    assert count(shop, Order) == 10


def test_bad_rows_of_a_file_read_whole_are_capped_too(
    shop: Engine, run: Callable[..., ImportResult]
) -> None:
    bad = "".join(f"C{n},not-an-address\n" for n in range(1_200))
    with pytest.raises(ImportRejected) as caught:
        run(shop, "customers", "id,email\n" + bad)
    assert (caught.value.count, len(caught.value.bad)) == (1_200, 1_000)
    assert caught.value.bad[-1].line == 1_001
