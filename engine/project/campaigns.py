"""Typed, frozen models of a campaign file: its trigger, its steps and its exits.

A campaign is a flow. Without `steps:` it is a flow of one step, the campaign's
own `template` and `subject` (every file written before flows keeps working, with
the same dedupe keys). With `steps:`, each step has an id, a wait (`after`,
counted from the previous step, or from entry with `from: entry`), its own
template and subject and an optional extra segment. `exit:` lists what takes a
customer out of the flow; it is checked each time a step falls due.

Every trigger but the four the engine was founded on has a default
`expires_after`, so nothing is ever sent years late.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..store import MessageKind
from .rewards import CouponSpec
from .values import (
    Amount,
    Frozen,
    LocalText,
    Percent,
    Slug,
    TimeOfDay,
    _shown,
    amount_from,
    duration_from,
    parse_percent,
    parse_slug,
    show_duration,
    whole,
)

# The longest wait of a step after entry (and of a trigger's delay).
MAX_WAIT = timedelta(days=365)
# The most steps one flow may have.
MAX_STEPS = 20

Delay = Annotated[timedelta, duration_from("0s", "365d")]
Expiry = Annotated[timedelta, duration_from("1m", "365d")]


def parse_local_moment(value: Any) -> datetime:
    """'2026-12-10 10:00' (a date and a time on the customer's clock) → naive datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None, second=0, microsecond=0)
    text = value.strip() if isinstance(value, str) else ""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2})", text)
    if match:
        try:
            day = date.fromisoformat(match.group(1))
            hours, minutes = (int(p) for p in match.group(2).split(":"))
            return datetime.combine(day, time(hours, minutes))
        except ValueError:
            pass
    raise ValueError(f'expected a local date and time like "2026-12-10 10:00", got {_shown(value)}')


LocalMoment = Annotated[datetime, BeforeValidator(parse_local_moment)]


# ---------------------------------------------------------------- triggers


class _Expiring(Frozen):
    expires_after: Expiry | None = None


class _Trigger(_Expiring):
    delay: Delay = timedelta(0)


class FirstOrder(_Trigger):
    type: Literal["first_order"]


class OrderPlaced(_Trigger):
    type: Literal["order_placed"]
    # A first order already gets the welcome: no thank-you within this long of it.
    quiet_after_welcome: Annotated[timedelta, duration_from("0s", "30d")] | None = timedelta(
        hours=1
    )


class OrderDelivered(_Trigger):
    type: Literal["order_delivered"]
    quiet_after_welcome: Annotated[timedelta, duration_from("0s", "30d")] | None = timedelta(
        hours=1
    )


class OrderShipped(_Trigger):
    """An order handed to the courier (`payment: cod`: only those paid at the door);
    once per order, while it is still on its way."""

    type: Literal["order_shipped"]
    payment: Literal["any", "cod", "prepaid"] = "any"
    expires_after: Expiry | None = timedelta(days=2)


class OrderReturned(_Trigger):
    """An order refused at the door or returned; once per order, and never to a
    customer who has refused two orders."""

    type: Literal["order_returned"]
    expires_after: Expiry | None = timedelta(days=3)


class PriceDrop(_Trigger):
    type: Literal["price_drop"]


class EarlyAccess(Frozen):
    """Customers in these loyalty tiers hear of the holiday `days_before` it instead."""

    tiers: list[Slug] = Field(min_length=1, max_length=10)
    days_before: Annotated[int, whole(1, 365)]


class HolidayTrigger(_Trigger):
    type: Literal["holiday"]
    holidays: list[Slug] = Field(min_length=1)
    days_before: Annotated[int, whole(0, 365)]
    at: TimeOfDay = time(10, 0)
    early_access: EarlyAccess | None = None

    @model_validator(mode="after")
    def _early(self) -> HolidayTrigger:
        early = self.early_access
        if early is not None and early.days_before <= self.days_before:
            raise ValueError(
                f"early_access.days_before ({early.days_before}) must be more than "
                f"days_before ({self.days_before}): early access comes earlier"
            )
        return self


