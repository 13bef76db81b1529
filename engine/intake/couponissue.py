"""The coupons campaigns' emails carry: one per message, from its pass's `coupon_issue` row.

When a campaign step with `coupon:` queues messages, the planner writes one
`coupon_issue` row for them (`engine.plan.coupons`) and nothing per message. The
coupon of a message M covered by issue I (same campaign, step and `created_at`):

- code: `CodeKey.code(M.id, I.prefix)` (`engine.intake.couponcodes`);
- percent or amount off: I's, or for an `nth-<N>` occurrence the rung N of I's
  ladder; minimum order: I's; made at I's `minted_at`;
- expires `I.expires_after` seconds after the later of M's `send_after` and
  I's `minted_at` (the time its email was to go, at the earliest).

A message with a stored `coupon` row has that coupon and no derived one: codes
minted one row per message before codes were derived, and a derived coupon
once redeemed (`store_used` writes its row, used, so that the checkout's and
the order intake's one conditional UPDATE keeps deciding who used it first).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Row
from sqlmodel import Session

from ..store import CENT, Coupon, CouponIssue, Customer, Message, ignoring_insert, to_money
from .couponcodes import CodeKey, code_key

coupon: Any = Coupon.__table__  # type: ignore[attr-defined]
issue: Any = CouponIssue.__table__  # type: ignore[attr-defined]
message: Any = Message.__table__  # type: ignore[attr-defined]
customer: Any = Customer.__table__  # type: ignore[attr-defined]

# The longest a coupon may last (CouponSpec.expires_after's bound): an issue older
# than this has no coupon left that is not expired.
LONGEST = timedelta(days=365)
# The largest id a message can have (`message.id` is a 32-bit integer on PostgreSQL).
MAX_MESSAGE_ID = 2**31 - 1


@dataclass(frozen=True)
class MessageCoupon:
    """One message's coupon; `id` is its stored row's (None: derived, not stored)."""

    code: str
    customer_id: int | None
    message_id: int | None
    campaign: str | None
    percent_off: Decimal | None
    amount_off: Decimal | None
    min_order: Decimal | None
    created_at: datetime
    expires_at: datetime | None
    used_at: datetime | None = None
    used_order: str | None = None
    id: int | None = None
    # The shop's id and the email of its customer (when the query asked for them).
    customer_ref: str | None = None
    customer_email: str | None = None


def covers() -> Any:
    """The join of a message with the issue that covers it."""
    return and_(
        issue.c.campaign == message.c.campaign,
        issue.c.step == func.coalesce(message.c.step, ""),
        issue.c.created_at == message.c.created_at,
    )


def not_stored() -> Any:
    """The message has no stored coupon row."""
    return ~exists().where(coupon.c.message_id == message.c.id)


def ladder_json(ladder: dict[int, Decimal]) -> str | None:
    """An issue's `ladder` column: {"2": "5", "3": "10", …} (percent off by order number),
    or None without a ladder."""
    return json.dumps({str(n): str(p) for n, p in sorted(ladder.items())}) if ladder else None


def value_of(
    percent: Decimal | None, amount: Decimal | None, ladder: str | None, occurrence: str
) -> tuple[Decimal | None, Decimal | None]:
    """(percent off, amount off) of one message: its ladder rung, else the issue's."""
    if ladder and occurrence.startswith("nth-"):
        rung = json.loads(ladder).get(occurrence.removeprefix("nth-"))
        if rung is not None:  # to the paisa, as a stored coupon's percent reads: "5.00"
            return to_money(rung).quantize(CENT), None
    return percent, amount


_DERIVED = (
    message.c.id,
    message.c.customer_id,
    message.c.campaign,
    message.c.occurrence,
    message.c.send_after,
    issue.c.prefix,
    issue.c.percent_off,
    issue.c.amount_off,
    issue.c.min_order,
    issue.c.minted_at,
    issue.c.expires_after,
    issue.c.ladder,
)


_WITH_CUSTOMER = (*_DERIVED, customer.c.external_id, customer.c.email)


