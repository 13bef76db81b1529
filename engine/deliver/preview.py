"""The message behind a preview: one campaign's email for one customer, unsaved.

`preview_message` builds the message the planner would queue for the customer
(for one step of a flow: the first unless told), from their own data: their
latest order (the first for a welcome; the one that reached an order number; the
latest with what an after-purchase email is about), their latest price-drop
credit, their next birthday or anniversary, their latest checkout, their latest
referral reward; the next date
of one of the campaign's holidays in the calendar, the shop's newest product, its
latest restock, the current period of a schedule. It writes nothing. Where the customer's data lacks what the email is
about (a price drop for a customer never credited), it makes up sample values, and
`preview_sample` says so. `preview_customer` picks a customer who would really get
a campaign's email: its latest recipient, else (for a price drop) one with a credit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlmodel import Session, col

from ..errors import DataError, UnknownRecord
from ..project import (
    AfterPurchase,
    BackInStock,
    Broadcast,
    Campaign,
    CheckoutAbandoned,
    CreditUnused,
    DateTrigger,
    FirstOrder,
    FlowStep,
    HolidayTrigger,
    Inactive,
    NthOrder,
    OrderReturned,
    OrderShipped,
    PriceDrop,
    ProductAdded,
    Project,
    ReferralRewardTrigger,
    Schedule,
    TierChanged,
)
from ..render import holiday_name, round_money
from ..store import (
    Checkout,
    Credit,
    Customer,
    Message,
    Order,
    OrderItem,
    Product,
    ReferralReward,
    Restock,
    TierChange,
    is_purchase,
)

# Triggers whose preview is built from the customer's or the shop's data by `_about`.
_OF_THE_YEAR = (
    Inactive,
    DateTrigger,
    NthOrder,
    AfterPurchase,
    ProductAdded,
    BackInStock,
    Schedule,
    Broadcast,
    CheckoutAbandoned,
    TierChanged,
    ReferralRewardTrigger,
)


def preview_message(
    session: Session,
    project: Project,
    campaign_name: str,
    customer_id: int,
    *,
    now: datetime,
    step: str | None = None,
) -> Message:
    """An unsaved message of `campaign_name` for the customer, like the planner would
    queue, for the flow step `step` (None: the first; an unknown one: DataError)."""
    campaign = project.campaigns.get(campaign_name)
    if campaign is None:
        known = ", ".join(sorted(project.campaigns))
        raise UnknownRecord(f"no campaign named {campaign_name!r} (known: {known})")
    flow_step = _flow_step(campaign, step)
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise UnknownRecord(f"no customer with id {customer_id}")
    suffix = f":{flow_step.id}" if flow_step.id else ""
    message = Message(
        id=0,
        dedupe_key=f"preview:{campaign.name}:{customer_id}{suffix}",
        campaign=campaign.name,
        kind=campaign.kind,
        customer_id=customer_id,
        occurrence="preview",
        step=flow_step.id,
        created_at=now,
        send_after=now,
        context={},
    )
    trigger = campaign.trigger
    if isinstance(trigger, _OF_THE_YEAR):
        _about(session, campaign, customer, message, now)
        return message
    if isinstance(trigger, HolidayTrigger):
        holiday, day, name = _next_holiday(session, project, trigger, now)
        message.holiday = holiday
        message.holiday_date = day
        message.context = {"holiday_name": name}
        return message
    if isinstance(trigger, CreditUnused):
        return message  # about the customer's own wallet, read when it renders
    order = _order_for(session, customer_id, trigger)
    if order is None:
        raise DataError(
            f"customer {customer_id} has no orders, and the {campaign.name} email is about one"
        )
    message.order_id = order.id
    if isinstance(trigger, PriceDrop):
        credited = _latest_credit(session, customer_id)
        if credited is not None:
            _credited_refund(message, *credited)
        else:
            _sample_refund(session, message, order.id)
    return message


def _flow_step(campaign: Campaign, step: str | None) -> FlowStep:
    flow = campaign.flow
    if step is None or (not campaign.steps and step == flow[0].label):
        return flow[0]
    found = campaign.flow_step(step)
    if found is not None:
        return found
    if not campaign.steps:
        raise DataError(f"campaign {campaign.name} has no steps: it sends one email")
    known = ", ".join(s.label for s in flow)
    raise DataError(f"campaign {campaign.name} has no step {step!r} (its steps: {known})")


def _about(
    session: Session, campaign: Campaign, customer: Customer, message: Message, now: datetime
) -> None:
    """What a trigger of a shop's year would have written on the message."""
    trigger = campaign.trigger
    who = f"customer {customer.id}"
    if isinstance(trigger, Inactive):
        order = _needed(
            _orders(session, customer.id, latest_first=True).first(),
            f"{who} has no orders",
            campaign,
        )
        message.order_id = order.id
        message.context = {"inactive_days": max((now - order.placed_at).days, 0)}
    elif isinstance(trigger, DateTrigger):
        message.context = _occasion(customer, trigger, campaign, now.date())
    elif isinstance(trigger, NthOrder):
        _nth_order(session, campaign, trigger, customer, message)
    elif isinstance(trigger, AfterPurchase):
        what = ", ".join([*trigger.skus, *trigger.categories])
        order = _order_with(session, customer.id, trigger)
        message.order_id = _needed(order, f"{who} has no order with {what}", campaign).id
    elif isinstance(trigger, ProductAdded):
        message.context = {"product_id": _newest_product(session, campaign, trigger)}
    elif isinstance(trigger, BackInStock):
        latest = select(Restock).order_by(col(Restock.at).desc(), col(Restock.id).desc())
        restock = session.execute(latest.limit(1)).scalars().first()
        found = _needed(restock, "no product has come back in stock yet", campaign)
        message.context = {"product_id": found.product_id, "restock_id": found.id}
    elif isinstance(trigger, Schedule):
        today, start = now.date(), trigger.starting
        if today > start:
            start += (today - start) // trigger.every * trigger.every
        message.context = {"period_start": start.isoformat()}
    elif isinstance(trigger, Broadcast):
        at = trigger.at or now.replace(tzinfo=None)
        message.context = {"broadcast_at": at.strftime("%Y-%m-%d %H:%M")}
    elif isinstance(trigger, CheckoutAbandoned):
        carts = select(Checkout).where(col(Checkout.customer_id) == customer.id)
        carts = carts.order_by(col(Checkout.started_at).desc(), col(Checkout.id).desc())
        checkout = session.execute(carts.limit(1)).scalars().first()
        message.context = {"cart_id": _needed(checkout, f"{who} has no checkout", campaign).cart_id}
    elif isinstance(trigger, TierChanged):
        changes = select(TierChange).where(col(TierChange.customer_id) == customer.id)
        changes = changes.order_by(col(TierChange.at).desc(), col(TierChange.id).desc())
        change = session.execute(changes.limit(1)).scalars().first()
        found = _needed(change, f"{who} has never changed tier", campaign)
        message.context = {
            "from_tier": found.from_tier,
            "to_tier": found.to_tier,
            "direction": found.direction,
        }
    elif isinstance(trigger, ReferralRewardTrigger):
        rewards = select(ReferralReward).where(col(ReferralReward.customer_id) == customer.id)
        rewards = rewards.order_by(col(ReferralReward.at).desc(), col(ReferralReward.id).desc())
        reward = session.execute(rewards.limit(1)).scalars().first()
        found_reward = _needed(reward, f"{who} has earned no referral reward", campaign)
        message.context = {"reward_id": found_reward.id, "threshold": found_reward.threshold}


