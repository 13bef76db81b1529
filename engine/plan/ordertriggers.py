"""Order triggers: the welcome on a first order, the thank-you on an order placed or
delivered, the courier's on its way, and the follow-up on one refused or returned.

`first_order` is due at `customer.first_order_at + delay`, occurrence `first`;
`order_placed` / `order_delivered` / `order_shipped` / `order_returned` at
`placed_at` / `delivered_at` / `shipped_at` / `returned_at` + delay, occurrence
`order-<id>`. A shipped order is due only while it is still on its way (shipped
or out for delivery; `payment` narrows it to cash on delivery or prepaid), a
returned one while it is refused or returned, and never for a customer who has
refused two orders (`REFUSALS_ENOUGH`). Only events due within the lookback are looked at:
`expires_after` when set, else `DEFAULT_LOOKBACK`. With `quiet_after_welcome`,
a first order gets no thank-you close to an enabled welcome's due time.

`late_rows` finds what the lookback cannot: with `expires_after`, an order
recorded since the campaign's last full pass whose email has already expired
(an order reported late). The planner records those as expired unsent, with
why. The scan reads `orders.recorded_at` (indexed), never a wider lookback, so
an idle pass stays as cheap; a campaign's first pass has no full pass before
it and records nothing so (a new install's history is not news), and an email
that had expired more than `LATE_REPORTED` (30 days) before is not recorded either
(a backlog imported after the first run is history too).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, case, exists, func, literal, not_, or_, select

from ..project import FirstOrder, OrderDelivered, OrderPlaced, OrderReturned, OrderShipped
from ..store import CASH_ON_DELIVERY, OrderStatus, is_purchase
from .campaignpass import DEFAULT_LOOKBACK
from .plansql import Candidates, as_text, customer, message, orders

if TYPE_CHECKING:
    from .campaignpass import CampaignPass

Trigger = FirstOrder | OrderPlaced | OrderDelivered
LifeTrigger = OrderShipped | OrderReturned
ON_ITS_WAY = (OrderStatus.SHIPPED.value, OrderStatus.OUT_FOR_DELIVERY.value)
CAME_BACK = (OrderStatus.REFUSED.value, OrderStatus.RETURNED.value)
# A customer who has refused this many parcels hears no more follow-ups.
REFUSALS_ENOUGH = 2

# Orders recorded late looked at per statement (a bulk import may bring many).
LATE_CHUNK = 1000

# An order whose email had expired longer than this before the pass is history
# brought in late (a backlog imported after the first run), not news: not recorded.
LATE_REPORTED = timedelta(days=30)


def order_rows(run: CampaignPass, trigger: Trigger | LifeTrigger) -> Candidates | None:
    """Customers whose event fell due within the lookback (or since the last pass); None if none."""
    delay, expires_after = run.delay, run.expires_after
    lookback = expires_after or DEFAULT_LOOKBACK
    latest, earliest = run.now - delay, run.now - delay - lookback
    if isinstance(trigger, FirstOrder):
        event = customer.c.first_order_at
        select_from: Any = customer
        where = [event.is_not(None)]
        occurrence: Any = literal("first")
        extra = {"order_id": _first_order()}
    else:
        select_from = orders.join(customer, customer.c.id == orders.c.customer_id)
        if isinstance(trigger, OrderShipped | OrderReturned):
            event, where = _life_event(trigger)
        else:
            event = (
                orders.c.placed_at if isinstance(trigger, OrderPlaced) else orders.c.delivered_at
            )
            where = [event.is_not(None), is_purchase(orders.c.status)]
            where += _quiet_after_welcome(run, trigger, event)
        occurrence = literal("order-") + as_text(orders.c.id)
        extra = {"order_id": orders.c.id}
    if run.since is not None:
        earliest = max(earliest, run.since - delay)
    where += [event > earliest, event <= latest]
    zones = run.zones(select_from, where)
    if not zones:
        return None
    windows = run.window_rows(zones, earliest, run.now)
    due = run.sql.plus(event, delay)
    expires = run.sql.plus(event, delay + expires_after) if expires_after else None
    return Candidates(
        select_from,
        where,
        occurrence,
        due,
        run.in_window(due, windows),
        expires,
        extra,
        entry=event,
    )


def _life_event(trigger: LifeTrigger) -> tuple[Any, list[Any]]:
    """The moment an order's shipping or return is due from, and which orders may be."""
    if isinstance(trigger, OrderShipped):
        where = [orders.c.shipped_at.is_not(None), orders.c.status.in_(ON_ITS_WAY)]
        if trigger.payment == "cod":
            where.append(orders.c.payment_method == CASH_ON_DELIVERY)
        elif trigger.payment == "prepaid":
            where += [
                orders.c.payment_method.is_not(None),
                orders.c.payment_method != CASH_ON_DELIVERY,
            ]
        return orders.c.shipped_at, where
    # A refusal: refused at the door, or come back without ever being delivered (a
    # refused parcel the shop later marks returned is still a refusal).
    refused = orders.alias("refused")
    refusals = (
        select(func.count())
        .where(
            refused.c.customer_id == orders.c.customer_id,
            or_(
                refused.c.status == OrderStatus.REFUSED.value,
                and_(
                    refused.c.status == OrderStatus.RETURNED.value,
                    refused.c.delivered_at.is_(None),
                ),
            ),
        )
        .scalar_subquery()
    )
    where = [
        orders.c.returned_at.is_not(None),
        orders.c.status.in_(CAME_BACK),
        refusals < REFUSALS_ENOUGH,
    ]
    return orders.c.returned_at, where


