"""Products from CSV: upserted by SKU, like `shop.upsert_product` and `shop.set_price`.

A new product is created at the import's time (`created_at`); a stored product
whose stock goes from zero to more gets a `restock` row, all written in bulk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlmodel import Session

from ...store import PriceChange, Product, Restock
from .cells import cell, parse_amount, parse_text, parse_whole, required
from .csvfile import Record
from .job import Job, lookup, table_of, unique, update_many

COLUMNS = ("sku", "name", "name_bn", "category", "price", "stock")
REQUIRED = ("sku", "name", "price")


def import_products(job: Job, session: Session, from_file: Iterable[Record]) -> None:
    """Upsert products by SKU; a new or changed price goes to the price history."""
    conn = session.connection()
    records = job.well_formed(from_file)
    parsed = unique(job, job.parse(records, _product_row), "sku")
    stored = lookup(conn, table_of(Product), "sku", (r.sku for _, r in parsed), *_P_COLS)
    job.settle()
    _write_products(job, conn, [row for _, row in parsed], stored)


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
        sku=required(record, "sku", lambda v: parse_text(v, 64)),
        name=required(record, "name", lambda v: parse_text(v, 200)),
        name_bn=cell(record, "name_bn", lambda v: parse_text(v, 200)),
        category=cell(record, "category", lambda v: parse_text(v, 100)),
        price=required(record, "price", parse_amount),
        stock=cell(record, "stock", lambda v: parse_whole(v, 0)),
    )


def _write_products(
    job: Job, conn: Connection, rows: list[_ProductRow], stored: dict[str, Any]
) -> None:
    table, now = table_of(Product), job.now
    inserts, updates, price_changes, restocks = [], [], [], []
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
                    "created_at": now,
                }
            )
        elif values:
            updates.append({"b_id": old.id, **values, "updated_at": now})
            if "price" in values:
                price_changes.append({"product_id": old.id, "price": row.price, "changed_at": now})
            if old.stock <= 0 < (row.stock or 0):
                restocks.append({"product_id": old.id, "stock": row.stock, "at": now})
        else:
            job.result.unchanged += 1
    job.result.created, job.result.updated = len(inserts), len(updates)
    job.write(conn, insert(table), inserts)
    update_many(job, conn, table, updates)
    new_ids = lookup(conn, table, "sku", (r["sku"] for r in inserts), "id")
    price_changes += [
        {"product_id": new_ids[r["sku"]].id, "price": r["price"], "changed_at": now}
        for r in inserts
    ]
    job.write(conn, insert(table_of(PriceChange)), price_changes)
    job.write(conn, insert(table_of(Restock)), restocks)
