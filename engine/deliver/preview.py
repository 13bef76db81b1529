"""The message behind a preview: one campaign's email for one customer, unsaved.

`preview_message` builds the message the planner would queue for the customer,
from their own data: their latest order (the first for a welcome), their latest
price-drop credit, or the next date of one of the campaign's holidays in the
calendar. It writes nothing. Where the customer's data lacks what the email is
about (a price drop for a customer never credited), it makes up sample values, and
`preview_sample` says so. `preview_customer` picks a customer who would really get
a campaign's email: its latest recipient, else (for a price drop) one with a credit.
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
from ..store import Credit, Customer, Message, Order, OrderItem, Product


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
        credited = _latest_credit(session, customer_id)
        if credited is not None:
            _credited_refund(message, *credited)
        else:
            _sample_refund(session, message, order.id)
    return message


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

    The campaign's latest recipient; for a price drop without one, the customer
    credited last.
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


def _order_for(session: Session, customer_id: int, *, first: bool) -> Order | None:
    placed = col(Order.placed_at)
    query = (
        select(Order)
        .where(col(Order.customer_id) == customer_id)
        .order_by(placed if first else placed.desc(), col(Order.id))
        .limit(1)
    )
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
