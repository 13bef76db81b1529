"""CSV import: shop-API meaning in bulk, bad rows named by line, all or nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from engine.errors import DataError, StoreError
from engine.intake.importer import CsvFormatError, ImportRejected, ImportResult, import_csv
from engine.store.db import make_engine, upgrade
from engine.store.models import (
    ConsentChange,
    Customer,
    CustomerTag,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
)
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

CUSTOMERS = """\
id,email,name,locale,timezone,city,birthday,tags,marketing_consent,consent_source,created_at
C1,Rahim@Example.com,Rahim Uddin,bn_BD,Asia/Dhaka,Dhaka,1990-04-14,vip;regular,yes,checkout,2026-01-01T10:00:00
C2,karim@example.com,Karim,,,,,wholesale|vip,no,,2026-02-01T10:00:00Z
C3,nadia@example.com,,,,,,,,,
"""
PRODUCTS = """\
sku,name,name_bn,category,price,stock
JUTE-BAG-01,Jute bag,পাটের ব্যাগ,bags,450.00,12
TEA-500G,Tea 500 g,,tea,320,5
FREE-CARD,Greeting card,,,0,
"""
ORDERS = """\
order_id,customer_id,placed_at,delivered_at,status,sku,quantity,unit_price
1001,C1,2026-11-01T10:00:00,,,JUTE-BAG-01,2,
1001,C1,2026-11-01T10:00:00,,,TEA-500G,1,300.00
1002,C1,2026-11-05T09:30:00+06:00,2026-11-07T12:00:00+06:00,,TEA-500G,3,
1003,C1,2026-11-06T10:00:00,,cancelled,JUTE-BAG-01,1,
1004,C2,2026-11-02T12:00:00Z,,,FREE-CARD,1,
"""


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


@pytest.fixture
def csv_file(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str, text: str, *, bom: bool = False) -> Path:
        path = tmp_path / name
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
        return path

    return write


@pytest.fixture
def run(now: datetime) -> Callable[..., ImportResult]:
    def run_import(engine: Engine, kind: str, path: Path, **kw: Any) -> ImportResult:
        kw.setdefault("now", now)
        return import_csv(engine, kind, path, shop_timezone="Asia/Dhaka", shown=path.name, **kw)

    return run_import


@pytest.fixture
def shop(
    fresh_store: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> Engine:
    """A store with the three sample files imported, on SQLite and PostgreSQL."""
    for kind, text in (("customers", CUSTOMERS), ("products", PRODUCTS), ("orders", ORDERS)):
        run(fresh_store, kind, csv_file(f"{kind}.csv", text))
    return fresh_store


@pytest.fixture(scope="module")
def empty_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with the schema and no rows, migrated once per module."""
    path = tmp_path_factory.mktemp("empty") / "empty.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # checkpoints the WAL into the file
    return path


@pytest.fixture(scope="module")
def shop_file(tmp_path_factory: pytest.TempPathFactory, empty_file: Path) -> Path:
    """An SQLite file with the three sample files imported, built once per module."""
    folder = tmp_path_factory.mktemp("shop")
    path = folder / "shop.db"
    shutil.copy(empty_file, path)
    engine = make_engine(f"sqlite:///{path}")
    now = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    for kind, text in (("customers", CUSTOMERS), ("products", PRODUCTS), ("orders", ORDERS)):
        (folder / f"{kind}.csv").write_text(text, encoding="utf-8")
        import_csv(engine, kind, folder / f"{kind}.csv", now=now, shop_timezone="Asia/Dhaka")
    engine.dispose()  # checkpoints the WAL into the file
    return path


