"""WooCommerce webhooks: one delivery as the engine's own events.

A WooCommerce webhook (WooCommerce → Settings → Advanced → Webhooks, API version
WP REST API v3) posts its resource, an order, a product or a customer, as the JSON
of the REST API, with the headers `X-WC-Webhook-Topic` (`order.updated` …),
`X-WC-Webhook-Delivery-ID` and `X-WC-Webhook-Signature`: the base64 HMAC-SHA256 of
the raw body with the webhook's secret (`connector.signature_matches`). `translate` turns a delivery
into events of `engine.intake.events` and applies them in one transaction, with ids
made from the delivery id, so a repeated delivery changes nothing.

- `customer.created` / `customer.updated`: `customer.upserted` (email, name, city).
- `product.created` / `product.updated`: `product.upserted` (SKU, name, the active
  price, stock, first category): a lower price is a price drop, stock coming back
  a restock.
- `order.created` / `order.updated`: the order's customer (from its billing
  address) is upserted, then by the order's status (`LIFE`: the engine's order
  life, `engine.intake.orderlife`):
  - `processing`, `on-hold`: the order is recorded as placed;
  - `completed`: recorded, and delivered at `date_completed_gmt`;
  - the statuses order-status and courier plugins add: `confirmed`, `shipped`
    (`dispatched`, `in-transit`), `out-for-delivery`, `delivered`, `refused`
    (`rejected`), `returned`: recorded at that point of its life, or a
    recorded order moved on to it (never back);
  - `cancelled`, `refunded`, `failed`, `trash`: a recorded order ends by where it
    stood (`connector.ending`: cancelled, refused at the door or returned; one
    never recorded is left out);
  - `pending` (awaiting payment): not an order yet, nothing is recorded.
  `payment_method` is how it is paid (`cod`: cash on delivery), a `tracking_url`
  meta field (or the Shipment Tracking extension's first link) the courier's page.
  Its first coupon line is the coupon the order used, and a `referral_code` meta
  field the referral code it carried.
- `order.deleted` (the body is `{"id": …}`): a recorded order ends as above.

The shop's ids become the engine's: an order keeps its number; a customer is
found by email first (the same person whatever created them), else is
`wc-<id>`, or their email for a guest; a product is its SKU, or `wc-<id>` when it
has none. A product an order names that the engine does not know is created from
the order line (its name and paid price), so the order is never lost for it. What
a delivery cannot give (an order without an email, a status WooCommerce plugins
invent) comes back as a problem, and the rest is applied.
"""

from __future__ import annotations

import logging
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from ..store import OrderStatus, Product
from .connector import (
    amount,
    customer_id_for,
    ending,
    missing_product,
    moved,
    stored_order,
    usable_tracking,
    utc_text,
    whole,
)

log = logging.getLogger(__name__)

WOOCOMMERCE_TOPICS = frozenset(
    {
        "order.created",
        "order.updated",
        "order.deleted",
        "product.created",
        "product.updated",
        "customer.created",
        "customer.updated",
    }
)
# WooCommerce's own statuses, and those courier and order-status plugins add (without
# their `wc-` prefix), as the engine's order life.
LIFE = {
    "processing": OrderStatus.PLACED,
    "on-hold": OrderStatus.PLACED,
    "confirmed": OrderStatus.CONFIRMED,
    "shipped": OrderStatus.SHIPPED,
    "dispatched": OrderStatus.SHIPPED,
    "in-transit": OrderStatus.SHIPPED,
    "out-for-delivery": OrderStatus.OUT_FOR_DELIVERY,
    "completed": OrderStatus.DELIVERED,
    "delivered": OrderStatus.DELIVERED,
    "refused": OrderStatus.REFUSED,
    "rejected": OrderStatus.REFUSED,
    "returned": OrderStatus.RETURNED,
}
# Ended by where the order stood (`connector.ending`): refunded after delivery is returned.
ENDED = frozenset({"cancelled", "refunded", "failed", "trash"})
NOT_YET = frozenset({"pending", "checkout-draft"})
REFERRAL_META = "referral_code"
TRACKING_META = "tracking_url"
SHIPMENT_TRACKING = "_wc_shipment_tracking_items"
_PAYMENT_ID = re.compile(r"[A-Za-z0-9_\- ]{1,32}")
PAISA = Decimal("0.01")


def translate(
    session: Session, topic: str, payload: dict[str, Any], problems: list[str]
) -> list[dict[str, Any]]:
    """The events a delivery of `topic` (one of WOOCOMMERCE_TOPICS) means, given what the
    store knows (`connector.take_delivery` applies them); what it cannot give goes to
    `problems`."""
    kind = topic.split(".", 1)[0]
    if kind == "customer":
        customer = _customer(session, payload, problems)
        return [customer] if customer else []
    if kind == "product":
        product = _product(session, payload, problems)
        return [product] if product else []
    if topic == "order.deleted":
        return ending(session, str(whole(payload.get("id"))))
    return _order(session, payload, problems)


