"""Applying a batch of the shop's events (`engine.intake.events` parses and describes them).

`apply_events` applies a batch in order, in one transaction: an id seen before is
ignored (`received_event`), a run of `customer.upserted` events is written in bulk
(`engine.intake.customerbatch`), every other event by the module that owns what it
changes (`shop`, `orderlife`, `coupons`, `referrals`, `wallet`). An event that
cannot be applied (an unknown customer, SKU or order, credit beyond the balance)
rejects the whole batch with the field and the reason: nothing of it is applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
)
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from ..errors import DataError, UnknownRecord
from ..project import Holidays, LocalText, pick_text
from ..store import Customer, OrderStatus, ReceivedEvent, session_scope
from . import coupons, customerbatch, orderlife, referrals, shop, wallet
from .events import EventProblem, EventsRejected
from .eventshapes import (
    CheckoutStarted,
    CreditRedeemed,
    CustomerUpserted,
    HolidayAnnounced,
    OrderCancelled,
    OrderDelivered,
    OrderPlaced,
    OrderReturned,
    OrderShipped,
    OrderStatusChanged,
    PriceChanged,
    ProductUpserted,
    ProductWanted,
    ShopEvent,
)

_RECEIVED: Any = ReceivedEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Applied:
    id: str
    status: Literal["applied", "duplicate"]


def apply_events(
    engine: Engine, events: list[ShopEvent], *, now: datetime, holidays: Holidays | None = None
) -> list[Applied]:
    """Apply `events` in order, in one transaction; repeated ids are ignored.

    `holidays` is the config's holiday section (a `holiday.announced` event
    needs it). Raises EventsRejected (nothing applied) when an event cannot
    be applied.
    """
    declared = {extra.id: extra.name for extra in holidays.extra} if holidays else {}
    try:
        return _apply_all(engine, events, now, declared)
    except IntegrityError:
        # The same id arrived in a concurrent request: the retry sees it as a duplicate.
        return _apply_all(engine, events, now, declared)


def _apply_all(
    engine: Engine, events: list[ShopEvent], now: datetime, declared: dict[str, LocalText]
) -> list[Applied]:
    with session_scope(engine) as session:
        seen = _received(session, [event.id for event in events])
        results, received, fresh = [], [], []
        for index, event in enumerate(events):
            if event.id in seen:
                results.append(Applied(event.id, "duplicate"))
                continue
            seen.add(event.id)
            fresh.append((index, event))
            received.append({"id": event.id, "type": event.type, "received_at": now})
            results.append(Applied(event.id, "applied"))
        for run in _runs(fresh):
            if isinstance(run, list):
                _customers(session, run, now)
            else:
                _apply_one(session, *run, now, declared)
        session.flush()
        if received:
            session.connection().execute(insert(_RECEIVED), received)
        return results


def _received(session: Session, ids: list[str]) -> set[str]:
    """The ids among `ids` applied before."""
    seen: set[str] = set()
    for start in range(0, len(ids), customerbatch.CHUNK):
        chunk = ids[start : start + customerbatch.CHUNK]
        query = select(col(ReceivedEvent.id)).where(col(ReceivedEvent.id).in_(chunk))
        seen.update(session.execute(query).scalars())
    return seen


Indexed = tuple[int, ShopEvent]


def _runs(events: list[Indexed]) -> Iterator[list[tuple[int, CustomerUpserted]] | Indexed]:
    """The events in order: each run of customer upserts that names no customer id
    or email twice as one list (written in bulk), every other event on its own."""
    run: list[tuple[int, CustomerUpserted]] = []
    keys: set[str] = set()
    for index, event in events:
        if isinstance(event, CustomerUpserted):
            mine = {f"id:{event.customer.id}", f"email:{event.customer.email.strip().lower()}"}
            if not mine & keys:
                run.append((index, event))
                keys |= mine
                continue
        if run:
            yield run
            run, keys = [], set()
        if isinstance(event, CustomerUpserted):
            run.append((index, event))
            keys = {f"id:{event.customer.id}", f"email:{event.customer.email.strip().lower()}"}
        else:
            yield index, event
    if run:
        yield run


def _customers(session: Session, run: list[tuple[int, CustomerUpserted]], now: datetime) -> None:
    """A run of customer upserts in bulk; the session's loaded objects are refreshed after."""
    session.flush()
    given = [_upsert_of(event, now) for _, event in run]
    try:
        customerbatch.upsert_customers(session.connection(), given)
    except customerbatch.RowError as exc:
        problem = EventProblem(run[exc.position][0], f"customer.{exc.field}", exc.reason)
        raise EventsRejected([problem]) from exc
    session.expire_all()


