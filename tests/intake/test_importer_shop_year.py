"""CSV import of what a shop's year of triggers reads: new products, restocks, carts, wishes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col

from engine.intake import shop
from engine.intake.importer import CsvFormatError, ImportRejected, ImportResult, import_csv
from engine.store.db import session_scope
from engine.store.models import Checkout, Order, Product, ProductWanted, Restock
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
CUSTOMERS = "id,email\nC1,rahim@example.com\nC2,karim@example.com\n"
PRODUCTS = "sku,name,price,stock\nTEA-500G,Tea 500 g,320,0\nBAG-01,Jute bag,450,7\n"


@pytest.fixture
def csv_file(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def run(csv_file: Callable[[str, str], Path]) -> Callable[..., ImportResult]:
    def run_import(engine: Engine, kind: str, text: str, **kw: Any) -> ImportResult:
        kw.setdefault("now", NOW)
        path = csv_file(f"{kind}.csv", text)
        return import_csv(engine, kind, path, shop_timezone="Asia/Dhaka", shown=path.name, **kw)

    return run_import


@pytest.fixture
def shop_store(fresh_store: Engine, run: Callable[..., ImportResult]) -> Engine:
    """Two customers and two products (tea out of stock), on SQLite and PostgreSQL."""
    run(fresh_store, "customers", CUSTOMERS)
    run(fresh_store, "products", PRODUCTS)
    return fresh_store


def rows(engine: Engine, *columns: Any) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        return [tuple(row) for row in session.execute(select(*columns).order_by(columns[0]))]


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(table.select())), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }


def at(hours: int) -> datetime:
    return NOW + timedelta(hours=hours)


# ---------------------------------------------------------------- products


def test_a_product_is_created_at_the_import_that_first_brings_it(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    run(shop_store, "products", "sku,name,price\nTEA-500G,Tea 500 g,330\nNEW-1,New,10\n", now=at(5))
    assert rows(shop_store, col(Product.sku), col(Product.created_at)) == [
        ("BAG-01", NOW),
        ("NEW-1", at(5)),
        ("TEA-500G", NOW),
    ]


def test_stock_from_nothing_to_something_is_a_restock_each_time(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    header = "sku,name,price,stock\n"
    for hours, tea_stock, bag_stock in ((1, 5, 9), (2, 0, 0), (3, 4, 0), (4, 4, 2)):
        text = f"{header}TEA-500G,Tea 500 g,320,{tea_stock}\nBAG-01,Jute bag,450,{bag_stock}\n"
        run(shop_store, "products", text, now=at(hours))
    ids = dict(rows(shop_store, col(Product.sku), col(Product.id)))
    tea, bag = ids["TEA-500G"], ids["BAG-01"]
    restocks = rows(
        shop_store, col(Restock.id), col(Restock.product_id), col(Restock.stock), col(Restock.at)
    )
    # Tea: out when created, in (1), out (2), in (3). The bag, created in stock: back at 4 only.
    assert restocks == [(1, tea, 5, at(1)), (2, tea, 4, at(3)), (3, bag, 2, at(4))]


def test_a_restock_through_the_shop_api_and_the_import_mean_the_same(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    with session_scope(shop_store) as session:
        shop.upsert_product(session, sku="TEA-500G", name="Tea", price="320", stock=3, now=at(1))
        shop.upsert_product(session, sku="TEA-500G", name="Tea", price="320", stock=0, now=at(2))
    run(shop_store, "products", "sku,name,price,stock\nTEA-500G,Tea,320,6\n", now=at(3))
    assert rows(shop_store, col(Restock.stock), col(Restock.at)) == [(3, at(1)), (6, at(3))]


# ---------------------------------------------------------------- orders with a cart


def test_an_imported_order_keeps_its_cart_and_completes_that_checkout(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    with session_scope(shop_store) as session:
        for cart in ("cart-1", "cart-2"):
            shop.start_checkout(
                session,
                cart_id=cart,
                customer_id="C1",
                items=[shop.CartLine("BAG-01", 1)],
                amount="450",
                started_at=NOW,
                now=NOW,
            )
    text = (
        "order_id,customer_id,placed_at,sku,quantity,cart_id\n"
        "1001,C1,2026-11-22T13:00,BAG-01,1,cart-1\n"
        "1001,C1,2026-11-22T13:00,TEA-500G,1,cart-1\n"
        "1002,C2,2026-11-22T14:00,BAG-01,1,\n"
    )
    run(shop_store, "orders", text, now=at(1))
    orders = dict(rows(shop_store, col(Order.external_id), col(Order.id)))
    assert rows(shop_store, col(Order.external_id), col(Order.cart_id)) == [
        ("1001", "cart-1"),
        ("1002", None),
    ]
    assert rows(shop_store, col(Checkout.cart_id), col(Checkout.order_id)) == [
        ("cart-1", orders["1001"]),
        ("cart-2", None),
    ]


def test_a_cart_id_that_differs_between_an_orders_lines_is_a_bad_row(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    text = (
        "order_id,customer_id,placed_at,sku,quantity,cart_id\n"
        "1001,C1,2026-11-22T13:00,BAG-01,1,cart-1\n"
        "1001,C1,2026-11-22T13:00,TEA-500G,1,cart-2\n"
    )
    with pytest.raises(ImportRejected) as caught:
        run(shop_store, "orders", text)
    assert [str(bad) for bad in caught.value.bad] == [
        "orders.csv:2: order_id: order 1001 is not imported: its line 3 is bad",
        'orders.csv:3: cart_id: order 1001 has cart_id "cart-1" on an earlier line, got "cart-2"',
    ]


# ---------------------------------------------------------------- wanted


def test_wanted_products_are_recorded_once_per_customer_and_product(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    text = (
        "customer_id,sku,at\n"
        "C1,TEA-500G,2026-11-20T09:00\n"
        "C2,TEA-500G,\n"
        "C1,TEA-500G,2026-11-21T09:00\n"
    )
    first = run(shop_store, "wanted", text)
    assert (first.rows, first.created, first.unchanged) == (3, 2, 1)
    again = run(shop_store, "wanted", "customer_id,sku\nC2,TEA-500G\nC2,BAG-01\n", now=at(1))
    assert (again.rows, again.created, again.unchanged) == (2, 1, 1)
    assert rows(
        shop_store, col(ProductWanted.id), col(ProductWanted.customer_id), col(ProductWanted.at)
    ) == [
        (1, 1, datetime(2026, 11, 20, 3, 0, tzinfo=UTC)),  # 09:00 in Dhaka
        (2, 2, NOW),
        (3, 2, at(1)),
    ]


BAD_WANTED = (
    "customer_id,sku,at\n"
    "C1,TEA-500G,\n"
    "C9,TEA-500G,\n"
    "C1,NOPE,\n"
    ",BAG-01,\n"
    "C2,,\n"
    "C2,BAG-01,yesterday\n"
    "C2,BAG-01,,extra\n"
)
BAD_WANTED_ROWS = [
    'wanted.csv:3: customer_id: unknown customer "C9"',
    'wanted.csv:4: sku: unknown product sku "NOPE"',
    "wanted.csv:5: customer_id: is required, got an empty cell",
    "wanted.csv:6: sku: is required, got an empty cell",
    'wanted.csv:7: at: expected an ISO-8601 time like "2026-11-20T14:30:00+06:00", got "yesterday"',
    "wanted.csv:8: expected 3 fields like the header, got 4",
]


def test_every_bad_wanted_row_is_named_and_nothing_is_imported(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    before = dump(shop_store)
    with pytest.raises(ImportRejected) as caught:
        run(shop_store, "wanted", BAD_WANTED)
    assert [str(bad) for bad in caught.value.bad] == BAD_WANTED_ROWS
    assert str(caught.value) == "wanted.csv: 6 bad rows of 7, nothing imported"
    assert dump(shop_store) == before


def test_skip_bad_records_the_good_wanted_rows_and_lists_the_bad(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    result = run(shop_store, "wanted", BAD_WANTED, skip_bad=True)
    assert [str(bad) for bad in result.skipped] == BAD_WANTED_ROWS
    assert (result.rows, result.created, result.unchanged) == (7, 1, 0)
    # Line 2 (C1, TEA-500G) is the one good row.
    wishes = rows(shop_store, col(ProductWanted.customer_id), col(ProductWanted.product_id))
    assert wishes == [(1, 1)]


def test_a_wanted_file_without_a_sku_column_is_refused(
    shop_store: Engine, run: Callable[..., ImportResult]
) -> None:
    with pytest.raises(CsvFormatError, match=r'wanted\.csv:1: missing required column "sku"'):
        run(shop_store, "wanted", "customer_id,at\nC1,\n")
