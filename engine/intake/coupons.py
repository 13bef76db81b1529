"""Coupon redemption: a code presented with an order, decided and recorded once.

A coupon (one per email, derived from its message: `engine.intake.couponissue`;
or a stored row, for one made on its own) is used by at most one order.
`redeem_coupon` decides one presentation of a code (spaces around it dropped,
upper case) with an order, for the order intake and the shop's checkout API:

- The same order presenting the same code again changes nothing and answers
  what the first presentation did (`repeat`): redeemed stays redeemed.
- Otherwise it is refused, checked in this order, when no coupon has the code
  (`unknown`), another order used it (`used`), it expired at or before the
  presentation (`expired`), it was made for another customer than the order's
  (`other_customer`, when that is known), the order's total is not known while
  the coupon has a minimum (`total_missing`), or is below it (`below_minimum`).
- Else it is redeemed by one conditional `UPDATE … WHERE used_at IS NULL` (a
  derived coupon's first redemption stores its row, used, by one `INSERT … ON
  CONFLICT DO NOTHING` on its message): of two orders redeeming one code at
  once, exactly one wins, the other is `used`.

Each first presentation is one `CouponUse` row (unique per code and order),
redeemed or refused with the reason `"<outcome>: <why>"`; with
`record_refusals=False` (the checkout asking) a refusal writes nothing. An
order's total and customer not given are the stored order's (its total as the
engine computed it: unit price × quantity over its lines). Functions take an
open session and leave committing to the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.engine import Row
from sqlmodel import Session, col

from ..errors import DataError, UnknownRecord
from ..store import Coupon, CouponUse, Customer, Order, ignoring_insert
from .couponissue import MessageCoupon, find_issued, issued_coupons, store_used
from .couponrelease import RELEASED_WORD, RELEASING, release_coupons

MAX_CODE = 64  # characters of a code (and of an order id), as stored
_USES: Any = CouponUse.__table__  # type: ignore[attr-defined]


class Outcome(StrEnum):
    """What one presentation of a code with an order came to."""

    REDEEMED = "redeemed"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    OTHER_CUSTOMER = "other_customer"
    TOTAL_MISSING = "total_missing"
    BELOW_MINIMUM = "below_minimum"
    # The order that used it was cancelled or refused: the coupon was given back
    # (`engine.intake.couponrelease`); this order presenting it again is told so.
    RELEASED = RELEASED_WORD


_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
Refusal = tuple[Outcome, str]  # the outcome and why


@dataclass(frozen=True)
class CouponView:
    """A coupon with the customer it was made for (their shop id and email); `id` is
    its stored row's, None for an email's coupon not redeemed yet (not stored)."""

    id: int | None
    code: str
    percent_off: Decimal | None
    amount_off: Decimal | None
    min_order: Decimal | None
    expires_at: datetime | None
    used_at: datetime | None
    used_order: str | None
    customer_ref: str | None
    customer_email: str | None

    def refusal(self, at: datetime) -> Refusal | None:
        """Why no order can use it at `at` (used or expired), or None."""
        if self.used_at is not None:
            return Outcome.USED, f"already used by order {self.used_order}"
        if self.expires_at is not None and self.expires_at <= at:
            return Outcome.EXPIRED, f"expired at {_iso_utc(self.expires_at)}"
        return None


@dataclass(frozen=True)
class Presentation:
    """A code presented with an order (the shop's order id) at `at`.

    `total` and `customer_ref` (the shop's customer id) are the order's; None:
    the stored order's, if the engine has it, else not known.
    """

    code: str
    order_ref: str
    at: datetime
    total: Decimal | None = None
    customer_ref: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Redemption:
    """The answer to one presentation; `coupon` is the coupon as it is after it."""

    code: str
    order_ref: str
    outcome: Outcome
    reason: str  # why it was refused; empty when redeemed
    repeat: bool  # this order presented this code before: nothing was written
    coupon: CouponView | None

    @property
    def redeemed(self) -> bool:
        return self.outcome is Outcome.REDEEMED


def normalise_code(code: str) -> str:
    """The code as stored: without the spaces around it, in upper case."""
    return code.strip().upper()


_VIEW_COLUMNS: tuple[Any, ...] = (
    col(Coupon.id),
    col(Coupon.code),
    col(Coupon.percent_off),
    col(Coupon.amount_off),
    col(Coupon.min_order),
    col(Coupon.expires_at),
    col(Coupon.used_at),
    col(Coupon.used_order),
    col(Customer.external_id),
    col(Customer.email),
)


def _coupons() -> Select[Any]:
    """Coupons with the shop id and email of the customer each was made for."""
    joined = col(Customer.id) == col(Coupon.customer_id)
    return select(*_VIEW_COLUMNS).select_from(Coupon).outerjoin(Customer, joined)


def find_coupon(session: Session, code: str) -> CouponView | None:
    """The coupon with this code (normalised first), or None."""
    code = normalise_code(code)
    row = session.execute(_coupons().where(col(Coupon.code) == code)).first()
    if row is not None:
        return CouponView(*row)
    issued = find_issued(session, code)
    if issued is not None:
        return _view(issued)
    # An email's coupon another order redeemed (so stored) between the two reads.
    row = session.execute(_coupons().where(col(Coupon.code) == code)).first()
    return None if row is None else CouponView(*row)


def _view(issued: MessageCoupon) -> CouponView:
    """An email's coupon as the checkout sees it."""
    return CouponView(
        issued.id,
        issued.code,
        issued.percent_off,
        issued.amount_off,
        issued.min_order,
        issued.expires_at,
        issued.used_at,
        issued.used_order,
        issued.customer_ref,
        issued.customer_email,
    )


def check_coupon(
    session: Session, code: str, now: datetime
) -> tuple[CouponView | None, Refusal | None]:
    """The coupon with this code, and why no order could use it at `now` (None: valid)."""
    coupon = find_coupon(session, code)
    if coupon is None:
        return None, _unknown(normalise_code(code))
    return coupon, coupon.refusal(now)


def active_coupons(session: Session, now: datetime) -> Iterator[CouponView]:
    """Every coupon not used and not expired at `now`: the stored ones soonest to expire
    first, then the emails' coupons not redeemed yet, by message."""
    query = (
        _coupons()
        .where(col(Coupon.used_at).is_(None))
        .where(col(Coupon.expires_at).is_(None) | (col(Coupon.expires_at) > now))
        .order_by(col(Coupon.expires_at).is_(None), col(Coupon.expires_at), col(Coupon.code))
        .execution_options(yield_per=1000)
    )
    for row in session.execute(query):
        yield CouponView(*row)
    for issued in issued_coupons(session, now):
        yield _view(issued)


def redeem_coupon(
    session: Session, presentation: Presentation, *, record_refusals: bool = True
) -> Redemption:
    """Decide and record one presentation (see the module's docstring).

    Raises DataError for an empty code or an order id that is empty or longer
    than `MAX_CODE` characters; an unknown code is a refusal, not an error.
    """
    given = _checked(presentation)
    code, order_ref = given.code, given.order_ref
    coupon = find_coupon(session, code)
    earlier = _earlier_use(session, code, order_ref)
    if earlier is not None:
        return _answer_again(earlier, code, order_ref, coupon)
    if coupon is not None and coupon.used_order == order_ref:
        return Redemption(code, order_ref, Outcome.REDEEMED, "", True, coupon)
    given = _with_stored_order(session, given)
    refusal = _unknown(code) if coupon is None else _refusal(coupon, given)
    if refusal is None and coupon is not None:
        coupon, refusal = _claim(session, coupon, given)
    if refusal is None:
        _record(session, given, coupon, Outcome.REDEEMED, "")
        return Redemption(code, order_ref, Outcome.REDEEMED, "", False, coupon)
    outcome, why = refusal
    if coupon is not None and coupon.used_order == order_ref:  # this order won meanwhile
        return Redemption(code, order_ref, Outcome.REDEEMED, "", True, coupon)
    fresh = _record(session, given, coupon, outcome, why) if record_refusals else True
    return Redemption(code, order_ref, outcome, why, not fresh, coupon)


def redeem_order_coupon(
    session: Session, code: str | None, order_ref: str, *, source: str
) -> Redemption | None:
    """The coupon `code` presented with the stored order `order_ref`, at its placing.

    For the order intake: the order is recorded whatever the outcome. None
    when there is no code (None or blank). An order recorded already cancelled
    or refused gives the coupon back at once (`released`). Raises UnknownRecord
    when the order is not stored.
    """
    if code is None or not code.strip():
        return None
    order_ref = order_ref.strip()
    stored = _stored_order(session, order_ref)
    if stored is None:
        raise UnknownRecord(f"unknown order {order_ref!r}")
    given = Presentation(
        code, order_ref, stored.placed_at, stored.total, stored.external_id, source
    )
    redemption = redeem_coupon(session, given)
    if stored.status not in RELEASING or not release_coupons(
        session.connection(), order_refs=[order_ref]
    ):
        return redemption
    why = RELEASING[stored.status].format(order_ref)
    return replace(redemption, outcome=Outcome.RELEASED, reason=why)


def _checked(presentation: Presentation) -> Presentation:
    code = normalise_code(presentation.code)
    order_ref = presentation.order_ref.strip()
    if not code:
        raise DataError("coupon_code must not be empty")
    if not order_ref or len(order_ref) > MAX_CODE:
        raise DataError(f"order_id must be 1 to {MAX_CODE} characters, got {order_ref!r}")
    if presentation.at.tzinfo is None:
        raise DataError(f"at must be a timezone-aware datetime, got: {presentation.at!r}")
    return replace(presentation, code=code, order_ref=order_ref)


def _earlier_use(session: Session, code: str, order_ref: str) -> Row[Any] | None:
    query = select(col(CouponUse.redeemed), col(CouponUse.reason)).where(
        col(CouponUse.code) == code, col(CouponUse.order_ref) == order_ref
    )
    return session.execute(query).first()


def _answer_again(
    earlier: Row[Any], code: str, order_ref: str, coupon: CouponView | None
) -> Redemption:
    """What the first presentation of this code with this order answered."""
    reason: str = earlier.reason
    if earlier.redeemed:
        return Redemption(code, order_ref, Outcome.REDEEMED, "", True, coupon)
    word, _, why = reason.partition(": ")
    outcome = _OUTCOMES.get(word, Outcome.UNKNOWN)
    return Redemption(code, order_ref, outcome, why or reason, True, coupon)


def _stored_order(session: Session, order_ref: str) -> Row[Any] | None:
    """(placed_at, total, the customer's shop id, status) of a stored order, or None."""
    query = (
        select(
            col(Order.placed_at),
            col(Order.total),
            col(Customer.external_id),
            col(Order.status),
        )
        .join(Customer, col(Customer.id) == col(Order.customer_id))
        .where(col(Order.external_id) == order_ref)
    )
    return session.execute(query).first()


def _with_stored_order(session: Session, given: Presentation) -> Presentation:
    known = given.total is not None and given.customer_ref is not None
    stored = None if known else _stored_order(session, given.order_ref)
    if stored is None:
        return given
    total = stored.total if given.total is None else given.total
    return replace(given, total=total, customer_ref=given.customer_ref or stored.external_id)


def _unknown(code: str) -> Refusal:
    return Outcome.UNKNOWN, f"no coupon has the code {code}"


def _refusal(coupon: CouponView, given: Presentation) -> Refusal | None:
    """Why this coupon cannot be used by this order, or None when it can."""
    refused = coupon.refusal(given.at)
    if refused is not None:
        return refused
    if coupon.customer_ref is not None and given.customer_ref not in (None, coupon.customer_ref):
        return Outcome.OTHER_CUSTOMER, f"made for another customer than {given.customer_ref}"
    if coupon.min_order is not None and given.total is None:
        return Outcome.TOTAL_MISSING, (
            f"the order's total is needed: the coupon's minimum order is {coupon.min_order}"
        )
    if coupon.min_order is not None and given.total is not None and given.total < coupon.min_order:
        return Outcome.BELOW_MINIMUM, (
            f"the order's total {given.total} is below the coupon's minimum order "
            f"of {coupon.min_order}"
        )
    return None


def _claim(
    session: Session, coupon: CouponView, given: Presentation
) -> tuple[CouponView, Refusal | None]:
    """Mark the coupon used by this order, unless another order did first."""
    if coupon.id is None:  # an email's coupon, redeemed for the first time: stored, used
        issued = find_issued(session, coupon.code)
        stored = None if issued is None else store_used(session, issued, given.at, given.order_ref)
        if stored is not None:
            return replace(coupon, id=stored, used_at=given.at, used_order=given.order_ref), None
    else:
        claimed = session.execute(
            update(Coupon)
            .where(col(Coupon.id) == coupon.id, col(Coupon.used_at).is_(None))
            .values(used_at=given.at, used_order=given.order_ref)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) == 1:
            return replace(coupon, used_at=given.at, used_order=given.order_ref), None
    fresh = find_coupon(session, coupon.code) or coupon  # with the order that won
    return fresh, _refusal(fresh, given) or (Outcome.USED, "already used by another order")


def _record(
    session: Session, given: Presentation, coupon: CouponView | None, outcome: Outcome, why: str
) -> bool:
    """Write the presentation's `CouponUse` row; False when it was already there."""
    reason = "" if outcome is Outcome.REDEEMED else f"{outcome.value}: {why}"[:200]
    insert = ignoring_insert(session, _USES, "code", "order_ref").values(
        code=given.code,
        coupon_id=None if coupon is None else coupon.id,
        order_ref=given.order_ref,
        redeemed=outcome is Outcome.REDEEMED,
        reason=reason,
        source=given.source[:100],
        at=given.at,
    )
    # (without preserve_rowcount, psycopg's count of an ON CONFLICT insert is -1)
    written = session.execute(insert.execution_options(preserve_rowcount=True))
    return getattr(written, "rowcount", 0) == 1


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")  # 2026-12-01T18:00:00Z
