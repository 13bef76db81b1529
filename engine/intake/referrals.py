"""Referrals: an order that carries a customer's referral code, decided and recorded once.

Every customer has a referral code (`customer.referral_code`, minted by the
planner). A new customer's first order may carry someone's code
(`referral_code` on `order.placed`, or a column of the orders CSV): the order is
always recorded, and beside it one `referral` row per order (unique by the
shop's order id), `pending` until the planner counts it once the order is
delivered (`engine.plan.referrals`), or `refused` with the reason, checked in
this order:

- `unknown code`: no customer has the code (the row has no referrer);
- `self-referral: the referrer's own order`: the order is the referrer's;
- `self-referral: the same email as the referrer`: the order's customer has the
  referrer's email address, in any case (the engine stores no phone numbers,
  so a phone cannot be compared);
- `not a first order`: the customer has an earlier order that is not cancelled;
- `already referred`: the customer has another referral pending or counted.

A refusal is logged with the order, the code and the reason. The same order
again changes nothing and answers what was recorded the first time. The
checkout asks with `check_referral_code` (the same checks, for a customer
known by email, before any order exists), which writes nothing.

Codes are read like coupon codes: without the spaces around them, in upper case.
Functions take an open session and leave committing to the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.engine import Row
from sqlmodel import Session, col

from ..errors import DataError, UnknownRecord
from ..store import (
    Customer,
    Order,
    Referral,
    ReferralStatus,
    ignoring_insert,
    is_postgres,
    is_purchase,
)
from .coupons import MAX_CODE, normalise_code

log = logging.getLogger(__name__)

_REFERRALS: Any = Referral.__table__  # type: ignore[attr-defined]
_CUSTOMERS: Any = Customer.__table__  # type: ignore[attr-defined]
# A referral that stands for its referred customer: a second one is refused.
_STANDING = (ReferralStatus.PENDING.value, ReferralStatus.COUNTED.value)


class ReferralRefusal(StrEnum):
    """Why a referral code does not count for an order (the checkout API's `status`)."""

    UNKNOWN = "unknown"
    SELF_REFERRAL = "self_referral"
    NOT_FIRST_ORDER = "not_first_order"
    ALREADY_REFERRED = "already_referred"


# The reason stored on a refused referral (and logged), by refusal.
REASONS = {
    ReferralRefusal.UNKNOWN: "unknown code",
    ReferralRefusal.SELF_REFERRAL: "self-referral",
    ReferralRefusal.NOT_FIRST_ORDER: "not a first order",
    ReferralRefusal.ALREADY_REFERRED: "already referred",
}


@dataclass(frozen=True)
class Referrer:
    """The customer whose referral code it is."""

    id: int
    external_id: str
    email: str


@dataclass(frozen=True)
class ReferralRecord:
    """What an order's referral code came to; `repeat`: recorded before, nothing written."""

    code: str
    order_ref: str
    status: ReferralStatus
    reason: str  # empty when pending
    referrer: str | None  # the referrer's shop id; None for an unknown code
    repeat: bool


@dataclass(frozen=True)
class ReferralCheck:
    """A referral code as the checkout sees it: whose it is, and why it would not count."""

    code: str
    referrer: Referrer
    refusal: ReferralRefusal | None
    reason: str  # empty when it would count


def find_referrer(session: Session, code: str) -> Referrer | None:
    """The customer whose referral code `code` is (normalised first), or None."""
    wanted = normalise_code(code)
    if not wanted or len(wanted) > MAX_CODE:
        return None
    row = session.execute(
        select(col(Customer.id), col(Customer.external_id), col(Customer.email)).where(
            col(Customer.referral_code) == wanted
        )
    ).first()
    return None if row is None else Referrer(row.id, row.external_id, row.email)


def check_referral_code(session: Session, code: str, email: str | None) -> ReferralCheck | None:
    """Whether `code` would count for a first order by the customer with `email`.

    None when no customer has the code. Without `email` only the code is
    checked; with it, the checks of an order (the module's docstring) for the
    customer with that address, if the engine knows one.
    """
    referrer = find_referrer(session, code)
    if referrer is None:
        return None
    refusal: tuple[ReferralRefusal | None, str] = (None, "")
    if email is not None:
        refusal = _refusal_for_email(session, referrer, email.strip().lower())
    return ReferralCheck(normalise_code(code), referrer, refusal[0], _reason(*refusal))


def _refusal_for_email(
    session: Session, referrer: Referrer, email: str
) -> tuple[ReferralRefusal | None, str]:
    if email == referrer.email.lower():
        return ReferralRefusal.SELF_REFERRAL, "the same email as the referrer"
    customer = session.execute(
        select(col(Customer.id), col(Customer.orders_count)).where(col(Customer.email) == email)
    ).first()
    if customer is None:
        return None, ""
    if customer.orders_count > 0:
        return ReferralRefusal.NOT_FIRST_ORDER, ""
    if _standing_referral(session, customer.id) is not None:
        return ReferralRefusal.ALREADY_REFERRED, ""
    return None, ""


def record_order_referral(
    session: Session, code: str | None, order_ref: str, *, now: datetime, source: str
) -> ReferralRecord | None:
    """Record the referral code `code` carried by the stored order `order_ref`.

    For the order intake: the order is recorded whatever the outcome. None when
    there is no code (None or blank). Raises DataError for a code longer than
    `MAX_CODE` characters or a naive `now`, UnknownRecord when the order is not
    stored.
    """
    if code is None or not code.strip():
        return None
    code = normalise_code(code)
    if len(code) > MAX_CODE:
        raise DataError(f"referral_code must be at most {MAX_CODE} characters, got {len(code)}")
    if now.tzinfo is None:
        raise DataError(f"now must be a timezone-aware datetime, got: {now!r}")
    order_ref = order_ref.strip()
    order = _stored_order(session, order_ref)
    if order is None:
        raise UnknownRecord(f"unknown order {order_ref!r}")
    earlier = _recorded(session, order_ref)
    if earlier is not None:
        return earlier
    _hold(session, order.customer_id)
    referrer = find_referrer(session, code)
    refusal, detail = _refusal_for_order(session, referrer, order)
    reason = _reason(refusal, detail)
    insert = ignoring_insert(session, _REFERRALS, "order_ref").values(
        code=code,
        referrer_id=None if referrer is None else referrer.id,
        referred_id=order.customer_id,
        order_ref=order_ref,
        order_id=order.id,
        status=(ReferralStatus.PENDING if refusal is None else ReferralStatus.REFUSED).value,
        reason=reason[:200],
        at=now,
    )
    written = session.execute(insert.execution_options(preserve_rowcount=True))
    if getattr(written, "rowcount", 0) != 1:  # recorded meanwhile
        return _recorded(session, order_ref)
    if refusal is not None:
        log.warning("order %s: referral code %s refused (%s): %s", order_ref, code, source, reason)
    who = None if referrer is None else referrer.external_id
    status = ReferralStatus.PENDING if refusal is None else ReferralStatus.REFUSED
    return ReferralRecord(code, order_ref, status, reason, who, False)


def _reason(refusal: ReferralRefusal | None, detail: str) -> str:
    """The stored reason: `self-referral: the referrer's own order`; empty for none."""
    if refusal is None:
        return ""
    return f"{REASONS[refusal]}: {detail}" if detail else REASONS[refusal]


def _stored_order(session: Session, order_ref: str) -> Row[Any] | None:
    """(id, customer_id, placed_at, email) of a stored order, or None."""
    query = (
        select(
            col(Order.id),
            col(Order.customer_id),
            col(Order.placed_at),
            col(Customer.email),
        )
        .join(Customer, col(Customer.id) == col(Order.customer_id))
        .where(col(Order.external_id) == order_ref)
    )
    return session.execute(query).first()


def _recorded(session: Session, order_ref: str) -> ReferralRecord | None:
    """What this order's referral came to the first time, or None."""
    referrer = _CUSTOMERS.alias("referrer")
    row = session.execute(
        select(_REFERRALS.c.code, _REFERRALS.c.status, _REFERRALS.c.reason, referrer.c.external_id)
        .select_from(_REFERRALS)
        .outerjoin(referrer, referrer.c.id == _REFERRALS.c.referrer_id)
        .where(_REFERRALS.c.order_ref == order_ref)
    ).first()
    if row is None:
        return None
    code, status, reason, who = row
    return ReferralRecord(code, order_ref, ReferralStatus(status), reason, who, True)


def _hold(session: Session, customer_id: int) -> None:
    """Hold the referred customer's row until commit (PostgreSQL), so two of their orders
    carrying a code at once are decided one after the other; SQLite writers already are."""
    if is_postgres(session):
        held = select(_CUSTOMERS.c.id).where(_CUSTOMERS.c.id == customer_id).with_for_update()
        session.execute(held)


def _refusal_for_order(
    session: Session, referrer: Referrer | None, order: Row[Any]
) -> tuple[ReferralRefusal | None, str]:
    """Why the code does not count for this order (with the detail), or (None, "")."""
    if referrer is None:
        return ReferralRefusal.UNKNOWN, ""
    if referrer.id == order.customer_id:
        return ReferralRefusal.SELF_REFERRAL, "the referrer's own order"
    if referrer.email.lower() == order.email.lower():
        return ReferralRefusal.SELF_REFERRAL, "the same email as the referrer"
    if _earlier_order(session, order) is not None:
        return ReferralRefusal.NOT_FIRST_ORDER, ""
    if _standing_referral(session, order.customer_id) is not None:
        return ReferralRefusal.ALREADY_REFERRED, ""
    return None, ""


def _earlier_order(session: Session, order: Row[Any]) -> str | None:
    """The customer's order placed before this one and not cancelled, if any."""
    query = (
        select(col(Order.external_id))
        .where(
            col(Order.customer_id) == order.customer_id,
            is_purchase(col(Order.status)),
            tuple_(col(Order.placed_at), col(Order.id)) < tuple_(order.placed_at, order.id),
        )
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def _standing_referral(session: Session, customer_id: int) -> str | None:
    """The order of a referral of the customer that stands (pending or counted), if any."""
    query = select(_REFERRALS.c.order_ref).where(
        _REFERRALS.c.referred_id == customer_id, _REFERRALS.c.status.in_(_STANDING)
    )
    found: str | None = session.execute(query.limit(1)).scalar_one_or_none()
    return found
