"""Cash on delivery's order life over real webhooks, on SQLite and PostgreSQL.

WooCommerce and Shopify deliveries (tests/fixtures/connectors; their README's "Order
life" section says where each shape comes from) are signed and posted to the running
app. The app's clock reads a few seconds after the change each delivery reports, as if
it arrived then, and the planner runs at explicit times: an order placed, handed to
the courier, delivered or refused at the door gets the emails its life calls for,
once.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.deliver.compose import Composer, Outgoing
from engine.plan.planner import plan
from engine.project.loader import Project, Secrets, load_project
from engine.store.models import Customer, Message, MessageKind, Order, OrderStatus
from engine.track.app import create_app
from tests import store_fixtures
from tests.track.test_webhooks_woocommerce import settled, sign
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

FIXTURES = Path(__file__).parents[1] / "fixtures" / "connectors"
WOO, SHOPIFY = FIXTURES / "woocommerce", FIXTURES / "shopify"
WOO_SECRET = "wc-webhook-secret-0123456789"
SHOPIFY_SECRET = "shpss-webhook-secret-0123456789"
KEY = "shop-api-key-0123456789abcdef"
TRACKING_SECRET = "s" * 32
CAMPAIGNS = ["thank_you", "order_shipped", "order_returned"]
ARRIVES_AFTER = timedelta(seconds=5)  # between a change in the shop and its delivery
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)

# Order 1287 (WooCommerce, Nusrat Jahan, customer wc-17), as its fixtures date it.
WOO_SHIPPED = datetime(2024, 10, 6, 10, 5, 40, tzinfo=UTC)
WOO_DELIVERED = datetime(2024, 10, 8, 11, 40, 5, tzinfo=UTC)
WOO_REFUSED = datetime(2024, 10, 7, 13, 12, 3, tzinfo=UTC)
WOO_TRACKING = "https://courier.example.com/track/SFC2410061287"
# Order 1288 (WooCommerce, a guest paying by bKash).
BKASH_SHIPPED = datetime(2024, 10, 7, 5, 20, 16, tzinfo=UTC)
# Order #1042 (Shopify, Tahmina Akter).
SHOPIFY_SHIPPED = datetime(2024, 10, 7, 12, 2, 11, tzinfo=UTC)
SHOPIFY_REFUSED = datetime(2024, 10, 8, 13, 12, 40, tzinfo=UTC)
SHOPIFY_TRACKING = "https://courier.example.com/track/SFC2410071234"


def recorded(folder: Path) -> dict[str, dict[str, str]]:
    """Each fixture's request headers, by file name (without the signature)."""
    headers: dict[str, dict[str, str]] = {}
    for name in ("headers.json", "headers_order_life.json"):
        headers |= json.loads((folder / name).read_text(encoding="utf-8"))
    return headers


WOO_HEADERS, SHOPIFY_HEADERS = recorded(WOO), recorded(SHOPIFY)


@dataclass
class Clock:
    """What the app reads as the time: just after the change the last delivery reports."""

    now: datetime = datetime(2024, 10, 1, tzinfo=UTC)

    def arrives(self, changed: datetime) -> None:
        """The next delivery reaches the app just after `changed` (the clock never goes back)."""
        self.now = max(self.now, changed + ARRIVES_AFTER)


