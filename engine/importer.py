"""CSV import of customers, products and orders, in bulk.

The same meaning as the shop API (`engine.shop`), at a hundred thousand rows
a minute: every row is validated in Python first, then the good rows are
written with Core `executemany` in one transaction. Upserts are keyed by the
shop's own ids (customer `id`, product `sku`, order `order_id`), so importing
a file twice changes nothing the second time.

A bad row is reported as `file:line: column: reason`, `line` being the
physical line of the file (the header is line 1). With bad rows the import
raises `ImportRejected` and writes nothing, unless `skip_bad` is set: then the
good rows are written and the bad ones come back in `ImportResult.skipped`.
A file whose header lacks a required column, or that is not UTF-8 CSV, raises
`CsvFormatError` before any row is read.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .config import parse_email, parse_locale, parse_timezone
from .db import session_scope
from .errors import DataError, StoreError
from .models import (
    ConsentChange,
    Customer,
    CustomerTag,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
)
from .shop import refresh_order_totals

KINDS = ("customers", "products", "orders")
COLUMNS = {
    "customers": (
        "id",
        "email",
        "name",
        "locale",
        "timezone",
        "city",
        "birthday",
        "tags",
        "marketing_consent",
        "consent_source",
        "created_at",
    ),
    "products": ("sku", "name", "name_bn", "category", "price", "stock"),
    "orders": (
        "order_id",
        "customer_id",
        "placed_at",
        "delivered_at",
        "status",
        "sku",
        "quantity",
        "unit_price",
    ),
}
REQUIRED = {
    "customers": ("id", "email"),
    "products": ("sku", "name", "price"),
    "orders": ("order_id", "customer_id", "placed_at", "sku", "quantity"),
}
DEFAULT_CONSENT_SOURCE = "import"
CHUNK = 500  # ids per IN (...) lookup: far below every SQLite variable limit
WRITE_CHUNK = 5_000  # rows per executemany

# A callback told how far a step has got: (step, rows done, rows in all).
Progress = Callable[[str, int, int], None]
T = TypeVar("T")


# ---------------------------------------------------------------- results and errors


@dataclass(frozen=True)
class BadRow:
    """One row that cannot be imported: where (file, physical line, column) and why."""

    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        column = f" {self.column}:" if self.column else ""
        return f"{self.file}:{self.line}:{column} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CsvFormatError(DataError):
    """The file cannot be read as this kind of CSV at all (encoding, header, quoting)."""


class ImportRejected(DataError):
    """The file has bad rows and skipping them was not asked for: nothing was written."""

    def __init__(self, file: str, bad: list[BadRow], rows: int):
        self.file = file
        self.bad = bad
        self.rows = rows
        noun = "row" if len(bad) == 1 else "rows"
        super().__init__(f"{file}: {len(bad)} bad {noun} of {rows}, nothing imported")


@dataclass
class ImportResult:
    """What an import did. For orders, `updated` counts orders newly marked delivered."""

    kind: str
    file: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[BadRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = [bad.as_dict() for bad in self.skipped]
        return data


class _BadCell(ValueError):
    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


# ---------------------------------------------------------------- entry point


def import_csv(
    engine: Engine,
    kind: str,
    path: str | Path,
    *,
    now: datetime,
    shop_timezone: str,
    skip_bad: bool = False,
    progress: Progress | None = None,
    shown: str | None = None,
) -> ImportResult:
    """Import `path` as `kind` (customers, products or orders) into the store.

    Naive times in the file are read in `shop_timezone`. `shown` is the file
    name used in messages (default: `path` as given). Raises CsvFormatError for
    an unreadable file or header, ImportRejected for bad rows without
    `skip_bad` (nothing written either way), StoreError if the database fails
    (the transaction is rolled back).
    """
    if kind not in KINDS:
        raise DataError(f"unknown import kind {kind!r}: expected one of {', '.join(KINDS)}")
    if now.tzinfo is None:
        raise DataError(f"now must be a timezone-aware datetime, got: {now!r}")
    shown = shown or str(path)
    records = read_csv(Path(path), shown, COLUMNS[kind], REQUIRED[kind])
    job = _Job(kind, shown, now, ZoneInfo(parse_timezone(shop_timezone)), skip_bad, progress)
    try:
        with session_scope(engine) as session:
            job.run(session, records)
    except SQLAlchemyError as exc:
        # The driver's own message, first line only: SQLAlchemy's repeats every parameter.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StoreError(f"{shown}: the database refused the import: {reason}") from exc
    return job.result


# ---------------------------------------------------------------- reading the file


@dataclass(frozen=True)
class Record:
    """One data row of the file: its first physical line and its cells by column."""

    line: int
    cells: dict[str, str]
    problem: str | None = None  # set when the row cannot even be split into its columns


def read_csv(
    path: Path, shown: str, columns: Sequence[str], required: Sequence[str]
) -> list[Record]:
    """The file's data rows; a row of the wrong width comes with its `problem` set.

    Raises CsvFormatError if the file is not UTF-8 (a BOM is fine), is empty,
    has a missing, unknown or repeated column, or breaks CSV quoting.
    """
    text = _decode(path, shown)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise CsvFormatError(
                f"{shown}:1: the file is empty: expected a header line with the columns "
                f"{', '.join(columns)}"
            )
        names = _check_header(shown, [h.strip().lower() for h in header], columns, required)
        rows: list[Record] = []
        previous = reader.line_num
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            problem = None
            if len(cells) != len(names):
                problem = f"expected {len(names)} fields like the header, got {len(cells)}"
            rows.append(
                Record(line, {n: c.strip() for n, c in zip(names, cells, strict=False)}, problem)
            )
    except csv.Error as exc:
        raise CsvFormatError(f"{shown}:{reader.line_num}: not valid CSV: {exc}") from exc
    return rows


def _decode(path: Path, shown: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvFormatError(f"{shown}: cannot read the file: {exc.strerror}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CsvFormatError(
            f"{shown}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file "
            "as CSV UTF-8"
        ) from exc


def _check_header(
    shown: str, names: list[str], columns: Sequence[str], required: Sequence[str]
) -> list[str]:
    found = ", ".join(n or '""' for n in names)
    missing = [c for c in required if c not in names]
    if missing:
        which = ", ".join(f'"{c}"' for c in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise CsvFormatError(f"{shown}:1: missing required {noun} {which}; found: {found}")
    for name in names:
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise CsvFormatError(
                f'{shown}:1: unknown column "{name}"{hint}; the columns are: {", ".join(columns)}'
            )
        if names.count(name) > 1:
            raise CsvFormatError(f'{shown}:1: column "{name}" appears twice; found: {found}')
    return names


# ---------------------------------------------------------------- cells


def _shown(value: str) -> str:
    return f'"{value}"'


def _text(value: str, limit: int) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if len(value) > limit:
        raise ValueError(f"expected at most {limit} characters, got {len(value)}")
    return value


_WHOLE = re.compile(r"\+?\d{1,9}")


def _whole(value: str, minimum: int) -> int:
    if not _WHOLE.fullmatch(value) or int(value) < minimum:
        what = "1 or more" if minimum == 1 else "zero or more"
        raise ValueError(f"expected a whole number of {what}, got {_shown(value)}")
    return int(value)


@lru_cache(maxsize=4096)  # prices repeat across lines: parse each text once
def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise ValueError(f"expected an amount like 120.50, got {_shown(value)}")
    if amount < 0:
        raise ValueError(f"expected an amount of zero or more, got {_shown(value)}")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"expected at most two decimal places, got {_shown(value)}")
    if amount >= Decimal("1e13"):
        raise ValueError(f"expected an amount below 10,000,000,000,000, got {_shown(value)}")
    return amount.quantize(Decimal("0.01"))


def _when(value: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f'expected an ISO-8601 time like "2026-11-20T14:30:00+06:00", got {_shown(value)}'
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f'expected a date like "1990-04-14", got {_shown(value)}') from None


_YES = {"true", "yes", "1", "y"}
_NO = {"false", "no", "0", "n"}


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in _YES | _NO:
        return lowered in _YES
    raise ValueError(f"expected true/false, yes/no or 1/0, got {_shown(value)}")


def _tags(value: str) -> frozenset[str]:
    tags = frozenset(t.strip() for t in re.split(r"[;|]", value) if t.strip())
    for tag in tags:
        if len(tag) > 64:
            raise ValueError(f"a tag is longer than 64 characters: {_shown(tag)}")
    return tags


def _cell(record: Record, column: str, parse: Callable[[str], T]) -> T | None:
    """The parsed cell, or None when it is empty (or the column absent)."""
    value = record.cells.get(column, "")
    if not value:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise _BadCell(column, str(exc)) from None


def _required(record: Record, column: str, parse: Callable[[str], T]) -> T:
    """The parsed cell of a column every row must fill."""
    value = _cell(record, column, parse)
    if value is None:
        raise _BadCell(column, "is required, got an empty cell")
    return value


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _lookup(
    conn: Connection, table: Table, key: str, values: Iterable[Any], *columns: str
) -> dict[Any, Any]:
    """{key value: row} for the rows of `table` whose `key` is among `values`."""
    wanted = sorted(set(values))
    found: dict[Any, Any] = {}
    cols = [table.c[key], *(table.c[c] for c in columns)]
    for chunk in _chunks(wanted, CHUNK):
        for row in conn.execute(select(*cols).where(table.c[key].in_(chunk))):
            found[row[0]] = row
    return found


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


# ---------------------------------------------------------------- the import job


@dataclass
class _Job:
    kind: str
    shown: str
    now: datetime
    zone: ZoneInfo
    skip_bad: bool
    progress: Progress | None
    result: ImportResult = field(init=False)
    bad: list[BadRow] = field(default_factory=list)
    cells_by_line: dict[int, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.result = ImportResult(self.kind, self.shown)

    def run(self, session: Any, rows: list[Record]) -> None:
        self.result.rows = len(rows)
        records: list[Record] = []
        for row in rows:
            if row.problem:
                self.reject(row, "", row.problem)
            else:
                records.append(row)
        conn = session.connection()
        writer = {"customers": self._customers, "products": self._products}
        if self.kind == "orders":
            self._orders(session, conn, records)
        else:
            writer[self.kind](conn, records)

    def report(self, step: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(step, done, total)

    def parse(self, records: list[Record], parse: Callable[[Record], T]) -> list[tuple[Record, T]]:
        parsed: list[tuple[Record, T]] = []
        for number, record in enumerate(records, 1):
            try:
                parsed.append((record, parse(record)))
            except _BadCell as exc:
                self.reject(record, exc.column, str(exc))
            if number % 5000 == 0:
                self.report("checking", number, len(records))
        self.report("checking", len(records), len(records))
        return parsed

    def reject(self, record: Record, column: str, message: str) -> None:
        self.bad.append(BadRow(self.shown, record.line, column, message))
        self.cells_by_line[record.line] = record.cells

    def settle(self) -> None:
        """Stop here, before any write, if there are bad rows and skipping was not asked for."""
        self.bad.sort(key=lambda b: b.line)
        if self.bad and not self.skip_bad:
            raise ImportRejected(self.shown, self.bad, self.result.rows)
        self.result.skipped = self.bad

    def write(self, conn: Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
        for chunk in _chunks(rows, WRITE_CHUNK):
            conn.execute(statement, list(chunk))

    def skip_whole_orders(self, lines: list[tuple[Record, _LineRow]]) -> set[str]:
        """The ids of orders with a bad line; their other lines are reported too."""
        first_bad: dict[str, int] = {}
        for bad in sorted(self.bad, key=lambda b: b.line):
            order_id = self.cells_by_line[bad.line].get("order_id", "")
            first_bad.setdefault(order_id, bad.line)
        for record, line in lines:
            bad_line = first_bad.get(line.order_id)
            if bad_line is not None and bad_line != record.line:
                message = f"order {line.order_id} is not imported: its line {bad_line} is bad"
                self.reject(record, "order_id", message)
        return set(first_bad)

    # ------------------------------------------------------------ customers

    def _customers(self, conn: Connection, records: list[Record]) -> None:
        rows = self.parse(records, lambda r: _customer_row(r, self.zone))
        parsed = _unique(self, rows, "id", "email")
        table = _table(Customer)
        stored = _lookup(conn, table, "external_id", (r.external_id for _, r in parsed), *_C_COLS)
        owners = _lookup(conn, table, "email", (r.email for _, r in parsed), "external_id")
        good = []
        for record, row in parsed:
            owner = owners.get(row.email)
            if owner is not None and owner.external_id != row.external_id:
                self.reject(
                    record, "email", f"{row.email} already belongs to customer {owner.external_id}"
                )
            else:
                good.append(row)
        self.settle()
        current_tags = _tags_by_customer(conn, [s.id for s in stored.values()])
        _write_customers(self, conn, good, stored, current_tags)

    # ------------------------------------------------------------ products

    def _products(self, conn: Connection, records: list[Record]) -> None:
        parsed = _unique(self, self.parse(records, _product_row), "sku")
        table = _table(Product)
        stored = _lookup(conn, table, "sku", (r.sku for _, r in parsed), *_P_COLS)
        self.settle()
        _write_products(self, conn, [row for _, row in parsed], stored)

    # ------------------------------------------------------------ orders

    def _orders(self, session: Any, conn: Connection, records: list[Record]) -> None:
        lines = self.parse(records, _line_parser(self.zone))
        customers = _lookup(
            conn, _table(Customer), "external_id", (ln.customer_id for _, ln in lines), "id"
        )
        products = _lookup(conn, _table(Product), "sku", (ln.sku for _, ln in lines), "id", "price")
        stored = _lookup(
            conn,
            _table(Order),
            "external_id",
            (ln.order_id for _, ln in lines),
            "id",
            "status",
            "placed_at",
            "delivered_at",
        )
        orders = _assemble_orders(self, lines, customers, products, stored)
        for order_id in self.skip_whole_orders(lines):
            orders.pop(order_id, None)
        self.settle()
        touched = _write_orders(self, conn, orders, stored)
        refresh_order_totals(session, touched)


# ---------------------------------------------------------------- customers


@dataclass(frozen=True)
class _CustomerRow:
    external_id: str
    email: str
    name: str | None
    locale: str | None
    timezone: str | None
    city: str | None
    birthday: date | None
    tags: frozenset[str] | None
    consent: bool | None
    consent_source: str | None
    created_at: datetime | None


_C_COLS = (
    "id",
    "email",
    "name",
    "locale",
    "timezone",
    "city",
    "birthday",
    "created_at",
    "marketing_consent",
    "consent_at",
)
_C_FIELDS = ("email", "name", "locale", "timezone", "city", "birthday", "created_at")


def _customer_row(record: Record, zone: ZoneInfo) -> _CustomerRow:
    return _CustomerRow(
        external_id=_required(record, "id", lambda v: _text(v, 64)),
        email=_required(record, "email", parse_email).lower(),
        name=_cell(record, "name", lambda v: _text(v, 200)),
        locale=_cell(record, "locale", parse_locale),
        timezone=_cell(record, "timezone", parse_timezone),
        city=_cell(record, "city", lambda v: _text(v, 100)),
        birthday=_cell(record, "birthday", _day),
        tags=_cell(record, "tags", _tags),
        consent=_cell(record, "marketing_consent", _flag),
        consent_source=_cell(record, "consent_source", lambda v: _text(v, 100)),
        created_at=_cell(record, "created_at", lambda v: _when(v, zone)),
    )


def _unique(job: _Job, parsed: list[tuple[Record, T]], *columns: str) -> list[tuple[Record, T]]:
    """Drop (as bad) a row whose key column repeats an earlier row's value."""
    first: dict[tuple[str, Any], int] = {}
    kept = []
    attrs = {"id": "external_id", "email": "email", "sku": "sku"}
    for record, row in parsed:
        clash = None
        for column in columns:
            value = getattr(row, attrs[column])
            if (column, value) in first:
                clash = (column, value, first[(column, value)])
                break
        if clash:
            column, value, line = clash
            job.reject(record, column, f"{value} is already on line {line} of this file")
            continue
        for column in columns:
            first[(column, getattr(row, attrs[column]))] = record.line
        kept.append((record, row))
    return kept


