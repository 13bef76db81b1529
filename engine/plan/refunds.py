"""Price-drop refunds: credit what each buyer overpaid, and queue the notice.

For an order item, the buyer is owed (unit price − lowest price between the
order's placement and its delivery, or now if undelivered) × quantity, less
what was already credited for the item. Occurrence `item-<order item id>-<lowest
price in paisa>`, so a deeper drop later credits only the extra difference.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, func, literal, or_, select, type_coerce

from ..project import PriceDrop
from ..store import UTCDateTime, ignoring_insert, is_purchase
from .plansql import (
    Candidates,
    as_text,
    credit,
    customer,
    money_text,
    order_item,
    orders,
    price_change,
)

if TYPE_CHECKING:
    from .campaignpass import CampaignPass

# Price drops this recent are looked at; a drop is credited at the next pass,
# so this only matters after a long outage.
REFUND_LOOKBACK = timedelta(days=30)


def plan_refunds(run: CampaignPass, trigger: PriceDrop) -> None:
    """Credit what each buyer overpaid, then queue the notice: one transaction.

    For an order item, the buyer is owed (unit price − lowest price between the
    order's placement and its delivery, or now if undelivered) × quantity, less
    what was already credited for the item. A deeper drop later credits only the
    extra difference, under a new occurrence. Prices are whole paisa, so the
    amount is exact; amounts below `refunds.minimum` are not credited (yet).
    A suppressed customer is still credited (the money is owed) but not emailed.
    """
    new_credits = _insert_credits(run)
    _queue_refund_notices(run, trigger, new_credits)


def _lowest_price(run: CampaignPass) -> Any:
    pc = price_change.alias("lowest_change")
    delivered = orders.c.delivered_at
    return (
        select(func.min(type_coerce(pc.c.price, BigInteger)))
        .where(
            pc.c.product_id == order_item.c.product_id,
            pc.c.changed_at > orders.c.placed_at,
            pc.c.changed_at <= run.now,
            or_(delivered.is_(None), pc.c.changed_at < delivered),
        )
        # Correlated to the order item of the row, even nested inside EXISTS.
        .correlate_except(pc)
        .scalar_subquery()
    )


def _occurrence(lowest: Any) -> Any:
    return literal("item-") + as_text(order_item.c.id) + literal("-") + as_text(lowest)


def _insert_credits(run: CampaignPass) -> int:
    since = run.now - REFUND_LOOKBACK
    changed_since = since if run.since is None else max(since, run.since)
    recent = select(price_change.c.product_id).where(
        price_change.c.changed_at > changed_since, price_change.c.changed_at <= run.now
    )
    credited = (
        select(func.coalesce(func.sum(type_coerce(credit.c.amount, BigInteger)), 0))
        .where(credit.c.order_item_id == order_item.c.id)
        .correlate_except(credit)
        .scalar_subquery()
    )
    paid = type_coerce(order_item.c.unit_price, BigInteger)
    drops = (
        select(
            order_item.c.id.label("item_id"),
            orders.c.customer_id.label("customer_id"),
            order_item.c.quantity.label("quantity"),
            paid.label("paid"),
            _lowest_price(run).label("lowest"),
            credited.label("credited"),
        )
        .select_from(order_item.join(orders, orders.c.id == order_item.c.order_id))
        .where(
            order_item.c.product_id.in_(recent),
            is_purchase(orders.c.status),
            or_(orders.c.delivered_at.is_(None), orders.c.delivered_at > since),
        )
        .subquery("drops")
    )
    amount = (drops.c.paid - drops.c.lowest) * drops.c.quantity - drops.c.credited
    minimum = math.ceil(run.project.config.refunds.minimum * 100)
    lasts = run.project.config.refunds.credit_expires_after
    key = (
        literal(f"{run.campaign.name}:")
        + as_text(drops.c.customer_id)
        + literal(":item-")
        + as_text(drops.c.item_id)
        + literal("-")
        + as_text(drops.c.lowest)
    )
    chosen = select(
        key.label("dedupe_key"),
        drops.c.customer_id,
        drops.c.item_id,
        amount.label("amount"),
        literal("price drop before delivery").label("reason"),
        literal(run.now, UTCDateTime).label("created_at"),
        literal(run.now + lasts if lasts else None, UTCDateTime).label("expires_at"),
    ).where(drops.c.lowest.is_not(None), drops.c.lowest < drops.c.paid, amount >= max(minimum, 1))
    insert = ignoring_insert(run.conn, credit, "dedupe_key").from_select(
        [
            "dedupe_key",
            "customer_id",
            "order_item_id",
            "amount",
            "reason",
            "created_at",
            "expires_at",
        ],
        chosen,
    )
    return run.write(insert)


def _queue_refund_notices(run: CampaignPass, trigger: PriceDrop, new_credits: int) -> None:
    if not new_credits:
        return
    lowest = _lowest_price(run)
    amount = type_coerce(credit.c.amount, BigInteger)
    old_price = lowest + amount // order_item.c.quantity
    due = literal(run.now + trigger.delay, UTCDateTime)
    expires = (
        literal(run.now + trigger.delay + trigger.expires_after, UTCDateTime)
        if trigger.expires_after
        else None
    )
    select_from = (
        credit.join(order_item, order_item.c.id == credit.c.order_item_id)
        .join(orders, orders.c.id == order_item.c.order_id)
        .join(customer, customer.c.id == credit.c.customer_id)
    )
    where = [
        credit.c.created_at == literal(run.now, UTCDateTime),
        credit.c.dedupe_key.startswith(f"{run.campaign.name}:"),
    ]
    zones = run.zones(select_from, where)
    windows = run.window_rows(zones, run.now, run.now)
    context = run.sql.json_object(
        literal("credit_id"), credit.c.id,
        literal("old_price"), money_text(old_price),
        literal("new_price"), money_text(lowest),
        literal("quantity"), order_item.c.quantity,
        literal("amount"), money_text(amount),
    )  # fmt: skip
    run.queue(
        Candidates(
            select_from,
            where,
            _occurrence(lowest),
            due,
            run.in_window(due, windows),
            expires,
            {
                "order_id": orders.c.id,
                "order_item_id": order_item.c.id,
                "context": context,
            },
        )
    )
