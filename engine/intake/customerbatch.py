"""A run of `customer.upserted` events written in bulk, as `shop.upsert_customer` would.

The events API applies a batch in one transaction. Upserting customers one at
a time through the ORM costs several statements and flushes per customer
(select, clash check, insert, tag replace, consent log); a shop syncing its
customer list sends thousands at once. `upsert_customers` checks every row in
Python first, reads what is stored in a few `IN (...)` lookups, and writes
with Core `executemany`: the same meaning as `upsert_customer`, a few
statements per run instead of several per customer.

The caller hands in a run with no customer id or email twice (a run that has
one is applied one event at a time instead, in order).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from ..errors import DataError
from ..project import parse_email, parse_locale, parse_timezone
from ..store import ConsentChange, Customer, CustomerTag
from . import shop

_CUSTOMERS: Any = Customer.__table__  # type: ignore[attr-defined]
_TAGS: Any = CustomerTag.__table__  # type: ignore[attr-defined]
_CONSENTS: Any = ConsentChange.__table__  # type: ignore[attr-defined]
CHUNK = 500  # keys per IN (...) lookup
CONSENT_SOURCE = "events api"
_KEPT = ("email", "name", "locale", "timezone", "city", "birthday")
# A run names the same few locales and timezones thousands of times.
_locale = lru_cache(maxsize=256)(parse_locale)
_timezone = lru_cache(maxsize=256)(parse_timezone)


class RowError(DataError):
    """One customer of the run is invalid: which one (its position in the run) and which field."""

    def __init__(self, position: int, field: str, reason: str):
        self.position, self.field, self.reason = position, field, reason
        super().__init__(f"customer {position}: {field}: {reason}")


@dataclass(frozen=True)
class CustomerUpsert:
    """One customer as an event gives it; None keeps the stored value."""

    external_id: str
    email: str
    at: datetime
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    city: str | None = None
    birthday: date | None = None
    tags: Sequence[str] | None = None
    marketing_consent: bool | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class _Row:
    given: CustomerUpsert
    values: dict[str, Any]  # the cleaned fields given, by column
    tags: frozenset[str] | None


def upsert_customers(connection: Connection, customers: Sequence[CustomerUpsert]) -> None:
    """Create or update each customer; raise RowError (nothing written) for the first bad one."""
    rows = [_checked(position, given) for position, given in enumerate(customers)]
    stored = _stored(connection, [row.given.external_id for row in rows])
    _refuse_clashes(connection, rows)
    inserts, updates, consents, tag_sets = [], [], [], {}
    for row in rows:
        old = stored.get(row.given.external_id)
        values = dict(row.values)
        consent = row.given.marketing_consent
        if consent is not None and consent != (old["marketing_consent"] if old else False):
            values |= {
                "marketing_consent": consent,
                "consent_at": row.given.at,
                "consent_source": CONSENT_SOURCE,
            }
            consents.append((row.given.external_id, consent, row.given.at))
        if row.tags is not None:
            tag_sets[row.given.external_id] = row.tags
        if old is None:
            inserts.append(_new(row, values))
        else:
            updates.append({**_kept(old), **values, "b_id": old["id"], "updated_at": row.given.at})
    if inserts:
        connection.execute(insert(_CUSTOMERS), inserts)
    if updates:
        _update(connection, updates)
    ids = {key: old["id"] for key, old in stored.items()}
    fresh = [row["external_id"] for row in inserts]
    ids |= {key: found["id"] for key, found in _stored(connection, fresh).items()}
    _replace_tags(connection, {ids[key]: tags for key, tags in tag_sets.items()})
    if consents:
        connection.execute(
            insert(_CONSENTS),
            [
                {"customer_id": ids[key], "consent": c, "at": at, "source": CONSENT_SOURCE}
                for key, c, at in consents
            ],
        )


def _checked(position: int, given: CustomerUpsert) -> _Row:
    """The cleaned values of one customer, or RowError naming the field."""

    def clean(field: str, parse: Any, value: Any) -> Any:
        try:
            return parse(value)
        except (ValueError, DataError) as exc:
            reason = str(exc).removeprefix(f"{field}: ").removeprefix(f"{field} ")
            raise RowError(position, field, reason) from exc

    clean("id", lambda v: shop.clean_text("id", v, required=True, limit=64), given.external_id)
    values: dict[str, Any] = {"email": clean("email", parse_email, given.email).lower()}
    if given.name is not None:
        values["name"] = clean("name", lambda v: shop.clean_text("name", v) or "", given.name)
    if given.locale is not None:
        values["locale"] = clean("locale", _locale, given.locale)
    if given.timezone is not None:
        values["timezone"] = clean("timezone", _timezone, given.timezone)
    if given.city is not None:
        values["city"] = clean("city", lambda v: shop.clean_text("city", v, limit=100), given.city)
    if given.birthday is not None:
        values["birthday"] = given.birthday
    tags = None
    if given.tags is not None:
        tag_of = lambda v: shop.clean_text("tag", v, limit=64)  # noqa: E731
        tags = frozenset(t for t in (clean("tags", tag_of, tag) for tag in given.tags) if t)
    return _Row(given, values, tags)


def _chunks(keys: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


def _stored(connection: Connection, external_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored customers among `external_ids`, by external id."""
    names = ("id", "external_id", "marketing_consent", "consent_at", "consent_source", *_KEPT)
    columns = [_CUSTOMERS.c[name] for name in names]
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(external_ids))):
        query = select(*columns).where(_CUSTOMERS.c.external_id.in_(chunk))
        for row in connection.execute(query).mappings():
            found[row["external_id"]] = dict(row)
    return found


