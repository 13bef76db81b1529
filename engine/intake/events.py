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
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from pydantic import (
    ValidationError,
)

from ..errors import EngineError
from .eventshapes import EVENT, EVENT_TYPES, LONGEST_NUMBER, ShopEvent, shown

MAX_BODY_BYTES = 1_000_000
MAX_EVENTS = 10_000  # per request
MAX_PROBLEMS = 100  # listed in an answer; the rest are only counted


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
    return int(text) if len(text) <= LONGEST_NUMBER else Decimal(text)


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
                events.append(EVENT.validate_python(item))
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
            given = shown(error["input"].get("type"))
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
