"""The preview page over HTTP: a default customer, a customer search, sample data
labelled as such, and an email whose links and pixel record nothing."""

from __future__ import annotations

import html
import logging
import re
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from engine.project.loader import Project, Secrets, load_project
from engine.store.db import session_scope
from engine.store.models import MessageEvent, Order, OrderItem, Product, Suppression
from engine.track.app import create_app, tracker_of
from tests.conftest import BOTH_DIALECTS
from tests.report.test_reports import NOW, START, Shop, build_shop

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

PASSWORD = "correct horse battery staple"
SECRETS = Secrets(secret="s" * 32, dashboard_password=PASSWORD)
CAMPAIGNS = ["welcome", "thank_you", "price_drop_refund", "holiday_preannounce"]


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def shop(db: Engine) -> Engine:
    """The report history, and c9: an order with an item, never credited."""
    build_shop(db)
    with session_scope(db) as session:
        c9 = Shop(session).customer("c9", "Karim Uddin")
        order = Order(
            external_id="o9", customer_id=c9, placed_at=START, total=Decimal("20"), status="placed"
        )
        session.add(order)
        session.flush()
        product = session.execute(select(Product).where(Product.sku == "BOOK")).scalar_one()
        session.add(
            OrderItem(
                order_id=order.id, product_id=product.id, quantity=2, unit_price=Decimal("10")
            )
        )
    return db


