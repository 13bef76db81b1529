"""Coupons in the shipped emails: the message's own code, its value and expiry, per language."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.compose import Composer, Unsendable
from engine.intake import shop
from engine.project.loader import Project, Secrets, load_project
from engine.render.formatting import format_day
from engine.render.renderer import Renderer
from engine.store.models import Coupon, Message
from tests.deliver.test_compose import SECRET, parse, prepare_one
from tests.render.test_context import NOW


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def composer(project: Project) -> Composer:
    return Composer(project, Secrets(secret=SECRET), renderer=Renderer.for_project(project))


@pytest.fixture
def session(sqlite_store: Engine) -> Iterator[Session]:
    with Session(sqlite_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


def customer(session: Session, name: str, locale: str) -> int:
    row = shop.upsert_customer(session, external_id=name, email=f"{name}@example.com",
                               name=f"{name.title()} Rahman", locale=locale,
                               marketing_consent=True, now=NOW - timedelta(days=30))  # fmt: skip
    shop.upsert_product(session, sku="TEA-1", name="Tea", price="420", now=NOW - timedelta(days=60))
    order = shop.record_order(session, external_id=f"{name}-1", customer_id=name,
                              items=[shop.Line("TEA-1", 1)], placed_at=NOW - timedelta(hours=1),
                              now=NOW - timedelta(hours=1))  # fmt: skip
    session.flush()
    assert row.id is not None and order.id is not None
    return row.id


def queue(
    session: Session, campaign: str, customer_id: int, step: str | None, occurrence: str
) -> Message:
    message = Message(
        dedupe_key=f"{campaign}:{customer_id}:{occurrence}" + (f":{step}" if step else ""),
        campaign=campaign, customer_id=customer_id, occurrence=occurrence, step=step,
        created_at=NOW, send_after=NOW,
    )  # fmt: skip
    session.add(message)
    session.flush()
    return message


def mint(session: Session, message: Message, code: str, **value: Decimal | None) -> None:
    session.add(Coupon(code=code, customer_id=message.customer_id, message_id=message.id,
                       campaign=message.campaign, created_at=NOW,
                       expires_at=NOW + timedelta(days=30), **value))  # fmt: skip
    session.flush()


def texts(outgoing: object) -> tuple[str, str]:
    email = parse(outgoing)  # type: ignore[arg-type]
    plain = email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return plain, html


def test_the_welcome_hello_carries_its_own_code_value_and_expiry(
    composer: Composer, session: Session
) -> None:
    ana = customer(session, "ana", "en")
    message = queue(session, "welcome_series", ana, "hello", "first")
    mint(session, message, "WELCOME-7KQ2-M9XD-P4TR", percent_off=Decimal("10"),
         min_order=Decimal("500"))  # fmt: skip
    plain, html = texts(prepare_one(composer, session, message))
    expiry = format_day(NOW + timedelta(days=30), locale="en", timezone="Asia/Dhaka")
    for body in (plain, html):
        assert "WELCOME-7KQ2-M9XD-P4TR" in body
        assert "here is 10% off your next order of ৳500.00 or more" in " ".join(body.split())
        assert f"is good until {expiry}." in " ".join(body.split())


def test_a_bengali_reader_sees_the_value_in_bengali_digits(
    composer: Composer, session: Session
) -> None:
    rina = customer(session, "rina", "bn")
    message = queue(session, "welcome_series", rina, "hello", "first")
    mint(session, message, "WELCOME-AB2C-DE3F-GH4J", amount_off=Decimal("150.50"))
    plain, html = texts(prepare_one(composer, session, message))
    for body in (plain, html):
        assert "WELCOME-AB2C-DE3F-GH4J" in body
        assert "১৫০.৫০৳ ছাড়" in body


def test_the_ladder_email_shows_its_rung(composer: Composer, session: Session) -> None:
    ana = customer(session, "ana", "en")
    message = queue(session, "loyalty_ladder", ana, None, "nth-3")
    message.context = {"nth": 3}
    session.flush()
    mint(session, message, "THANKS-2345-6789-ABCD", percent_off=Decimal("10"),
         min_order=Decimal("500"))  # fmt: skip
    plain, _ = texts(prepare_one(composer, session, message))
    assert "That was your 3rd order with us" in plain
    assert "Here is 10% off your next order of ৳500.00 or more:" in " ".join(plain.split())
    assert "THANKS-2345-6789-ABCD" in plain


def test_an_email_whose_coupon_is_not_minted_waits(composer: Composer, session: Session) -> None:
    ana = customer(session, "ana", "en")
    message = queue(session, "welcome_series", ana, "hello", "first")
    result = prepare_one(composer, session, message)
    assert result == Unsendable(
        message.id or 0,
        f"message {message.id}: its coupon is not minted yet (the campaign was given a "
        "coupon after this email was queued; the next full planning pass mints it)",
        retry=True,
    )


def test_a_step_without_a_coupon_has_none(composer: Composer, session: Session) -> None:
    ana = customer(session, "ana", "en")
    message = queue(session, "welcome_series", ana, "our_story", "first")
    plain, _ = texts(prepare_one(composer, session, message))
    assert "off your next order" not in plain
