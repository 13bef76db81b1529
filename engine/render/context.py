"""What a template sees: plain dicts built from the database for a batch of messages.

`load_contexts` reads everything a batch needs in a handful of queries (one per
table, in `contextload`), never one per message, and returns one context dict
per message, built from the pieces in `contextparts`, or a `ContextError` saying
why that message cannot be rendered. Templates never get ORM objects, the config
or the environment: only the keys listed in `load_contexts`.

What the planner wrote on a message (`message.context`: a product id, a cart
id, a date, a period, an order number) is read defensively: a key missing or of
the wrong kind is a `ContextError` naming the message and the key, never a
crash. So is a message whose flow step is no longer in its campaign file.

`samplecontext` builds the same shape from made-up data, for checking templates
without a database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import Session

from ..errors import DeliveryError
from ..project import (
    BackInStock,
    Campaign,
    CheckoutAbandoned,
    DateTrigger,
    FlowStep,
    NthOrder,
    ProductAdded,
    Project,
    ReferralRewardTrigger,
    Schedule,
    TierChanged,
)
from ..store import Message, MessageKind, to_money
from .contextload import Batch, credit_id, load, wants_favourites
from .contextparts import (
    base_context,
    coupon_context,
    customer_context,
    favourite_context,
    holiday_name,
    language,
    offers_context,
    order_context,
    product_context,
    product_name,
    shop_context,
    step_context,
)
from .formatting import round_money
from .referrals import (
    ReferralBatch,
    RewardMissing,
    load_referrals,
    referral_context,
    reward_context,
    reward_of,
)
from .tierview import tier_view
from .wallet import load_balances, load_expiries

# Links a message carries: {"unsubscribe_url": …, "pixel_url": …, "survey_url": …}, from its id.
Links = Callable[[int], dict[str, str]]


class ContextError(DeliveryError):
    """The data one message needs is missing or inconsistent."""

    # True: the message waits and is tried again (until it expires), not failed.
    retry = False


class ContextWait(ContextError):
    """The data one message needs is not there yet: it waits and is tried again."""

    retry = True


def load_contexts(
    session: Session,
    project: Project,
    messages: Sequence[Message],
    links: Links,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any] | ContextError]:
    """One template context per message (same order), or the ContextError for it.

    Keys: shop, customer, order, holiday, offers, item, credit, step, favourite,
    last_order, product, cart, occasion, period, nth, coupon, tier_change, preheader, subject,
    unsubscribe_url, pixel_url, survey, is_marketing, campaign, locale, lang, timezone,
    currency, referral, reward. Keys a campaign has no use for are None (or [], or an empty
    favourite). `now` (the clock if not given) counts `customer.days_since_order`.
    An email showing `referral` for a customer whose code is not minted yet waits.
    """
    now = now or datetime.now(UTC)
    batch = load(session, project, messages)
    batch.credit_balances = load_balances(session, (m.customer_id for m in messages), now)
    batch.credit_expiries = load_expiries(session, batch.credit_balances, now)
    referrals = load_referrals(session, project, messages)
    shops: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any] | ContextError] = []
    for message in messages:
        try:
            out.append(_context(project, batch, referrals, shops, message, links, now))
        except ContextError as exc:
            out.append(exc)
    return out


def message_step(campaign: Campaign, message: Message) -> FlowStep:
    """The flow step `message` was queued for; ContextError if the file no longer has it."""
    step = campaign.flow_step(message.step)
    if step is not None:
        return step
    steps = ", ".join(s.label for s in campaign.flow)
    shown = f"step {message.step}" if message.step else "its one email (a campaign without steps)"
    raise ContextError(
        f"message {message.id}: {shown} is no longer in campaign {campaign.name} "
        f"(its steps now: {steps})"
    )


def _context(
    project: Project,
    batch: Batch,
    referrals: ReferralBatch,
    shops: dict[str, dict[str, Any]],
    message: Message,
    links: Links,
    now: datetime,
) -> dict[str, Any]:
    mid = message.id
    campaign = project.campaigns.get(message.campaign)
    if campaign is None:
        raise ContextError(f"message {mid}: no campaign named {message.campaign!r}")
    step = message_step(campaign, message)
    customer = batch.customers.get(message.customer_id)
    if customer is None:
        raise ContextError(f"message {mid}: customer {message.customer_id} does not exist")
    locale = customer.locale or project.config.shop.locale
    lang = language(locale)
    if locale not in shops:
        shops[locale] = shop_context(project, locale)
    extra = message.context or {}
    if not isinstance(extra, dict):
        raise ContextError(f"message {mid}: its context is not an object: {extra!r}")
    order = None
    if message.order_id is not None:
        row = batch.orders.get(message.order_id)
        if row is None:
            raise ContextError(f"message {mid}: order {message.order_id} does not exist")
        order = order_context(row, batch.lines.get(row.id, []), lang)
    item = credit = None
    if message.order_item_id is not None:
        item, credit = _refund(batch, message, lang, extra)
    holiday = None
    offers: list[dict[str, Any]] = []
    if message.holiday is not None:
        holiday = {
            "id": message.holiday,
            "name": holiday_name(project, message.holiday, extra.get("holiday_name"), locale),
            "date": message.holiday_date,
        }
        key = (campaign.name, lang)
        if key not in batch.offers:
            batch.offers[key] = offers_context(campaign, batch.products, lang)
        offers = batch.offers[key]
    yearly: dict[str, Any] = {}
    days_since_order = None
    if wants_favourites(project, message):
        yearly, days_since_order = _favourites(batch, message.customer_id, lang, now)
    return base_context(
        project,
        campaign,
        coupon=_coupon(batch, campaign, step, message, now),
        shop=shops[locale],
        customer=customer_context(
            customer.name,
            customer.email,
            locale,
            days_since_order,
            credit_balance=batch.credit_balances[message.customer_id],
            credit_expiry=batch.credit_expiries.get(message.customer_id),
            tier=tier_view(project.tiers, customer.tier, locale),
        ),
        timezone=customer.timezone or project.config.shop.timezone,
        is_marketing=message.kind != MessageKind.TRANSACTIONAL,
        links=links(mid or 0),
        order=order,
        holiday=holiday,
        offers=offers,
        item=item,
        credit=credit,
        step=step_context(campaign, step),
        **yearly,
        **_occurrence(batch, campaign, message, lang, extra),
        **_tier_change(project, campaign, message, locale, extra),
        **_referral(project, referrals, campaign, step, message, customer, locale),
    )


def _referral(
    project: Project,
    referrals: ReferralBatch,
    campaign: Campaign,
    step: FlowStep,
    message: Message,
    customer: Any,
    locale: str,
) -> dict[str, Any]:
    """`referral` when the email shows it (waits for the code), and a reward email's `reward`."""
    if not referrals.shows(campaign, step):
        return {}
    mid = message.id
    code = customer.referral_code
    if code is None:
        raise ContextWait(
            f"message {mid}: the customer's referral code is not minted yet "
            "(the next planning pass mints it)"
        )
    count = referrals.counts.get(message.customer_id, 0)
    parts: dict[str, Any] = {"referral": referral_context(project, code, count, locale)}
    if isinstance(campaign.trigger, ReferralRewardTrigger):
        reward_id = reward_of(message)
        row = referrals.rewards.get(reward_id) if reward_id is not None else None
        if row is None:
            raise ContextError(f"message {mid}: reward {reward_id!r} does not exist")
        try:
            parts["reward"] = reward_context(project, row, locale)
        except RewardMissing as exc:
            raise ContextError(f"message {mid}: {exc}") from exc
    return parts


