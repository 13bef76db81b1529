"""A coupon given back when the order that used it is cancelled or refused at the door.

The order never became a purchase, so the customer keeps their coupon, as the shop
platforms do (WooCommerce gives a coupon's use back when its order is cancelled):
`release_coupons` clears `used_at` and `used_order` of the coupons those orders used,
and marks each order's recorded use `released` with the reason, in the caller's
transaction. A coupon is released only while it is still the order's: an order that
redeems it meanwhile keeps it. A returned order (delivered, then sent back) keeps
its coupon used: it was a purchase when it was delivered.

The same order presenting the code again is answered from its recorded use:
`released` (the checkout's API: 409). A later order can redeem the coupon as if it
had never been used, until it expires.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection

from ..store import Coupon, CouponUse, Order, OrderStatus

CHUNK = 500  # orders per statement
# The ends of an order that was never delivered, and how a released use says it.
RELEASING = {
    OrderStatus.CANCELLED.value: "order {} was cancelled",
    OrderStatus.REFUSED.value: "order {} was refused at the door",
}
RELEASED_WORD = "released"

_COUPON: Any = Coupon.__table__  # type: ignore[attr-defined]
_USE: Any = CouponUse.__table__  # type: ignore[attr-defined]
_ORDERS: Any = Order.__table__  # type: ignore[attr-defined]


def release_coupons(
    conn: Connection, *, order_ids: Iterable[int] = (), order_refs: Iterable[str] = ()
) -> int:
    """Give back the coupons used by these orders (by id, or by the shop's id) that are
    cancelled or refused; return how many were given back."""
    ids, refs = sorted(set(order_ids)), sorted(set(order_refs))
    ended: list[tuple[str, str]] = []
    for start in range(0, max(len(ids), len(refs)), CHUNK):
        which = or_(
            _ORDERS.c.id.in_(ids[start : start + CHUNK]),
            _ORDERS.c.external_id.in_(refs[start : start + CHUNK]),
        )
        query = select(_ORDERS.c.external_id, _ORDERS.c.status).where(
            which, _ORDERS.c.status.in_(list(RELEASING))
        )
        ended.extend((ref, status) for ref, status in conn.execute(query))
    released = 0
    for ref, status in ended:
        why = f"{RELEASED_WORD}: {RELEASING[status].format(ref)}"[:200]
        given_back = conn.execute(
            update(_COUPON)
            .where(_COUPON.c.used_order == ref, _COUPON.c.used_at.is_not(None))
            .values(used_at=None, used_order=None)
            .returning(_COUPON.c.code)
        ).scalars()
        codes = list(given_back)
        if not codes:
            continue
        released += len(codes)
        conn.execute(
            update(_USE)
            .where(and_(_USE.c.order_ref == ref, _USE.c.code.in_(codes), _USE.c.redeemed))
            .values(redeemed=False, reason=why)
        )
    return released
