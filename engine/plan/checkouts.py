"""The abandoned checkout: a checkout started and no order carried its cart id.

Due `wait` (default 1 hour) after `checkout.started_at` (indexed), for a
checkout no order has completed: neither `checkout.order_id` is set nor does an
order carry its cart id. Every step checks this again, so the order stops the
flow. Occurrence `cart-<checkout id>`: each cart once.
"""

from __future__ import annotations

from sqlalchemy import exists, literal

from ..project import CheckoutAbandoned
from .campaignpass import CampaignPass
from .plansql import as_text, checkout, customer, orders


def plan_checkout_abandoned(run: CampaignPass, trigger: CheckoutAbandoned) -> None:
    select_from = checkout.join(customer, customer.c.id == checkout.c.customer_id)
    open_cart = [
        checkout.c.order_id.is_(None),
        ~exists().where(orders.c.cart_id == checkout.c.cart_id),
    ]
    occurrence = literal("cart-") + as_text(checkout.c.id)
    extra = {"context": run.sql.json_object(literal("cart_id"), checkout.c.cart_id)}
    rows = run.timed(
        select_from, open_cart, checkout.c.started_at, occurrence, extra, shift=trigger.wait
    )
    if rows is not None:
        run.queue(rows)
