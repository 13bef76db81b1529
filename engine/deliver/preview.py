"""The message behind a preview: one campaign's email for one customer, unsaved.

`preview_message` builds the message the planner would queue for the customer,
from their own data: their latest order (the first for a welcome), a credit on
the first item of that order for a price drop, or the next date of one of the
campaign's holidays in the calendar. It writes nothing.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from ..errors import DataError, UnknownRecord
from ..project import FirstOrder, HolidayTrigger, PriceDrop, Project
from ..render import holiday_name, round_money
from ..store import Customer, Message, Order, OrderItem, Product


def preview_message(
    session: Session, project: Project, campaign_name: str, customer_id: int, *, now: datetime
) -> Message:
    """An unsaved message of `campaign_name` for the customer, like the planner would queue."""
    campaign = project.campaigns.get(campaign_name)
    if campaign is None:
        known = ", ".join(sorted(project.campaigns))
        raise UnknownRecord(f"no campaign named {campaign_name!r} (known: {known})")
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise UnknownRecord(f"no customer with id {customer_id}")
    message = Message(
        id=0,
        dedupe_key=f"preview:{campaign.name}:{customer_id}",
        campaign=campaign.name,
        kind=campaign.kind,
        customer_id=customer_id,
        occurrence="preview",
        created_at=now,
        send_after=now,
        context={},
    )
    trigger = campaign.trigger
    if isinstance(trigger, HolidayTrigger):
        holiday, day, name = _next_holiday(session, project, trigger, now)
        message.holiday = holiday
        message.holiday_date = day
        message.context = {"holiday_name": name}
        return message
    order = _order_for(session, customer_id, first=isinstance(trigger, FirstOrder))
    if order is None:
        raise DataError(
            f"customer {customer_id} has no orders, and the {campaign.name} email is about one"
        )
    message.order_id = order.id
    if isinstance(trigger, PriceDrop):
        _preview_refund(session, message, order.id)
    return message


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


def _order_for(session: Session, customer_id: int, *, first: bool) -> Order | None:
    placed = col(Order.placed_at)
    query = (
        select(Order)
        .where(col(Order.customer_id) == customer_id)
        .order_by(placed if first else placed.desc(), col(Order.id))
        .limit(1)
    )
    return session.execute(query).scalars().first()


def _preview_refund(session: Session, message: Message, order_id: int | None) -> None:
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