def _upsert_of(event: CustomerUpserted, now: datetime) -> customerbatch.CustomerUpsert:
    data = event.customer
    return customerbatch.CustomerUpsert(
        external_id=data.id,
        email=data.email,
        at=event.at or now,
        name=data.name,
        locale=data.locale,
        timezone=data.timezone,
        city=data.city,
        birthday=data.birthday,
        tags=data.tags,
        marketing_consent=data.marketing_consent,
        created_at=data.created_at,
    )


def _apply_one(
    session: Session, index: int, event: ShopEvent, now: datetime, declared: dict[str, LocalText]
) -> None:
    at = event.at or now
    try:
        if isinstance(event, HolidayAnnounced):
            _holiday(session, event, at, declared)
        else:
            _APPLY[type(event)](session, event, at, now)
    except _FieldError as exc:
        raise EventsRejected([EventProblem(index, exc.field, exc.reason)]) from exc
    except DataError as exc:
        raise EventsRejected([EventProblem(index, _field_of(event, str(exc)), str(exc))]) from exc


def _field_of(event: ShopEvent, message: str) -> str:
    """The field a shop error names (its first word, when that is a field), else the part."""
    main = _MAIN_FIELD[event.type]
    word = message.split(":")[0].split(" ")[0]
    data = getattr(event, main, None)
    if isinstance(data, BaseModel):
        return f"{main}.{word}" if word in type(data).model_fields else main
    # An event of top-level fields: the shop names them as the event does (`items[0].name`).
    top = word.split("[")[0].split(".")[0]
    return word if top in type(event).model_fields else main


class _FieldError(Exception):
    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason


def _customer(session: Session, event: CustomerUpserted, at: datetime, now: datetime) -> None:
    data = event.customer
    shop.upsert_customer(
        session,
        external_id=data.id,
        email=data.email,
        now=at,
        name=data.name,
        locale=data.locale,
        timezone=data.timezone,
        city=data.city,
        birthday=data.birthday,
        tags=data.tags,
        marketing_consent=data.marketing_consent,
        consent_source="events api",
        created_at=data.created_at,
    )


def _order(session: Session, event: OrderPlaced, at: datetime, now: datetime) -> None:
    data = event.order
    _known_customer(session, data.customer_id, "order.customer_id")
    for i, line in enumerate(data.items):
        _known_sku(session, line.sku, f"order.items[{i}].sku")
    shop.record_order(
        session,
        external_id=data.id,
        customer_id=data.customer_id,
        items=[shop.Line(x.sku, x.quantity, x.unit_price) for x in data.items],
        placed_at=data.placed_at or at,
        delivered_at=data.delivered_at,
        cancelled=data.cancelled,
        now=max(at, now),
        cart_id=data.cart_id,
        payment=data.payment_method,
        status=None if data.status is None else OrderStatus(data.status),
        tracking=data.tracking_url,
        payable=data.payable,
        moved_at=at,
    )
    coupons.redeem_order_coupon(session, data.coupon_code, data.id, source="events api")
    referrals.record_order_referral(
        session, data.referral_code, data.id, now=max(at, now), source="events api"
    )


def _delivered(session: Session, event: OrderDelivered, at: datetime, now: datetime) -> None:
    try:
        shop.mark_delivered(session, event.order_id, event.delivered_at, now=max(at, now))
    except UnknownRecord as exc:
        raise _FieldError("order_id", str(exc)) from exc


def _cancelled(session: Session, event: OrderCancelled, at: datetime, now: datetime) -> None:
    try:
        shop.cancel_order(session, event.order_id, now=max(at, now))
    except UnknownRecord as exc:
        raise _FieldError("order_id", str(exc)) from exc


def _shipped(session: Session, event: OrderShipped, at: datetime, now: datetime) -> None:
    _moved(session, event.order_id, OrderStatus.SHIPPED, at, now, event.tracking_url)


def _returned(session: Session, event: OrderReturned, at: datetime, now: datetime) -> None:
    status = OrderStatus.REFUSED if event.refused else OrderStatus.RETURNED
    _moved(session, event.order_id, status, at, now, None)


def _status_changed(
    session: Session, event: OrderStatusChanged, at: datetime, now: datetime
) -> None:
    _moved(session, event.order_id, OrderStatus(event.status), at, now, event.tracking_url)