def _refuse_clashes(connection: Connection, rows: list[_Row]) -> None:
    """RowError when an email already belongs to another customer."""
    position = {row.values["email"]: n for n, row in enumerate(rows)}
    wanted = {row.values["email"]: row.given.external_id for row in rows}
    for chunk in _chunks(sorted(wanted)):
        query = select(_CUSTOMERS.c.email, _CUSTOMERS.c.external_id).where(
            _CUSTOMERS.c.email.in_(chunk)
        )
        for email, owner in connection.execute(query):
            if owner != wanted[email]:
                raise RowError(
                    position[email], "email", f"email {email} already belongs to customer {owner}"
                )


def _kept(old: dict[str, Any]) -> dict[str, Any]:
    return {name: old[name] for name in _KEPT} | {
        "marketing_consent": old["marketing_consent"],
        "consent_at": old["consent_at"],
        "consent_source": old["consent_source"],
    }


def _new(row: _Row, values: dict[str, Any]) -> dict[str, Any]:
    at = row.given.at
    return new_customer_row(row.given.external_id, row.given.created_at or at, at, values)


def new_customer_row(
    external_id: str, created_at: datetime, now: datetime, values: dict[str, Any]
) -> dict[str, Any]:
    """The columns of a customer not stored yet: the defaults, then `values` over them."""
    return {
        "external_id": external_id,
        "name": "",
        "locale": "en",
        "timezone": None,
        "city": None,
        "birthday": None,
        "marketing_consent": False,
        "consent_at": None,
        "consent_source": None,
        "created_at": created_at,
        "updated_at": now,
        "first_order_at": None,
        "last_order_at": None,
        "orders_count": 0,
        "total_spent": Decimal("0"),
        **values,
    }


def _update(connection: Connection, updates: list[dict[str, Any]]) -> None:
    names = (*_KEPT, "marketing_consent", "consent_at", "consent_source", "updated_at")
    statement = (
        update(_CUSTOMERS)
        .where(_CUSTOMERS.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in names})
    )
    connection.execute(statement, updates)


def _replace_tags(connection: Connection, tag_sets: dict[int, frozenset[str]]) -> None:
    for chunk in _chunks(sorted(tag_sets)):
        connection.execute(_TAGS.delete().where(_TAGS.c.customer_id.in_(chunk)))
    rows = [
        {"customer_id": cid, "tag": tag} for cid, tags in tag_sets.items() for tag in sorted(tags)
    ]
    if rows:
        connection.execute(insert(_TAGS), rows)
