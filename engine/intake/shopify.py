"""Shopify webhooks: one delivery as the engine's own events.

A Shopify webhook (Settings → Notifications → Webhooks, JSON) posts its resource as
the REST Admin API's JSON, with `X-Shopify-Topic`, `X-Shopify-Webhook-Id` (the
delivery, the same on every retry) and `X-Shopify-Hmac-Sha256`: the base64
HMAC-SHA256 of the raw body with the app's or store's webhook secret
(`connector.signature_matches`). `translate` reads it and
`connector.take_delivery` applies it once:

- `customers/create`, `customers/update`: `customer.upserted` (email, name, city of
  the default address, and marketing consent from `email_marketing_consent`:
  `subscribed` is consent, `unsubscribed` and `not_subscribed` are not).
- `products/update`: one `product.upserted` per variant (its SKU, or
  `shopify-<variant id>` without one; the product's title with the variant's;
  its price; `inventory_quantity` as stock; `product_type` as category).
- `orders/create`, `orders/updated`, `orders/fulfilled`: the order's customer, the
  products the engine lacks (from the order lines), then the order, recorded once,
  by its `order_number`, and moved along its life (never back): shipped when it has
  a fulfillment (its first `tracking_urls` is the courier's page), out for delivery
  when the carrier says so (`shipment_status`), delivered when a fulfillment says the
  carrier delivered it, or, paid at the door, when a fulfilled cash on delivery
  order becomes `paid`. A cancelled one (`cancelled_at`) ends by where it stood
  (`connector.ending`) or is left out. The gateway "Cash on Delivery (COD)" is the
  payment method `cod`, another the first gateway's name. Its first discount code
  is its coupon, and a `referral_code` note attribute its referral code.
- `orders/cancelled`: a recorded order ends by where it stood.
- `fulfillments/create`, `fulfillments/update`: the courier's news of a recorded
  order (found by the fulfillment's name, `#1042.1`): shipped, out for delivery or
  delivered, with the tracking page.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from ..store import OrderStatus
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

SHOPIFY_TOPICS = frozenset(
    {
        "orders/create",
        "orders/updated",
        "orders/fulfilled",
        "orders/cancelled",
        "fulfillments/create",
        "fulfillments/update",
        "products/update",
        "customers/create",
        "customers/update",
    }
)
CONSENTING = {"subscribed": True, "unsubscribed": False, "not_subscribed": False}
REFERRAL_NOTE = "referral_code"


def translate(
    session: Session, topic: str, payload: dict[str, Any], problems: list[str]
) -> list[dict[str, Any]]:
    """The events a delivery of `topic` (one of SHOPIFY_TOPICS) means, given what the
    store knows (`connector.take_delivery` applies them); what it cannot give goes to
    `problems`."""
    if topic.startswith("customers/"):
        customer = _customer(session, payload, problems)
        return [customer] if customer else []
    if topic == "products/update":
        return _products(payload, problems)
    if topic.startswith("fulfillments/"):
        return _fulfillment(session, payload, problems)
    if topic == "orders/cancelled":
        return ending(session, _number(payload), at=utc_text(payload.get("cancelled_at")))
    return _order(session, payload, problems)


def _customer(
    session: Session, data: dict[str, Any], problems: list[str], email: str = ""
) -> dict[str, Any] | None:
    email = (email or str(data.get("email") or "")).strip()
    shop_id = whole(data.get("id"))
    if not email:
        problems.append(f"customer {shop_id or '(guest)'} has no email address: not recorded")
        return None
    external_id, known = customer_id_for(session, email, f"shopify-{shop_id}" if shop_id else None)
    customer: dict[str, Any] = {"id": external_id, "email": email}
    name = " ".join(str(data.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    if name:
        customer["name"] = name
    city = str((data.get("default_address") or {}).get("city") or "").strip()
    if city:
        customer["city"] = city
    consent = CONSENTING.get(str((data.get("email_marketing_consent") or {}).get("state")))
    if consent is not None:
        customer["marketing_consent"] = consent
    created = utc_text(data.get("created_at"))
    if created and not known:
        customer["created_at"] = created
    return {"type": "customer.upserted", "customer": customer}


def _products(data: dict[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    title = str(data.get("title") or "").strip()
    events = []
    for variant in data.get("variants") or []:
        if not isinstance(variant, dict):
            continue
        sku = str(variant.get("sku") or "").strip() or f"shopify-{whole(variant.get('id'))}"
        price = amount(variant.get("price"))
        if price is None:
            problems.append(f"product {sku} has no price: not recorded")
            continue
        own = str(variant.get("title") or "")
        name = title if own in ("", "Default Title") else f"{title} – {own}"
        product: dict[str, Any] = {"sku": sku, "name": name or sku, "price": str(price)}
        if variant.get("inventory_quantity") is not None:
            product["stock"] = max(0, whole(variant["inventory_quantity"]))
        if data.get("product_type"):
            product["category"] = str(data["product_type"])
        event: dict[str, Any] = {"type": "product.upserted", "product": product}
        at = utc_text(data.get("updated_at"))
        if at:
            event["at"] = at
        events.append(event)
    return events


def _order(session: Session, data: dict[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    number = _number(data)
    at = utc_text(data.get("updated_at"))
    if data.get("cancelled_at"):
        return ending(session, number, at=utc_text(data.get("cancelled_at")) or at)
    delivered = _delivered_at(data)
    shipped, found = _shipped(data)
    tracking = usable_tracking(found, number, problems)
    life = OrderStatus.DELIVERED if delivered else shipped
    if stored_order(session, number) is not None:
        if life is None:
            return []
        return moved(session, number, life, at=delivered or at, tracking=tracking)
    email = str(data.get("email") or data.get("contact_email") or "")
    customer = _customer(session, dict(data.get("customer") or {}), problems, email)
    if customer is None:
        problems[-1] = f"order {number} has no email address: not recorded"
        return []
    lines, products = _lines(session, data.get("line_items") or [])
    if not lines:
        problems.append(f"order {number} has no line with a quantity: not recorded")
        return []
    order: dict[str, Any] = {
        "id": number,
        "customer_id": customer["customer"]["id"],
        "items": lines,
    }
    placed = utc_text(data.get("created_at"))
    if placed:
        order["placed_at"] = placed
    if delivered:
        order["delivered_at"] = delivered
    elif shipped:
        order["status"] = shipped.value
    payable = amount(data.get("total_price"))
    if payable is not None:
        order["payable"] = str(payable)
    payment = _payment(data)
    if payment:
        order["payment_method"] = payment
    if tracking:
        order["tracking_url"] = tracking
    codes = [d.get("code") for d in data.get("discount_codes") or [] if isinstance(d, dict)]
    if codes and codes[0]:
        order["coupon_code"] = str(codes[0])
    for note in data.get("note_attributes") or []:
        if isinstance(note, dict) and note.get("name") == REFERRAL_NOTE and note.get("value"):
            order["referral_code"] = str(note["value"]).strip()
    event: dict[str, Any] = {"type": "order.placed", "order": order}
    if shipped and at:
        event["at"] = at  # when it was shipped, as far as the order tells
    return [customer, *products, event]


def _fulfillment(
    session: Session, data: dict[str, Any], problems: list[str]
) -> list[dict[str, Any]]:
    """A recorded order moved on by one of its fulfillments (the courier's news comes this
    way): found by the fulfillment's name, the order's name and a number (`#1042.1`)."""
    name = str(data.get("name") or "")
    found = re.search(r"(\d+)\.\d+$", name)
    if found is None:
        problems.append(f"fulfillment {whole(data.get('id'))} has no order name ({name!r})")
        return []
    number = str(int(found.group(1)))
    if stored_order(session, number) is None:
        problems.append(f"fulfillment {name}: order {number} is not recorded: not applied")
        return []
    life, url = _shipped({"fulfillments": [data]})
    if life is None:
        return []  # a cancelled or failed fulfillment moves nothing
    at = utc_text(data.get("updated_at"))
    if data.get("shipment_status") == "delivered":
        life = OrderStatus.DELIVERED
    return moved(session, number, life, at=at, tracking=usable_tracking(url, number, problems))


def _payment(data: dict[str, Any]) -> str | None:
    """`cod` for a cash on delivery order, else its first gateway's name as a word."""
    names = [str(g) for g in data.get("payment_gateway_names") or [] if g]
    if _cash(data):
        return "cod"
    if not names:
        return None
    word = re.sub(r"[^a-z0-9]+", "_", names[0].lower()).strip("_")[:32]
    return word or None


