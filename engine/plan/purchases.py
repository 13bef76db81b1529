"""Triggers on a customer's buying: win-back, the Nth order, a purchase to follow up.

- `inactive`: due `days` after the customer's last order that is not cancelled
  (`customer.last_order_at`, indexed), once per lapse: the occurrence is
  `lapse-<last order time>`, so a new order starts a new lapse and a second lapse
  is a new occurrence; `order_id` is that last order.
- `nth_order`: the customer's Nth order that is not cancelled, counted by
  (placed_at, id), due `delay` after it was placed (or delivered, `on: delivered`);
  occurrence `nth-<N>`, so each rung of the ladder goes once even if an earlier
  order is cancelled later and the count shifts.
- `after_purchase`: `delay` after an order holding one of the SKUs or categories
  was delivered (replenishment, a review request); occurrence `order-<id>`.

Each reads only the orders or customers whose event time falls within the step's
lookback (its `expires_after`), through the indexes on `last_order_at`,
`placed_at` and `delivered_at`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, exists, func, literal, or_, select, tuple_

from ..project import AfterPurchase, Inactive, NthOrder
from ..store import is_purchase
from .campaignpass import CampaignPass
from .plansql import as_text, customer, order_item, orders, product


def plan_inactive(run: CampaignPass, trigger: Inactive) -> None:
    event = customer.c.last_order_at
    last = orders.alias("last_order")
    last_order = (
        select(func.max(last.c.id))
        .where(
            last.c.customer_id == customer.c.id,
            last.c.placed_at == customer.c.last_order_at,
            is_purchase(last.c.status),
        )
        .scalar_subquery()
    )
    occurrence = literal("lapse-") + run.sql.stamp(event)
    extra = {
        "order_id": last_order,
        "context": run.sql.json_object(literal("inactive_days"), literal(trigger.days)),
    }
    shift = timedelta(days=trigger.days)
    rows = run.timed(customer, [event.is_not(None)], event, occurrence, extra, shift=shift)
    if rows is not None:
        run.queue(rows)


def plan_nth_order(run: CampaignPass, trigger: NthOrder) -> None:
    event = orders.c.placed_at if trigger.on == "placed" else orders.c.delivered_at
    earlier = orders.alias("earlier")
    before = (
        select(func.count())
        .where(
            earlier.c.customer_id == orders.c.customer_id,
            is_purchase(earlier.c.status),
            tuple_(earlier.c.placed_at, earlier.c.id) < tuple_(orders.c.placed_at, orders.c.id),
        )
        # Always the candidate order, also inside the pass's NOT EXISTS tests on the occurrence.
        .correlate(orders)
        .scalar_subquery()
    )
    select_from = orders.join(customer, customer.c.id == orders.c.customer_id)
    where = [event.is_not(None), is_purchase(orders.c.status)]
    # Cheap first: only customers with at least the smallest N orders can have an Nth.
    where.append(customer.c.orders_count >= min(trigger.n))
    where.append((before + 1).in_(trigger.n))
    nth = before + 1
    occurrence = literal("nth-") + as_text(nth)
    extra = {
        "order_id": orders.c.id,
        "context": run.sql.json_object(literal("nth"), nth),
    }
    rows = run.timed(select_from, where, event, occurrence, extra)
    if rows is not None:
        run.queue(rows)


def plan_after_purchase(run: CampaignPass, trigger: AfterPurchase) -> None:
    event = orders.c.delivered_at
    bought = []
    if trigger.skus:
        bought.append(product.c.sku.in_(trigger.skus))
    if trigger.categories:
        bought.append(product.c.category.in_(trigger.categories))
    held = exists().where(
        order_item.c.order_id == orders.c.id,
        product.c.id == order_item.c.product_id,
        or_(*bought),
    )
    select_from = orders.join(customer, customer.c.id == orders.c.customer_id)
    where = [event.is_not(None), and_(is_purchase(orders.c.status), held)]
    occurrence = literal("order-") + as_text(orders.c.id)
    rows = run.timed(select_from, where, event, occurrence, {"order_id": orders.c.id})
    if rows is not None:
        run.queue(rows)
