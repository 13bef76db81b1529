"""The pieces of a template context: plain dicts, built from rows or made-up values.

Every function here is pure: it takes what it shows (rows, the project, a
locale) and returns the dict or string a template sees under one key. Both the
contexts of real messages (`context`) and the sample ones `lifecycle check`
renders (`samplecontext`) are assembled from these, so both have one shape.
`base_context` is that shape: every key a template may use.

The triggers of a shop's year (`WITH_FAVOURITES`) also show the customer's
favourite category and last order; the others leave those keys empty, so their
batches cost no more than they did.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..project import (
    AfterPurchase,
    BackInStock,
    Broadcast,
    Campaign,
    CheckoutAbandoned,
    DateTrigger,
    FlowStep,
    Inactive,
    NthOrder,
    ProductAdded,
    Project,
    Schedule,
    pick_text,
)
from ..store import CASH_ON_DELIVERY
from .formatting import round_money
from .surveylinks import SurveyLinks
from .tierview import TierView

log = logging.getLogger(__name__)

_FRIEND = {"bn": "বন্ধু", "en": "friend"}

# Triggers whose emails get `favourite`, `last_order` and `customer.days_since_order`.
WITH_FAVOURITES = (
    Inactive,
    DateTrigger,
    NthOrder,
    AfterPurchase,
    ProductAdded,
    BackInStock,
    Schedule,
    Broadcast,
    CheckoutAbandoned,
)
# Products shown under `favourite.products`.
FAVOURITES_SHOWN = 4


def language(locale: str) -> str:
    return locale.replace("-", "_").split("_")[0].lower() or "en"


def shop_context(project: Project, locale: str) -> dict[str, Any]:
    shop = project.config.shop
    return {
        "name": shop.name,
        "url": shop.url,
        "address": shop.address,
        "story": pick_text(shop.story, locale).strip(),
        "support_email": shop.support_email,
        "locale": shop.locale,
        "timezone": shop.timezone,
        "currency": shop.currency,
    }


def customer_context(
    name: str,
    email: str,
    locale: str,
    days_since_order: int | None = None,
    *,
    credit_balance: Decimal = Decimal("0.00"),
    credit_expiry: tuple[datetime, Decimal] | None = None,
    tier: TierView | None = None,
) -> dict[str, Any]:
    """Who the email is to; `credit_balance` is their store credit now (`render.wallet`),
    `tier` their loyalty tier (`render.tierview`)."""
    name = (name or "").strip()
    first = name.split()[0] if name else _FRIEND.get(language(locale), _FRIEND["en"])
    return {
        "name": name,
        "first_name": first,
        "email": email,
        "locale": locale,
        "days_since_order": days_since_order,
        "credit_balance": credit_balance,
        # When their first credit with something left expires, and how much is left of it.
        "credit_expires_at": credit_expiry[0] if credit_expiry else None,
        "credit_expiring": credit_expiry[1] if credit_expiry else None,
        "tier": tier,
    }


def coupon_context(row: Any) -> dict[str, Any]:
    """The message's own coupon: {"code", "percent", "amount", "min_order", "expires_at"}.

    One of percent and amount is set (Decimals, exact); `expires_at` is UTC, shown in
    the customer's zone and language by the `date` filter.
    """
    return {
        "code": row.code,
        "percent": row.percent_off,
        "amount": row.amount_off,
        "min_order": row.min_order,
        "expires_at": row.expires_at,
    }


def step_context(campaign: Campaign, step: FlowStep) -> dict[str, Any]:
    """Where this email stands in its flow: {"id", "number", "of"} (1 of 1 without steps)."""
    return {"id": step.id, "number": step.number, "of": len(campaign.flow)}


def product_name(row: Any, lang: str) -> str:
    return str(row.name_bn if lang == "bn" and row.name_bn else row.name)


def product_card(row: Any, lang: str) -> dict[str, Any]:
    """A product as a list shows it: {"name", "sku", "price", "category"}."""
    return {
        "name": product_name(row, lang),
        "sku": row.sku,
        "price": row.price,
        "category": row.category,
    }


def product_context(row: Any, lang: str) -> dict[str, Any]:
    """The product an email is about, with its stock as it is now."""
    return {**product_card(row, lang), "in_stock": row.stock > 0, "stock": row.stock}


def favourite_context(
    category: str | None, products: list[Any], bought: set[int], lang: str
) -> dict[str, Any]:
    """The favourite category and up to `FAVOURITES_SHOWN` of its products in stock
    that the customer has not bought (`products` newest first)."""
    shown = [p for p in products if p.id not in bought and p.stock > 0][:FAVOURITES_SHOWN]
    return {"category": category, "products": [product_card(p, lang) for p in shown]}


def order_context(order: Any, lines: list[Any], lang: str) -> dict[str, Any]:
    """The order an email is about: its lines, total, and where it stands in its life
    (`cash_on_delivery`: the customer pays `charged` at the door: what the shop charged,
    after discounts and with delivery, or the lines' `total` when it did not say)."""
    return {
        "number": order.external_id,
        "placed_at": order.placed_at,
        "delivered_at": order.delivered_at,
        "status": str(order.status),
        "payment_method": order.payment_method,
        "charged": order.total if order.payable is None else order.payable,
        "cash_on_delivery": order.payment_method == CASH_ON_DELIVERY,
        "shipped_at": order.shipped_at,
        "tracking_url": order.tracking_url,
        "returned_at": order.returned_at,
        "items": [
            {
                "product_name": product_name(line, lang),
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.unit_price * line.quantity,
            }
            for line in lines
        ],
        "total": order.total,
    }


def offers_context(campaign: Campaign, products: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    """The campaign's offers with each product's price and stock as they are now."""
    offers = []
    for offer in campaign.offers:
        product = products.get(offer.sku)
        if product is None:
            log.warning(
                "campaign %s: offered product %s no longer exists", campaign.name, offer.sku
            )
            continue
        offers.append(
            {
                "sku": offer.sku,
                "name": product_name(product, lang),
                "old_price": product.price,
                "discount": offer.discount,
                "new_price": round_money(product.price * (100 - offer.discount) / 100),
                "stock": product.stock,
            }
        )
    return offers


def holiday_name(project: Project, holiday_id: str, given: Any, locale: str) -> str:
    if isinstance(given, (str, dict)) and given:
        return pick_text(given, locale)
    for extra in project.config.holidays.extra:
        if extra.id == holiday_id:
            return pick_text(extra.name, locale)
    return holiday_id.replace("_", " ").title()


def base_context(
    project: Project,
    campaign: Campaign,
    *,
    shop: dict[str, Any],
    customer: dict[str, Any],
    timezone: str,
    is_marketing: bool,
    links: dict[str, str],
    order: dict[str, Any] | None = None,
    holiday: dict[str, Any] | None = None,
    offers: list[dict[str, Any]] | None = None,
    item: dict[str, Any] | None = None,
    credit: dict[str, Any] | None = None,
    step: dict[str, Any],
    favourite: dict[str, Any] | None = None,
    last_order: dict[str, Any] | None = None,
    product: dict[str, Any] | None = None,
    cart: dict[str, Any] | None = None,
    occasion: dict[str, Any] | None = None,
    period: dict[str, Any] | None = None,
    nth: int | None = None,
    coupon: dict[str, Any] | None = None,
    tier_change: dict[str, Any] | None = None,
    referral: dict[str, Any] | None = None,
    reward: dict[str, Any] | None = None,
) -> dict[str, Any]:
    locale = customer["locale"]
    return {
        "campaign": campaign.name,
        "step": step,
        "shop": shop,
        "customer": customer,
        "order": order,
        "last_order": last_order,
        "favourite": favourite or {"category": None, "products": []},
        "product": product,
        "cart": cart,
        "occasion": occasion,
        "period": period,
        "nth": nth,
        "coupon": coupon,
        "tier_change": tier_change,
        "referral": referral,
        "reward": reward,
        "holiday": holiday,
        "offers": offers or [],
        "item": item,
        "credit": credit,
        "preheader": "",
        "subject": "",
        "unsubscribe_url": links["unsubscribe_url"],
        "pixel_url": links["pixel_url"],
        "survey": SurveyLinks(links["survey_url"]),
        "is_marketing": is_marketing,
        "locale": locale,
        "lang": language(locale),
        "timezone": timezone,
        "currency": project.config.shop.currency,
    }