PREVIEW_CODE = "PREVIEW-0000-0000"  # a preview's coupon: never minted, never valid


def _coupon(
    batch: Batch, campaign: Campaign, step: FlowStep, message: Message, now: datetime
) -> dict[str, Any] | None:
    """The message's coupon when its step promises one; waits when it is not minted yet.
    A preview (an unsaved message) shows the step's coupon with a code that is not one."""
    spec = step.coupon
    if spec is None:
        return None
    if not message.id and message.dedupe_key.startswith("preview:"):
        prefix = f"{spec.prefix}-" if spec.prefix else ""
        ladder = getattr(campaign.trigger, "ladder", None) or {}
        rung = None
        if ladder and message.occurrence.startswith("nth-"):
            rung = ladder.get(int(message.occurrence.removeprefix("nth-")))
        if ladder and rung is None:
            rung = ladder[min(ladder)]  # the first rung, for a preview of no rung of its own
        return {
            "code": prefix + PREVIEW_CODE,
            "percent": rung if rung is not None else spec.percent,
            "amount": None if rung is not None else spec.amount,
            "min_order": spec.min_order,
            "expires_at": now + spec.expires_after,
        }
    row = batch.coupons.get(message.id or 0)
    if row is None:
        raise ContextWait(
            f"message {message.id}: its coupon is not minted yet (the campaign was given a "
            "coupon after this email was queued; the next full planning pass mints it)"
        )
    return coupon_context(row)