def _with_customer() -> Any:
    """Messages with their issue and customer (`_WITH_CUSTOMER`)."""
    return (
        select(*_WITH_CUSTOMER)
        .join(issue, covers())
        .outerjoin(customer, customer.c.id == message.c.customer_id)
    )


def _derived(key: CodeKey, row: Row[Any]) -> MessageCoupon:
    percent, amount = value_of(row.percent_off, row.amount_off, row.ladder, row.occurrence)
    starts = max(row.send_after, row.minted_at)
    mapping = row._mapping
    return MessageCoupon(
        code=key.code(row.id, row.prefix),
        customer_id=row.customer_id,
        message_id=row.id,
        campaign=row.campaign,
        percent_off=percent,
        amount_off=amount,
        min_order=row.min_order,
        created_at=row.minted_at,
        expires_at=starts + timedelta(seconds=row.expires_after),
        customer_ref=mapping.get("external_id"),
        customer_email=mapping.get("email"),
    )


def _stored(row: Row[Any]) -> MessageCoupon:
    return MessageCoupon(
        code=row.code,
        customer_id=row.customer_id,
        message_id=row.message_id,
        campaign=row.campaign,
        percent_off=row.percent_off,
        amount_off=row.amount_off,
        min_order=row.min_order,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        used_order=row.used_order,
        id=row.id,
    )


def message_coupons(session: Session, message_ids: Iterable[int]) -> dict[int, MessageCoupon]:
    """The coupon of each of these messages that has one: {message id: coupon}."""
    wanted = sorted(set(message_ids))
    found: dict[int, MessageCoupon] = {}
    if not wanted:
        return found
    stored = select(coupon).where(coupon.c.message_id.in_(wanted))
    for row in session.execute(stored):
        found[row.message_id] = _stored(row)
    rest = [i for i in wanted if i not in found]
    key = code_key(session) if rest else None
    if key is not None:
        derived = select(*_DERIVED).join(issue, covers()).where(message.c.id.in_(rest))
        for row in session.execute(derived):
            found[row.id] = _derived(key, row)
    return found


def find_issued(session: Session, code: str) -> MessageCoupon | None:
    """The derived coupon with this code (already normalised), or None."""
    key = code_key(session)
    parsed = None if key is None else key.message_id(code)
    if key is None or parsed is None:
        return None
    prefix, message_id = parsed
    if message_id > MAX_MESSAGE_ID:  # no message has such an id (most codes forged at random)
        return None
    query = _with_customer().where(
        message.c.id == message_id, issue.c.prefix == prefix, not_stored()
    )
    row = session.execute(query).first()
    return None if row is None else _derived(key, row)


def issued_coupons(session: Session, now: datetime) -> Iterator[MessageCoupon]:
    """Every derived coupon not stored and not expired at `now`, by message."""
    key = code_key(session)
    if key is None:
        return
    query = (
        _with_customer()
        .where(issue.c.minted_at > now - LONGEST, not_stored())
        .order_by(message.c.id)
        .execution_options(yield_per=1000)
    )
    for row in session.execute(query):
        found = _derived(key, row)
        if found.expires_at is None or found.expires_at > now:
            yield found


def store_used(session: Session, found: MessageCoupon, at: datetime, order_ref: str) -> int | None:
    """Store a derived coupon as used by `order_ref` at `at`; its new row's id, or None
    when the message's coupon was stored meanwhile (another order redeemed it)."""
    insert = ignoring_insert(session, coupon).values(  # any conflict: code or message
        code=found.code,
        customer_id=found.customer_id,
        message_id=found.message_id,
        campaign=found.campaign,
        percent_off=found.percent_off,
        amount_off=found.amount_off,
        min_order=found.min_order,
        created_at=found.created_at,
        expires_at=found.expires_at,
        used_at=at,
        used_order=order_ref,
    )
    written = session.execute(insert.execution_options(preserve_rowcount=True))
    if getattr(written, "rowcount", 0) != 1:
        return None
    stored = select(coupon.c.id).where(coupon.c.message_id == found.message_id)
    return int(session.execute(stored).scalar_one())
