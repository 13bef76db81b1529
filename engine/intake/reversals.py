"""Taking back refund credits an order is no longer owed.

The price-drop refund credits (paid unit price − lowest price after placing)
× quantity while an order is undelivered, as far as the store knows. Two
later facts can make part of that credit not owed:

- the order ends without being a purchase (cancelled, refused at the door or
  returned): nothing is owed;
- a delivery is reported late, with a delivery time before some of the drops
  already credited: only drops before the delivery are owed.

`take_back` appends negative ledger entries (without a source: not a redemption)
per order item, in all exactly the credited amount less what is owed (to the
paisa), in the caller's transaction; the ledger is append-only and its sum per
item is what the customer has. What is taken back falls on the item's credits
the way the wallet reads it (`engine.intake.wallet.credits_left`): first to
expire first, never more than a credit kept after redemptions; each part
carries the `expires_at` of the credit it falls on, so that when that credit
expires its part stops counting with it and a balance never goes below what is
left. What no credit kept (already redeemed before the order ended) is one
entry that never expires. A refund notice not yet sent is corrected to tell
what is owed, or suppressed when nothing of it is; one already sent stays sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Table,
    case,
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
    reversed_items: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        owing = conn.execute(_reversals(ids[start : start + CHUNK])).all()
        if owing:
            entries = _ledgers(conn, [row.item_id for row in owing])
            rows = [part for row in owing for part in _parts(row, entries[row.item_id], now)]
            for at in range(0, len(rows), CHUNK):  # (7 values a row: far below SQLite's limit)
                insert = ignoring_insert(conn, credit, "dedupe_key").values(rows[at : at + CHUNK])
                written = conn.execute(insert.returning(credit.c.order_item_id)).scalars()
                reversed_items.update(written)
    if reversed_items:
        _correct_notices(conn, sorted(reversed_items))
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


def _reversals(order_ids: list[int]) -> Any:
    """(item_id, customer_id, credited, owed, reason) of the items of these orders
    credited more than they are owed, in paisa."""
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
    return select(items).where(items.c.credited > items.c.owed)


def _ledgers(conn: Connection, item_ids: list[int]) -> dict[int, list[Any]]:
    """Each item's entries (id, amount in paisa, source_id, expires_at, created_at), with
    the redemptions drawn from its credits, in the order they were written."""
    mine = select(credit.c.id).where(credit.c.order_item_id.in_(item_ids))
    amount = type_coerce(credit.c.amount, BigInteger).label("paisa")
    rows = conn.execute(
        select(
            credit.c.order_item_id,
            credit.c.id,
            amount,
            credit.c.source_id,
            credit.c.expires_at,
            credit.c.created_at,
        )
        .where(or_(credit.c.order_item_id.in_(item_ids), credit.c.source_id.in_(mine)))
        .order_by(credit.c.id)
    ).all()
    item_of = {row.id: row.order_item_id for row in rows if row.order_item_id is not None}
    ledgers: dict[int, list[Any]] = {item: [] for item in item_ids}
    for row in rows:
        item = row.order_item_id if row.source_id is None else item_of.get(row.source_id)
        if item in ledgers:
            ledgers[item].append(row)
    return ledgers


def _parts(owing: Any, ledger: list[Any], now: datetime) -> list[dict[str, Any]]:
    """The entries that take back `credited - owed` of one item, each with the expiry of
    the credits it falls on (see the module's docstring)."""
    credits = sorted((e for e in ledger if e.paisa > 0 and e.source_id is None), key=_to_expire)
    kept = {c.id: c.paisa for c in credits}
    taken_before: dict[datetime | None, int] = {}
    for entry in ledger:
        if entry.source_id is not None:  # a redemption drawn from one of the credits
            kept[entry.source_id] = kept.get(entry.source_id, 0) + entry.paisa
        elif entry.paisa < 0:  # taken back before
            taken_before[entry.expires_at] = taken_before.get(entry.expires_at, 0) - entry.paisa
    new = int(owing.credited) - int(owing.owed)
    # Where everything taken back of the item falls, first to expire first.
    falls: dict[datetime | None, int] = {}
    to_place = sum(taken_before.values()) + new
    for c in credits:
        on_this = min(max(kept[c.id], 0), to_place)
        falls[c.expires_at] = falls.get(c.expires_at, 0) + on_this
        to_place -= on_this
    parts: dict[datetime | None, int] = {}
    for c in credits:  # this time's share: what each expiry still lacks
        if c.expires_at in parts or new <= 0:
            continue
        lacking = falls.get(c.expires_at, 0) - taken_before.get(c.expires_at, 0)
        parts[c.expires_at] = min(max(lacking, 0), new)
        new -= parts[c.expires_at]
    if new > 0:  # more than the credits kept: it never expires
        parts[None] = parts.get(None, 0) + new
    base = f"{KEY_PREFIX}item-{owing.item_id}:owed-{owing.owed}"
    return [
        {
            "dedupe_key": base if until is None else f"{base}:until-{until.isoformat()}",
            "customer_id": owing.customer_id,
            "order_item_id": owing.item_id,
            "amount": -Decimal(paisa) / 100,
            "reason": owing.reason,
            "created_at": now,
            "expires_at": until,
        }
        for until, paisa in parts.items()
        if paisa > 0
    ]


def _to_expire(entry: Any) -> tuple[Any, ...]:
    """The wallet's order: first to expire first (never last), then the oldest."""
    never = entry.expires_at is None
    return (never, entry.expires_at or entry.created_at, entry.created_at, entry.id)


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
