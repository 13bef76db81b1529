"""A made-up context, for checking templates without a database.

`sample_context` returns a context of the shape a campaign's trigger produces
(an order; a holiday and its offers; a refunded item and its credit; for the
triggers of a shop's year, the favourite category, the last order and what the
email is about: a product, a cart, a birthday, a period, an order number), for
one step of its flow, filled with made-up data in the customer's language,
assembled from the same `contextparts` as the contexts of real messages.
`lifecycle check` renders every template of every step with it, so a template
variable added to the real contexts is added here too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..project import (
    AfterPurchase,
    BackInStock,
    Campaign,
    CheckoutAbandoned,
    CreditUnused,
    DateTrigger,
    FlowStep,
    HolidayTrigger,
    Inactive,
    NthOrder,
    PriceDrop,
    ProductAdded,
    Project,
    Schedule,
    TierChanged,
)
from ..store import MessageKind
from .contextparts import (
    WITH_FAVOURITES,
    base_context,
    customer_context,
    holiday_name,
    language,
    shop_context,
    step_context,
)
from .formatting import round_money
from .referrals import sample_referral
from .tierview import TierView, tier_view


def sample_context(
    project: Project,
    campaign: Campaign,
    locale: str,
    *,
    now: datetime | None = None,
    step: FlowStep | None = None,
) -> dict[str, Any]:
    """A context of the shape `campaign`'s trigger produces, filled with made-up data,
    for `step` of its flow (the first if None)."""
    now = now or datetime(2026, 4, 10, 4, 0, tzinfo=UTC)
    lang = language(locale)
    base = project.config.tracking.base_url.rstrip("/")
    bengali = lang == "bn"
    order = _order(bengali, now)
    kwargs: dict[str, Any] = {"order": order}
    trigger = campaign.trigger
    days_since_order = None
    if isinstance(trigger, HolidayTrigger):
        kwargs = _holiday(project, campaign, trigger, locale, now)
    elif isinstance(trigger, PriceDrop):
        kwargs["item"] = {
            "product_name": order["items"][1]["product_name"],
            "sku": order["items"][1]["sku"],
            "quantity": 2,
            "unit_price_paid": Decimal("320.50"),
            "new_price": Decimal("313.25"),
            "order_number": order["number"],
        }
        kwargs["credit"] = {"amount": Decimal("14.50"), "created_at": now}
    elif isinstance(trigger, TierChanged):
        up = trigger.direction != "down"
        kwargs["tier_change"] = {
            "from": _tier(project, -2 if up else -1, locale),
            "to": _tier(project, -1 if up else -2, locale),
            "direction": "up" if up else "down",
        }
    elif isinstance(trigger, CreditUnused):
        kwargs = {}  # about the wallet: no order
    elif isinstance(trigger, WITH_FAVOURITES):
        kwargs = _of_the_year(campaign, bengali, order, now)
        days_since_order = trigger.days if isinstance(trigger, Inactive) else 45
    return base_context(
        project,
        campaign,
        shop=shop_context(project, locale),
        customer=customer_context(
            "রহিমা খাতুন" if bengali else "Rahima Khatun",
            "rahima@example.com",
            locale,
            days_since_order,
            credit_balance=Decimal("250.50"),
            credit_expiry=(now + timedelta(days=12), Decimal("120.00")),
            tier=_tier(project, -1, locale),
        ),
        timezone=project.config.shop.timezone,
        is_marketing=campaign.kind != MessageKind.TRANSACTIONAL,
        links={
            "unsubscribe_url": f"{base}/u/SAMPLE-UNSUBSCRIBE-TOKEN",
            "pixel_url": f"{base}/o/SAMPLE-OPEN-TOKEN.gif",
            "survey_url": f"{base}/s/SAMPLE-SURVEY-TOKEN",
        },
        step=step_context(campaign, step or campaign.flow[0]),
        coupon=_coupon(campaign, step or campaign.flow[0], now),
        **sample_referral(project, campaign, locale, now),
        **kwargs,
    )


def _tier(project: Project, index: int, locale: str) -> TierView | None:
    """The tier at `index` of tiers.yaml (-1: the highest), None without tiers or that many."""
    tiers = project.tiers
    if tiers is None or not -len(tiers.tiers) <= index < len(tiers.tiers):
        return None
    return tier_view(tiers, tiers.tiers[index].id, locale)


def _coupon(campaign: Campaign, step: FlowStep, now: datetime) -> dict[str, Any] | None:
    """A made-up coupon of the step's shape (the ladder's first rung for nth_order)."""
    spec = step.coupon
    if spec is None:
        return None
    ladder = getattr(campaign.trigger, "ladder", {})
    percent = ladder[min(ladder)] if ladder else spec.percent
    return {
        "code": f"{spec.prefix}-7KQ2-M9XD-P4TR" if spec.prefix else "7KQ2-M9XD-P4TR",
        "percent": percent,
        "amount": None if percent is not None else spec.amount,
        "min_order": spec.min_order,
        "expires_at": now + spec.expires_after,
    }


def _order(bengali: bool, now: datetime) -> dict[str, Any]:
    lines = [
        ("JUTE-BAG-01", "পাটের ব্যাগ" if bengali else "Jute tote bag", 2, Decimal("450.00")),
        (
            "TEA-500G",
            "সিলেটের চা, ৫০০ গ্রাম" if bengali else "Sylhet tea, 500 g",
            1,
            Decimal("320.50"),
        ),
    ]
    return {
        "number": "NG-10234",
        "placed_at": now - timedelta(days=3),
        "delivered_at": now - timedelta(hours=2),
        "status": "delivered",
        "payment_method": "cod",
        "charged": sum((price * qty for _, _, qty, price in lines), Decimal("60")),
        "cash_on_delivery": True,
        "shipped_at": now - timedelta(days=2),
        "tracking_url": "https://courier.example.com/track/NG-10234",
        "returned_at": None,
        "items": [
            {
                "product_name": name,
                "sku": sku,
                "quantity": qty,
                "unit_price": price,
                "line_total": price * qty,
            }
            for sku, name, qty, price in lines
        ],
        "total": sum((price * qty for _, _, qty, price in lines), Decimal("0")),
    }


def _holiday(
    project: Project, campaign: Campaign, trigger: HolidayTrigger, locale: str, now: datetime
) -> dict[str, Any]:
    holiday_id = trigger.holidays[0]
    return {
        "holiday": {
            "id": holiday_id,
            "name": holiday_name(project, holiday_id, None, locale),
            "date": (now + timedelta(days=trigger.days_before)).date(),
        },
        "offers": [
            {
                "sku": offer.sku,
                "name": offer.sku,
                "old_price": Decimal("1250.00"),
                "discount": offer.discount,
                "new_price": round_money(Decimal("1250.00") * (100 - offer.discount) / 100),
                "stock": 12 - 12 * (i % 2),
            }
            for i, offer in enumerate(campaign.offers)
        ],
    }


def _products(bengali: bool) -> list[dict[str, Any]]:
    """Made-up products of the favourite category, as `favourite.products` lists them."""
    rows = [
        ("SARI-JAM-01", "জামদানি শাড়ি", "Jamdani sari", "8500.00"),
        ("SARI-TANT-02", "টাঙ্গাইল তাঁতের শাড়ি", "Tangail tant sari", "3200.00"),
        ("SARI-SILK-03", "রাজশাহী সিল্ক শাড়ি", "Rajshahi silk sari", "6750.50"),
    ]
    return [
        {"name": bn if bengali else en, "sku": sku, "price": Decimal(price), "category": "saris"}
        for sku, bn, en, price in rows
    ]


def _of_the_year(
    campaign: Campaign, bengali: bool, order: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The keys of a trigger of a shop's year: favourite and last order for all, and
    what its email is about."""
    trigger = campaign.trigger
    products = _products(bengali)
    kwargs: dict[str, Any] = {
        "favourite": {"category": "saris", "products": products},
        "last_order": order,
    }
    if isinstance(trigger, (Inactive, NthOrder, AfterPurchase)):
        kwargs["order"] = order
    if isinstance(trigger, (ProductAdded, BackInStock)):
        kwargs["product"] = {**products[0], "in_stock": True, "stock": 7}
    elif isinstance(trigger, CheckoutAbandoned):
        kwargs["cart"] = _cart(order, now)
    elif isinstance(trigger, DateTrigger):
        day = (now + timedelta(days=trigger.days_before)).date()
        kwargs["occasion"] = {"field": trigger.field, "date": day, "years": 3}
    elif isinstance(trigger, Schedule):
        kwargs["period"] = {"start": max(trigger.starting, date(2026, 4, 6))}
    if isinstance(trigger, NthOrder):
        kwargs["nth"] = trigger.n[0]
    return kwargs


def _cart(order: dict[str, Any], now: datetime) -> dict[str, Any]:
    items = [
        {
            "name": line["product_name"],
            "sku": line["sku"],
            "quantity": line["quantity"],
            "unit_price": line["unit_price"],
            "total": line["line_total"],
        }
        for line in order["items"]
    ]
    return {
        "id": "SAMPLE-CART-1",
        "items": items,
        "amount": order["total"],
        "started_at": now - timedelta(hours=2),
    }
