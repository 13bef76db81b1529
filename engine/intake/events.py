"""The shop's events API: what an event looks like, and applying a batch of them.

The body of `POST /api/events` is one event object or a list of them. Every
event has an `id` (the shop's own, up to 128 characters; an id seen before is
accepted and ignored), a `type`, and optionally `at` (when it happened, an ISO
8601 time with a timezone; default: when it arrived). By type:

- `customer.upserted`: `customer` = {id, email, name?, locale?, timezone?,
  city?, birthday? (YYYY-MM-DD), tags? [..], marketing_consent? (true/false),
  created_at?}. Creates the customer or updates the fields given.
- `order.placed`: `order` = {id, customer_id, placed_at?, items: [{sku,
  quantity, unit_price?}], delivered_at?, cancelled?, cart_id?, coupon_code?,
  referral_code?, payment_method?, payable?, status?, tracking_url?}.
  `placed_at` defaults to the event's `at` (so: when it arrived). Without
  unit_price a line is charged the product's price when the order was placed.
  `cart_id` names the checkout the order completed (see `checkout.started`).
  `coupon_code` is the coupon the order used: the order is recorded whatever
  the code, and the code's use or refusal with its reason
  (`engine.intake.coupons`). `referral_code` is another customer's referral
  code: the order is recorded whatever the code, and the referral, pending or
  refused with its reason, beside it (`engine.intake.referrals`).
  `payment_method` is how it is paid: `cod` (cash on delivery; "cash on
  delivery" is read so too), `bkash`, `nagad`, `card`…; `payable` what the shop
  charged for it, after discounts and with delivery (what the courier collects
  for cash on delivery; default: the lines' total). `status` moves it along its
  life at once, at the event's `at` (see `order.status_changed`), `tracking_url`
  is the courier's tracking page (http or https).
- `order.delivered`: `order_id`, `delivered_at`.
- `order.shipped`: `order_id`, `tracking_url?`: handed to the courier at the
  event's `at` (what `order_shipped` campaigns wait for).
- `order.returned`: `order_id`, `refused?` (true: refused at the door): the
  order came back at the event's `at`; it is no longer a purchase (its refund
  credits are taken back, like a cancelled order's).
- `order.status_changed`: `order_id`, `status` (placed, confirmed, shipped,
  out_for_delivery, delivered, refused, returned, cancelled), `tracking_url?`:
  the order's life at the event's `at` (`engine.intake.orderlife`: a live
  order only moves forward, an ended one stays ended; a refused or returned
  order cannot be delivered, a delivered one cannot be refused).
- `order.cancelled`: `order_id`: the order is cancelled at the event's `at` (its
  refund credits are taken back, its unsent notices dropped); again, nothing changes.
- `product.upserted`: `product` = {sku, name, price, stock?, category?, name_bn?}.
- `product.price_changed`: `sku`, `price` (the new price from `at` on).
- `checkout.started`: `customer` (the shop's customer id), `cart_id` (1 to 64
  characters), `items` = [{sku, quantity, unit_price?, name?}], `amount`; the
  checkout started at the event's `at`. The same cart id again replaces the
  items and the amount and keeps the first start. An order whose `cart_id` is
  this cart, before or after, completes it. A line without unit_price or name
  gets the product's.
- `product.wanted`: `customer`, `sku`: the customer asked to hear when the
  product is back in stock (asking again changes nothing).
- `holiday.announced`: `holiday` = {id, date (YYYY-MM-DD), name?, name_bn?}:
  dates (or moves) one of the shop's own occasions declared under
  `holidays.extra` in config.yaml; names default to the ones written there.
- `credit.redeemed`: `customer`, `amount` (more than 0), `order_id` (the shop's
  order it paid for): the customer spent that much store credit
  (`engine.intake.wallet`), drawn first from the credits that expire first.
  An amount more than the balance when the event arrives is a problem of
  `amount` naming the balance.

Amounts are JSON numbers or strings ("120.50"), read exactly (never as binary
floats), zero or more, at most two decimals, at most `MAX_AMOUNT`. Times
must carry a timezone and, like dates, lie between the years 1900 and 2199.
Anything else is a problem naming the field, never a server error.

An order for a customer the engine does not know is rejected, not invented:
an order carries no email address, and a customer without one cannot be
mailed. Send `customer.upserted` first (earlier in the same batch is enough).
The same goes for a checkout or a wanted product, and for an unknown product
SKU or order id.

A batch is one transaction of at most `MAX_EVENTS` events: if any event is
invalid, nothing of the batch is applied, and `EventsRejected` lists each
problem with the event's index, the field and the reason (the first
`MAX_PROBLEMS` of them, and how many there were in all). A run of
`customer.upserted` events is written in bulk (`engine.intake.customerbatch`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from ..errors import DataError, EngineError, UnknownRecord
from ..project import Holidays, LocalText, pick_text
from ..store import Customer, OrderStatus, ReceivedEvent, session_scope
from . import coupons, customerbatch, orderlife, referrals, shop, wallet

_RECEIVED: Any = ReceivedEvent.__table__  # type: ignore[attr-defined]
MAX_BODY_BYTES = 1_000_000
MAX_EVENTS = 10_000  # per request
MAX_PROBLEMS = 100  # listed in an answer; the rest are only counted
MAX_AMOUNT = Decimal("10000000.00")  # ten million: no price or line of this shop comes close
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_LONGEST_NUMBER = 40  # characters of an integer read as a number; longer ones are refused


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ValueError(f"expected an amount like 120.50, got {_shown(value)}")
    if isinstance(value, str) and len(value) > _LONGEST_NUMBER:
        raise ValueError(f"expected an amount like 120.50, got {_shown(value)}")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except ArithmeticError as exc:
        raise ValueError(f"expected an amount like 120.50, got {_shown(value)}") from exc
    if amount.is_finite() and abs(amount) > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}, got {_shown(value)}")
    try:
        return shop.money("amount", value)
    except DataError as exc:
        raise ValueError(str(exc).removeprefix("amount ")) from exc


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text)} characters)"


def _time_in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"must lie between the years 1900 and 2199, got {value}") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"must lie between the years 1900 and 2199, got {value.isoformat()}")
    return value


def _day_in_range(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(f"must lie between the years 1900 and 2199, got {value.isoformat()}")
    return value


Amount = Annotated[Decimal, BeforeValidator(_amount)]
When = Annotated[AwareDatetime, AfterValidator(_time_in_range)]
Day = Annotated[date, AfterValidator(_day_in_range)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
Key = Annotated[str, Field(min_length=1, max_length=64)]
Short = Annotated[str, Field(max_length=100)]


def _read_by(read: Any) -> Any:
    """A validator from one of `orderlife`'s readers (which name their field)."""

    def validate(value: str) -> Any:
        try:
            return read(value)
        except DataError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from exc

    return AfterValidator(validate)


