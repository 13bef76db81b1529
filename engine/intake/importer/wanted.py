"""Wanted products from CSV: customers who asked to hear when a product is back in stock.

Like the `product.wanted` event (`shop.want_product`): a customer and a product
the store knows, once per pair. A pair already stored, or repeated in the
file, changes nothing (the first time it was asked for is kept). `at` is when
the customer asked; without it, the time of the import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from ...store import Customer, Product, ProductWanted
from .cells import cell, parse_text, parse_when, required, shown
from .csvfile import Record
from .job import CHUNK, Job, chunks, lookup, table_of

COLUMNS = ("customer_id", "sku", "at")
REQUIRED = ("customer_id", "sku")

_id_text = partial(parse_text, limit=64)


@dataclass(frozen=True)
class _WantedRow:
    customer_id: str
    sku: str
    at: datetime | None


def import_wanted(job: Job, session: Session, from_file: Iterable[Record]) -> None:
    """Record each customer's wanted product once; unknown customers and SKUs are bad rows."""
    conn = session.connection()
    records = job.well_formed(from_file)
    rows = job.parse(records, _row_parser(job.zone))
    customers = lookup(
        conn, table_of(Customer), "external_id", (r.customer_id for _, r in rows), "id"
    )
    products = lookup(conn, table_of(Product), "sku", (r.sku for _, r in rows), "id")
    pairs: dict[tuple[int, int], datetime] = {}
    for record, row in rows:
        if row.customer_id not in customers:
            job.reject(record, "customer_id", f"unknown customer {shown(row.customer_id)}")
        elif row.sku not in products:
            job.reject(record, "sku", f"unknown product sku {shown(row.sku)}")
        else:
            pair = (customers[row.customer_id].id, products[row.sku].id)
            pairs.setdefault(pair, row.at or job.now)
    job.settle()
    _write_wanted(job, conn, pairs)


def _row_parser(zone: ZoneInfo) -> Callable[[Record], _WantedRow]:
    def parse(record: Record) -> _WantedRow:
        return _WantedRow(
            customer_id=required(record, "customer_id", _id_text),
            sku=required(record, "sku", _id_text),
            at=cell(record, "at", lambda v: parse_when(v, zone)),
        )

    return parse


def _write_wanted(job: Job, conn: Connection, pairs: dict[tuple[int, int], datetime]) -> None:
    stored = _stored_pairs(conn, sorted({customer for customer, _ in pairs}))
    new: list[dict[str, Any]] = [
        {"customer_id": customer, "product_id": product, "at": at}
        for (customer, product), at in pairs.items()
        if (customer, product) not in stored
    ]
    job.result.created = len(new)
    job.result.unchanged = job.result.rows - len(job.bad) - len(new)
    job.write(conn, insert(table_of(ProductWanted)), new)


def _stored_pairs(conn: Connection, customer_ids: list[int]) -> set[tuple[int, int]]:
    """The (customer, product) pairs already stored for these customers."""
    table = table_of(ProductWanted)
    found: set[tuple[int, int]] = set()
    for chunk in chunks(customer_ids, CHUNK):
        query = select(table.c.customer_id, table.c.product_id).where(
            table.c.customer_id.in_(chunk)
        )
        found.update((customer, product) for customer, product in conn.execute(query))
    return found
