"""Order triggers: the welcome on a first order, the thank-you on an order placed or delivered.

`first_order` is due at `customer.first_order_at + delay`, occurrence `first`;
`order_placed` / `order_delivered` at `placed_at` / `delivered_at` + delay,
occurrence `order-<id>`. Only events due within the lookback are looked at:
`expires_after` when set, else `DEFAULT_LOOKBACK`. With `quiet_after_welcome`,
a first order gets no thank-you close to an enabled welcome's due time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, func, literal, not_, or_, select

from ..project import FirstOrder, OrderDelivered, OrderPlaced
from ..store import OrderStatus
from .plansql import Candidates, as_text, customer, message, orders

if TYPE_CHECKING:
    from .campaignpass import CampaignPass

Trigger = FirstOrder | OrderPlaced | OrderDelivered

DEFAULT_LOOKBACK = timedelta(days=7)


def order_rows(run: CampaignPass, trigger: Trigger) -> Candidates | None:
    """Customers whose event fell due within the lookback (or since the last pass); None if none."""
    lookback = trigger.expires_after or DEFAULT_LOOKBACK
    latest, earliest = run.now - trigger.delay, run.now - trigger.delay - lookback
    if isinstance(trigger, FirstOrder):
        event = customer.c.first_order_at
        select_from: Any = customer
        where = [event.is_not(None)]
        occurrence: Any = literal("first")
        first_order = (
            select(func.min(orders.c.id))
            .where(
                orders.c.customer_id == customer.c.id,
                orders.c.placed_at == customer.c.first_order_at,
                orders.c.status != OrderStatus.CANCELLED.value,
            )
            .scalar_subquery()
        )
        extra = {"order_id": first_order}
    else:
        event = orders.c.placed_at if isinstance(trigger, OrderPlaced) else orders.c.delivered_at
        select_from = orders.join(customer, customer.c.id == orders.c.customer_id)
        where = [event.is_not(None), orders.c.status != OrderStatus.CANCELLED.value]
        where += _quiet_after_welcome(run, trigger, event)
        occurrence = literal("order-") + as_text(orders.c.id)
        extra = {"order_id": orders.c.id}
    if run.since is not None:
        earliest = max(earliest, run.since - trigger.delay)
    where += [event > earliest, event <= latest]
    zones = run.zones(select_from, where)
    if not zones:
        return None
    windows = run.window_rows(zones, earliest, run.now)
    due = run.sql.plus(event, trigger.delay)
    expires = (
        run.sql.plus(event, trigger.delay + trigger.expires_after)
        if trigger.expires_after
        else None
    )
    return Candidates(
        select_from,
        where,
        occurrence,
        due,
        run.in_window(due, windows),
        expires,
        extra,
    )


def _quiet_after_welcome(
    run: CampaignPass, trigger: OrderPlaced | OrderDelivered, event: Any
) -> list[Any]:
    quiet = trigger.quiet_after_welcome
    welcomes = [c for c in run.project.enabled_campaigns if isinstance(c.trigger, FirstOrder)]
    if quiet is None or not welcomes:
        return []
    first = orders.c.placed_at == customer.c.first_order_at
    gap = run.sql.seconds_between(customer.c.first_order_at, event)
    hushed = []
    for welcome in welcomes:
        # thank-you due − welcome due = gap + t.delay − w.delay, within ± quiet
        shift = (trigger.delay - welcome.trigger.delay).total_seconds()
        near = gap.between(-quiet.total_seconds() - shift, quiet.total_seconds() - shift)
        welcomed = exists().where(
            message.c.customer_id == customer.c.id, message.c.campaign == welcome.name
        )
        pending = customer.c.first_order_at > run.now - welcome.trigger.delay
        hushed.append(and_(near, or_(welcomed, pending)))
    return [not_(and_(first, or_(*hushed)))]