@dataclass
class Shop:
    """The running app (its client), its store and project, and the clock it reads."""

    engine: Engine
    root: Path
    http: httpx.Client
    clock: Clock
    loaded: Project | None = field(default=None, repr=False)

    @property
    def project(self) -> Project:
        if self.loaded is None:
            self.loaded = load_project(self.root / "config.yaml")
        return self.loaded

    def add_campaign(self, body: dict[str, Any]) -> None:
        """Write and enable one more campaign in the shop's project."""
        (self.root / "campaigns" / f"{body['name']}.yaml").write_text(yaml.safe_dump(body))
        config = yaml.safe_load((self.root / "config.yaml").read_text())
        config["campaigns"].append(body["name"])
        (self.root / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        self.loaded = None


@pytest.fixture
def shop(fresh_store: Engine, project_dir: Path) -> Iterator[Shop]:
    """The shipped project with the order-life campaigns on, served over HTTP."""
    config = yaml.safe_load((project_dir / "config.yaml").read_text())
    config["campaigns"] = list(CAMPAIGNS)
    (project_dir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    secrets = Secrets(
        secret=TRACKING_SECRET,
        api_key=KEY,
        woocommerce_secret=WOO_SECRET,
        shopify_secret=SHOPIFY_SECRET,
    )
    project, clock = load_project(project_dir / "config.yaml"), Clock()
    app = create_app(fresh_store, lambda: project, secrets, clock=lambda: clock.now)
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Shop(fresh_store, project_dir, http, clock)


# ---------------------------------------------------------------- deliveries


def payload(folder: Path, name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / name).read_text(encoding="utf-8"))
    return data | changes


@dataclass(frozen=True)
class Platform:
    """How a platform's deliveries are addressed, signed and dated."""

    name: str
    folder: Path
    secret: str
    delivery_header: str
    signature_header: str
    changed: str  # the payload's field for when it changed

    @property
    def headers(self) -> dict[str, dict[str, str]]:
        return WOO_HEADERS if self.name == "woocommerce" else SHOPIFY_HEADERS


WOOCOMMERCE = Platform("woocommerce", WOO, WOO_SECRET, "X-WC-Webhook-Delivery-ID",
                       "X-WC-Webhook-Signature", "date_modified_gmt")  # fmt: skip
SHOPIFY_APP = Platform("shopify", SHOPIFY, SHOPIFY_SECRET, "X-Shopify-Webhook-Id",
                       "X-Shopify-Hmac-Sha256", "updated_at")  # fmt: skip


def post(
    shop: Shop,
    platform: Platform,
    name: str,
    body: dict[str, Any] | None = None,
    delivery: str | None = None,
) -> httpx.Response:
    """POST a fixture (or `body` with its headers), signed, arriving just after it changed."""
    data = body if body is not None else payload(platform.folder, name)
    changed = datetime.fromisoformat(data[platform.changed])
    shop.clock.arrives(changed if changed.tzinfo else changed.replace(tzinfo=UTC))
    headers = dict(platform.headers[name])
    if delivery:
        headers[platform.delivery_header] = delivery
    raw = json.dumps(data).encode()
    headers[platform.signature_header] = sign(raw, platform.secret)
    return shop.http.post(f"/webhooks/{platform.name}", content=raw, headers=headers)


def take(
    shop: Shop,
    platform: Platform,
    name: str,
    body: dict[str, Any] | None = None,
    delivery: str | None = None,
) -> tuple[str, list[str]]:
    """Deliver, and wait until the app has applied it: its status and problems."""
    answer = post(shop, platform, name, body, delivery)
    assert answer.status_code == 200, answer.text
    delivery = delivery or platform.headers[name][platform.delivery_header]
    return settled(shop.engine, platform.name, delivery)


def post_woo(shop: Shop, name: str, body: dict[str, Any] | None = None,
             delivery: str | None = None) -> httpx.Response:  # fmt: skip
    return post(shop, WOOCOMMERCE, name, body, delivery)


def woo(shop: Shop, name: str, body: dict[str, Any] | None = None,
        delivery: str | None = None) -> tuple[str, list[str]]:  # fmt: skip
    return take(shop, WOOCOMMERCE, name, body, delivery)


def post_shopify(shop: Shop, name: str, body: dict[str, Any] | None = None,
                 delivery: str | None = None) -> httpx.Response:  # fmt: skip
    return post(shop, SHOPIFY_APP, name, body, delivery)


def shopify(shop: Shop, name: str, body: dict[str, Any] | None = None,
            delivery: str | None = None) -> tuple[str, list[str]]:  # fmt: skip
    return take(shop, SHOPIFY_APP, name, body, delivery)


def agrees(shop: Shop, customer: str, address: str) -> None:
    """The customer ticked "email me": the shop says so through the events API
    (WooCommerce's order has no consent field)."""
    event = {
        "id": f"consent-{customer}",
        "type": "customer.upserted",
        "customer": {"id": customer, "email": address, "marketing_consent": True},
    }
    answer = shop.http.post("/api/events", json=[event], headers={"authorization": f"Bearer {KEY}"})
    assert (answer.status_code, answer.json()["applied"]) == (200, 1), answer.text


def carrier_says(status: str, at: str) -> dict[str, Any]:
    """#1042 in transit, as Shopify sends it once the courier reports `status` at `at`."""
    body = payload(SHOPIFY, "orders_updated_cod_in_transit.json", updated_at=at)
    body["fulfillments"] = [body["fulfillments"][0] | {"shipment_status": status, "updated_at": at}]
    return body


def second_order(name: str, modified: str) -> dict[str, Any]:
    """Order 1295, customer 17's next cash on delivery order, as `name` shows 1287;
    `modified` is its `date_modified_gmt`."""
    local = (datetime.fromisoformat(modified) + 6 * H).isoformat()
    tracking = {"id": 49012, "key": "tracking_url", "value": f"{WOO_TRACKING[:-4]}1295"}
    return payload(WOO, name) | {
        "id": 1295,
        "number": "1295",
        "order_key": "wc_order_Rb8Tn2Lp5Wq1Z",
        "date_created": "2024-10-12T10:10:00",
        "date_created_gmt": "2024-10-12T04:10:00",
        "date_modified": local,
        "date_modified_gmt": modified,
        "meta_data": [tracking],
    }


# ---------------------------------------------------------------- what the engine holds


def stored(shop: Shop, number: str) -> Order:
    with Session(shop.engine) as session:
        found = session.execute(select(Order).where(col(Order.external_id) == number)).scalar()
    assert found is not None, f"order {number} was not recorded"
    return found


def status_of(shop: Shop, number: str) -> str | None:
    """The order's status, None when it was never recorded."""
    with Session(shop.engine) as session:
        query = select(col(Order.status)).where(col(Order.external_id) == number)
        return session.execute(query).scalar()


def life(shop: Shop, number: str) -> tuple[Any, ...]:
    """An order's status, when it was shipped, delivered and returned, and its tracking page."""
    order = stored(shop, number)
    return (
        order.status,
        order.shipped_at,
        order.delivered_at,
        order.returned_at,
        order.tracking_url,
    )


def buyer(shop: Shop, number: str) -> Customer:
    with Session(shop.engine) as session:
        return session.get_one(Customer, stored(shop, number).customer_id)


def planned(shop: Shop, at: datetime) -> dict[str, int]:
    """Run a planning pass at `at`: how many emails each campaign queued."""
    report = plan(shop.engine, shop.project, at).as_dict()["campaigns"]
    assert all("error" not in result for result in report.values()), report
    return {name: result["queued"] for name, result in report.items()}


def messages(shop: Shop, campaign: str) -> list[Message]:
    with Session(shop.engine) as session:
        query = select(Message).where(col(Message.campaign) == campaign).order_by(col(Message.id))
        return list(session.execute(query).scalars())


def emailed(shop: Shop, campaign: str) -> list[str]:
    """The orders the campaign's emails are about, in the order they were queued."""
    with Session(shop.engine) as session:
        query = (
            select(col(Order.external_id))
            .join(Message, col(Message.order_id) == col(Order.id))
            .where(col(Message.campaign) == campaign)
            .order_by(col(Message.id))
        )
        return list(session.execute(query).scalars())


def plain_text(shop: Shop, message: Message, at: datetime) -> str:
    """The message's text part, composed as it would be sent."""
    composer = Composer(shop.project, Secrets(secret=TRACKING_SECRET))
    with Session(shop.engine) as session:
        [outgoing] = composer.prepare(session, [message], now=at)
    assert isinstance(outgoing, Outgoing), outgoing
    parsed = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


# ---------------------------------------------------------------- WooCommerce


def test_a_cod_order_is_shipped_with_its_tracking_then_delivered_and_thanked(shop: Shop) -> None:
    assert woo(shop, "order_cod_processing.json") == ("applied", [])
    agrees(shop, "wc-17", "nusrat.jahan@example.com")
    placed = stored(shop, "1287")
    assert (placed.status, placed.payment_method, placed.shipped_at) == (
        OrderStatus.PLACED,
        "cod",
        None,
    )
    assert woo(shop, "order_cod_shipped.json") == ("applied", [])
    assert life(shop, "1287") == (OrderStatus.SHIPPED, WOO_SHIPPED, None, None, WOO_TRACKING)
    assert stored(shop, "1287").payment_method == "cod"

    # order_shipped waits 10 minutes after the courier took the parcel, and goes once
    assert planned(shop, WOO_SHIPPED + 9 * M)["order_shipped"] == 0
    assert planned(shop, WOO_SHIPPED + 10 * M)["order_shipped"] == 1
    assert planned(shop, WOO_SHIPPED + 40 * M)["order_shipped"] == 0
    [shipping] = messages(shop, "order_shipped")
    assert (emailed(shop, "order_shipped"), shipping.kind) == (["1287"], MessageKind.TRANSACTIONAL)
    text = plain_text(shop, shipping, WOO_SHIPPED + 10 * M)
    assert "You pay on delivery: please keep" in text
    assert f"Track your parcel: {WOO_TRACKING}" in text
    assert "already paid" not in text

    assert woo(shop, "order_cod_completed.json") == ("applied", [])
    assert life(shop, "1287") == (
        OrderStatus.DELIVERED,
        WOO_SHIPPED,
        WOO_DELIVERED,
        None,
        WOO_TRACKING,
    )
    assert planned(shop, WOO_DELIVERED + 2 * H - M)["thank_you"] == 0
    assert planned(shop, WOO_DELIVERED + 2 * H) == {
        "thank_you": 1,
        "order_shipped": 0,
        "order_returned": 0,
    }
    assert emailed(shop, "thank_you") == ["1287"]
    assert emailed(shop, "order_shipped") == ["1287"]


def test_a_cod_parcel_refused_at_the_door_is_no_purchase_and_gets_a_follow_up(
    shop: Shop,
) -> None:
    woo(shop, "order_cod_processing.json")
    agrees(shop, "wc-17", "nusrat.jahan@example.com")
    woo(shop, "order_cod_shipped.json")
    assert (buyer(shop, "1287").orders_count, buyer(shop, "1287").total_spent) == (
        1,
        Decimal("3500.00"),
    )
    # the shop cancels the order once the courier brings the refused parcel back
    assert woo(shop, "order_cod_cancelled_after_shipping.json") == ("applied", [])
    assert life(shop, "1287") == (OrderStatus.REFUSED, WOO_SHIPPED, None, WOO_REFUSED, WOO_TRACKING)
    customer = buyer(shop, "1287")
    assert (customer.orders_count, customer.total_spent, customer.first_order_at) == (
        0,
        Decimal("0"),
        None,
    )
    assert planned(shop, WOO_REFUSED + D - M)["order_returned"] == 0
    assert planned(shop, WOO_REFUSED + D) == {
        "thank_you": 0,
        "order_shipped": 0,
        "order_returned": 1,
    }
    # days later, when a delivered order would long have been thanked
    assert planned(shop, WOO_REFUSED + 3 * D)["thank_you"] == 0
    assert emailed(shop, "order_returned") == ["1287"]
    assert (emailed(shop, "thank_you"), emailed(shop, "order_shipped")) == ([], [])
    [follow_up] = messages(shop, "order_returned")
    assert follow_up.kind == MessageKind.MARKETING


def test_a_prepaid_order_is_told_nothing_is_due_and_payment_narrows_a_campaign(
    shop: Shop,
) -> None:
    for payment in ("cod", "prepaid"):
        shop.add_campaign(
            {
                "name": f"shipped_{payment}",
                "kind": "transactional",
                "trigger": {"type": "order_shipped", "payment": payment, "delay": "10m"},
                "segment": "everyone",
                "template": "order_shipped",
                "subject": "On its way",
            }
        )
    assert woo(shop, "order_bkash_on_hold.json") == ("applied", [])
    assert woo(shop, "order_bkash_shipped.json") == ("applied", [])
    bkash = stored(shop, "1288")
    assert (bkash.status, bkash.payment_method, bkash.shipped_at, bkash.tracking_url) == (
        OrderStatus.SHIPPED,
        "bkash",
        BKASH_SHIPPED,
        "https://courier.example.com/track/PTH2410071288",  # the Shipment Tracking item's link
    )
    woo(shop, "order_cod_processing.json")
    woo(shop, "order_cod_shipped.json")
    assert planned(shop, BKASH_SHIPPED + 10 * M) == {
        "thank_you": 0,
        "order_shipped": 2,
        "order_returned": 0,
        "shipped_cod": 1,
        "shipped_prepaid": 1,
    }
    assert sorted(emailed(shop, "order_shipped")) == ["1287", "1288"]
    assert emailed(shop, "shipped_cod") == ["1287"]
    assert emailed(shop, "shipped_prepaid") == ["1288"]
    [prepaid] = messages(shop, "shipped_prepaid")
    text = plain_text(shop, prepaid, BKASH_SHIPPED + 10 * M)
    assert "This order is already paid, so there is nothing to pay the courier." in text
    assert "You pay on delivery" not in text
    assert "Track your parcel: https://courier.example.com/track/PTH2410071288" in text


# ---------------------------------------------------------------- Shopify


def test_a_shopify_cod_order_in_transit_out_for_delivery_then_delivered(shop: Shop) -> None:
    assert shopify(shop, "orders_create_cod.json") == ("applied", [])
    placed = stored(shop, "1042")
    assert (placed.status, placed.payment_method) == (OrderStatus.PLACED, "cod")
    assert shopify(shop, "orders_updated_cod_in_transit.json") == ("applied", [])
    assert life(shop, "1042") == (
        OrderStatus.SHIPPED,
        SHOPIFY_SHIPPED,
        None,
        None,
        SHOPIFY_TRACKING,
    )
    assert planned(shop, SHOPIFY_SHIPPED + 10 * M)["order_shipped"] == 1
    text = plain_text(shop, messages(shop, "order_shipped")[0], SHOPIFY_SHIPPED + 10 * M)
    assert "You pay on delivery: please keep" in text
    assert f"Track your parcel: {SHOPIFY_TRACKING}" in text

    out = carrier_says("out_for_delivery", "2024-10-08T09:30:05+06:00")
    assert shopify(shop, "orders_updated_cod_in_transit.json", out, "w-out") == ("applied", [])
    assert life(shop, "1042")[:2] == (OrderStatus.OUT_FOR_DELIVERY, SHOPIFY_SHIPPED)
    delivered = carrier_says("delivered", "2024-10-08T13:05:40+06:00")
    assert shopify(shop, "orders_updated_cod_in_transit.json", delivered, "w-in") == (
        "applied",
        [],
    )
    at_the_door = datetime(2024, 10, 8, 7, 5, 40, tzinfo=UTC)
    assert life(shop, "1042") == (
        OrderStatus.DELIVERED,
        SHOPIFY_SHIPPED,
        at_the_door,
        None,
        SHOPIFY_TRACKING,
    )
    # the customer subscribed in Shopify: thanked two hours after the parcel arrived
    assert planned(shop, at_the_door + 2 * H) == {
        "thank_you": 1,
        "order_shipped": 0,
        "order_returned": 0,
    }
    assert (emailed(shop, "thank_you"), emailed(shop, "order_shipped")) == (["1042"], ["1042"])


def test_a_shopify_order_cancelled_after_fulfilment_was_refused(shop: Shop) -> None:
    shopify(shop, "orders_create_cod.json")
    shopify(shop, "orders_updated_cod_in_transit.json")
    assert buyer(shop, "1042").orders_count == 1
    assert shopify(shop, "orders_cancelled_after_fulfilment.json") == ("applied", [])
    assert life(shop, "1042") == (
        OrderStatus.REFUSED,
        SHOPIFY_SHIPPED,
        None,
        SHOPIFY_REFUSED,
        SHOPIFY_TRACKING,
    )
    assert buyer(shop, "1042").orders_count == 0
    assert planned(shop, SHOPIFY_REFUSED + D) == {
        "thank_you": 0,
        "order_shipped": 0,
        "order_returned": 1,
    }
    assert emailed(shop, "order_returned") == ["1042"]


# ---------------------------------------------------------------- repeats and late arrivals


def test_a_delivery_sent_again_or_a_stale_status_changes_nothing(shop: Shop) -> None:
    woo(shop, "order_cod_processing.json")
    woo(shop, "order_cod_shipped.json")
    shipped = life(shop, "1287")
    again = post_woo(shop, "order_cod_shipped.json")  # WooCommerce retries: the same id
    assert again.json() == {"ok": True, "kept": False, "duplicate": True}
    # saved again in the shop (a note added): a new delivery of the same status
    resaved = payload(
        WOO,
        "order_cod_shipped.json",
        date_modified="2024-10-06T18:00:00",
        date_modified_gmt="2024-10-06T12:00:00",
    )
    assert woo(shop, "order_cod_shipped.json", resaved, "resaved") == ("applied", [])
    # WooCommerce's queue sends the older "processing" after "shipped"
    late = payload(WOO, "order_cod_processing.json")
    assert woo(shop, "order_cod_processing.json", late, "late") == ("applied", [])
    assert life(shop, "1287") == shipped
    assert planned(shop, WOO_SHIPPED + 10 * M)["order_shipped"] == 1
    assert planned(shop, datetime(2024, 10, 6, 12, 30, tzinfo=UTC))["order_shipped"] == 0

    woo(shop, "order_cod_completed.json")
    delivered = life(shop, "1287")
    for status in ("out-for-delivery", "shipped", "processing"):
        stale = payload(WOO, "order_cod_shipped.json", status=status)
        assert woo(shop, "order_cod_shipped.json", stale, f"stale-{status}") == ("applied", [])
        assert life(shop, "1287") == delivered, status
    assert emailed(shop, "order_shipped") == ["1287"]


def test_shopify_retries_and_out_of_order_deliveries_change_nothing(shop: Shop) -> None:
    shopify(shop, "orders_create_cod.json")
    shopify(shop, "orders_updated_cod_in_transit.json")
    shipped = life(shop, "1042")
    again = post_shopify(shop, "orders_updated_cod_in_transit.json")
    assert again.json() == {"ok": True, "kept": False, "duplicate": True}
    # the orders/create delivery retried after the order was already in transit
    assert shopify(shop, "orders_create_cod.json", None, "w-create-retry") == ("applied", [])
    assert life(shop, "1042") == shipped
    shopify(shop, "orders_cancelled_after_fulfilment.json")
    refused = life(shop, "1042")
    # a carrier update sent before the cancellation, arriving after it
    delivered = carrier_says("delivered", "2024-10-08T13:05:40+06:00")
    assert shopify(shop, "orders_updated_cod_in_transit.json", delivered, "w-late") == (
        "applied",
        [],
    )
    assert life(shop, "1042") == refused


def test_a_customer_who_refuses_a_second_parcel_gets_no_second_follow_up(shop: Shop) -> None:
    woo(shop, "order_cod_processing.json")
    agrees(shop, "wc-17", "nusrat.jahan@example.com")
    woo(shop, "order_cod_shipped.json")
    woo(shop, "order_cod_cancelled_after_shipping.json")
    assert planned(shop, WOO_REFUSED + D)["order_returned"] == 1
    woo(shop, "order_cod_processing.json", second_order("order_cod_processing.json", "2024-10-12T04:10:01"), "2-placed")  # fmt: skip
    woo(shop, "order_cod_shipped.json", second_order("order_cod_shipped.json", "2024-10-13T06:00:00"), "2-shipped")  # fmt: skip
    refused = second_order("order_cod_cancelled_after_shipping.json", "2024-10-14T10:30:00")
    assert woo(shop, "order_cod_cancelled_after_shipping.json", refused, "2-refused") == (
        "applied",
        [],
    )
    second_refusal = datetime(2024, 10, 14, 10, 30, tzinfo=UTC)
    second = stored(shop, "1295")
    assert (second.status, second.returned_at) == (OrderStatus.REFUSED, second_refusal)
    assert planned(shop, second_refusal + D)["order_returned"] == 0
    assert planned(shop, second_refusal + 2 * D)["order_returned"] == 0
    assert emailed(shop, "order_returned") == ["1287"]


# ---------------------------------------------------------------- refusals remembered, amounts due,
# odd tracking addresses, a late first delivery


def test_a_refusal_still_counts_once_the_parcel_is_back_at_the_shop(shop: Shop) -> None:
    """Refused, then marked returned when the courier brings the parcel back (the shop's
    order-status plugin has both statuses): it was still a refusal at the door, so a
    second refusal gets no follow-up."""
    woo(shop, "order_cod_processing.json")
    agrees(shop, "wc-17", "nusrat.jahan@example.com")
    woo(shop, "order_cod_shipped.json")
    at_the_door = payload(WOO, "order_cod_shipped.json", status="refused")
    at_the_door |= {"date_modified_gmt": "2024-10-07T09:40:00"}
    assert woo(shop, "order_cod_shipped.json", at_the_door, "1-refused") == ("applied", [])
    back = payload(WOO, "order_cod_shipped.json", status="returned")
    back |= {"date_modified_gmt": "2024-10-08T06:15:00"}
    assert woo(shop, "order_cod_shipped.json", back, "1-returned") == ("applied", [])
    assert life(shop, "1287")[0] == OrderStatus.RETURNED
    assert stored(shop, "1287").delivered_at is None  # never reached the customer
    woo(shop, "order_cod_processing.json", second_order("order_cod_processing.json", "2024-10-12T04:10:01"), "2-placed")  # fmt: skip
    woo(shop, "order_cod_shipped.json", second_order("order_cod_shipped.json", "2024-10-13T06:00:00"), "2-shipped")  # fmt: skip
    refused = second_order("order_cod_cancelled_after_shipping.json", "2024-10-14T10:30:00")
    woo(shop, "order_cod_cancelled_after_shipping.json", refused, "2-refused")
    assert planned(shop, datetime(2024, 10, 15, 10, 30, tzinfo=UTC))["order_returned"] == 0
    assert emailed(shop, "order_returned") == []


def test_the_cod_shipping_email_asks_for_what_the_courier_collects(shop: Shop) -> None:
    """Order 1287's customer pays its `total`, 3210.00 (after the eid10 coupon, with
    60.00 shipping), at the door; the email tells her how much to keep ready."""
    woo(shop, "order_cod_processing.json")
    agrees(shop, "wc-17", "nusrat.jahan@example.com")
    woo(shop, "order_cod_shipped.json")
    planned(shop, WOO_SHIPPED + 10 * M)
    [shipping] = messages(shop, "order_shipped")
    text = plain_text(shop, shipping, WOO_SHIPPED + 10 * M)
    assert "please keep ৳3,210.00 ready for the courier" in text


def test_a_tracking_address_the_engine_cannot_keep_does_not_stop_the_shipping(
    shop: Shop,
) -> None:
    """A tracking address typed by hand with a space in it: order 1287 still moves to
    shipped, and order 1296, first heard of on its way, is still recorded; the address
    is left out (or reported), not the order."""
    woo(shop, "order_cod_processing.json")
    typed = payload(WOO, "order_cod_shipped.json")
    typed["meta_data"] = [
        *typed["meta_data"][:1],
        {"id": 48236, "key": "tracking_url", "value": "https://courier.example.com/track/SFC 2410061287"},
    ]  # fmt: skip
    woo(shop, "order_cod_shipped.json", typed)
    woo(shop, "order_cod_shipped.json", typed | {"id": 1296, "number": "1296"}, "first-seen")
    assert (status_of(shop, "1287"), status_of(shop, "1296")) == (
        OrderStatus.SHIPPED,
        OrderStatus.SHIPPED,
    )


def test_an_order_first_seen_on_its_way_keeps_when_it_was_shipped(shop: Shop) -> None:
    """The webhook was set up after order 1287 was placed: its first delivery is the
    "shipped" one, and it reaches the app an hour late (WooCommerce retried). The order
    was shipped when WooCommerce says, not when the engine heard of it."""
    shop.clock.arrives(WOO_SHIPPED + H)
    assert woo(shop, "order_cod_shipped.json") == ("applied", [])
    assert life(shop, "1287") == (OrderStatus.SHIPPED, WOO_SHIPPED, None, None, WOO_TRACKING)


def test_the_couriers_news_by_shopify_fulfillment_webhooks(shop: Shop) -> None:
    """`fulfillments/update` (the carrier's status of one fulfillment, named `#1042.1`)
    moves the recorded order; one of an order never recorded is a problem, not an order."""
    shopify(shop, "orders_create_cod.json")
    shopify(shop, "orders_updated_cod_in_transit.json")
    name = "fulfillments_update_out_for_delivery.json"
    assert shopify(shop, name) == ("applied", [])
    assert life(shop, "1042")[:2] == (OrderStatus.OUT_FOR_DELIVERY, SHOPIFY_SHIPPED)
    delivered = payload(SHOPIFY, name) | {
        "shipment_status": "delivered",
        "updated_at": "2024-10-08T13:05:40+06:00",
    }
    assert shopify(shop, name, delivered, "f-delivered") == ("applied", [])
    at_the_door = datetime(2024, 10, 8, 7, 5, 40, tzinfo=UTC)
    assert life(shop, "1042")[:3] == (OrderStatus.DELIVERED, SHOPIFY_SHIPPED, at_the_door)
    unknown = payload(SHOPIFY, name) | {"name": "#2077.1"}
    assert shopify(shop, name, unknown, "f-unknown") == (
        "problem",
        ["fulfillment #2077.1: order 2077 is not recorded: not applied"],
    )
    with Session(shop.engine) as session:
        assert (
            session.execute(select(Order).where(col(Order.external_id) == "2077")).first() is None
        )


def test_a_corrected_tracking_page_alone_is_kept(shop: Shop) -> None:
    """The shop fixes the courier's link on a shipped order: the status stays, the page
    changes, and no second shipping email is planned."""
    woo(shop, "order_cod_processing.json")
    woo(shop, "order_cod_shipped.json")
    corrected = "https://courier.example.com/track/SFC2410061287-B"
    data = payload(WOO, "order_cod_shipped.json", date_modified_gmt="2024-10-06T12:00:00")
    data["meta_data"] = [
        m | {"value": corrected} if m.get("key") == "tracking_url" else m for m in data["meta_data"]
    ]
    assert woo(shop, "order_cod_shipped.json", data, "link-fixed") == ("applied", [])
    assert life(shop, "1287") == (OrderStatus.SHIPPED, WOO_SHIPPED, None, None, corrected)
    assert planned(shop, WOO_SHIPPED + 10 * M)["order_shipped"] == 1
    assert planned(shop, WOO_SHIPPED + H)["order_shipped"] == 0