class Inactive(_Trigger):
    """N days since the customer's last order (win-back); once per lapse."""

    type: Literal["inactive"]
    days: Annotated[int, whole(1, 3650)]
    expires_after: Expiry | None = timedelta(days=7)


class DateTrigger(_Expiring):
    """Yearly on a customer's date, `days_before` it, at `at` on the customer's clock."""

    type: Literal["date"]
    field: Literal["birthday", "first_order", "signup"]
    days_before: Annotated[int, whole(0, 60)] = 0
    at: TimeOfDay = time(10, 0)
    expires_after: Expiry | None = timedelta(days=2)


def _orders_numbers(value: Any) -> list[int]:
    items = value if isinstance(value, list) else [value]
    parse = whole(2, 1000).func
    numbers = [parse(item) for item in items]
    if not numbers:
        raise ValueError("expected an order number from 2 to 1000, or a list of them, got []")
    return sorted(set(numbers))


def _ladder(value: Any) -> Any:
    """`{2: 5%, 3: 10%}`: order numbers (whole, 2 to 1000) to the coupon's percent."""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected order numbers and discounts like {{2: 5%, 3: 10%}}, got {_shown(value)}")  # fmt: skip
    out = {}
    for key, percent in value.items():
        try:
            number = int(str(key))
        except ValueError:
            raise ValueError(f"ladder: {_shown(key)} is not an order number (2, 3, …)") from None
        if not 2 <= number <= 1000:
            raise ValueError(f"ladder: order number {number} is out of range (2 to 1000)")
        try:
            out[number] = parse_percent(percent)
        except ValueError as exc:
            raise ValueError(f"ladder: order {number}: {exc}") from None
    return out


class NthOrder(_Trigger):
    """A customer's Nth order that is not cancelled (2nd, 3rd, 4th: the ladder).

    `ladder` sizes the campaign's coupon by the order number (`{2: 5%, 3: 10%}`);
    without `n`, the ladder's order numbers are the ones that trigger.
    """

    type: Literal["nth_order"]
    n: Annotated[list[int], BeforeValidator(_orders_numbers)] = Field(default=[])
    on: Literal["placed", "delivered"] = "placed"
    ladder: Annotated[dict[int, Decimal], BeforeValidator(_ladder)] = Field(default={})
    expires_after: Expiry | None = timedelta(days=3)

    @model_validator(mode="after")
    def _numbers(self) -> NthOrder:
        if not self.n and not self.ladder:
            raise ValueError("n: required key is missing (which orders: n: [2, 3, 4])")
        if not self.n:
            object.__setattr__(self, "n", sorted(self.ladder))
        missing = [k for k in self.ladder if k not in self.n]
        if missing:
            raise ValueError(
                f"ladder: order {missing[0]} is not in n {self.n} (each rung is one of the "
                "orders that trigger)"
            )
        return self


class TierChanged(_Trigger):
    """A customer moved to another loyalty tier of tiers.yaml (up, by default)."""

    type: Literal["tier_changed"]
    direction: Literal["up", "down", "any"] = "up"
    # Only moves into these tiers (ids of tiers.yaml); empty: any.
    to: list[Slug] = Field(default=[], max_length=10)
    expires_after: Expiry | None = timedelta(days=7)


class ReferralRewardTrigger(_Trigger):
    """A referrer was paid a referral reward (config.yaml's `referrals.rewards`); once each."""

    type: Literal["referral_reward"]
    expires_after: Expiry | None = timedelta(days=7)


class AfterPurchase(_Trigger):
    """`delay` after an order with one of these SKUs or categories was delivered."""

    type: Literal["after_purchase"]
    skus: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default=[], max_length=500
    )
    categories: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default=[], max_length=100
    )
    expires_after: Expiry | None = timedelta(days=3)

    @model_validator(mode="after")
    def _something_bought(self) -> AfterPurchase:
        if not self.skus and not self.categories:
            raise ValueError("after_purchase needs skus or categories (what was bought)")
        return self


