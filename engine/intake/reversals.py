"""Taking back refund credits an order is no longer owed.

The price-drop refund credits (paid unit price − lowest price after placing)
× quantity while an order is undelivered, as far as the store knows. Two
later facts can make part of that credit not owed:

- the order ends without being a purchase (cancelled, refused at the door or
  returned): nothing is owed;
- a delivery is reported late, with a delivery time before some of the drops
  already credited: only drops before the delivery are owed.

There is no redemption of store credit yet, so every credit of an order is
unused and can be taken back. `take_back` appends one negative ledger entry per
order item, exactly the credited amount less what is owed (to the paisa), in
the caller's transaction; the ledger is append-only and its sum per item is
what the customer has. A refund notice not yet sent is corrected to tell what
is owed, or suppressed when nothing of it is; one already sent stays sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection

from ..store import (
    ENDED_ORDER,
    Credit,
    Message,
    MessageStatus,
    Order,
    OrderItem,
    PriceChange,
    UTCDateTime,
    ignoring_insert,
)

# Not a campaign's key: campaign names have no "-" (they are lowercase, digits and _).
KEY_PREFIX = "refund-reversal:"
CHUNK = 500  # orders per statement
ENDED_REASON = "order {}: credit taken back"  # cancelled, refused or returned
DELIVERED_REASON = "delivered before a later price drop: credit taken back"
UNSENT = (MessageStatus.QUEUED.value, MessageStatus.RETRY.value)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


credit, orders, order_item = _table(Credit), _table(Order), _table(OrderItem)
price_change, message = _table(PriceChange), _table(Message)


def take_back(conn: Connection, order_ids: Iterable[int], now: datetime) -> int:
    """Reverse what the items of these orders were credited beyond what they are owed.

    Only cancelled or delivered orders are looked at. Returns how many order
    items got a reversal; running it again adds nothing.
    """
    ids = sorted(set(order_ids))
    reversed_items: list[int] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        reversed_items += conn.execute(_reversals(conn, chunk, now)).scalars().all()
    if reversed_items:
        _correct_notices(conn, reversed_items)
    return len(reversed_items)


def _lowest_before_delivery() -> Any:
    pc = price_change.alias("owed_change")
    return (
        select(func.min(type_coerce(pc.c.price, BigInteger)))
        .where(
            pc.c.product_id == order_item.c.product_id,
            pc.c.changed_at > orders.c.placed_at,
            pc.c.changed_at < orders.c.delivered_at,
        )
        .correlate_except(pc)
        .scalar_subquery()
    )


def _reversals(conn: Connection, order_ids: list[int], now: datetime) -> Any:
    credited = (
        select(func.sum(type_coerce(credit.c.amount, BigInteger)))
        .where(credit.c.order_item_id == order_item.c.id)
        .correlate_except(credit)
        .scalar_subquery()
    )
    cancelled = orders.c.status.in_(ENDED_ORDER)
    ended_reason = ENDED_REASON.split("{}")
    paid, lowest = type_coerce(order_item.c.unit_price, BigInteger), _lowest_before_delivery()
    owed = case(
        (cancelled, 0),
        (or_(lowest.is_(None), lowest >= paid), 0),
        else_=(paid - lowest) * order_item.c.quantity,
    )
    items = (
        select(
            order_item.c.id.label("item_id"),
            orders.c.customer_id.label("customer_id"),
            credited.label("credited"),
            owed.label("owed"),
            case(
                (cancelled, literal(ended_reason[0]) + orders.c.status + literal(ended_reason[1])),
                else_=DELIVERED_REASON,
            ).label("reason"),
        )
        .select_from(order_item.join(orders, orders.c.id == order_item.c.order_id))
        .where(
            orders.c.id.in_(order_ids),
            or_(cancelled, orders.c.delivered_at.is_not(None)),
            order_item.c.id.in_(select(credit.c.order_item_id)),
        )
        .subquery("owed_items")
    )
    key = (
        literal(f"{KEY_PREFIX}item-")
        + cast(items.c.item_id, String)
        + literal(":owed-")
        + cast(items.c.owed, String)
    )
    chosen = select(
        key,
        items.c.customer_id,
        items.c.item_id,
        items.c.owed - items.c.credited,
        items.c.reason,
        literal(now, UTCDateTime),
    ).where(items.c.credited > items.c.owed)
    columns = ["dedupe_key", "customer_id", "order_item_id", "amount", "reason", "created_at"]
    return (
        ignoring_insert(conn, credit, "dedupe_key")
        .from_select(columns, chosen)
        .returning(credit.c.order_item_id)
    )


def _correct_notices(conn: Connection, item_ids: list[int]) -> None:
    """Make the unsent refund notices of these items tell only what is owed."""
    lowest = _lowest_before_delivery().label("lowest")
    rows = conn.execute(
        select(
            message.c.id,
            message.c.context,
            order_item.c.quantity,
            orders.c.status,
            lowest,
        )
        .select_from(
            message.join(order_item, order_item.c.id == message.c.order_item_id).join(
                orders, orders.c.id == order_item.c.order_id
            )
        )
        .where(message.c.order_item_id.in_(item_ids), message.c.status.in_(UNSENT))
    ).all()
    for row in rows:
        context = row.context
        if not isinstance(context, dict) or "credit_id" not in context:
            continue  # not a refund notice
        owed_price = None if row.status in ENDED_ORDER else row.lowest
        corrected = _corrected(context, owed_price, row.quantity)
        if corrected is None:
            conn.execute(
                update(message)
                .where(message.c.id == row.id, message.c.status.in_(UNSENT))
                .values(
                    status=MessageStatus.SUPPRESSED.value,
                    last_error="the credit it tells of was taken back",
                )
            )
        elif corrected != context:
            conn.execute(update(message).where(message.c.id == row.id).values(context=corrected))


def _corrected(context: dict[str, Any], lowest_paisa: int | None, quantity: int) -> Any:
    """The notice's context telling only the owed part of its drop; None if none is owed."""
    old, new = Decimal(context["old_price"]), Decimal(context["new_price"])
    if lowest_paisa is None:
        return None
    lowest = Decimal(lowest_paisa) / 100
    if lowest >= old:
        return None  # its whole drop came after the delivery
    if new >= lowest:
        return context  # its whole drop came before the delivery
    return context | {"new_price": f"{lowest:.2f}", "amount": f"{(old - lowest) * quantity:.2f}"}
