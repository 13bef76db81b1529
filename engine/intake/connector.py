"""What the shop-platform connectors share: a delivery applied once, as the shop's events.

A platform (`woocommerce`, `shopify`) posts a webhook delivery: a JSON resource
signed with the webhook's secret (`signature_matches`: the base64 HMAC-SHA256 of
the raw body, as both platforms sign). `take_delivery` decodes it, asks the
platform's `translate` for the events of `engine.intake.events` it means (given
what the store knows), and applies them in one transaction with ids made from
the delivery's id, so a delivery sent again changes nothing. What a delivery
cannot give comes back in `Delivery.problems`, never raised.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from ..errors import DataError
from ..project import Holidays
from ..store import (
    ENDED_ORDER,
    ORDER_PROGRESS,
    Customer,
    Order,
    OrderStatus,
    Product,
    ReceivedEvent,
    session_scope,
)
from .eventapply import apply_events
from .events import EventsRejected, parse_events
from .orderlife import tracking_url

Translate = Callable[[Session, str, dict[str, Any], list[str]], list[dict[str, Any]]]


@dataclass
class Delivery:
    """What became of one delivery: events applied or already seen, and problems."""

    topic: str
    applied: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "problems": self.problems,
        }


def signature_matches(body: bytes, secret: str, signature: str) -> bool:
    """Whether `signature` is the base64 HMAC-SHA256 of `body` under `secret`."""
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.strip().encode())


def take_delivery(
    engine: Engine,
    source: str,
    translate: Translate,
    topic: str,
    delivery_id: str,
    body: bytes,
    *,
    now: datetime,
    holidays: Holidays | None = None,
) -> Delivery:
    """Apply one delivery from `source`; raises only the store's own errors."""
    delivery = Delivery(topic)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        delivery.problems.append(f"the body is not JSON: {exc}")
        return delivery
    if not isinstance(payload, dict):
        delivery.problems.append("the body is not a JSON object")
        return delivery
    prefix = f"{source}:{delivery_id}:"
    with session_scope(engine) as session:
        delivery.duplicates = _seen(session, prefix)
        if delivery.duplicates:
            return delivery  # sent again: applied the first time
        events = translate(session, topic, payload, delivery.problems)
    if not events:
        return delivery
    for k, event in enumerate(events):
        event["id"] = f"{prefix}{k}"
    try:
        parsed = parse_events(json.dumps(events).encode())
        results = apply_events(engine, parsed, now=now, holidays=holidays)
    except EventsRejected as exc:
        delivery.problems += [
            f"{_what(events, p.index)}: {p.field}: {p.reason}" for p in exc.problems
        ]
        return delivery
    delivery.applied = sum(r.status == "applied" for r in results)
    delivery.duplicates = len(results) - delivery.applied
    return delivery


def _seen(session: Session, prefix: str) -> int:
    """How many events of this delivery were applied before."""
    query = select(func.count()).where(col(ReceivedEvent.id).startswith(prefix, autoescape=True))
    return int(session.execute(query).scalar_one())


def _what(events: list[dict[str, Any]], index: int | None) -> str:
    return "the delivery" if index is None else str(events[index]["type"])


def customer_id_for(session: Session, email: str, platform_id: str | None) -> tuple[str, bool]:
    """The engine's id for the platform's customer, and whether the engine knows them:
    found by email first (one person, whoever created them), else `platform_id`, else
    the email itself (a guest)."""
    known = session.execute(
        select(col(Customer.external_id)).where(func.lower(col(Customer.email)) == email.lower())
    ).scalar()
    if known:
        return known, True
    return platform_id or email.lower(), False


def stored_order(session: Session, number: str) -> Any:
    """The recorded order's status, delivery time and tracking page, or None when it is
    not recorded."""
    return session.execute(
        select(col(Order.status), col(Order.delivered_at), col(Order.tracking_url)).where(
            col(Order.external_id) == number
        )
    ).first()


def usable_tracking(value: Any, number: str, problems: list[str]) -> str | None:
    """The courier's tracking page a platform gave, if the engine can keep it (an http(s)
    address of at most 500 characters without spaces); else None, and a problem that
    says it was left out (the order is applied without it)."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return tracking_url(text)
    except DataError as exc:
        problems.append(f"order {number}: {exc}: left out")
        return None


def ending(session: Session, number: str, *, at: str | None = None) -> list[dict[str, Any]]:
    """The events of a platform ending a recorded order (cancelled, refunded, deleted),
    by where it stood: not yet shipped, it is cancelled; on its way, the parcel was
    refused at the door; delivered, it came back (returned). None for an order never
    recorded (it stays out) or ended already."""
    stored = stored_order(session, number)
    if stored is None or stored.status in ENDED_ORDER:
        return []
    if stored.status in (OrderStatus.PLACED, OrderStatus.CONFIRMED):
        return [_stamped({"type": "order.cancelled", "order_id": number}, at)]
    refused = stored.status != OrderStatus.DELIVERED
    return [_stamped({"type": "order.returned", "order_id": number, "refused": refused}, at)]


def moved(
    session: Session,
    number: str,
    status: OrderStatus,
    *,
    at: str | None,
    tracking: str | None = None,
) -> list[dict[str, Any]]:
    """The events that bring a recorded order to `status` at `at`, if it moves: a live
    order only forward, an ended one not at all (refused may still become returned)."""
    stored = stored_order(session, number)
    if stored is None:
        return []
    current = OrderStatus(stored.status)
    if status == current:
        if not tracking or tracking == stored.tracking_url:
            return []  # nothing new; a new tracking page alone is kept below
    elif current.value in ENDED_ORDER:
        if (current, status) != (OrderStatus.REFUSED, OrderStatus.RETURNED):
            return []
    elif status.value not in ENDED_ORDER:
        if ORDER_PROGRESS.index(status) <= ORDER_PROGRESS.index(current):
            return []
    elif status == OrderStatus.REFUSED and current == OrderStatus.DELIVERED:
        status = OrderStatus.RETURNED  # a delivered parcel can only come back
    event: dict[str, Any] = {"type": "order.status_changed", "order_id": number, "status": status}
    if tracking:
        event["tracking_url"] = tracking
    return [_stamped(event, at)]


def _stamped(event: dict[str, Any], at: str | None) -> dict[str, Any]:
    if at:
        event["at"] = at
    return event


def missing_product(
    session: Session, sku: str, name: str, price: Decimal | None, events: list[dict[str, Any]]
) -> None:
    """Add `product.upserted` to `events` for an order line's product the engine does not
    know (nor `events` already creates), at the price the line was paid: a known
    product's price is never changed by an order."""
    if any(e["product"]["sku"] == sku for e in events):
        return
    if session.execute(select(col(Product.id)).where(col(Product.sku) == sku)).first() is None:
        product = {"sku": sku, "name": name or sku, "price": str(price or 0)}
        events.append({"type": "product.upserted", "product": product})


def utc_text(value: Any, *, naive_is_utc: bool = True) -> str | None:
    """An ISO 8601 time as the events API takes it (a naive one read as UTC), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        if not naive_is_utc:
            return None
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def amount(value: Any) -> Decimal | None:
    """A platform's price ("1250.00" or 1250) exactly, or None when there is none."""
    if value in (None, ""):
        return None
    try:
        found = Decimal(str(value))
    except InvalidOperation:
        return None
    return found if found.is_finite() and found >= 0 else None


def whole(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
