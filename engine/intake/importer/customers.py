"""Customers from CSV: upserted by the shop's customer id, like `shop.upsert_customer`.

An empty cell keeps the stored value. An email may belong to one customer
only; a consent change is appended to the consent log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from ...project import parse_email, parse_locale, parse_timezone
from ...store import ConsentChange, Customer, CustomerTag
from ..customerbatch import new_customer_row
from .cells import cell, parse_day, parse_flag, parse_tags, parse_text, parse_when, required
from .csvfile import Record
from .job import CHUNK, Job, chunks, lookup, table_of, unique, update_many

COLUMNS = (
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
)
REQUIRED = ("id", "email")
DEFAULT_CONSENT_SOURCE = "import"


def import_customers(job: Job, session: Session, from_file: Iterable[Record]) -> None:
    """Upsert customers by their id; a consent change goes to the consent log."""
    conn = session.connection()
    records = job.well_formed(from_file)
    rows = job.parse(records, lambda r: _customer_row(r, job.zone))
    parsed = unique(job, rows, "id", "email")
    table = table_of(Customer)
    stored = lookup(conn, table, "external_id", (r.external_id for _, r in parsed), *_C_COLS)
    owners = lookup(conn, table, "email", (r.email for _, r in parsed), "external_id")
    good = []
    for record, row in parsed:
        owner = owners.get(row.email)
        if owner is not None and owner.external_id != row.external_id:
            job.reject(
                record, "email", f"{row.email} already belongs to customer {owner.external_id}"
            )
        else:
            good.append(row)
    job.settle()
    current_tags = _tags_by_customer(conn, [s.id for s in stored.values()])
    _write_customers(job, conn, good, stored, current_tags)


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
        external_id=required(record, "id", lambda v: parse_text(v, 64)),
        email=required(record, "email", parse_email).lower(),
        name=cell(record, "name", lambda v: parse_text(v, 200)),
        locale=cell(record, "locale", parse_locale),
        timezone=cell(record, "timezone", parse_timezone),
        city=cell(record, "city", lambda v: parse_text(v, 100)),
        birthday=cell(record, "birthday", parse_day),
        tags=cell(record, "tags", parse_tags),
        consent=cell(record, "marketing_consent", parse_flag),
        consent_source=cell(record, "consent_source", lambda v: parse_text(v, 100)),
        created_at=cell(record, "created_at", lambda v: parse_when(v, zone)),
    )


def _tags_by_customer(conn: Connection, ids: list[int]) -> dict[int, frozenset[str]]:
    table = table_of(CustomerTag)
    found: dict[int, set[str]] = {}
    for chunk in chunks(sorted(ids), CHUNK):
        query = select(table.c.customer_id, table.c.tag).where(table.c.customer_id.in_(chunk))
        for customer_id, tag in conn.execute(query):
            found.setdefault(customer_id, set()).add(tag)
    return {k: frozenset(v) for k, v in found.items()}


def _write_customers(
    job: Job,
    conn: Connection,
    rows: list[_CustomerRow],
    stored: dict[str, Any],
    current_tags: dict[int, frozenset[str]],
) -> None:
    table, now = table_of(Customer), job.now
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
    update_many(job, conn, table, updates)
    ids = {k: v.id for k, v in stored.items()}
    new_ids = lookup(conn, table, "external_id", (r["external_id"] for r in inserts), "id")
    ids |= {k: v.id for k, v in new_ids.items()}
    _replace_tags(job, conn, {ids[k]: v for k, v in tag_sets.items()})
    log = [
        {"customer_id": ids[c.pop("external_id")], "at": now, **c, "detail": None} for c in consents
    ]
    job.write(conn, insert(table_of(ConsentChange)), log)


def _customer_values(row: _CustomerRow, old: Any) -> dict[str, Any]:
    """The columns `row` gives that differ from the stored customer (all, if new)."""
    changed = {}
    for name in _C_FIELDS:
        value = getattr(row, name)
        if value is not None and (old is None or getattr(old, name) != value):
            changed[name] = value
    return changed


def _new_customer(row: _CustomerRow, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    return new_customer_row(row.external_id, now, now, values)


def _replace_tags(job: Job, conn: Connection, tag_sets: dict[int, frozenset[str]]) -> None:
    table = table_of(CustomerTag)
    for chunk in chunks(sorted(tag_sets), CHUNK):
        conn.execute(table.delete().where(table.c.customer_id.in_(chunk)))
    rows = [
        {"customer_id": cid, "tag": tag} for cid, tags in tag_sets.items() for tag in sorted(tags)
    ]
    job.write(conn, insert(table), rows)