def _needed(row: Any, missing: str, campaign: Campaign) -> Any:
    """`row`; DataError "<missing>, and the <campaign> email is about one" if None."""
    if row is None:
        raise DataError(f"{missing}, and the {campaign.name} email is about one")
    return row


def _nth_order(
    session: Session, campaign: Campaign, trigger: NthOrder, customer: Customer, message: Message
) -> None:
    """The customer's order that reached the highest of the trigger's numbers."""
    orders = list(_orders(session, customer.id, latest_first=False))
    reached = [n for n in trigger.n if n <= len(orders)]
    if not reached:
        raise DataError(
            f"customer {customer.id} has {len(orders)} orders, and the {campaign.name} email "
            f"is about order number {trigger.n[0]}"
        )
    message.order_id = orders[reached[-1] - 1].id
    message.context = {"nth": reached[-1]}


def _newest_product(session: Session, campaign: Campaign, trigger: ProductAdded) -> int:
    query = select(Product).order_by(col(Product.id).desc()).limit(1)
    if trigger.categories:
        query = query.where(col(Product.category).in_(trigger.categories))
    product = session.execute(query).scalars().first()
    what = " in " + ", ".join(trigger.categories) if trigger.categories else ""
    return int(_needed(product, f"the shop has no product{what}", campaign).id)