class ProductAdded(_Trigger):
    """A new product appears (optionally in these categories)."""

    type: Literal["product_added"]
    categories: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default=[], max_length=100
    )
    # buyers: customers who bought in the product's category; segment: the whole segment.
    audience: Literal["buyers", "segment"] = "buyers"
    expires_after: Expiry | None = timedelta(days=3)


class BackInStock(_Trigger):
    """A product's stock goes from 0 to more than 0."""

    type: Literal["back_in_stock"]
    audience: list[Literal["wanted", "bought"]] = Field(
        default=["wanted", "bought"], min_length=1, max_length=2
    )
    expires_after: Expiry | None = timedelta(days=2)


class Schedule(_Expiring):
    """Every `every` (whole days) at `at` on the customer's clock, from `starting`."""

    type: Literal["schedule"]
    every: Annotated[timedelta, duration_from("1d", "365d")]
    at: TimeOfDay = time(10, 0)
    starting: date = date(2026, 1, 5)
    expires_after: Expiry | None = timedelta(days=1)

    @field_validator("every")
    @classmethod
    def _whole_days(cls, every: timedelta) -> timedelta:
        if every % timedelta(days=1):
            raise ValueError(
                f"expected whole days or weeks like 14d or 2w, got {show_duration(every)}"
            )
        return every


class Broadcast(_Expiring):
    """Once, to a segment, at a local date and time (here or by `lifecycle broadcast`)."""

    type: Literal["broadcast"]
    at: LocalMoment | None = None
    expires_after: Expiry | None = timedelta(days=1)


class CheckoutAbandoned(_Expiring):
    """A checkout started and no order with its cart id within `wait`."""

    type: Literal["checkout_abandoned"]
    wait: Annotated[timedelta, duration_from("5m", "7d")] = timedelta(hours=1)
    expires_after: Expiry | None = timedelta(days=1)


class CreditUnused(_Expiring):
    """A reminder of store credit not spent: held `after` this long, or expiring within
    `expiring_within` (or both: whichever comes first). Once per credit that causes it."""

    type: Literal["credit_unused"]
    # The oldest credit with something left, and the wallet's last change, are this old.
    after: Annotated[timedelta, duration_from("1d", "365d")] | None = None
    # The credit with something left that expires first expires within this.
    expiring_within: Annotated[timedelta, duration_from("1h", "365d")] | None = None
    min_balance: Annotated[Amount, amount_from("0.01")] = Decimal("0.01")
    expires_after: Expiry | None = timedelta(days=3)

    @model_validator(mode="after")
    def _when(self) -> CreditUnused:
        if self.after is None and self.expiring_within is None:
            raise ValueError(
                "credit_unused needs after (how long the credit sat unspent, like 30d) or "
                "expiring_within (how soon a credit expires, like 14d), or both"
            )
        return self


Trigger = Annotated[
    FirstOrder
    | OrderPlaced
    | OrderDelivered
    | OrderShipped
    | OrderReturned
    | PriceDrop
    | HolidayTrigger
    | Inactive
    | DateTrigger
    | NthOrder
    | AfterPurchase
    | ProductAdded
    | BackInStock
    | Schedule
    | Broadcast
    | CheckoutAbandoned
    | CreditUnused
    | TierChanged
    | ReferralRewardTrigger,
    Field(discriminator="type"),
]

# Triggers whose campaigns may not have steps (yet): their occurrences move or credit money.
NO_STEPS = (PriceDrop, HolidayTrigger)


# ---------------------------------------------------------------- exits

EXIT_WORDS = ("ordered", "unsubscribed", "clicked")
EXIT_KEYS = ("segment", "goal")
GOALS = ("first_order", "nth_order")


