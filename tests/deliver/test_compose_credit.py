"""The store-credit reminder composed as the customer gets it, and previewed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.compose import Composer
from engine.deliver.preview import preview_customer, preview_message
from engine.intake import shop
from engine.project.loader import Project, Secrets, load_project
from engine.render.renderer import Renderer
from engine.store.models import Credit
from tests.deliver.test_compose import SECRET, parse, prepare_one
from tests.render.test_context import NOW, fill_shop, queue

EXPIRES = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)  # 6 December in Dhaka


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def session(sqlite_store: Engine) -> Iterator[Session]:
    with Session(sqlite_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


def give(session: Session, customer_id: int, amount: str, expires: datetime | None) -> None:
    session.add(
        Credit(dedupe_key=f"test:{customer_id}:{amount}", customer_id=customer_id,
               amount=Decimal(amount), reason="a reward", created_at=NOW - timedelta(days=40),
               expires_at=expires)
    )  # fmt: skip
    session.flush()


def test_the_reminder_tells_the_balance_and_when_some_of_it_expires(
    project: Project, session: Session
) -> None:
    data = fill_shop(session)
    give(session, data.rahima, "200.00", None)
    give(session, data.rahima, "75.25", EXPIRES)
    composer = Composer(project, Secrets(secret=SECRET), renderer=Renderer.for_project(project))
    email = parse(prepare_one(composer, session, queue(session, "credit_reminder", data.rahima)))
    assert email["Subject"] == "রহিমা, আপনার ২৭৫.২৫৳ স্টোর ক্রেডিট জমা আছে"
    text = email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "আপনার স্টোর ক্রেডিট: ২৭৫.২৫৳" in text
    assert "এর মধ্যে ৬ ডিসেম্বর, ২০২৬ তারিখে মেয়াদ শেষ হবে: ৭৫.২৫৳" in text
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "৭৫.২৫৳" in html


def test_the_preview_is_of_a_customer_with_credit_even_without_orders(
    project: Project, session: Session
) -> None:
    data = fill_shop(session)
    nobody = shop.upsert_customer(
        session, external_id="c3", email="lina@example.com", name="Lina", locale="en", now=NOW
    )
    assert nobody.id is not None
    give(session, nobody.id, "42.00", EXPIRES)
    # Nobody got it yet: the preview is of the customer credited last (Sam's refund).
    assert preview_customer(session, project, "credit_reminder") == data.sam
    message = preview_message(session, project, "credit_reminder", nobody.id, now=NOW)
    assert (message.order_id, message.campaign) == (None, "credit_reminder")
    composer = Composer(project, Secrets(secret=SECRET), renderer=Renderer.for_project(project))
    email = parse(prepare_one(composer, session, message))
    assert email["Subject"] == "Lina, you have ৳42.00 of store credit"
