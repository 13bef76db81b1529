"""An order's life after it is placed: confirmed, shipped, delivered, or ended.

Cash on delivery, the way most of the shop's orders are paid, goes placed →
confirmed (by phone) → shipped (handed to a courier) → out for delivery →
delivered (paid at the door); or the customer refuses the parcel at the door
(refused) and it comes back (returned). A prepaid order can be returned after
delivery too, and any order not yet delivered can be cancelled.

- A live order only moves forward (`ORDER_PROGRESS`): a status it has passed
  changes nothing, so a platform's late or repeated update is harmless. The
  first time it reaches shipped or out for delivery is its `shipped_at` (what
  the shipping email waits for).
- An order that ends (cancelled, refused, returned: `ENDED_ORDER`) is not a
  purchase: its refund credits are taken back (`reversals`), unsent refund
  notices dropped, the coupon it used given back unless it was delivered
  (`couponrelease`), and the customer's order figures recomputed. Refused or
  returned stamps `returned_at` (what the follow-up waits for). An ended order
  stays ended: a refused parcel may still come back (refused → returned), but
  nothing else moves it; a delivered order can be returned, not refused, and a
  cancelled one is not delivered.

Every function validates and raises `DataError` (or `UnknownRecord` for an order
the store does not know) naming the order and what is wrong, in the caller's
session.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from ..errors import DataError, UnknownRecord
from ..store import (
    CASH_ON_DELIVERY,
    ENDED_ORDER,
    ORDER_PROGRESS,
    Customer,
    Order,
    OrderStatus,
    is_purchase,
)
from .couponrelease import release_coupons
from .reversals import take_back

PAYMENT_LIMIT = 32
URL_LIMIT = 500
# What shops and platforms call paying at the door.
_COD_NAMES = frozenset({"cod", "cash", "cash_on_delivery", "cashondelivery"})
_PAYMENT = re.compile(r"[a-z0-9_]+")


def payment_method(value: Any) -> str | None:
    """A payment method as stored: lowercase words joined by `_`, cash on delivery as `cod`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = re.sub(r"[\s\-()]+", "_", str(value).strip().lower()).strip("_")
    if text in _COD_NAMES or text.startswith("cash_on_delivery"):
        return CASH_ON_DELIVERY
    if not _PAYMENT.fullmatch(text) or len(text) > PAYMENT_LIMIT:
        raise DataError(
            f"payment_method: expected a word of letters, digits and _ like cod, bkash or card "
            f"(up to {PAYMENT_LIMIT}), got {str(value)[:60]!r}"
        )
    return text