Address = Annotated[str, Field(min_length=1), _read_by(orderlife.tracking_url)]
Status = Annotated[str, Field(max_length=100), _read_by(orderlife.order_status)]
Payment = Annotated[str, Field(max_length=100), _read_by(orderlife.payment_method)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerData(_Shape):
    id: Key
    email: Annotated[str, Field(max_length=254)]
    name: Text | None = None
    locale: Short | None = None
    timezone: Short | None = None
    city: Short | None = None
    birthday: Day | None = None
    tags: Annotated[list[Key], Field(max_length=100)] | None = None
    marketing_consent: StrictBool | None = None
    created_at: When | None = None


class OrderLine(_Shape):
    sku: Key
    quantity: Annotated[StrictInt, Field(ge=1, le=100_000)]
    unit_price: Amount | None = None


class OrderData(_Shape):
    id: Key
    customer_id: Key
    placed_at: When | None = None  # default: the event's `at`
    delivered_at: When | None = None
    cancelled: StrictBool = False
    items: list[OrderLine] = Field(min_length=1, max_length=1000)
    cart_id: Key | None = None
    coupon_code: Key | None = None
    referral_code: Key | None = None
    payment_method: Payment | None = None
    payable: Amount | None = None
    status: Status | None = None
    tracking_url: Address | None = None


class ProductData(_Shape):
    sku: Key
    name: Text
    price: Amount
    stock: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = None
    category: Short | None = None
    name_bn: Text | None = None


class _Event(_Shape):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    at: When | None = None


class CustomerUpserted(_Event):
    type: Literal["customer.upserted"]
    customer: CustomerData


class OrderPlaced(_Event):
    type: Literal["order.placed"]
    order: OrderData


class OrderDelivered(_Event):
    type: Literal["order.delivered"]
    order_id: Key
    delivered_at: When


class OrderCancelled(_Event):
    type: Literal["order.cancelled"]
    order_id: Key


class OrderShipped(_Event):
    type: Literal["order.shipped"]
    order_id: Key
    tracking_url: Address | None = None


class OrderReturned(_Event):
    type: Literal["order.returned"]
    order_id: Key
    refused: StrictBool = False


class OrderStatusChanged(_Event):
    type: Literal["order.status_changed"]
    order_id: Key
    status: Status
    tracking_url: Address | None = None


class ProductUpserted(_Event):
    type: Literal["product.upserted"]
    product: ProductData


class PriceChanged(_Event):
    type: Literal["product.price_changed"]
    sku: Key
    price: Amount


class CartLine(_Shape):
    sku: Key
    quantity: Annotated[StrictInt, Field(ge=1, le=100_000)]
    unit_price: Amount | None = None
    name: Text | None = None


class CheckoutStarted(_Event):
    type: Literal["checkout.started"]
    customer: Key
    cart_id: Key
    items: list[CartLine] = Field(min_length=1, max_length=1000)
    amount: Amount


class ProductWanted(_Event):
    type: Literal["product.wanted"]
    customer: Key
    sku: Key


class HolidayData(_Shape):
    id: Key
    date: Day
    name: Text | None = None
    name_bn: Text | None = None


class HolidayAnnounced(_Event):
    type: Literal["holiday.announced"]
    holiday: HolidayData


class CreditRedeemed(_Event):
    type: Literal["credit.redeemed"]
    customer: Key
    amount: Amount
    order_id: Key


ShopEvent = Annotated[
    CustomerUpserted
    | OrderPlaced
    | OrderDelivered
    | OrderCancelled
    | OrderShipped
    | OrderReturned
    | OrderStatusChanged
    | ProductUpserted
    | PriceChanged
    | CheckoutStarted
    | ProductWanted
    | HolidayAnnounced
    | CreditRedeemed,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter(ShopEvent)
EVENT_TYPES = (
    "customer.upserted",
    "order.placed",
    "order.delivered",
    "order.cancelled",
    "order.shipped",
    "order.returned",
    "order.status_changed",
    "product.upserted",
    "product.price_changed",
    "checkout.started",
    "product.wanted",
    "holiday.announced",
    "credit.redeemed",
)


@dataclass(frozen=True)
class EventProblem:
    index: int | None  # position in the batch; None for the body as a whole
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventsRejected(EngineError, ValueError):
    """The batch is invalid; nothing of it was applied.

    `problems` holds the first `MAX_PROBLEMS` problems, `count` how many there were.
    """

    def __init__(
        self, problems: list[EventProblem], *, malformed: bool = False, count: int | None = None
    ):
        self.problems = problems[:MAX_PROBLEMS]
        self.count = len(problems) if count is None else count
        self.malformed = malformed  # the body is not JSON at all (HTTP 400, not 422)
        shown = "; ".join(f"event {p.index}: {p.field}: {p.reason}" for p in self.problems[:10])
        more = f" (and {self.count - 10} more)" if self.count > 10 else ""
        super().__init__(shown + more)

    def as_dict(self) -> dict[str, Any]:
        """The answer's body: the first problems and how many there were in all."""
        return {
            "error": "no event was applied",
            "problem_count": self.count,
            "problems": [p.as_dict() for p in self.problems],
        }


def _number(text: str) -> int | Decimal:
    """A JSON integer: an int when it is of a sane length, else a Decimal that no
    whole-number field accepts (Python refuses to read very long ints at all)."""
    return int(text) if len(text) <= _LONGEST_NUMBER else Decimal(text)


def parse_events(body: bytes) -> list[ShopEvent]:
    """Decode and validate a request body; raise EventsRejected listing the problems."""
    try:
        data = json.loads(body, parse_float=Decimal, parse_int=_number)
    except (ValueError, RecursionError) as exc:
        problem = EventProblem(None, "", f"the body is not valid JSON: {exc}")
        raise EventsRejected([problem], malformed=True) from exc
    items = data if isinstance(data, list) else [data]
    if not items:
        raise EventsRejected([EventProblem(None, "", "expected at least one event")])
    if len(items) > MAX_EVENTS:
        reason = f"at most {MAX_EVENTS} events per request, got {len(items)}: send smaller batches"
        raise EventsRejected([EventProblem(None, "", reason)])
    events: list[ShopEvent] = []
    problems: list[EventProblem] = []
    count = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            found = [EventProblem(index, "", "expected an event object")]
        else:
            try:
                events.append(_EVENT.validate_python(item))
                continue
            except ValidationError as exc:
                found = _problems(index, exc)
        count += len(found)
        problems.extend(found[: MAX_PROBLEMS - len(problems)])
    if count:
        raise EventsRejected(problems, count=count)
    return events


def _problems(index: int, exc: ValidationError) -> list[EventProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = [p for p in error["loc"] if p not in EVENT_TYPES]
        field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc)
        field = field.replace(".[", "[")
        if error["type"] == "union_tag_invalid":
            given = _shown(error["input"].get("type"))
            reason = f"unknown event type {given}; expected one of: {', '.join(EVENT_TYPES)}"
            field = "type"
        elif error["type"] == "union_tag_not_found":
            reason, field = "required field is missing", "type"
        elif error["type"] == "missing":
            reason = "required field is missing"
        elif error["type"] == "extra_forbidden":
            reason = "unknown field"
        else:
            reason = str(error["msg"]).removeprefix("Value error, ")
        if len(field) > 100:
            field = f"{field[:80]}… ({len(field)} characters)"
        problems.append(EventProblem(index, field, reason))
    return problems


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