def _moved(
    session: Session,
    order_id: str,
    status: OrderStatus,
    at: datetime,
    now: datetime,
    tracking: str | None,
) -> None:
    try:
        orderlife.set_order_status(
            session, order_id, status, at=at, now=max(at, now), tracking=tracking
        )
    except UnknownRecord as exc:
        raise _FieldError("order_id", str(exc)) from exc
    except DataError as exc:
        raise _FieldError("order_id", str(exc)) from exc


def _product(session: Session, event: ProductUpserted, at: datetime, now: datetime) -> None:
    data = event.product
    shop.upsert_product(
        session,
        sku=data.sku,
        name=data.name,
        price=data.price,
        now=at,
        stock=data.stock,
        category=data.category,
        name_bn=data.name_bn,
    )


def _price(session: Session, event: PriceChanged, at: datetime, now: datetime) -> None:
    _known_sku(session, event.sku, "sku")
    shop.set_price(session, event.sku, event.price, now=now, at=at)


def _checkout(session: Session, event: CheckoutStarted, at: datetime, now: datetime) -> None:
    _known_customer(session, event.customer, "customer")
    for i, line in enumerate(event.items):
        _known_sku(session, line.sku, f"items[{i}].sku")
    shop.start_checkout(
        session,
        cart_id=event.cart_id,
        customer_id=event.customer,
        items=[shop.CartLine(x.sku, x.quantity, x.unit_price, x.name) for x in event.items],
        amount=event.amount,
        started_at=at,
        now=max(at, now),
    )


def _wanted(session: Session, event: ProductWanted, at: datetime, now: datetime) -> None:
    _known_customer(session, event.customer, "customer")
    _known_sku(session, event.sku, "sku")
    shop.want_product(session, customer_id=event.customer, sku=event.sku, at=at)


def _holiday(
    session: Session, event: HolidayAnnounced, at: datetime, declared: dict[str, LocalText]
) -> None:
    data = event.holiday
    if data.id not in declared:
        known = ", ".join(sorted(declared)) or "none"
        raise _FieldError(
            "holiday.id",
            f"{data.id!r} is not declared under holidays.extra in config.yaml (declared: {known})",
        )
    configured = declared[data.id]
    shop.add_holiday(
        session,
        holiday_id=data.id,
        day=data.date,
        name=data.name or pick_text(configured, "en"),
        name_bn=data.name_bn or (configured.get("bn") if isinstance(configured, dict) else None),
        now=at,
    )


def _redeemed(session: Session, event: CreditRedeemed, at: datetime, now: datetime) -> None:
    # Checked against the balance when it arrives: a credit may have expired since `at`.
    customer = _known_customer(session, event.customer, "customer")
    assert customer.id is not None  # a stored row
    wallet.redeem(session, customer.id, event.amount, event.order_id, event.id, now)


def _known_customer(session: Session, external_id: str, field: str) -> Customer:
    try:
        return shop.customer_by_external_id(session, external_id)
    except UnknownRecord as exc:
        raise _FieldError(
            field,
            f"unknown customer {external_id!r}: send a customer.upserted event "
            "for it first (earlier in the same batch is enough)",
        ) from exc


def _known_sku(session: Session, sku: str, field: str) -> None:
    try:
        shop.product_by_sku(session, sku)
    except UnknownRecord as exc:
        raise _FieldError(
            field, f"unknown product sku {sku!r}: send product.upserted first"
        ) from exc


_APPLY: dict[type, Any] = {
    CustomerUpserted: _customer,
    OrderPlaced: _order,
    OrderDelivered: _delivered,
    OrderCancelled: _cancelled,
    OrderShipped: _shipped,
    OrderReturned: _returned,
    OrderStatusChanged: _status_changed,
    ProductUpserted: _product,
    PriceChanged: _price,
    CheckoutStarted: _checkout,
    ProductWanted: _wanted,
    CreditRedeemed: _redeemed,
}
_MAIN_FIELD = {
    "customer.upserted": "customer",
    "order.placed": "order",
    "order.delivered": "delivered_at",
    "order.cancelled": "order_id",
    "order.shipped": "order_id",
    "order.returned": "order_id",
    "order.status_changed": "status",
    "product.upserted": "product",
    "product.price_changed": "price",
    "checkout.started": "cart_id",
    "product.wanted": "sku",
    "holiday.announced": "holiday",
    "credit.redeemed": "amount",
}
