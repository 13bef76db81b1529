"""A made-up context, for checking templates without a database.

`sample_context` returns a context of the shape a campaign's trigger produces
(an order; a holiday and its offers; a refunded item and its credit), filled
with made-up data in the customer's language, assembled from the same
`contextparts` as the contexts of real messages. `lifecycle check` renders every
template with it, so a template variable added to the real contexts is added
here too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..project import Campaign, HolidayTrigger, PriceDrop, Project
from ..store import MessageKind
from .contextparts import base_context, customer_context, holiday_name, language, shop_context
from .formatting import round_money


def sample_context(
    project: Project, campaign: Campaign, locale: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """A context of the shape `campaign`'s trigger produces, filled with made-up data."""
    now = now or datetime(2026, 4, 10, 4, 0, tzinfo=UTC)
    lang = language(locale)
    base = project.config.tracking.base_url.rstrip("/")
    bengali = lang == "bn"
    lines = [
        ("JUTE-BAG-01", "পাটের ব্যাগ" if bengali else "Jute tote bag", 2, Decimal("450.00")),
        (
            "TEA-500G",
            "সিলেটের চা, ৫০০ গ্রাম" if bengali else "Sylhet tea, 500 g",
            1,
            Decimal("320.50"),
        ),
    ]
    order = {
        "number": "NG-10234",
        "placed_at": now - timedelta(days=3),
        "delivered_at": now - timedelta(hours=2),
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
    kwargs: dict[str, Any] = {"order": order}
    trigger = campaign.trigger
    if isinstance(trigger, HolidayTrigger):
        holiday_id = trigger.holidays[0]
        kwargs = {
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
    elif isinstance(trigger, PriceDrop):
        kwargs["item"] = {
            "product_name": lines[1][1],
            "sku": lines[1][0],
            "quantity": 2,
            "unit_price_paid": Decimal("320.50"),
            "new_price": Decimal("313.25"),
            "order_number": order["number"],
        }
        kwargs["credit"] = {"amount": Decimal("14.50"), "created_at": now}
    return base_context(
        project,
        campaign,
        shop=shop_context(project, locale),
        customer=customer_context(
            "রহিমা খাতুন" if bengali else "Rahima Khatun", "rahima@example.com", locale
        ),
        timezone=project.config.shop.timezone,
        is_marketing=campaign.kind != MessageKind.TRANSACTIONAL,
        links={
            "unsubscribe_url": f"{base}/u/SAMPLE-UNSUBSCRIBE-TOKEN",
            "pixel_url": f"{base}/o/SAMPLE-OPEN-TOKEN.gif",
        },
        **kwargs,
    )