def _orders(session: Session, customer_id: int | None, *, latest_first: bool) -> Any:
    """The customer's orders that are not cancelled, in the order they were placed."""
    placed, order_id = col(Order.placed_at), col(Order.id)
    query = (
        select(Order)
        .where(col(Order.customer_id) == customer_id, is_purchase(col(Order.status)))
        .order_by(*((placed.desc(), order_id.desc()) if latest_first else (placed, order_id)))
    )
    return session.execute(query).scalars()


def _order_with(session: Session, customer_id: int | None, trigger: AfterPurchase) -> Any:
    """The customer's latest order with one of the SKUs or categories the trigger names."""
    bought = [col(Product.sku).in_(trigger.skus), col(Product.category).in_(trigger.categories)]
    query = (
        select(Order)
        .join(OrderItem, col(OrderItem.order_id) == col(Order.id))
        .join(Product, col(Product.id) == col(OrderItem.product_id))
        .where(col(Order.customer_id) == customer_id, is_purchase(col(Order.status)))
        .where(or_(*bought))
        .order_by(col(Order.placed_at).desc(), col(Order.id).desc())
        .limit(1)
    )
    return session.execute(query).scalars().first()


def _occasion(
    customer: Customer, trigger: DateTrigger, campaign: Campaign, today: date
) -> dict[str, Any]:
    """The customer's next birthday or anniversary, `days_before` it or later."""
    first = customer.first_order_at
    original = {
        "birthday": customer.birthday,
        "first_order": first.date() if first else None,
        "signup": customer.created_at.date(),
    }[trigger.field]
    if original is None:
        what = "birthday" if trigger.field == "birthday" else "first order"
        raise DataError(
            f"customer {customer.id} has no {what}, and the {campaign.name} email is about it"
        )
    soonest = today + timedelta(days=trigger.days_before)
    day = _in_year(original, soonest.year)
    if day < soonest:
        day = _in_year(original, soonest.year + 1)
    return {
        "date_field": trigger.field,
        "date": day.isoformat(),
        "years": day.year - original.year,
    }


def _in_year(original: date, year: int) -> date:
    """`original`'s day in `year` (29 February: the 28th when the year has none)."""
    try:
        return original.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def preview_sample(
    session: Session, project: Project, campaign_name: str, customer_id: int
) -> str | None:
    """What a preview of `campaign_name` for the customer makes up, or None if nothing."""
    campaign = project.campaigns.get(campaign_name)
    if campaign is None or not isinstance(campaign.trigger, PriceDrop):
        return None
    if _latest_credit(session, customer_id) is not None:
        return None
    return (
        "this customer was never credited for a price drop: the prices and the credit "
        "shown are sample data"
    )