def _tags_by_customer(conn: Connection, ids: list[int]) -> dict[int, frozenset[str]]:
    table = _table(CustomerTag)
    found: dict[int, set[str]] = {}
    for chunk in _chunks(sorted(ids), CHUNK):
        query = select(table.c.customer_id, table.c.tag).where(table.c.customer_id.in_(chunk))
        for customer_id, tag in conn.execute(query):
            found.setdefault(customer_id, set()).add(tag)
    return {k: frozenset(v) for k, v in found.items()}


def _write_customers(
    job: _Job,
    conn: Connection,
    rows: list[_CustomerRow],
    stored: dict[str, Any],
    current_tags: dict[int, frozenset[str]],
) -> None:
    table, now = _table(Customer), job.now
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    tag_sets: dict[str, frozenset[str]] = {}
    for row in rows:
        old = stored.get(row.external_id)
        values = _customer_values(row, old)
        if row.consent is not None and row.consent != (old.marketing_consent if old else False):
            source = row.consent_source or DEFAULT_CONSENT_SOURCE
            values |= {
                "marketing_consent": row.consent,
                "consent_at": now,
                "consent_source": source,
            }
            consents.append(
                {"external_id": row.external_id, "consent": row.consent, "source": source}
            )
        if row.tags is not None and row.tags != current_tags.get(
            old.id if old else -1, frozenset()
        ):
            tag_sets[row.external_id] = row.tags
        if old is None:
            inserts.append(_new_customer(row, values, now))
        elif values or row.external_id in tag_sets:
            updates.append({"b_id": old.id, **values, "updated_at": now})
        else:
            job.result.unchanged += 1
    job.result.created, job.result.updated = len(inserts), len(updates)
    job.write(conn, insert(table), inserts)
    _update_many(job, conn, table, updates)
    ids = {k: v.id for k, v in stored.items()}
    new_ids = _lookup(conn, table, "external_id", (r["external_id"] for r in inserts), "id")
    ids |= {k: v.id for k, v in new_ids.items()}
    _replace_tags(job, conn, {ids[k]: v for k, v in tag_sets.items()})
    log = [
        {"customer_id": ids[c.pop("external_id")], "at": now, **c, "detail": None} for c in consents
    ]
    job.write(conn, insert(_table(ConsentChange)), log)


