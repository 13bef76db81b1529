"""The store: every table the engine reads and writes.

Times are aware UTC (`UTCDateTime`); money is Decimal (`Money`). States are
`StrEnum`s stored as short strings, so PostgreSQL needs no enum types and a
new state needs no migration of a type.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import Money, UTCDateTime


def _utc(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


def _money(**kw: Any) -> Any:
    return Field(sa_type=Money, **kw)


def _state(default: StrEnum, **kw: Any) -> Any:
    return Field(default=default, sa_type=String(16), **kw)


class OrderStatus(StrEnum):
    """An order's life; cash on delivery goes placed → confirmed → shipped → out for
    delivery → delivered (paid at the door), or ends refused (at the door) and returned."""

    PLACED = "placed"
    CONFIRMED = "confirmed"  # confirmed with the customer (by phone, for cash on delivery)
    SHIPPED = "shipped"  # handed to the courier
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    REFUSED = "refused"  # the customer refused the parcel at the door
    RETURNED = "returned"  # the parcel came back to the shop (refused, or sent back)
    CANCELLED = "cancelled"


# Orders that are not a purchase: no report, segment, trigger or total counts them.
ENDED_ORDER = (OrderStatus.CANCELLED.value, OrderStatus.REFUSED.value, OrderStatus.RETURNED.value)
# The live states in the order they come; an order never moves back among them.
ORDER_PROGRESS = (
    OrderStatus.PLACED,
    OrderStatus.CONFIRMED,
    OrderStatus.SHIPPED,
    OrderStatus.OUT_FOR_DELIVERY,
    OrderStatus.DELIVERED,
)
# Payment at the door: `Order.payment_method` of a cash on delivery order.
CASH_ON_DELIVERY = "cod"


def is_purchase(status: Any) -> Any:
    """SQL: the order with this status column counts as a purchase (not ended)."""
    return status.not_in(ENDED_ORDER)


class MessageStatus(StrEnum):
    QUEUED = "queued"  # planned, waiting for send_after
    SENDING = "sending"  # claimed by a dispatcher under a lease
    RETRY = "retry"  # a transient failure; next_attempt_at says when
    SENT = "sent"  # the SMTP server answered 250
    FAILED = "failed"  # permanent failure; last_error says why
    EXPIRED = "expired"  # expires_at passed before it could go
    IN_DOUBT = "in_doubt"  # the lease ran out mid-send: it may or may not have gone
    SUPPRESSED = "suppressed"  # consent withdrawn or address suppressed before sending


class MessageKind(StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class EventKind(StrEnum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"


class Customer(SQLModel, table=True):
    __tablename__ = "customer"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_type=String(64), unique=True, index=True)
    email: str = Field(sa_type=String(254), unique=True, index=True)
    name: str = Field(default="", sa_type=String(200))
    locale: str = Field(default="en", sa_type=String(16))
    timezone: str | None = Field(default=None, sa_type=String(64), index=True)
    city: str | None = Field(default=None, sa_type=String(100))
    birthday: date | None = Field(default=None, index=True)
    marketing_consent: bool = False
    consent_at: datetime | None = _utc(default=None)
    consent_source: str | None = Field(default=None, sa_type=String(100))
    created_at: datetime = _utc(index=True)
    updated_at: datetime = _utc()
    # Kept up to date by shop.record_order so the planner never aggregates orders.
    first_order_at: datetime | None = _utc(default=None, index=True)
    last_order_at: datetime | None = _utc(default=None, index=True)
    orders_count: int = Field(default=0, index=True)
    total_spent: Decimal = _money(default=Decimal("0"), index=True)
    # The loyalty tier (an id from tiers.yaml, None: no tier), recomputed on each full pass.
    tier: str | None = Field(default=None, sa_type=String(32), index=True)
    tier_since: datetime | None = _utc(default=None)
    # The customer's own referral code, minted once and never changed.
    referral_code: str | None = Field(default=None, sa_type=String(16), unique=True, index=True)


class CustomerTag(SQLModel, table=True):
    __tablename__ = "customer_tag"

    customer_id: int = Field(foreign_key="customer.id", primary_key=True)
    tag: str = Field(sa_type=String(64), primary_key=True, index=True)


class Product(SQLModel, table=True):
    __tablename__ = "product"

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(sa_type=String(64), unique=True, index=True)
    name: str = Field(sa_type=String(200))
    name_bn: str | None = Field(default=None, sa_type=String(200))
    category: str | None = Field(default=None, sa_type=String(100), index=True)
    price: Decimal = _money()
    stock: int = 0
    updated_at: datetime = _utc()
    # When the engine first learnt of the product (None: before it kept this).
    created_at: datetime | None = _utc(default=None, index=True)


class PriceChange(SQLModel, table=True):
    """Every price a product has had, from when; the refund planner reads it."""

    __tablename__ = "price_change"
    __table_args__ = (Index("ix_price_change_product_at", "product_id", "changed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id")
    price: Decimal = _money()
    changed_at: datetime = _utc(index=True)


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer_placed", "customer_id", "placed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_type=String(64), unique=True, index=True)
    customer_id: int = Field(foreign_key="customer.id")
    placed_at: datetime = _utc(index=True)
    delivered_at: datetime | None = _utc(default=None, index=True)
    status: OrderStatus = _state(OrderStatus.PLACED)
    total: Decimal = _money(default=Decimal("0"))
    # When the engine learnt of the order (None: before it kept this). The planner tells
    # an order reported after its email expired from history by it.
    recorded_at: datetime | None = _utc(default=None, index=True)
    # The checkout (cart) the order completed, if the shop said.
    cart_id: str | None = Field(default=None, sa_type=String(64), index=True)
    # How it is paid: `cod` (cash on delivery), `bkash`, `nagad`, `card`… (None: not said).
    payment_method: str | None = Field(default=None, sa_type=String(32))
    # What the shop charged, after discounts and with delivery (the courier collects it for
    # cash on delivery; `total` is the lines' prices); None when the shop did not say.
    payable: Decimal | None = _money(default=None)
    # When it went to the courier, and the courier's tracking page, if the shop said.
    shipped_at: datetime | None = _utc(default=None, index=True)
    tracking_url: str | None = Field(default=None, sa_type=String(500))
    # When it was refused at the door or returned (status refused or returned).
    returned_at: datetime | None = _utc(default=None, index=True)


class OrderItem(SQLModel, table=True):
    __tablename__ = "order_item"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    quantity: int
    unit_price: Decimal = _money()


class Message(SQLModel, table=True):
    """The outbox and the send log in one: one row per email, ever."""

    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_due", "status", "send_after"),
        Index("ix_message_customer_campaign", "customer_id", "campaign", "created_at"),
        Index("ix_message_campaign_created", "campaign", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(sa_type=String(200), unique=True)
    campaign: str = Field(sa_type=String(64))
    kind: MessageKind = _state(MessageKind.MARKETING)
    # No foreign keys here (migration 0009): these are copied from the customer and
    # order rows the planner reads, and the send log is the store's biggest write.
    customer_id: int
    occurrence: str = Field(sa_type=String(120))
    # The flow step (None: a campaign without steps).
    step: str | None = Field(default=None, sa_type=String(64))
    order_id: int | None = None
    order_item_id: int | None = None
    holiday: str | None = Field(default=None, sa_type=String(64))
    holiday_date: date | None = None
    status: MessageStatus = _state(MessageStatus.QUEUED)
    created_at: datetime = _utc()
    send_after: datetime = _utc()
    expires_at: datetime | None = _utc(default=None)
    attempts: int = 0
    next_attempt_at: datetime | None = _utc(default=None)
    lease_owner: str | None = Field(default=None, sa_type=String(64))
    lease_until: datetime | None = _utc(default=None)
    sent_at: datetime | None = _utc(default=None)
    message_id: str | None = Field(default=None, sa_type=String(255))
    smtp_code: int | None = None
    last_error: str | None = Field(default=None, sa_type=String(1000))
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class MessageEvent(SQLModel, table=True):
    __tablename__ = "message_event"
    __table_args__ = (Index("ix_message_event_message_kind", "message_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id")
    customer_id: int = Field(foreign_key="customer.id", index=True)
    kind: EventKind = _state(EventKind.OPEN)
    at: datetime = _utc(index=True)
    machine: bool = False
    user_agent: str | None = Field(default=None, sa_type=String(500))
    url: str | None = Field(default=None, sa_type=String(2000))
    detail: str | None = Field(default=None, sa_type=String(1000))


class Suppression(SQLModel, table=True):
    """Addresses never to be mailed again, whatever the campaign."""

    __tablename__ = "suppression"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_type=String(254), unique=True, index=True)
    reason: str = Field(sa_type=String(200))
    source: str = Field(default="", sa_type=String(100))
    created_at: datetime = _utc()


class ConsentChange(SQLModel, table=True):
    """Append-only log of every marketing-consent change: who, when, how."""

    __tablename__ = "consent_log"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    consent: bool
    at: datetime = _utc()
    source: str = Field(sa_type=String(100))
    detail: str | None = Field(default=None, sa_type=String(500))


class Credit(SQLModel, table=True):
    """The store-credit wallet, one entry per change, each written once by its dedupe key.

    A credit (a refund, a reward) is a positive amount, optionally with an expiry; a
    redemption is a negative amount drawn from one credit (`source_id`) and carries that
    credit's expiry, so the balance is the sum of the entries not yet expired.
    """

    __tablename__ = "credit"
    __table_args__ = (Index("ix_credit_customer_expires", "customer_id", "expires_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(sa_type=String(200), unique=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    order_item_id: int | None = Field(default=None, foreign_key="order_item.id", index=True)
    amount: Decimal = _money()
    reason: str = Field(sa_type=String(200))
    created_at: datetime = _utc()
    expires_at: datetime | None = _utc(default=None)
    # A redemption: the credit it draws from and the shop's order it paid for.
    source_id: int | None = Field(default=None, foreign_key="credit.id", index=True)
    order_ref: str | None = Field(default=None, sa_type=String(64))


class Coupon(SQLModel, table=True):
    """A coupon stored one row each, used at most once: one made on its own (a referral
    reward), an email's coupon once an order redeemed it (until then it is derived:
    `CouponIssue`), or one minted per email before that was so."""

    __tablename__ = "coupon"
    __table_args__ = (
        Index("ix_coupon_campaign_created", "campaign", "created_at"),
        UniqueConstraint("message_id", name="uq_coupon_message_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_type=String(64), unique=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id")
    campaign: str | None = Field(default=None, sa_type=String(64))
    percent_off: Decimal | None = _money(default=None)
    amount_off: Decimal | None = _money(default=None)
    min_order: Decimal | None = _money(default=None)
    created_at: datetime = _utc()
    expires_at: datetime | None = _utc(default=None, index=True)
    used_at: datetime | None = _utc(default=None)
    # The shop's id of the order that used it.
    used_order: str | None = Field(default=None, sa_type=String(64))


class CouponIssue(SQLModel, table=True):
    """The coupon of the messages one pass queued for a campaign's step, frozen.

    A message's coupon is not a row of its own: its code is derived from the
    message (`engine.intake.couponcodes`) and its value, minimum and prefix are
    this row's, the one of the message's campaign, step ('' without steps) and
    `created_at`. It expires `expires_after` seconds after the later of the
    message's `send_after` and `minted_at`. `ladder` (JSON {"2": "5.00", …}):
    the percent off by the order number of an `nth-<N>` occurrence.
    """

    __tablename__ = "coupon_issue"
    __table_args__ = (
        UniqueConstraint("campaign", "step", "created_at", name="uq_coupon_issue"),
        Index("ix_coupon_issue_minted", "minted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign: str = Field(sa_type=String(64))
    step: str = Field(default="", sa_type=String(64))
    # The `created_at` of the messages it covers; when it was minted.
    created_at: datetime = _utc()
    minted_at: datetime = _utc()
    prefix: str = Field(default="", sa_type=String(12))
    percent_off: Decimal | None = _money(default=None)
    amount_off: Decimal | None = _money(default=None)
    min_order: Decimal | None = _money(default=None)
    expires_after: int = Field(sa_type=Integer)  # seconds
    ladder: str | None = Field(default=None, sa_type=String(1000))


class CouponSecret(SQLModel, table=True):
    """The key the coupon codes of messages are derived with: one row, made once."""

    __tablename__ = "coupon_secret"

    id: int = Field(default=1, primary_key=True)
    secret: str = Field(sa_type=String(64))
    created_at: datetime = _utc()


class CouponUse(SQLModel, table=True):
    """Every time a code was presented with an order: redeemed, or refused and why."""

    __tablename__ = "coupon_use"
    __table_args__ = (UniqueConstraint("code", "order_ref", name="uq_coupon_use"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_type=String(64), index=True)
    coupon_id: int | None = Field(default=None, foreign_key="coupon.id", index=True)
    order_ref: str = Field(sa_type=String(64))
    redeemed: bool = False
    reason: str = Field(default="", sa_type=String(200))
    source: str = Field(default="", sa_type=String(100))
    at: datetime = _utc()


class SurveyAnswer(SQLModel, table=True):
    """A 0–10 'would you recommend us' answer, for the net promoter score.

    One per survey message (`message_id`); a change within the answer window replaces
    the score and comment (`changed_at`). A detractor's comment is forwarded once.
    """

    __tablename__ = "survey_answer"
    __table_args__ = (UniqueConstraint("message_id", name="uq_survey_answer_message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id")
    score: int
    at: datetime = _utc(index=True)
    comment: str | None = Field(default=None, sa_type=String(2000))
    changed_at: datetime | None = _utc(default=None)
    forwarded_at: datetime | None = _utc(default=None)


class SendRate(SQLModel, table=True):
    """One row: the earliest moment the shop's next sending slot is free, in microseconds
    since the epoch (engine.deliver.ratelimit), shared by every daemon."""

    __tablename__ = "send_rate"

    id: int | None = Field(default=None, primary_key=True)
    free_at: int = Field(default=0, sa_type=BigInteger)


class SmtpSlot(SQLModel, table=True):
    """One of the shop's `sending.connections` SMTP connections, held under a lease by the
    daemon that has it open (engine.deliver.ratelimit.SharedSlots)."""

    __tablename__ = "smtp_slot"

    slot: int = Field(primary_key=True)
    owner: str | None = Field(default=None, sa_type=String(64))
    until: datetime | None = _utc(default=None)


class BlastState(StrEnum):
    CANARY = "canary"  # the canary share goes out; the rest of the send waits
    RELEASED = "released"  # the canary was clean: the rest goes out
    PAUSED = "paused"  # the canary was not: this send and the campaign's later ones wait
    RESUMED = "resumed"  # paused, then resumed by hand (`lifecycle resume`)


class Blast(SQLModel, table=True):
    """A big marketing send: the messages one pass queued for one campaign (those with
    this `created_at`). Only the canary (every `canary_every`-th message, counted in id
    order from `first_message_id`) goes out until its figures are judged."""

    __tablename__ = "blast"
    __table_args__ = (UniqueConstraint("campaign", "created_at", name="uq_blast_campaign_created"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign: str = Field(sa_type=String(64))
    created_at: datetime = _utc()
    recipients: int
    first_message_id: int
    canary_every: int
    state: BlastState = _state(BlastState.CANARY, index=True)
    # When the last canary message ended (sent, failed or expired); judged `watch` later.
    canary_done_at: datetime | None = _utc(default=None)
    decided_at: datetime | None = _utc(default=None)
    reason: str | None = Field(default=None, sa_type=String(1000))


class ShopHoliday(SQLModel, table=True):
    """A sale or occasion the shop announces itself (beside the country's holidays)."""

    __tablename__ = "shop_holiday"

    id: str = Field(sa_type=String(64), primary_key=True)
    name: str = Field(sa_type=String(200))
    name_bn: str | None = Field(default=None, sa_type=String(200))
    date: date
    created_at: datetime = _utc()


class ReceivedEvent(SQLModel, table=True):
    """Ids of shop events already applied, so a repeated event is ignored."""

    __tablename__ = "received_event"

    id: str = Field(sa_type=String(128), primary_key=True)
    type: str = Field(sa_type=String(64))
    received_at: datetime = _utc()


class WebhookDelivery(SQLModel, table=True):
    """A shop platform's webhook delivery, kept as it came (signature checked) until it is
    applied, then with what became of it: `pending`, `applied` or `problem` (with the
    reasons, one per line, for the dashboard). One row per platform and delivery id."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("source", "delivery_id", name="uq_webhook_delivery_source_delivery"),
        Index("ix_webhook_delivery_status", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(sa_type=String(16))
    delivery_id: str = Field(sa_type=String(64))
    topic: str = Field(sa_type=String(64))
    body: str = Field(sa_type=Text)
    received_at: datetime = _utc(index=True)
    status: str = Field(default="pending", sa_type=String(16))
    applied_at: datetime | None = _utc(default=None)
    problems: str | None = Field(default=None, sa_type=Text)


class Checkpoint(SQLModel, table=True):
    """Small named values the engine keeps between runs (watermarks)."""

    __tablename__ = "checkpoint"

    name: str = Field(sa_type=String(64), primary_key=True)
    value: str = Field(sa_type=String(200))
    updated_at: datetime = _utc()


class FlowExit(SQLModel, table=True):
    """A customer who left a flow (one campaign's occurrence): no later step goes to them."""

    __tablename__ = "flow_exit"
    __table_args__ = (
        UniqueConstraint("campaign", "customer_id", "occurrence", name="uq_flow_exit"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign: str = Field(sa_type=String(64))
    customer_id: int = Field(foreign_key="customer.id", index=True)
    occurrence: str = Field(sa_type=String(120))
    # The step that fell due when the exit was found, and why.
    step: str | None = Field(default=None, sa_type=String(64))
    reason: str = Field(sa_type=String(200))
    at: datetime = _utc()


class FlowStepSeen(SQLModel, table=True):
    """When each step of a flow first appeared in its campaign file.

    `first_seen_at` is None for the steps a campaign had on its first pass. A step
    added later goes only to customers whose time for it comes after it was added.
    """

    __tablename__ = "flow_step"

    campaign: str = Field(sa_type=String(64), primary_key=True)
    step: str = Field(sa_type=String(64), primary_key=True)
    first_seen_at: datetime | None = _utc(default=None)


class Restock(SQLModel, table=True):
    """A product's stock went from nothing to something (the back-in-stock trigger)."""

    __tablename__ = "restock"

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    stock: int
    at: datetime = _utc(index=True)


class ProductWanted(SQLModel, table=True):
    """A customer asked to be told when a product is back in stock."""

    __tablename__ = "product_wanted"
    __table_args__ = (UniqueConstraint("customer_id", "product_id", name="uq_product_wanted"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    at: datetime = _utc()


class Checkout(SQLModel, table=True):
    """A checkout the shop saw start; `order_id` is set when an order carries its cart id."""

    __tablename__ = "checkout"

    id: int | None = Field(default=None, primary_key=True)
    cart_id: str = Field(sa_type=String(64), unique=True, index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    started_at: datetime = _utc(index=True)
    amount: Decimal = _money(default=Decimal("0"))
    # [{"sku", "name", "quantity", "unit_price"}], as the event gave them.
    items: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    order_id: int | None = Field(default=None, foreign_key="orders.id")
    recorded_at: datetime = _utc()


class BroadcastTime(SQLModel, table=True):
    """A broadcast set with `lifecycle broadcast` (or cancelled before it started)."""

    __tablename__ = "broadcast"
    __table_args__ = (UniqueConstraint("campaign", "local_at", name="uq_broadcast"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign: str = Field(sa_type=String(64))
    # On each customer's clock, 'YYYY-MM-DD HH:MM'.
    local_at: str = Field(sa_type=String(16))
    created_at: datetime = _utc()
    cancelled_at: datetime | None = _utc(default=None)


class TierChange(SQLModel, table=True):
    """A customer moved from one loyalty tier to another (None: no tier)."""

    __tablename__ = "tier_change"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    from_tier: str | None = Field(default=None, sa_type=String(32))
    to_tier: str | None = Field(default=None, sa_type=String(32))
    # "up" or "down", by the order of tiers.yaml at the time of the change.
    direction: str = Field(sa_type=String(8))
    at: datetime = _utc(index=True)


class ReferralStatus(StrEnum):
    PENDING = "pending"  # the order is placed, not yet delivered
    COUNTED = "counted"  # delivered: it counts for the referrer
    REVERSED = "reversed"  # cancelled or returned after it counted (or before)
    REFUSED = "refused"  # self-referral, a repeat customer, or an unknown code


class Referral(SQLModel, table=True):
    """An order that carried a referral code, and what became of it (one row per order)."""

    __tablename__ = "referral"
    __table_args__ = (Index("ix_referral_referrer_status", "referrer_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_type=String(64))
    # None when the code is unknown.
    referrer_id: int | None = Field(default=None, foreign_key="customer.id")
    referred_id: int = Field(foreign_key="customer.id", index=True)
    order_ref: str = Field(sa_type=String(64), unique=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    status: ReferralStatus = _state(ReferralStatus.PENDING)
    reason: str = Field(default="", sa_type=String(200))
    at: datetime = _utc()
    counted_at: datetime | None = _utc(default=None)
    reversed_at: datetime | None = _utc(default=None)


class ReferralReward(SQLModel, table=True):
    """A referral threshold a customer reached, paid once (credit or coupon)."""

    __tablename__ = "referral_reward"
    __table_args__ = (UniqueConstraint("customer_id", "threshold", name="uq_referral_reward"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    threshold: int
    credit_id: int | None = Field(default=None, foreign_key="credit.id")
    coupon_id: int | None = Field(default=None, foreign_key="coupon.id")
    at: datetime = _utc(index=True)