@pytest.fixture
def client(shop: Engine, project: Project) -> Iterator[TestClient]:
    base = project.config.tracking.base_url.rstrip("/")
    app = create_app(shop, lambda: project, SECRETS, clock=lambda: NOW)
    with TestClient(app, base_url=base) as client:
        answer = client.post(
            "/dashboard/login",
            data={"password": PASSWORD},
            headers={"origin": base},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        yield client


def urls(text: str) -> set[str]:
    """Every URL in an attribute or in running text."""
    found = {html.unescape(m) for m in re.findall(r"""(?:href|src)\s*=\s*["']([^"']*)""", text)}
    return found | set(re.findall(r"https?://[^\s<>\"')]+", html.unescape(text)))


def counts(engine: Engine) -> tuple[int, int]:
    with session_scope(engine) as session:
        events = session.execute(select(func.count()).select_from(MessageEvent)).scalar_one()
        suppressed = session.execute(select(func.count()).select_from(Suppression)).scalar_one()
    return events, suppressed


@BOTH_DIALECTS
def test_previewing_and_following_every_link_records_nothing(
    client: TestClient, shop: Engine, project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    base = project.config.tracking.base_url.rstrip("/")
    before = counts(shop)
    seen: set[str] = set()
    for campaign in CAMPAIGNS:
        query = f"campaign={campaign}&customer=c1"
        page = client.get(f"/dashboard/preview?{query}")
        frame = client.get(f"/dashboard/preview/email?{query}")
        assert page.status_code == 200 and frame.status_code == 200, (campaign, frame.text)
        seen |= urls(frame.text) | urls(page.text.split('id="text">', 1)[1])
    ours = sorted(u[len(base) :] for u in seen if u.startswith(base))
    with caplog.at_level(logging.INFO):
        for path in ours:
            client.get(path, follow_redirects=False)
            if path.startswith("/u/"):
                client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert client.portal is not None
        assert client.portal.call(tracker_of(client.app).hits.flush)
    assert "unknown message" not in caplog.text
    assert counts(shop) == before


def test_the_preview_has_no_pixel_and_its_links_go_where_they_lead(
    client: TestClient, project: Project
) -> None:
    base = project.config.tracking.base_url.rstrip("/")
    frame = client.get("/dashboard/preview/email?campaign=thank_you&customer=c1")
    links = [html.unescape(u) for u in re.findall(r'<a\s[^>]*href="([^"]*)"', frame.text)]
    assert str(project.config.shop.url) in links
    assert not [u for u in urls(frame.text) if u.startswith(f"{base}/")]
    assert 'class="pixel"' not in frame.text


def found_ids(page: str) -> list[str]:
    section = page.split('id="found"', 1)[1].split("</section>", 1)[0]
    return re.findall(r"customer=([^\"&]+)\"", section)


@BOTH_DIALECTS
@pytest.mark.parametrize(
    ("find", "expected"),
    [
        pytest.param("rahima", ["c1"], id="name, any case"),
        pytest.param("KARIM u", ["c9"], id="part of a name"),
        pytest.param("C2@Example.COM", ["c2"], id="email"),
        pytest.param("c9", ["c9"], id="shop id"),
        pytest.param("%", [], id="a wildcard is a character"),
        pytest.param("c_", [], id="so is an underscore"),
        pytest.param("' OR 1=1 --", [], id="quotes are data"),
    ],
)
def test_a_customer_is_found_by_name_email_or_id(
    client: TestClient, find: str, expected: list[str]
) -> None:
    page = client.get("/dashboard/preview", params={"campaign": "welcome", "find": find})
    assert page.status_code == 200, page.text
    assert found_ids(page.text) == expected
    if not expected:
        assert "name, email or id contains" in page.text


def test_a_search_lists_a_bounded_number_exact_id_first(client: TestClient, shop: Engine) -> None:
    with session_scope(shop) as session:
        people = Shop(session)
        for n in range(30):
            people.customer(f"x{n}", f"Bulk {n:02d}")
    page = client.get("/dashboard/preview", params={"find": "bulk"})
    assert len(found_ids(page.text)) == 20
    assert "Only the first 20 are shown" in page.text
    assert found_ids(client.get("/dashboard/preview", params={"find": "x2"}).text)[0] == "x2"


def test_the_search_needs_a_login(client: TestClient, shop: Engine, project: Project) -> None:
    assert found_ids(client.get("/dashboard/preview?find=rahima").text) == ["c1"]
    app = create_app(shop, lambda: project, SECRETS, clock=lambda: NOW)
    with TestClient(app) as stranger:
        page = stranger.get("/dashboard/preview?find=rahima", follow_redirects=False)
    assert page.status_code == 303 and "Rahima" not in page.text


@pytest.mark.parametrize(
    ("campaign", "customer"),
    [
        pytest.param("thank_you", "c3", id="the latest recipient"),
        pytest.param("price_drop_refund", "c1", id="a customer who was credited"),
    ],
)
def test_without_a_customer_one_who_got_the_email_is_shown(
    client: TestClient, campaign: str, customer: str
) -> None:
    page = client.get(f"/dashboard/preview?campaign={campaign}")
    assert page.status_code == 200, page.text
    assert f'name="customer" value="{customer}"' in page.text
    assert 'id="subject"' in page.text and "Sample data" not in page.text
    assert f"customer={customer}" in page.text.split("<iframe", 1)[1]


def test_a_price_drop_preview_shows_the_customers_real_credit(client: TestClient) -> None:
    """c1 was credited 3.00 last (on a 10.00 book): the preview says that, not sample."""
    page = client.get("/dashboard/preview?campaign=price_drop_refund&customer=c1")
    assert page.status_code == 200, page.text
    text = page.text.split('id="text">', 1)[1]
    assert "3.00" in text and "7.00" in text and "Sample data" not in page.text


def test_a_price_drop_preview_without_a_credit_is_labelled_sample_data(client: TestClient) -> None:
    page = client.get("/dashboard/preview?campaign=price_drop_refund&customer=c9")
    assert page.status_code == 200, page.text
    label = re.search(r'id="sample"[^>]*>(.*?)</p>', page.text, re.S)
    assert label is not None, page.text
    assert "Sample data" in label.group(1) and "never credited" in label.group(1)
    # the same customer's thank-you is their own data, and says nothing of samples
    page = client.get("/dashboard/preview?campaign=thank_you&customer=c9")
    assert page.status_code == 200 and 'id="sample"' not in page.text


def test_a_campaign_nobody_was_sent_labels_its_example_as_sample(client: TestClient) -> None:
    page = client.get("/dashboard/preview?campaign=holiday_preannounce")
    assert page.status_code == 200, page.text
    assert 'id="sample"' in page.text and "nobody has been sent holiday_preannounce" in page.text
