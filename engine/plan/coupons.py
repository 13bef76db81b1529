"""Coupons: each message that promises one gets its own code, in the pass that queues it.

A campaign or a step with `coupon:` (or an `nth_order` trigger with a `ladder`)
mints, right after its step's insert and in the same transaction, one coupon per
message queued in this pass that has none: never an email without its coupon
(the renderer refuses one whose coupon is missing), never two coupons for one
message (`coupon.message_id` is unique, and a message that has one is skipped).
A message queued before its campaign was given a coupon waits (the renderer
holds it) until the next full pass mints its code.

Codes come from `secrets`: 12 characters from an alphabet of 32 without
look-alikes (no 0/O, no 1/I), in groups of four, after the optional prefix:
`WELCOME-7KQ2-M9XD-P4TR`. That is 60 random bits: guessing one of a million
live codes takes about 10^12 tries. The value is the step's percent or amount,
or the ladder's rung for the order number (`nth-<N>` occurrence); a coupon
expires `expires_after` after its email's earliest send time. Should a code ever
collide with one already stored (`coupon.code` is unique), the insert fails and
the campaign's whole pass rolls back, messages included; the next pass mints anew.

A holiday pass may queue 100,000 emails, so minting keeps its Python work per
coupon small: one SELECT of the messages, a tuple of plain values each (only the
code is made per row; the value and the expiry go through their column types
once per distinct value, the campaign, minimum and creation time once per pass),
then one statement per `CHUNK` coupons: on PostgreSQL an `INSERT … SELECT FROM
unnest()` of one array per column with the shared values sent once, on SQLite
the driver's `executemany`; no per-row work in SQLAlchemy on either.
`bench/coupons.py` times it in a 100,000-email holiday pass.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, select, type_coerce
from sqlalchemy.engine import Dialect
from sqlalchemy.types import NullType

from ..project import CouponSpec, NthOrder
from ..store import Coupon, Message, MessageStatus, UTCDateTime
from .campaignpass import CampaignPass

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
# Every byte maps to one of the 32 characters with equal chance (256 = 8 × 32).
_TO_ALPHABET = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(256))
CODE_LENGTH = 12
GROUP = 4

# How far back a full pass looks for waiting messages that have no coupon yet.
CATCH_UP = timedelta(days=30)

# The most coupons one INSERT writes (a bigger pass writes in several).
CHUNK = 50_000

coupon = Coupon.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]
# A row's own values, then those every coupon of the pass shares.
COLUMNS = ("code", "customer_id", "message_id", "percent_off", "amount_off", "expires_at")
SHARED = ("campaign", "min_order", "created_at")
_UTC = UTCDateTime()


def random_characters(length: int) -> str:
    """`length` characters of `ALPHABET` from `secrets`, each equally likely."""
    return secrets.token_bytes(length).translate(_TO_ALPHABET).decode("ascii")


def new_code(prefix: str = "") -> str:
    """A fresh unguessable code, like `WELCOME-7KQ2-M9XD-P4TR` (or without the prefix)."""
    return new_codes(1, prefix)[0]


def new_codes(count: int, prefix: str = "") -> list[str]:
    """`count` fresh codes like `new_code`'s, from one call to `secrets` for them all."""
    body = random_characters(CODE_LENGTH * count)
    lead = f"{prefix}-" if prefix else ""
    return [
        lead + "-".join(body[at : at + GROUP] for at in range(start, start + CODE_LENGTH, GROUP))
        for start in range(0, CODE_LENGTH * count, CODE_LENGTH)
    ]


def value_of(spec: CouponSpec, ladder: dict[int, Decimal], occurrence: str) -> tuple[Any, Any]:
    """(percent off, amount off) for one message: the ladder's rung, else the spec's."""
    if ladder and occurrence.startswith("nth-"):
        rung = ladder.get(int(occurrence.removeprefix("nth-")))
        if rung is not None:
            return rung, None
    return spec.percent, spec.amount


def mint_coupons(run: CampaignPass) -> int:
    """Mint a coupon for each message this step queued in this pass; return how many."""
    spec = run.step.coupon
    if spec is None:
        return 0
    waiting = _waiting(run)
    rows = _coupon_rows(run, spec, waiting)
    shared = _shared_values(run, spec)
    for start in range(0, len(rows), CHUNK):
        _insert_coupons(run, rows[start : start + CHUNK], shared)
    return len(rows)