def _quiet_after_welcome(
    run: CampaignPass, trigger: OrderPlaced | OrderDelivered, event: Any
) -> list[Any]:
    quiet = trigger.quiet_after_welcome
    welcomes = [
        (c, c.trigger) for c in run.project.enabled_campaigns if isinstance(c.trigger, FirstOrder)
    ]
    if quiet is None or not welcomes:
        return []
    first = orders.c.placed_at == customer.c.first_order_at
    gap = run.sql.seconds_between(customer.c.first_order_at, event)
    hushed = []
    for welcome, welcome_trigger in welcomes:
        # thank-you due − welcome due = gap + t.delay − w.delay, within ± quiet
        shift = (trigger.delay - welcome_trigger.delay).total_seconds()
        near = gap.between(-quiet.total_seconds() - shift, quiet.total_seconds() - shift)
        welcomed = exists().where(
            message.c.customer_id == customer.c.id, message.c.campaign == welcome.name
        )
        pending = customer.c.first_order_at > run.now - welcome_trigger.delay
        hushed.append(and_(near, or_(welcomed, pending)))
    return [not_(and_(first, or_(*hushed)))]


def late_orders(run: CampaignPass, trigger: Trigger) -> Iterator[list[int]]:
    """The ids of orders recorded since the campaign's last full pass, in chunks.

    Since the last full pass, not the previous pass: passes between full ones do
    not see an order dated earlier than the previous pass, so one recorded close
    to its expiry may expire before a full pass looks at it. Nothing when the
    trigger has no `expires_after` or on the campaign's first pass. Read apart,
    from the recorded_at index alone, so the candidates' query starts from these
    orders by primary key, never from a range of event times.
    """
    since = run.last_full_pass
    if not run.expires_after or since is None or run.index > 0:
        return
    query = select(orders.c.id).where(orders.c.recorded_at > since)
    ids = sorted(run.conn.execute(query).scalars())
    for start in range(0, len(ids), LATE_CHUNK):
        yield ids[start : start + LATE_CHUNK]


def late_rows(run: CampaignPass, trigger: Trigger, order_ids: list[int]) -> Candidates:
    """Candidates of these orders whose email has already expired (see `late_orders`).

    For `first_order` only the customer's first order counts (a later order
    recorded late does not expire a welcome).
    """
    expires_after = run.expires_after
    assert expires_after is not None  # late_orders gives none without one
    delay = run.delay
    recorded = orders.c.id.in_(order_ids)
    expired_by = run.now - delay - expires_after
    select_from = orders.join(customer, customer.c.id == orders.c.customer_id)
    if isinstance(trigger, FirstOrder):
        event = customer.c.first_order_at
        where = [recorded, orders.c.id == _first_order()]
        occurrence: Any = literal("first")
    else:
        event = orders.c.placed_at if isinstance(trigger, OrderPlaced) else orders.c.delivered_at
        where = [recorded, event.is_not(None), is_purchase(orders.c.status)]
        where += _quiet_after_welcome(run, trigger, event)
        occurrence = literal("order-") + as_text(orders.c.id)
    where += [event <= expired_by, event > expired_by - LATE_REPORTED]
    due = run.sql.plus(event, delay)
    expires = run.sql.plus(event, delay + expires_after)
    too_late = case(
        (orders.c.recorded_at >= expires, literal(", after the email had expired")),
        else_=literal(", and the email expired before the next full planning pass"),
    )
    why = (
        literal("expired unsent: due ")
        + _iso(run, due)
        + literal(", expired ")
        + _iso(run, expires)
        + literal(f" (expires_after {_duration(expires_after)}); the order was recorded at ")
        + _iso(run, orders.c.recorded_at)
        + too_late
    )
    extra = {"order_id": orders.c.id, "last_error": func.substr(why, 1, 1000)}
    return Candidates(select_from, where, occurrence, due, due, expires, extra)


def _first_order() -> Any:
    """The customer's first order (the lowest id of those placed at first_order_at)."""
    first = orders.alias("first_order")  # its own name: the late scan reads orders too
    return (
        select(func.min(first.c.id))
        .where(
            first.c.customer_id == customer.c.id,
            first.c.placed_at == customer.c.first_order_at,
            is_purchase(first.c.status),
        )
        .scalar_subquery()
    )


def _iso(run: CampaignPass, moment: Any) -> Any:
    """A stored UTC datetime as ISO 8601 text, as `plan --json` writes times."""
    if run.sql.pg:
        return func.to_char(moment, literal('YYYY-MM-DD"T"HH24:MI:SS"+00:00"', String))
    return func.strftime(literal("%Y-%m-%dT%H:%M:%S+00:00", String), moment)


def _duration(value: timedelta) -> str:
    """A duration as campaign files write it: 3d, 2h, 30m, 90s."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