def _favourites(
    batch: Batch, customer_id: int, lang: str, now: datetime
) -> tuple[dict[str, Any], int | None]:
    """`favourite` and `last_order`, and the whole days since that order."""
    category = batch.favourites.get(customer_id)
    bought = batch.bought.get(customer_id, set())
    products = batch.in_category.get(category, []) if category else []
    parts: dict[str, Any] = {"favourite": favourite_context(category, products, bought, lang)}
    last = batch.last_orders.get(customer_id)
    if last is None:
        return parts, None
    parts["last_order"] = order_context(last, batch.lines.get(last.id, []), lang)
    return parts, max((now - last.placed_at).days, 0)


def _occurrence(
    batch: Batch, campaign: Campaign, message: Message, lang: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """What the email is about, from what the planner wrote on the message."""
    trigger = campaign.trigger
    mid = message.id
    if isinstance(trigger, (ProductAdded, BackInStock)):
        pid = _whole(extra, "product_id", mid)
        row = batch.products_by_id.get(pid)
        if row is None:
            raise ContextError(f"message {mid}: product {pid} does not exist")
        return {"product": product_context(row, lang)}
    if isinstance(trigger, CheckoutAbandoned):
        return {"cart": _cart(batch, mid, extra, lang)}
    if isinstance(trigger, DateTrigger):
        field = _present(extra, "date_field", mid)
        if field not in ("birthday", "first_order", "signup"):
            raise ContextError(
                f"message {mid}: date_field must be birthday, first_order or signup, got {field!r}"
            )
        return {
            "occasion": {
                "field": field,
                "date": _day(extra, "date", mid),
                "years": _whole(extra, "years", mid),
            }
        }
    if isinstance(trigger, Schedule):
        return {"period": {"start": _day(extra, "period_start", mid)}}
    if isinstance(trigger, NthOrder):
        return {"nth": _whole(extra, "nth", mid)}
    return {}


def _tier_change(
    project: Project, campaign: Campaign, message: Message, locale: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """`tier_change` for a tier_changed email: {"from", "to", "direction"} (tiers or None)."""
    if not isinstance(campaign.trigger, TierChanged):
        return {}
    mid = message.id
    direction = _present(extra, "direction", mid)
    if direction not in ("up", "down"):
        raise ContextError(f"message {mid}: direction must be up or down, got {direction!r}")
    moved = {}
    for end in ("from", "to"):
        tier_id = extra.get(f"{end}_tier")
        if tier_id is not None and not isinstance(tier_id, str):
            raise ContextError(f"message {mid}: {end}_tier must be a text, got {tier_id!r}")
        moved[end] = tier_view(project.tiers, tier_id, locale)
    return {"tier_change": {**moved, "direction": direction}}


def _cart(batch: Batch, mid: int | None, extra: dict[str, Any], lang: str) -> dict[str, Any]:
    cart = _present(extra, "cart_id", mid)
    if not isinstance(cart, str) or not cart:
        raise ContextError(f"message {mid}: cart_id must be a text, got {cart!r}")
    row = batch.checkouts.get(cart)
    if row is None:
        raise ContextError(f"message {mid}: cart {cart} does not exist")
    items = row.items if isinstance(row.items, list) else []
    return {
        "id": cart,
        "items": [_cart_item(batch, mid, cart, i, item, lang) for i, item in enumerate(items)],
        "amount": row.amount,
        "started_at": row.started_at,
    }


def _cart_item(
    batch: Batch, mid: int | None, cart: str, index: int, item: Any, lang: str
) -> dict[str, Any]:
    where = f"message {mid}: cart {cart} item {index + 1}"
    if not isinstance(item, dict):
        raise ContextError(f"{where} is not an object: {item!r}")
    sku, quantity = item.get("sku"), item.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ContextError(f"{where}: quantity must be a whole number from 1, got {quantity!r}")
    try:
        unit_price = round_money(to_money(item.get("unit_price")))
    except (TypeError, ValueError) as exc:
        raise ContextError(f"{where}: unit_price {exc}") from exc
    product = batch.products.get(sku) if isinstance(sku, str) else None
    name = product_name(product, lang) if product is not None else item.get("name")
    return {
        "name": str(name or sku or ""),
        "sku": str(sku or ""),
        "quantity": quantity,
        "unit_price": unit_price,
        "total": unit_price * quantity,
    }


def _present(extra: dict[str, Any], key: str, mid: int | None) -> Any:
    if extra.get(key) is None:
        raise ContextError(f"message {mid}: {key} is missing from the message's context")
    return extra[key]


def _whole(extra: dict[str, Any], key: str, mid: int | None) -> int:
    value = _present(extra, key, mid)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ContextError(f"message {mid}: {key} must be a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise ContextError(f"message {mid}: {key} must be a whole number, got {value!r}") from exc


def _day(extra: dict[str, Any], key: str, mid: int | None) -> date:
    value = _present(extra, key, mid)
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ContextError(
            f"message {mid}: {key} must be a date like 2026-12-10, got {value!r}"
        ) from exc


def _refund(
    batch: Batch, message: Message, lang: str, extra: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    mid = message.id
    line = batch.line_by_id.get(message.order_item_id or 0)
    if line is None:
        raise ContextError(f"message {mid}: order item {message.order_item_id} does not exist")
    order = batch.orders.get(line.order_id)
    quantity = extra.get("quantity", line.quantity)
    try:
        quantity = int(quantity)
    except (TypeError, ValueError) as exc:
        raise ContextError(f"message {mid}: quantity is not a whole number: {quantity!r}") from exc
    item = {
        "product_name": product_name(line, lang),
        "sku": line.sku,
        "quantity": quantity,
        "unit_price_paid": _decimal(extra.get("old_price", line.unit_price), "old_price", mid),
        "new_price": _decimal(extra.get("new_price"), "new_price", mid),
        "order_number": order.external_id if order is not None else "",
    }
    credit_row = batch.credits.get(credit_id(message) or 0)
    credit = {
        "amount": _decimal(extra.get("amount"), "amount", mid),
        "created_at": credit_row.created_at if credit_row is not None else message.created_at,
    }
    return item, credit


def _decimal(value: Any, what: str, message_id: int | None) -> Decimal:
    if isinstance(value, float) or value is None:
        raise ContextError(f"message {message_id}: {what} must be a decimal string, got {value!r}")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ContextError(f"message {message_id}: {what} is not a number: {value!r}") from exc
    if not number.is_finite():
        raise ContextError(f"message {message_id}: {what} is not a finite number: {value!r}")
    return number