def _waiting(run: CampaignPass) -> Sequence[Any]:
    """(id, customer, occurrence, send_after as the driver gives it) of the messages to mint for."""
    step = run.step.id
    queued = (
        select(
            message.c.id,
            message.c.customer_id,
            message.c.occurrence,
            type_coerce(message.c.send_after, NullType()),  # converted once per distinct value
        )
        .where(
            message.c.campaign == run.campaign.name,
            *_queued_in(run),
            message.c.step.is_(None) if step is None else message.c.step == step,
            ~exists().where(coupon.c.message_id == message.c.id),
        )
        .order_by(message.c.id)
    )
    return run.conn.execute(queued).all()


def _queued_in(run: CampaignPass) -> list[Any]:
    """This pass's new messages; on a full pass, also any still waiting without a coupon
    (queued before the campaign or step was given one) from the last `CATCH_UP`."""
    if run.since is not None:
        return [
            message.c.created_at == run.now,
            message.c.status == MessageStatus.QUEUED.value,
        ]
    return [
        message.c.created_at > run.now - CATCH_UP,
        message.c.created_at <= run.now,
        message.c.status.in_([MessageStatus.QUEUED.value, MessageStatus.RETRY.value]),
    ]


def _coupon_rows(
    run: CampaignPass, spec: CouponSpec, waiting: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """One row of `COLUMNS` per message, in the driver's own values (a fresh code each;
    the value and the expiry converted once per distinct value, not once per row)."""
    dialect = run.conn.dialect
    money, moment = _stored(coupon.c.amount_off, dialect), _stored(coupon.c.expires_at, dialect)
    ladder = run.trigger.ladder if isinstance(run.trigger, NthOrder) else {}
    values: dict[str, tuple[Any, Any]] = {}
    expiries: dict[Any, Any] = {}
    rows = []
    codes = new_codes(len(waiting), spec.prefix)
    for code, (message_id, customer_id, occurrence, send_after) in zip(codes, waiting, strict=True):
        key = occurrence if ladder else ""
        value = values.get(key)
        if value is None:
            percent, amount = value_of(spec, ladder, occurrence)
            value = values[key] = (money(percent), money(amount))
        expires = expiries.get(send_after)
        if expires is None:
            sends = _UTC.process_result_value(send_after, dialect) or run.now  # never NULL
            starts = max(sends, run.now)
            expires = expiries[send_after] = moment(starts + spec.expires_after)
        rows.append((code, customer_id, message_id, *value, expires))
    return rows


def _shared_values(run: CampaignPass, spec: CouponSpec) -> tuple[Any, ...]:
    """The `SHARED` values, in the driver's own values."""
    dialect = run.conn.dialect
    min_order = _stored(coupon.c.min_order, dialect)(spec.min_order)
    return run.campaign.name, min_order, _stored(coupon.c.created_at, dialect)(run.now)


def _stored(column: Any, dialect: Dialect) -> Callable[[Any], Any]:
    """What the column's type hands the driver for a value (as an INSERT through it would)."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


def _insert_coupons(
    run: CampaignPass, rows: list[tuple[Any, ...]], shared: tuple[Any, ...]
) -> None:
    """One statement for the rows: on PostgreSQL an INSERT … SELECT FROM unnest() of an
    array per column (the shared values sent once), on SQLite the driver's executemany."""
    names = ", ".join(COLUMNS + SHARED)
    if run.sql.pg:
        dialect = run.conn.dialect
        arrays = ", ".join(f"%s::{coupon.c[name].type.compile(dialect)}[]" for name in COLUMNS)
        once = ", ".join(f"%s::{coupon.c[name].type.compile(dialect)}" for name in SHARED)
        minted = f"unnest({arrays}) AS minted({', '.join(COLUMNS)})"
        statement = f"INSERT INTO {coupon.name} ({names}) SELECT minted.*, {once} FROM {minted}"
        columns = [list(values) for values in zip(*rows, strict=True)]
        run.conn.exec_driver_sql(statement, (*shared, *columns))  # in the order written
    else:
        marks = ", ".join("?" * (len(COLUMNS) + len(SHARED)))
        statement = f"INSERT INTO {coupon.name} ({names}) VALUES ({marks})"
        run.conn.exec_driver_sql(statement, [row + shared for row in rows])