def _customer(
    session: Session, data: dict[str, Any], problems: list[str], *, guest_ok: bool = False
) -> dict[str, Any] | None:
    """`customer.upserted` from a customer resource or an order's billing address."""
    email = str(data.get("email") or "").strip()
    shop_id = whole(data.get("customer_id", data.get("id")))
    if not email:
        problems.append(f"customer {shop_id or '(guest)'} has no email address: not recorded")
        return None
    external_id, known = customer_id_for(session, email, f"wc-{shop_id}" if shop_id else None)
    name = " ".join(str(data.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    customer: dict[str, Any] = {"id": external_id, "email": email}
    if name:
        customer["name"] = name
    city = str((data.get("billing") or {}).get("city") or data.get("city") or "").strip()
    if city:
        customer["city"] = city
    at = utc_text(data.get("date_created_gmt"))
    if at and not known:
        customer["created_at"] = at
    return {"type": "customer.upserted", "customer": customer}


def _product(session: Session, data: dict[str, Any], problems: list[str]) -> dict[str, Any] | None:
    sku = str(data.get("sku") or "").strip() or f"wc-{whole(data.get('id'))}"
    price = amount(data.get("price"))
    if price is None:
        problems.append(
            f"product {sku} has no price (a variable product's variations are not read)"
        )
        return None
    product: dict[str, Any] = {
        "sku": sku,
        "name": str(data.get("name") or sku),
        "price": str(price),
    }
    stock = _stock(session, sku, data)
    if stock is not None:
        product["stock"] = stock
    categories = data.get("categories") or []
    if categories and isinstance(categories[0], dict) and categories[0].get("name"):
        product["category"] = str(categories[0]["name"])
    event: dict[str, Any] = {"type": "product.upserted", "product": product}
    at = utc_text(data.get("date_modified_gmt"))
    if at:
        event["at"] = at
    return event


def _stock(session: Session, sku: str, data: dict[str, Any]) -> int | None:
    """The count WooCommerce manages, else 0 when out of stock and, when it comes
    back in stock, 1 (a product without a count is only in or out); None keeps it."""
    if data.get("manage_stock") and data.get("stock_quantity") is not None:
        return max(0, whole(data["stock_quantity"]))
    status = data.get("stock_status")
    if status == "outofstock":
        return 0
    if status == "instock":
        stored = session.execute(select(col(Product.stock)).where(col(Product.sku) == sku)).scalar()
        return 1 if stored is not None and stored <= 0 else None
    return None


def _order(session: Session, data: dict[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    number = str(whole(data.get("id")))
    status = str(data.get("status") or "").strip().lower().removeprefix("wc-")
    at = utc_text(data.get("date_modified_gmt"))
    if status in ENDED:
        return ending(session, number, at=at)
    if status in NOT_YET:
        return []
    life = LIFE.get(status)
    if life is None:
        problems.append(
            f"order {number}: status {status!r} is not one the engine knows: not applied"
        )
        return []
    delivered = None
    if life == OrderStatus.DELIVERED:
        delivered = utc_text(data.get("date_completed_gmt")) or at
        if delivered is None:
            problems.append(f"order {number} is {status} without date_completed_gmt")
            return []
    tracking = usable_tracking(_tracking(data), number, problems)
    if stored_order(session, number) is not None:
        return moved(session, number, life, at=delivered or at, tracking=tracking)
    billing = dict(data.get("billing") or {})
    billing["customer_id"] = data.get("customer_id")
    customer = _customer(session, billing, problems)
    if customer is None:
        problems[-1] = f"order {number} has no billing email: not recorded"
        return []
    lines, products = _lines(session, data.get("line_items") or [], problems)
    if not lines:
        problems.append(f"order {number} has no line with a quantity: not recorded")
        return []
    order: dict[str, Any] = {
        "id": number,
        "customer_id": customer["customer"]["id"],
        "items": lines,
    }
    placed = utc_text(data.get("date_created_gmt"))
    if placed:
        order["placed_at"] = placed
    if delivered:
        order["delivered_at"] = delivered
    elif life != OrderStatus.PLACED:
        order["status"] = life.value
    payable = amount(data.get("total"))
    if payable is not None:
        order["payable"] = str(payable)
    method = str(data.get("payment_method") or "").strip()
    if method:
        order["payment_method"] = method if _PAYMENT_ID.fullmatch(method) else "other"
    if tracking:
        order["tracking_url"] = tracking
    coupons = [c.get("code") for c in data.get("coupon_lines") or [] if isinstance(c, dict)]
    if coupons and coupons[0]:
        order["coupon_code"] = str(coupons[0])
    referral = _meta(data, REFERRAL_META)
    if referral:
        order["referral_code"] = referral
    event: dict[str, Any] = {"type": "order.placed", "order": order}
    if at and life != OrderStatus.PLACED:
        event["at"] = at  # when it reached its status
    return [customer, *products, event]


def _tracking(data: dict[str, Any]) -> str | None:
    """The courier's tracking page: a `tracking_url` meta field, or the first link of
    the Shipment Tracking extension's items."""
    found = _meta(data, TRACKING_META)
    if found is None:
        for entry in data.get("meta_data") or []:
            if isinstance(entry, dict) and entry.get("key") == SHIPMENT_TRACKING:
                items = entry.get("value")
                first = items[0] if isinstance(items, list) and items else {}
                if isinstance(first, dict):
                    found = first.get("custom_tracking_link") or first.get("tracking_link")
    return str(found or "").strip() or None


def _lines(
    session: Session, items: list[Any], problems: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The order's lines, and `product.upserted` for the products the engine lacks."""
    lines: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        quantity = whole(item.get("quantity"))
        if quantity < 1:
            continue
        own_id = whole(item.get("variation_id")) or whole(item.get("product_id"))
        sku = str(item.get("sku") or "").strip() or f"wc-{own_id}"
        paid = amount(item.get("subtotal"))
        unit = (paid / quantity).quantize(PAISA, ROUND_HALF_UP) if paid is not None else None
        line: dict[str, Any] = {"sku": sku, "quantity": quantity}
        if unit is not None:
            line["unit_price"] = str(unit)
        lines.append(line)
        missing_product(session, sku, str(item.get("name") or sku), unit, products)
    return lines, products


def _meta(data: dict[str, Any], key: str) -> str | None:
    for entry in data.get("meta_data") or []:
        if isinstance(entry, dict) and entry.get("key") == key and entry.get("value"):
            return str(entry["value"]).strip() or None
    return None
