"""CSV import of customers, products, orders and wanted products, in bulk.

The same meaning as the shop API (`engine.intake.shop`), in bulk: every row is
validated first, then the good rows are written in one transaction. Orders,
the big files, are read as a stream: checked row by row into temporary tables,
then written from there, so memory does not grow with the file. Upserts are keyed by the
shop's own ids (customer `id`, product `sku`, order `order_id`; a wanted
product by its customer and sku), so importing a file twice changes nothing
the second time.

A bad row is reported as `file:line: column: reason`, `line` being the
physical line of the file (the header is line 1). With bad rows the import
raises `ImportRejected` and writes nothing, unless `skip_bad` is set: then the
good rows are written and the bad ones come back in `ImportResult.skipped`.
Either lists the first `LISTED_BAD` (1,000) bad rows and counts them all.
A file whose header lacks a required column, or that is not UTF-8 CSV, raises
`CsvFormatError` before any row is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from ...errors import DataError, StoreError
from ...project import parse_timezone
from ...store import session_scope
from . import customers, orders, products, wanted
from .csvfile import CsvFormatError, Record, read_csv
from .job import LISTED_BAD, BadRow, ImportRejected, ImportResult, Job, Progress

_IMPORTS: dict[str, Callable[[Job, Session, Iterable[Record]], None]] = {
    "customers": customers.import_customers,
    "products": products.import_products,
    "orders": orders.import_orders,
    "wanted": wanted.import_wanted,
}
KINDS = tuple(_IMPORTS)
COLUMNS = {
    "customers": customers.COLUMNS,
    "products": products.COLUMNS,
    "orders": orders.COLUMNS,
    "wanted": wanted.COLUMNS,
}
REQUIRED = {
    "customers": customers.REQUIRED,
    "products": products.REQUIRED,
    "orders": orders.REQUIRED,
    "wanted": wanted.REQUIRED,
}


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
    """Import `path` as `kind` (customers, products, orders or wanted) into the store.

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
    job = Job(kind, shown, now, ZoneInfo(parse_timezone(shop_timezone)), skip_bad, progress)
    job.expected = records.line_breaks
    try:
        with session_scope(engine) as session:
            _IMPORTS[kind](job, session, records)
    except SQLAlchemyError as exc:
        # The driver's own message, first line only: SQLAlchemy's repeats every parameter.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StoreError(f"{shown}: the database refused the import: {reason}") from exc
    return job.result


__all__ = [
    "COLUMNS",
    "KINDS",
    "LISTED_BAD",
    "REQUIRED",
    "BadRow",
    "CsvFormatError",
    "ImportRejected",
    "ImportResult",
    "Progress",
    "import_csv",
    "read_csv",
]