class Exit(Frozen):
    """One exit condition: `ordered`, `unsubscribed`, `clicked`, `segment: NAME` or a goal."""

    kind: Literal["ordered", "unsubscribed", "clicked", "segment", "goal"]
    segment: str | None = None
    # goal: the customer has at least this many orders (first_order: 1).
    orders: int | None = None

    def describe(self) -> str:
        if self.kind == "segment":
            return f"left segment {self.segment}"
        if self.kind == "goal":
            return "first order" if self.orders == 1 else f"order number {self.orders}"
        return self.kind


def _unknown(value: Any, known: tuple[str, ...], what: str) -> PydanticCustomError:
    close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(known)
    return PydanticCustomError(
        "unknown_exit",
        "unknown {what} {found} ({hint})",
        {"what": what, "found": _shown(value), "hint": hint},
    )


def parse_exit(value: Any) -> Exit:
    if isinstance(value, Exit):
        return value
    if isinstance(value, str):
        if value in EXIT_WORDS:
            return Exit(kind=value)  # type: ignore[arg-type]
        if value in EXIT_KEYS:
            raise ValueError(f"{value} needs a value, like `{value}: ...`")
        raise _unknown(value, EXIT_WORDS + EXIT_KEYS, "exit condition")
    if isinstance(value, dict) and len(value) == 1:
        [(key, found)] = value.items()
        if key == "segment":
            return Exit(kind="segment", segment=parse_slug(found))
        if key == "goal":
            return Exit(kind="goal", orders=_goal_orders(found))
        raise _unknown(key, EXIT_WORDS + EXIT_KEYS, "exit condition")
    raise ValueError(
        "expected an exit condition: ordered, unsubscribed, clicked, segment: NAME or "
        f"goal: first_order, got {_shown(value)}"
    )


def _goal_orders(value: Any) -> int:
    if value == "first_order":
        return 1
    if isinstance(value, dict) and list(value) == ["nth_order"]:
        return int(whole(2, 1000).func(value["nth_order"]))
    if value == "nth_order":
        raise ValueError("goal nth_order needs the number: goal: {nth_order: 2}")
    raise _unknown(value, GOALS, "goal")


ExitCondition = Annotated[Exit, BeforeValidator(parse_exit)]


# ---------------------------------------------------------------- steps


class Step(Frozen):
    id: Slug
    # The wait before this step, from the previous step (or from entry: `from: entry`).
    after: Delay = timedelta(0)
    counted_from: Literal["previous", "entry"] = Field(default="previous", alias="from")
    template: Slug
    subject: LocalText
    preheader: LocalText = ""
    # An extra segment the customer must be in when this step falls due.
    segment: Slug | None = None
    expires_after: Expiry | None = None
    coupon: CouponSpec | None = None


@dataclass(frozen=True)
class FlowStep:
    """A step as the planner and the renderer use it: its offset from entry resolved."""

    id: str | None  # None: the one implicit step of a campaign without steps
    number: int  # 1, 2, …
    offset: timedelta  # after entry
    template: str
    subject: LocalText
    preheader: LocalText
    segment: str | None
    expires_after: timedelta | None
    coupon: CouponSpec | None = None  # the step's own, else the campaign's

    @property
    def label(self) -> str:
        return self.id or "email"


class Offer(Frozen):
    sku: str = Field(min_length=1)
    discount: Percent