def tracking_url(value: Any) -> str | None:
    """A courier's tracking page: an http(s) address of at most URL_LIMIT characters."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if (
        not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f<>\"]+", text, re.IGNORECASE)
        or len(text) > URL_LIMIT
    ):
        raise DataError(
            f"tracking_url: expected an http:// or https:// address of at most {URL_LIMIT} "
            f"characters, got {text[:80]!r}"
        )
    return text


def order_status(value: Any) -> OrderStatus:
    """A status name as the events API and the CSV take it (`out for delivery` too)."""
    text = re.sub(r"[\s\-]+", "_", str(value).strip().lower())
    try:
        return OrderStatus(text)
    except ValueError:
        known = ", ".join(s.value for s in OrderStatus)
        raise DataError(f"status: expected one of {known}, got {str(value)[:60]!r}") from None


def order_by_external_id(session: Session, external_id: str) -> Order:
    order = (
        session.execute(select(Order).where(col(Order.external_id) == external_id))
        .scalars()
        .first()
    )
    if order is None:
        raise UnknownRecord(f"unknown order {external_id!r}")
    return order


def set_order_status(
    session: Session,
    external_id: str,
    status: OrderStatus,
    *,
    at: datetime,
    now: datetime | None = None,
    tracking: str | None = None,
) -> Order:
    """Move an order to `status` at `at` (recorded at `now`, default `at`); a tracking
    address given is kept whatever the status. Returns the order."""
    _aware("at", at)
    order = order_by_external_id(session, external_id)
    if tracking is not None:
        order.tracking_url = tracking_url(tracking)
    if status == OrderStatus.DELIVERED:
        return mark_delivered(session, external_id, at, now=now)
    if status.value in ENDED_ORDER:
        return end_order(session, external_id, status, at=at, now=now or at)
    if order.status in ENDED_ORDER:
        raise DataError(f"order {external_id} is {order.status}: it cannot become {status}")
    if ORDER_PROGRESS.index(status) > ORDER_PROGRESS.index(OrderStatus(order.status)):
        if at < order.placed_at:
            raise DataError(
                f"order {external_id}: {status} at {at.isoformat()} is before placed_at"
            )
        order.status = status
        if status in (OrderStatus.SHIPPED, OrderStatus.OUT_FOR_DELIVERY) and not order.shipped_at:
            order.shipped_at = at
    session.flush()
    return order


def end_order(
    session: Session, external_id: str, status: OrderStatus, *, at: datetime, now: datetime
) -> Order:
    """End an order cancelled, refused or returned at `at`: its refund credits are taken
    back (at `now`), its unsent notices dropped, its customer's figures recomputed.
    Ending it again changes nothing; refused may still become returned."""
    _aware("at", at)
    _aware("now", now)
    order = order_by_external_id(session, external_id)
    current = OrderStatus(order.status)
    if current == status or current == OrderStatus.CANCELLED:
        return order
    if current.value in ENDED_ORDER and not (
        current == OrderStatus.REFUSED and status == OrderStatus.RETURNED
    ):
        return order  # returned stays returned
    if status == OrderStatus.REFUSED and current == OrderStatus.DELIVERED:
        raise DataError(f"order {external_id} was delivered: it can be returned, not refused")
    was_purchase = current.value not in ENDED_ORDER
    order.status = status
    if status != OrderStatus.CANCELLED and order.returned_at is None:
        order.returned_at = max(at, order.placed_at)
    session.flush()
    if was_purchase:
        take_back(session.connection(), [_id(order)], now)
        release_coupons(session.connection(), order_ids=[_id(order)])
        refresh_order_totals(session, [order.customer_id])
    return order


def cancel_order(session: Session, external_id: str, *, now: datetime) -> Order:
    """Cancel an order at `now`: its refund credits are taken back, its unsent notices dropped.

    Cancelling an ended order changes nothing. See `engine.intake.reversals`.
    """
    return end_order(session, external_id, OrderStatus.CANCELLED, at=now, now=now)


def mark_delivered(
    session: Session, external_id: str, delivered_at: datetime, *, now: datetime | None = None
) -> Order:
    """Mark an order delivered; marking it again keeps the first delivery time.

    A delivery reported late (`now`, default `delivered_at`, is when it is
    recorded) takes back refund credit for price drops after `delivered_at`.
    """
    _aware("delivered_at", delivered_at)
    if now is not None:
        _aware("now", now)
    order = order_by_external_id(session, external_id)
    if order.status in ENDED_ORDER:
        raise DataError(f"order {external_id} is {order.status} and cannot be delivered")
    if order.delivered_at is None:
        if delivered_at < order.placed_at:
            raise DataError(f"order {external_id}: delivered_at is before placed_at")
        order.delivered_at = delivered_at
        order.status = OrderStatus.DELIVERED
        session.flush()
        take_back(session.connection(), [_id(order)], now or delivered_at)
    return order


def refresh_order_totals(session: Session, customer_ids: Iterable[int]) -> None:
    """Recompute the denormalised order figures of these customers, set-based."""
    ids = sorted(set(customer_ids))
    counted = (col(Order.customer_id) == col(Customer.id)) & is_purchase(col(Order.status))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        session.execute(
            update(Customer)
            .where(col(Customer.id).in_(chunk))
            .values(
                first_order_at=select(func.min(col(Order.placed_at)))
                .where(counted)
                .scalar_subquery(),
                last_order_at=select(func.max(col(Order.placed_at)))
                .where(counted)
                .scalar_subquery(),
                orders_count=select(func.count(col(Order.id))).where(counted).scalar_subquery(),
                total_spent=select(func.coalesce(func.sum(col(Order.total)), 0))
                .where(counted)
                .scalar_subquery(),
            )
            .execution_options(synchronize_session=False)
        )
    session.expire_all()


def _id(order: Order) -> int:
    if order.id is None:
        raise DataError("the order has no id yet (not flushed)")
    return order.id


def _aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DataError(f"{name} must be a timezone-aware datetime, got: {value!r}")
