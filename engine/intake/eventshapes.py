"""What each event of the shop's events API looks like (`engine.intake.events` describes
every field, `engine.intake.eventapply` applies them).

One pydantic model per event type, told apart by `type` (`ShopEvent`, validated
by `EVENT`), each refusing unknown fields. Amounts are JSON numbers or strings
read exactly (never as binary floats), zero or more, at most two decimals, at
most `MAX_AMOUNT`; times carry a timezone and, like dates, lie between
`EARLIEST` and `LATEST`; a reader's error says what it expected and what it got.
"""

from __future__ import annotations

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
)

from ..errors import DataError
from . import orderlife, shop

MAX_AMOUNT = Decimal("10000000.00")  # ten million: no price or line of this shop comes close
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
LONGEST_NUMBER = 40  # characters of an integer read as a number; longer ones are refused


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ValueError(f"expected an amount like 120.50, got {shown(value)}")
    if isinstance(value, str) and len(value) > LONGEST_NUMBER:
        raise ValueError(f"expected an amount like 120.50, got {shown(value)}")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except ArithmeticError as exc:
        raise ValueError(f"expected an amount like 120.50, got {shown(value)}") from exc
    if amount.is_finite() and abs(amount) > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}, got {shown(value)}")
    try:
        return shop.money("amount", value)
    except DataError as exc:
        raise ValueError(str(exc).removeprefix("amount ")) from exc


def shown(value: Any) -> str:
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
EVENT = TypeAdapter(ShopEvent)
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