class Campaign(Frozen):
    name: Slug
    description: str = ""
    kind: MessageKind = MessageKind.MARKETING
    trigger: Trigger
    segment: Slug = "everyone"
    template: Slug | None = None
    subject: LocalText | None = None
    preheader: LocalText = ""
    offers: list[Offer] = Field(default=[])
    resend_in_doubt: bool = False
    steps: list[Step] = Field(default=[], max_length=MAX_STEPS)
    exit: list[ExitCondition] = Field(default=[], max_length=20)
    coupon: CouponSpec | None = None

    @field_validator("steps")
    @classmethod
    def _steps_in_order(cls, steps: list[Step]) -> list[Step]:
        seen: dict[str, int] = {}
        offset = previous = timedelta(0)
        for i, step in enumerate(steps):
            if step.id in seen:
                raise ValueError(
                    f"steps[{i}]: the id {step.id!r} is already used by steps[{seen[step.id]}] "
                    "(steps are matched by id: each needs its own)"
                )
            seen[step.id] = i
            offset = step.after if step.counted_from == "entry" else offset + step.after
            if offset < previous:
                raise ValueError(
                    f"steps[{i}] ({step.id}) falls due {show_duration(offset)} after entry, "
                    f"before the step ahead of it ({show_duration(previous)}): steps run in order"
                )
            if offset > MAX_WAIT:
                raise ValueError(
                    f"steps[{i}] ({step.id}) falls due {show_duration(offset)} after entry; "
                    f"a flow lasts at most {show_duration(MAX_WAIT)}"
                )
            previous = offset
        return steps

    @model_validator(mode="after")
    def _one_email_or_steps(self) -> Campaign:
        kind = self.trigger.type
        if self.steps:
            if isinstance(self.trigger, NO_STEPS):
                raise ValueError(f"a {kind} campaign cannot have steps (it sends one email)")
            extra = [k for k in ("template", "subject") if getattr(self, k) is not None]
            if extra:
                raise ValueError(
                    f"with steps, each step has its own template and subject: remove "
                    f"{' and '.join(extra)} at the top of the file"
                )
        else:
            missing = [k for k in ("template", "subject") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)}: required key is missing (a campaign without "
                    "steps names its template and subject)"
                )
        if self.exit and isinstance(self.trigger, NO_STEPS):
            raise ValueError(f"a {kind} campaign cannot have exit conditions (it sends one email)")
        self._coupons_sized()
        return self

    def _coupons_sized(self) -> None:
        """Every coupon has a value: its own percent or amount, or the ladder's rung."""
        if self.coupon is not None and self.kind == MessageKind.TRANSACTIONAL:
            raise ValueError("coupon: a transactional email carries no coupon (it is not an offer)")
        ladder = getattr(self.trigger, "ladder", None)
        if ladder and not any(step.coupon for step in self.flow):
            object.__setattr__(self, "coupon", CouponSpec())
        for step in self.flow:
            if step.coupon is None or step.coupon.sized:
                continue
            if not ladder:
                where = f"steps ({step.id}): coupon" if step.id else "coupon"
                raise ValueError(f"{where}: give percent or amount (or a ladder on nth_order)")
            unsized = [n for n in getattr(self.trigger, "n", []) if n not in ladder]
            if unsized:
                raise ValueError(
                    f"coupon: order {unsized[0]} has no rung in the ladder and the coupon "
                    "has no percent or amount"
                )

    @property
    def flow(self) -> list[FlowStep]:
        """The campaign's steps in order, each with its offset from entry."""
        if not self.steps:
            assert self.template is not None and self.subject is not None
            return [
                FlowStep(
                    None,
                    1,
                    timedelta(0),
                    self.template,
                    self.subject,
                    self.preheader,
                    None,
                    None,
                    self.coupon,
                )
            ]
        out, offset = [], timedelta(0)
        for i, step in enumerate(self.steps):
            offset = step.after if step.counted_from == "entry" else offset + step.after
            out.append(
                FlowStep(
                    step.id,
                    i + 1,
                    offset,
                    step.template,
                    step.subject,
                    step.preheader,
                    step.segment,
                    step.expires_after,
                    step.coupon or self.coupon,
                )
            )
        return out

    def flow_step(self, step_id: str | None) -> FlowStep | None:
        """The step a message was queued for (None: no longer in the file)."""
        for step in self.flow:
            if step.id == step_id:
                return step
        return None

    @property
    def templates(self) -> list[str]:
        return list(dict.fromkeys(step.template for step in self.flow))