def _cash(data: dict[str, Any]) -> bool:
    gateways = " ".join(str(g).lower() for g in data.get("payment_gateway_names") or [])
    return "cash on delivery" in gateways or "(cod)" in gateways


def _shipped(data: dict[str, Any]) -> tuple[OrderStatus | None, str | None]:
    """Shipped (or out for delivery, as the carrier says) when a fulfillment exists, with
    its tracking page."""
    status: OrderStatus | None = None
    tracking: str | None = None
    for fulfillment in data.get("fulfillments") or []:
        if not isinstance(fulfillment, dict) or fulfillment.get("status") in ("cancelled", "error"):
            continue
        out = fulfillment.get("shipment_status") == "out_for_delivery"
        if status != OrderStatus.OUT_FOR_DELIVERY:
            status = OrderStatus.OUT_FOR_DELIVERY if out else OrderStatus.SHIPPED
        urls = fulfillment.get("tracking_urls") or [fulfillment.get("tracking_url")]
        url = str(urls[0] or "").strip() if isinstance(urls, list) and urls else ""
        if tracking is None and url:
            tracking = url
    return status, tracking


def _lines(session: Session, items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The order's lines (each at its unit `price`), and `product.upserted` for the
    products the engine lacks."""
    lines: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or whole(item.get("quantity")) < 1:
            continue
        sku = str(item.get("sku") or "").strip() or f"shopify-{whole(item.get('variant_id'))}"
        line: dict[str, Any] = {"sku": sku, "quantity": whole(item["quantity"])}
        price = amount(item.get("price"))
        if price is not None:
            line["unit_price"] = str(price)
        lines.append(line)
        missing_product(
            session, sku, str(item.get("name") or item.get("title") or ""), price, products
        )
    return lines, products


def _delivered_at(data: dict[str, Any]) -> str | None:
    """When the order reached the customer: a fulfillment the carrier marked delivered,
    or a fulfilled cash on delivery order paid (at the door), when it was paid."""
    for fulfillment in data.get("fulfillments") or []:
        if isinstance(fulfillment, dict) and fulfillment.get("shipment_status") == "delivered":
            return utc_text(fulfillment.get("updated_at"))
    fulfilled = data.get("fulfillment_status") == "fulfilled"
    if _cash(data) and fulfilled and data.get("financial_status") == "paid":
        return utc_text(data.get("updated_at"))
    return None


def _number(data: dict[str, Any]) -> str:
    """The order's number as the shop knows it (`order_number`), else its id."""
    return str(whole(data.get("order_number")) or whole(data.get("id")))