def preview_customer(session: Session, project: Project, campaign_name: str) -> int | None:
    """The row id of a customer who would really get `campaign_name`, or None.

    The campaign's latest recipient; for a price drop or a credit reminder without
    one, the customer credited last.
    """
    campaign = project.campaigns.get(campaign_name)
    if campaign is None:
        return None
    latest = session.execute(
        select(col(Message.customer_id))
        .where(col(Message.campaign) == campaign.name)
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
        .limit(1)
    ).scalar()
    if latest is None and isinstance(campaign.trigger, PriceDrop):
        latest = session.execute(
            select(col(Credit.customer_id))
            .where(col(Credit.order_item_id).is_not(None))
            .order_by(col(Credit.created_at).desc(), col(Credit.id).desc())
            .limit(1)
        ).scalar()
    if latest is None and isinstance(campaign.trigger, CreditUnused):
        latest = session.execute(
            select(col(Credit.customer_id))
            .where(col(Credit.amount) > 0)
            .order_by(col(Credit.created_at).desc(), col(Credit.id).desc())
            .limit(1)
        ).scalar()
    return None if latest is None else int(latest)


def _next_holiday(
    session: Session, project: Project, trigger: HolidayTrigger, now: datetime
) -> tuple[str, date, Any]:
    """The campaign's next holiday from the calendar, else its first one, days_before ahead."""
    from ..plan import holiday_dates

    today = now.date()
    for holiday in holiday_dates(project, [today.year, today.year + 1], session.connection()):
        if holiday.id in trigger.holidays and holiday.date >= today:
            return holiday.id, holiday.date, holiday.name
    first = trigger.holidays[0]
    day = today + timedelta(days=trigger.days_before)
    return first, day, holiday_name(project, first, None, "en")


def _order_for(session: Session, customer_id: int, trigger: Any) -> Order | None:
    """The order the email would be about: the first for a welcome, else the latest;
    for a shipping or return email the latest shipped or returned one, if any."""
    placed = col(Order.placed_at)
    first = isinstance(trigger, FirstOrder)
    query = (
        select(Order)
        .where(col(Order.customer_id) == customer_id)
        .order_by(placed if first else placed.desc(), col(Order.id))
        .limit(1)
    )
    moments: dict[type, Any] = {OrderShipped: Order.shipped_at, OrderReturned: Order.returned_at}
    moment = moments.get(type(trigger))
    if moment is not None:
        fitting = session.execute(query.where(col(moment).is_not(None))).scalars().first()
        if fitting is not None:
            return fitting
    return session.execute(query).scalars().first()


def _latest_credit(session: Session, customer_id: int) -> tuple[Credit, OrderItem] | None:
    """The customer's latest credit for an order item, and that item."""
    row = session.execute(
        select(Credit, OrderItem)
        .join(OrderItem, col(OrderItem.id) == col(Credit.order_item_id))
        .where(col(Credit.customer_id) == customer_id)
        .order_by(col(Credit.created_at).desc(), col(Credit.id).desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def _credited_refund(message: Message, credit: Credit, item: OrderItem) -> None:
    """The notice of a credit the customer really got, with its own numbers."""
    paid = item.unit_price
    quantity = max(item.quantity, 1)
    message.order_id = item.order_id
    message.order_item_id = item.id
    message.context = {
        "credit_id": credit.id,
        "old_price": str(paid),
        "new_price": str(round_money(paid - credit.amount / quantity)),
        "quantity": item.quantity,
        "amount": str(credit.amount),
    }


def _sample_refund(session: Session, message: Message, order_id: int | None) -> None:
    """Made-up numbers on the first item of the order (see `preview_sample`)."""
    row = session.execute(
        select(OrderItem, Product)
        .join(Product, col(Product.id) == col(OrderItem.product_id))
        .where(col(OrderItem.order_id) == order_id)
        .order_by(col(OrderItem.id))
        .limit(1)
    ).first()
    if row is None:
        raise DataError(f"order {order_id} has no items")
    item, product = row
    paid = item.unit_price
    new = product.price if product.price < paid else round_money(paid * Decimal("0.9"))
    message.order_item_id = item.id
    message.context = {
        "old_price": str(paid),
        "new_price": str(new),
        "quantity": item.quantity,
        "amount": str((paid - new) * item.quantity),
    }