def _customer_values(row: _CustomerRow, old: Any) -> dict[str, Any]:
    """The columns `row` gives that differ from the stored customer (all, if new)."""
    changed = {}
    for name in _C_FIELDS:
        value = getattr(row, name)
        if value is not None and (old is None or getattr(old, name) != value):
            changed[name] = value
    return changed


def _new_customer(row: _CustomerRow, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "external_id": row.external_id,
        "name": "",
        "locale": "en",
        "timezone": None,
        "city": None,
        "birthday": None,
        "marketing_consent": False,
        "consent_at": None,
        "consent_source": None,
        "created_at": now,
        "updated_at": now,
        "first_order_at": None,
        "last_order_at": None,
        "orders_count": 0,
        "total_spent": Decimal("0"),
        **values,
    }


def _update_many(job: _Job, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """UPDATE each row by its `b_id`, grouping rows that set the same columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        columns = tuple(sorted(k for k in row if k != "b_id"))
        groups.setdefault(columns, []).append(
            {f"v_{k}" if k != "b_id" else k: v for k, v in row.items()}
        )
    for columns, group in groups.items():
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({c: bindparam(f"v_{c}") for c in columns})
        )
        job.write(conn, statement, group)


def _replace_tags(job: _Job, conn: Connection, tag_sets: dict[int, frozenset[str]]) -> None:
    table = _table(CustomerTag)
    for chunk in _chunks(sorted(tag_sets), CHUNK):
        conn.execute(table.delete().where(table.c.customer_id.in_(chunk)))
    rows = [
        {"customer_id": cid, "tag": tag} for cid, tags in tag_sets.items() for tag in sorted(tags)
    ]
    job.write(conn, insert(table), rows)


# ---------------------------------------------------------------- products


@dataclass(frozen=True)
class _ProductRow:
    sku: str
    name: str
    name_bn: str | None
    category: str | None
    price: Decimal
    stock: int | None


_P_COLS = ("id", "name", "name_bn", "category", "price", "stock")


def _product_row(record: Record) -> _ProductRow:
    return _ProductRow(
        sku=_required(record, "sku", lambda v: _text(v, 64)),
        name=_required(record, "name", lambda v: _text(v, 200)),
        name_bn=_cell(record, "name_bn", lambda v: _text(v, 200)),
        category=_cell(record, "category", lambda v: _text(v, 100)),
        price=_required(record, "price", _amount),
        stock=_cell(record, "stock", lambda v: _whole(v, 0)),
    )


def _write_products(
    job: _Job, conn: Connection, rows: list[_ProductRow], stored: dict[str, Any]
) -> None:
    table, now = _table(Product), job.now
    inserts, updates, price_changes = [], [], []
    for row in rows:
        old = stored.get(row.sku)
        values = {
            name: getattr(row, name)
            for name in ("name", "name_bn", "category", "price", "stock")
            if getattr(row, name) is not None
            and (old is None or getattr(old, name) != getattr(row, name))
        }
        if old is None:
            inserts.append(
                {
                    "sku": row.sku,
                    "name_bn": None,
                    "category": None,
                    "stock": 0,
                    **values,
                    "updated_at": now,
                }
            )
        elif values:
            updates.append({"b_id": old.id, **values, "updated_at": now})
            if "price" in values:
                price_changes.append({"product_id": old.id, "price": row.price, "changed_at": now})
        else:
            job.result.unchanged += 1
    job.result.created, job.result.updated = len(inserts), len(updates)
    job.write(conn, insert(table), inserts)
    _update_many(job, conn, table, updates)
    new_ids = _lookup(conn, table, "sku", (r["sku"] for r in inserts), "id")
    price_changes += [
        {"product_id": new_ids[r["sku"]].id, "price": r["price"], "changed_at": now}
        for r in inserts
    ]
    job.write(conn, insert(_table(PriceChange)), price_changes)


# ---------------------------------------------------------------- orders


@dataclass(frozen=True)
class _LineRow:
    order_id: str
    customer_id: str
    placed_at: datetime
    delivered_at: datetime | None
    status: OrderStatus | None
    sku: str
    quantity: int
    unit_price: Decimal | None


def _status(value: str) -> OrderStatus:
    try:
        return OrderStatus(value.lower())
    except ValueError:
        names = ", ".join(s.value for s in OrderStatus)
        raise ValueError(f"expected one of {names}, got {_shown(value)}") from None


_HEAD = ("order_id", "customer_id", "placed_at", "delivered_at", "status")
_Head = tuple[str, str, datetime, datetime | None, OrderStatus | None]


def _order_head(record: Record, zone: ZoneInfo) -> _Head:
    """The columns every line of an order repeats, parsed and checked together."""
    placed_at = _required(record, "placed_at", lambda v: _when(v, zone))
    delivered_at = _cell(record, "delivered_at", lambda v: _when(v, zone))
    status = _cell(record, "status", _status)
    if delivered_at is not None and delivered_at < placed_at:
        raise _BadCell("delivered_at", f"is before placed_at ({record.cells['placed_at']})")
    if status == OrderStatus.DELIVERED and delivered_at is None:
        raise _BadCell("delivered_at", "is required when status is delivered")
    if status == OrderStatus.PLACED and delivered_at is not None:
        raise _BadCell("status", "is placed, but delivered_at is given")
    return (
        _required(record, "order_id", lambda v: _text(v, 64)),
        _required(record, "customer_id", lambda v: _text(v, 64)),
        placed_at,
        delivered_at,
        status,
    )


def _line_parser(zone: ZoneInfo) -> Callable[[Record], _LineRow]:
    """Parse order lines, each order's repeated columns once (they are most of the work)."""
    heads: dict[tuple[str, ...], _Head] = {}

    def parse(record: Record) -> _LineRow:
        key = tuple(record.cells.get(column, "") for column in _HEAD)
        head = heads.get(key)
        if head is None:
            head = heads[key] = _order_head(record, zone)
        order_id, customer_id, placed_at, delivered_at, status = head
        return _LineRow(
            order_id,
            customer_id,
            placed_at,
            delivered_at,
            status,
            sku=_required(record, "sku", lambda v: _text(v, 64)),
            quantity=_required(record, "quantity", lambda v: _whole(v, 1)),
            unit_price=_cell(record, "unit_price", _amount),
        )

    return parse


@dataclass
class _NewOrder:
    first: _LineRow
    customer: int
    lines: list[tuple[int, int, Decimal]] = field(default_factory=list)  # product, qty, price


def _assemble_orders(
    job: _Job,
    lines: list[tuple[Record, _LineRow]],
    customers: dict[str, Any],
    products: dict[str, Any],
    stored: dict[str, Any],
) -> dict[str, _NewOrder]:
    """Group lines into orders, checking each against the store and its order's first line."""
    orders: dict[str, _NewOrder] = {}
    for record, line in lines:
        order = orders.get(line.order_id)
        problem = _line_problem(line, order, customers, products, stored)
        if problem:
            job.reject(record, *problem)
            continue
        if order is None:
            order = orders[line.order_id] = _NewOrder(line, customers[line.customer_id].id)
        product = products[line.sku]
        price = product.price if line.unit_price is None else line.unit_price
        order.lines.append((product.id, line.quantity, price))
    return orders


def _line_problem(
    line: _LineRow,
    order: _NewOrder | None,
    customers: dict[str, Any],
    products: dict[str, Any],
    stored: dict[str, Any],
) -> tuple[str, str] | None:
    if line.customer_id not in customers:
        return "customer_id", f"unknown customer {_shown(line.customer_id)}"
    if line.sku not in products:
        return "sku", f"unknown product sku {_shown(line.sku)}"
    if order is not None:
        first = order.first
        for name in ("customer_id", "placed_at", "delivered_at", "status"):
            if getattr(line, name) != getattr(first, name):
                return name, (
                    f"order {line.order_id} has {name} {_plain(getattr(first, name))} on an "
                    f"earlier line, got {_plain(getattr(line, name))}"
                )
    old = stored.get(line.order_id)
    if old is not None and line.delivered_at is not None and line.status != OrderStatus.CANCELLED:
        if old.delivered_at is None and old.status == OrderStatus.CANCELLED:
            return "delivered_at", f"order {line.order_id} is cancelled and cannot be delivered"
        if old.delivered_at is None and line.delivered_at < old.placed_at:
            return "delivered_at", f"is before the order's placed_at {old.placed_at.isoformat()}"
    return None


def _plain(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, datetime):
        return value.isoformat()
    return _shown(str(value))


def _write_orders(
    job: _Job, conn: Connection, orders: dict[str, _NewOrder], stored: dict[str, Any]
) -> set[int]:
    """Insert the new orders and their items, mark delivered ones; return the customers touched."""
    table, items = _table(Order), _table(OrderItem)
    new, delivered = [], []
    for external_id, order in orders.items():
        old, first = stored.get(external_id), order.first
        if old is None:
            new.append(_order_values(external_id, order))
        elif (
            first.delivered_at is not None
            and old.delivered_at is None
            and first.status != OrderStatus.CANCELLED
        ):
            delivered.append({"b_id": old.id, "v_delivered_at": first.delivered_at})
        else:
            job.result.unchanged += 1
    job.result.created, job.result.updated = len(new), len(delivered)
    job.report("writing", 0, len(new))
    ids: dict[str, int] = {}
    returning = insert(table).returning(table.c.external_id, table.c.id)
    for number, chunk in enumerate(_chunks(new, WRITE_CHUNK), 1):
        ids |= {key: id_ for key, id_ in conn.execute(returning, list(chunk))}
        job.report("writing", min(number * WRITE_CHUNK, len(new)), len(new))
    rows = [
        {"order_id": ids[r["external_id"]], "product_id": p, "quantity": q, "unit_price": price}
        for r in new
        for p, q, price in orders[r["external_id"]].lines
    ]
    job.write(conn, insert(items), rows)
    mark = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.delivered_at.is_(None))
        .values(delivered_at=bindparam("v_delivered_at"), status=OrderStatus.DELIVERED.value)
    )
    job.write(conn, mark, delivered)
    return {r["customer_id"] for r in new}


def _order_values(external_id: str, order: _NewOrder) -> dict[str, Any]:
    first = order.first
    if first.status == OrderStatus.CANCELLED:
        status = OrderStatus.CANCELLED
    else:
        status = OrderStatus.DELIVERED if first.delivered_at else OrderStatus.PLACED
    total = sum((price * quantity for _, quantity, price in order.lines), Decimal("0"))
    return {
        "external_id": external_id,
        "customer_id": order.customer,
        "placed_at": first.placed_at,
        "delivered_at": first.delivered_at,
        "status": status.value,
        "total": total,
    }


__all__ = [
    "COLUMNS",
    "KINDS",
    "REQUIRED",
    "BadRow",
    "CsvFormatError",
    "ImportRejected",
    "ImportResult",
    "Progress",
    "import_csv",
    "read_csv",
]