def _copy(template: Path, folder: Path) -> Iterator[Engine]:
    path = folder / "copy.db"
    shutil.copy(template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_shop(shop_file: Path, tmp_path: Path) -> Iterator[Engine]:
    """A private copy of the imported SQLite shop (copying beats importing per test)."""
    yield from _copy(shop_file, tmp_path)


@pytest.fixture
def sqlite_store(empty_file: Path, tmp_path: Path) -> Iterator[Engine]:
    """A private copy of an empty, migrated SQLite store."""
    yield from _copy(empty_file, tmp_path)


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to compare a store before and after."""
    with engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(table.select())), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }


def customer(engine: Engine, external_id: str) -> Customer:
    with Session(engine) as session:
        return session.exec(
            select(Customer).where(Customer.external_id == external_id)
        ).scalar_one()


def rows(engine: Engine, model: Any, *where: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.exec(select(model).where(*where)).scalars())


# ---------------------------------------------------------------- what gets stored


def test_customers_are_stored_with_every_column(shop: Engine, now: datetime) -> None:
    rahim = customer(shop, "C1")
    assert (rahim.email, rahim.name, rahim.locale, rahim.timezone, rahim.city) == (
        "rahim@example.com",
        "Rahim Uddin",
        "bn_BD",
        "Asia/Dhaka",
        "Dhaka",
    )
    assert rahim.birthday == date(1990, 4, 14)
    # A naive time is the shop's (Asia/Dhaka, UTC+6); Z is UTC.
    assert rahim.created_at == datetime(2026, 1, 1, 4, 0, tzinfo=UTC)
    assert customer(shop, "C2").created_at == datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    assert customer(shop, "C3").created_at == now
    assert (rahim.marketing_consent, rahim.consent_source, rahim.consent_at) == (
        True,
        "checkout",
        now,
    )
    assert customer(shop, "C2").marketing_consent is False
    tags = {(t.customer_id, t.tag) for t in rows(shop, CustomerTag)}
    karim = customer(shop, "C2")
    assert tags == {
        (rahim.id, "vip"),
        (rahim.id, "regular"),
        (karim.id, "wholesale"),
        (karim.id, "vip"),
    }
    log = rows(shop, ConsentChange)
    assert [(c.customer_id, c.consent, c.source) for c in log] == [(rahim.id, True, "checkout")]


def test_products_and_their_first_price_are_stored(shop: Engine, now: datetime) -> None:
    products = {p.sku: p for p in rows(shop, Product)}
    bag = products["JUTE-BAG-01"]
    assert (bag.name, bag.name_bn, bag.category, bag.price, bag.stock) == (
        "Jute bag",
        "পাটের ব্যাগ",
        "bags",
        Decimal("450.00"),
        12,
    )
    assert products["FREE-CARD"].price == Decimal("0.00")
    assert products["FREE-CARD"].stock == 0
    history = {(c.product_id, c.price, c.changed_at) for c in rows(shop, PriceChange)}
    assert history == {(p.id, p.price, now) for p in products.values()}


def test_orders_group_lines_default_prices_and_keep_customer_totals(shop: Engine) -> None:
    orders = {o.external_id: o for o in rows(shop, Order)}
    assert set(orders) == {"1001", "1002", "1003", "1004"}
    first = orders["1001"]
    assert first.placed_at == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert (first.status, first.delivered_at) == (OrderStatus.PLACED, None)
    items = sorted(
        (i.quantity, i.unit_price) for i in rows(shop, OrderItem, OrderItem.order_id == first.id)
    )
    assert items == [(1, Decimal("300.00")), (2, Decimal("450.00"))]
    assert first.total == Decimal("1200.00")
    delivered = orders["1002"]
    assert (delivered.status, delivered.delivered_at) == (
        OrderStatus.DELIVERED,
        datetime(2026, 11, 7, 6, 0, tzinfo=UTC),
    )
    assert delivered.total == Decimal("960.00")
    assert orders["1003"].status == OrderStatus.CANCELLED
    assert orders["1004"].total == Decimal("0.00")  # a free item stays free
    rahim = customer(shop, "C1")
    # The cancelled order 1003 counts in neither the count nor the money.
    assert (rahim.orders_count, rahim.total_spent) == (2, Decimal("2160.00"))
    assert rahim.first_order_at == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert rahim.last_order_at == datetime(2026, 11, 5, 3, 30, tzinfo=UTC)
    assert customer(shop, "C3").orders_count == 0


def test_importing_the_same_files_again_changes_nothing(
    shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult], now: datetime
) -> None:
    before = dump(shop)
    later = now + timedelta(days=1)
    for kind, text, count in (
        ("customers", CUSTOMERS, 3),
        ("products", PRODUCTS, 3),
        ("orders", ORDERS, 4),
    ):
        result = run(shop, kind, csv_file(f"{kind}.csv", text), now=later)
        assert (result.created, result.updated, result.unchanged) == (0, 0, count), kind
    assert dump(shop) == before


def test_imported_orders_are_recorded_at_the_import_and_keep_that_time(
    shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult], now: datetime
) -> None:
    assert {o.external_id: o.recorded_at for o in rows(shop, Order)} == dict.fromkeys(
        ("1001", "1002", "1003", "1004"), now
    )
    delivered = ORDERS.replace(
        "1001,C1,2026-11-01T10:00:00,,", "1001,C1,2026-11-01T10:00:00,2026-11-03T10:00:00,"
    )
    run(shop, "orders", csv_file("orders.csv", delivered), now=now + timedelta(days=1))
    assert {o.recorded_at for o in rows(shop, Order)} == {now}


def test_a_byte_order_mark_is_not_part_of_the_first_column(
    sqlite_store: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    result = run(sqlite_store, "customers", csv_file("customers.csv", CUSTOMERS, bom=True))
    assert result.created == 3
    assert customer(sqlite_store, "C1").email == "rahim@example.com"


def test_crlf_line_ends_and_quoted_cells_with_newlines_keep_physical_line_numbers(
    sqlite_store: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    text = (
        "id,email,name,city\r\n"
        'C1,a@example.com,"Rahim\r\nUddin",Dhaka\r\n'
        "C2,not-an-address,Karim,Khulna\r\n"
    )
    with pytest.raises(ImportRejected) as caught:
        run(sqlite_store, "customers", csv_file("customers.csv", text))
    assert [str(b) for b in caught.value.bad] == [
        "customers.csv:2: name: must be one line, got a line break",
        'customers.csv:4: email: expected an email address, got "not-an-address"',
    ]


# ---------------------------------------------------------------- updates


def test_a_changed_customer_is_updated_and_its_consent_change_logged(
    shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult], now: datetime
) -> None:
    later = now + timedelta(days=1)
    text = "id,email,name,tags,marketing_consent\nC1,rahim@example.com,Rahim U.,new,no\nC2,karim@example.com,Karim,,\n"
    result = run(shop, "customers", csv_file("update.csv", text), now=later)
    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    rahim = customer(shop, "C1")
    assert (rahim.name, rahim.marketing_consent, rahim.consent_at, rahim.updated_at) == (
        "Rahim U.",
        False,
        later,
        later,
    )
    assert rahim.city == "Dhaka"  # a column left out keeps its value
    assert {t.tag for t in rows(shop, CustomerTag, CustomerTag.customer_id == rahim.id)} == {"new"}
    log = rows(shop, ConsentChange, ConsentChange.customer_id == rahim.id)
    assert [(c.consent, c.at, c.source) for c in log] == [
        (True, now, "checkout"),
        (False, later, "import"),
    ]
    assert customer(shop, "C2").updated_at == now  # unchanged rows are not touched


def test_a_changed_price_is_recorded_in_the_price_history(
    sqlite_shop: Engine,
    csv_file: Callable[..., Path],
    run: Callable[..., ImportResult],
    now: datetime,
) -> None:
    later = now + timedelta(days=2)
    text = "sku,name,price\nJUTE-BAG-01,Jute bag,399.50\nTEA-500G,Tea 500 g,320.00\n"
    result = run(sqlite_shop, "products", csv_file("prices.csv", text), now=later)
    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    bag = rows(sqlite_shop, Product, Product.sku == "JUTE-BAG-01")[0]
    assert (bag.price, bag.stock) == (Decimal("399.50"), 12)
    history = rows(sqlite_shop, PriceChange, PriceChange.product_id == bag.id)
    assert sorted((c.changed_at, c.price) for c in history) == [
        (now, Decimal("450.00")),
        (later, Decimal("399.50")),
    ]


def test_a_newly_given_delivery_time_marks_a_stored_order_delivered_once(
    sqlite_shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    text = ORDERS.replace(
        "1001,C1,2026-11-01T10:00:00,,", "1001,C1,2026-11-01T10:00:00,2026-11-03T10:00:00,"
    )
    result = run(sqlite_shop, "orders", csv_file("orders.csv", text))
    assert (result.created, result.updated, result.unchanged) == (0, 1, 3)
    order = rows(sqlite_shop, Order, Order.external_id == "1001")[0]
    assert (order.status, order.delivered_at) == (
        OrderStatus.DELIVERED,
        datetime(2026, 11, 3, 4, 0, tzinfo=UTC),
    )
    moved = text.replace("2026-11-03T10:00:00", "2026-11-04T10:00:00")
    again = run(sqlite_shop, "orders", csv_file("orders.csv", moved))
    assert (again.updated, again.unchanged) == (0, 4)  # the first delivery time stays
    assert (
        rows(sqlite_shop, Order, Order.external_id == "1001")[0].delivered_at == order.delivered_at
    )


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        pytest.param(
            "customers",
            "id,email,name\nC9,someone@,Someone\n",
            'customers.csv:2: email: expected an email address, got "someone@"',
            id="bad-email",
        ),
        pytest.param(
            "products",
            "sku,name,price\nTEA-1KG,Tea 1 kg,600\nMUG-01,Mug,-250.00\n",
            'products.csv:3: price: expected an amount of zero or more, got "-250.00"',
            id="negative-price",
        ),
        pytest.param(
            "products",
            "sku,name,price\nTEA-1KG,Tea 1 kg,600.125\n",
            'products.csv:2: price: expected at most two decimal places, got "600.125"',
            id="three-decimals",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n2001,C1,2026-11-10T10:00,TEA-500G,two\n",
            'orders.csv:2: quantity: expected a whole number of 1 or more, got "two"',
            id="non-numeric-quantity",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n2001,C1,2026-11-10T10:00,TEA-500G,0\n",
            'orders.csv:2: quantity: expected a whole number of 1 or more, got "0"',
            id="zero-quantity",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n2001,C404,2026-11-10T10:00,TEA-500G,1\n",
            'orders.csv:2: customer_id: unknown customer "C404"',
            id="unknown-customer",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n2001,C1,2026-11-10T10:00,NOPE-1,1\n",
            'orders.csv:2: sku: unknown product sku "NOPE-1"',
            id="unknown-sku",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n2001,C1,10/11/2026,TEA-500G,1\n",
            'orders.csv:2: placed_at: expected an ISO-8601 time like "2026-11-20T14:30:00+06:00", got "10/11/2026"',
            id="bad-time",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n"
            "2001,C1,0001-01-01T00:00:00+06:00,TEA-500G,1\n",
            "orders.csv:2: placed_at: is out of range: expected a time between years 1 and 9999 "
            'in UTC, got "0001-01-01T00:00:00+06:00"',
            id="year-one-ahead-of-utc",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,delivered_at,sku,quantity\n"
            "2001,C1,2026-11-10T10:00,9999-12-31T23:00:00-06:00,TEA-500G,1\n",
            "orders.csv:2: delivered_at: is out of range: expected a time between years 1 and "
            '9999 in UTC, got "9999-12-31T23:00:00-06:00"',
            id="last-day-behind-utc",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n2001,C1,10000-01-01T00:00,TEA-500G,1\n",
            "orders.csv:2: placed_at: is out of range: expected a time between years 1 and 9999 "
            'in UTC, got "10000-01-01T00:00"',
            id="year-past-9999",
        ),
        pytest.param(
            "customers",
            "id,email,created_at\nC9,c9@example.com,0001-01-01T03:00:00\n",
            "customers.csv:2: created_at: is out of range: expected a time between years 1 and "
            '9999 in UTC, got "0001-01-01T03:00:00"',
            id="naive-year-one-in-the-shops-zone",
        ),
        pytest.param(
            "customers",
            "id,email,birthday\nC9,c9@example.com,10000-04-14\n",
            "customers.csv:2: birthday: is out of range: expected a date between years 1 and 9999, "
            'got "10000-04-14"',
            id="birthday-past-9999",
        ),
        pytest.param(
            "customers",
            'id,email,name\nC9,c9@example.com,"Rahim\nUddin"\n',
            "customers.csv:2: name: must be one line, got a line break",
            id="name-with-lf",
        ),
        pytest.param(
            "customers",
            'id,email,name\nC9,c9@example.com,"Rahim\rUddin"\n',
            "customers.csv:2: name: must be one line, got a line break",
            id="name-with-cr",
        ),
        pytest.param(
            "customers",
            "id,email,city\nC9,c9@example.com,Dhaka\u2028Mirpur\n",
            "customers.csv:2: city: must be one line, got a line break",
            id="city-with-line-separator",
        ),
        pytest.param(
            "products",
            'sku,name,price\nTEA-1KG,"Tea\r\n1 kg",600\n',
            "products.csv:2: name: must be one line, got a line break",
            id="product-name-with-crlf",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,delivered_at,sku,quantity\n"
            "2001,C1,2026-11-10T10:00,2026-11-09T10:00,TEA-500G,1\n",
            "orders.csv:2: delivered_at: is before placed_at (2026-11-10T10:00)",
            id="delivered-before-placed",
        ),
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku,quantity\n2001,C1,2026-11-10T10:00,TEA-500G\n",
            "orders.csv:2: expected 5 fields like the header, got 4",
            id="short-row",
        ),
        pytest.param(
            "customers",
            "id,email\nC9,a@example.com\nC9,b@example.com\n",
            "customers.csv:3: id: C9 is already on line 2 of this file",
            id="repeated-id",
        ),
        pytest.param(
            "customers",
            "id,email\nC9,karim@example.com\n",
            "customers.csv:2: email: karim@example.com already belongs to customer C2",
            id="email-of-another-customer",
        ),
        pytest.param(
            "customers",
            "id,email,marketing_consent\nC9,c9@example.com,maybe\n",
            'customers.csv:2: marketing_consent: expected true/false, yes/no or 1/0, got "maybe"',
            id="bad-consent",
        ),
        pytest.param(
            "customers",
            "id,email,timezone\nC9,c9@example.com,Dhaka\n",
            'customers.csv:2: timezone: expected a timezone like "Asia/Dhaka", got "Dhaka"',
            id="bad-timezone",
        ),
    ],
)
def test_a_bad_row_is_named_by_line_and_nothing_is_imported(
    sqlite_shop: Engine,
    csv_file: Callable[..., Path],
    run: Callable[..., ImportResult],
    kind: str,
    text: str,
    message: str,
) -> None:
    before = dump(sqlite_shop)
    with pytest.raises(ImportRejected) as caught:
        run(sqlite_shop, kind, csv_file(f"{kind}.csv", text))
    assert [str(bad) for bad in caught.value.bad] == [message]
    assert isinstance(caught.value, DataError)
    assert dump(sqlite_shop) == before


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        pytest.param(
            "orders",
            "order_id,customer_id,placed_at,sku\n2001,C1,2026-11-10T10:00,TEA-500G\n",
            'orders.csv:1: missing required column "quantity"; found: order_id, customer_id, placed_at, sku',
            id="missing-column",
        ),
        pytest.param(
            "customers",
            "id,emial\nC1,a@example.com\n",
            'customers.csv:1: missing required column "email"; found: id, emial',
            id="misspelt-required-column",
        ),
        pytest.param(
            "customers",
            "id,email,birth_day\nC1,a@example.com,1990-01-01\n",
            'customers.csv:1: unknown column "birth_day" (did you mean "birthday"?); the columns are: '
            "id, email, name, locale, timezone, city, birthday, tags, marketing_consent, "
            "consent_source, created_at",
            id="unknown-column",
        ),
        pytest.param(
            "products",
            "sku,name,price,price\nA,B,1,2\n",
            'products.csv:1: column "price" appears twice; found: sku, name, price, price',
            id="repeated-column",
        ),
        pytest.param(
            "products",
            "sku,name,price,\nA,B,1,\n",
            'products.csv:1: column 4 of the header has no name; found: sku, name, price, ""',
            id="unnamed-column",
        ),
        pytest.param(
            "products",
            "",
            "products.csv:1: the file is empty: expected a header line with the columns sku, name, name_bn, category, price, stock",
            id="empty-file",
        ),
    ],
)
def test_a_bad_header_is_one_clear_error_and_nothing_is_imported(
    sqlite_shop: Engine,
    csv_file: Callable[..., Path],
    run: Callable[..., ImportResult],
    kind: str,
    text: str,
    message: str,
) -> None:
    before = dump(sqlite_shop)
    with pytest.raises(CsvFormatError) as caught:
        run(sqlite_shop, kind, csv_file(f"{kind}.csv", text))
    assert str(caught.value) == message
    assert dump(sqlite_shop) == before


def test_a_file_that_is_not_utf8_is_refused_with_its_line(
    sqlite_store: Engine, tmp_path: Path, run: Callable[..., ImportResult]
) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes("id,email,name\nC1,a@example.com,Zoë\n".encode("latin-1"))
    with pytest.raises(CsvFormatError, match=r"customers\.csv:2: not UTF-8 text \(byte 0xeb\)"):
        run(sqlite_store, "customers", path)


def test_one_bad_line_keeps_its_whole_order_out(
    sqlite_shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    text = (
        "order_id,customer_id,placed_at,sku,quantity,unit_price\n"
        "3001,C2,2026-11-10T10:00,TEA-500G,1,\n"
        "3001,C2,2026-11-10T10:00,JUTE-BAG-01,1,-5\n"
        "3002,C2,2026-11-11T10:00,TEA-500G,1,\n"
        "3002,C3,2026-11-11T10:00,TEA-500G,1,\n"
        "3003,C2,2026-11-12T10:00,NOPE,1,\n"
        "3003,C2,2026-11-12T10:00,TEA-500G,two,\n"
        "3003,C2,2026-11-12T10:00,TEA-500G,1,\n"
    )
    with pytest.raises(ImportRejected) as caught:
        run(sqlite_shop, "orders", csv_file("orders.csv", text))
    assert [str(b) for b in caught.value.bad] == [
        "orders.csv:2: order_id: order 3001 is not imported: its line 3 is bad",
        'orders.csv:3: unit_price: expected an amount of zero or more, got "-5"',
        "orders.csv:4: order_id: order 3002 is not imported: its line 5 is bad",
        'orders.csv:5: customer_id: order 3002 has customer_id "C2" on an earlier line, got "C3"',
        'orders.csv:6: sku: unknown product sku "NOPE"',
        'orders.csv:7: quantity: expected a whole number of 1 or more, got "two"',
        "orders.csv:8: order_id: order 3003 is not imported: its line 6 is bad",
    ]


def test_skip_bad_imports_the_good_rows_and_lists_the_bad(
    shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    text = (
        "order_id,customer_id,placed_at,sku,quantity\n"
        "4001,C2,2026-11-12T10:00,TEA-500G,2\n"
        "4002,C404,2026-11-12T10:00,TEA-500G,1\n"
        "4003,C3,2026-11-12T11:00,JUTE-BAG-01,two\n"
        "4004,C3,2026-11-13T11:00,JUTE-BAG-01,1\n"
    )
    result = run(shop, "orders", csv_file("orders.csv", text), skip_bad=True)
    assert (result.rows, result.created) == (4, 2)
    assert [(b.line, b.column) for b in result.skipped] == [(3, "customer_id"), (4, "quantity")]
    stored = {o.external_id for o in rows(shop, Order)}
    assert {"4001", "4004"} <= stored and not {"4002", "4003"} & stored
    karim, nadia = customer(shop, "C2"), customer(shop, "C3")
    assert (karim.orders_count, karim.total_spent) == (2, Decimal("640.00"))
    assert (nadia.orders_count, nadia.first_order_at) == (
        1,
        datetime(2026, 11, 13, 5, 0, tzinfo=UTC),
    )


def test_delivering_a_cancelled_order_is_a_bad_row(
    sqlite_shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    text = "order_id,customer_id,placed_at,delivered_at,sku,quantity\n1003,C1,2026-11-06T10:00:00,2026-11-08T10:00,JUTE-BAG-01,1\n"
    with pytest.raises(ImportRejected) as caught:
        run(sqlite_shop, "orders", csv_file("orders.csv", text))
    assert [str(b) for b in caught.value.bad] == [
        "orders.csv:2: delivered_at: order 1003 is cancelled and cannot be delivered"
    ]


def test_progress_is_reported_up_to_every_row(
    sqlite_store: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    seen: list[tuple[str, int, int]] = []
    run(
        sqlite_store,
        "customers",
        csv_file("customers.csv", CUSTOMERS),
        progress=lambda *step: seen.append(step),
    )
    assert seen[-1] == ("checking", 3, 3)


def test_naive_now_is_refused(
    sqlite_store: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    with pytest.raises(DataError, match="now must be a timezone-aware datetime"):
        run(sqlite_store, "customers", csv_file("c.csv", CUSTOMERS), now=datetime(2026, 11, 22))


def test_bad_rows_leave_postgresql_as_it_was_too(
    shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    before = dump(shop)
    text = "order_id,customer_id,placed_at,sku,quantity\n5001,C2,2026-11-10T10:00,TEA-500G,1\n5002,C404,2026-11-10T10:00,TEA-500G,1\n"
    with pytest.raises(ImportRejected):
        run(shop, "orders", csv_file("orders.csv", text))
    with pytest.raises(CsvFormatError):
        run(shop, "customers", csv_file("customers.csv", "id,name\nC1,x\n"))
    assert dump(shop) == before


def test_a_database_failure_midway_rolls_back_everything_and_says_why(
    sqlite_shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    with sqlite_shop.begin() as conn:  # order lines are written after their orders
        conn.execute(
            sqlalchemy.text(
                "CREATE TRIGGER frozen BEFORE INSERT ON order_item "
                "BEGIN SELECT RAISE(ABORT, 'order lines are frozen'); END"
            )
        )
    before = dump(sqlite_shop)
    orders = "order_id,customer_id,placed_at,sku,quantity\n6001,C2,2026-11-10T10:00,TEA-500G,1\n"
    with pytest.raises(StoreError) as caught:
        run(sqlite_shop, "orders", csv_file("orders.csv", orders))
    assert str(caught.value) == (
        "orders.csv: the database refused the import: order lines are frozen"
    )
    assert dump(sqlite_shop) == before
