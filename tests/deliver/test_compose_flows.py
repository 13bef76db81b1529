"""Flow steps and the triggers of a shop's year, composed and previewed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.compose import Composer, Unsendable
from engine.deliver.preview import preview_message
from engine.errors import DataError
from engine.intake import shop
from engine.project.loader import Project, Secrets
from engine.render.renderer import Renderer
from engine.store.models import Message
from tests.deliver.test_compose import SECRET, parse, prepare_one
from tests.render.test_context import NOW
from tests.render.test_context_flows import YearShop, fill_year_shop, queue, write_flow_project


@pytest.fixture
def project(project_dir: Path) -> Project:
    return write_flow_project(project_dir)


@pytest.fixture
def composer(project: Project) -> Composer:
    return Composer(project, Secrets(secret=SECRET), renderer=Renderer.for_project(project))


@pytest.fixture
def session(sqlite_store: Engine) -> Iterator[Session]:
    with Session(sqlite_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


@pytest.fixture
def data(session: Session) -> YearShop:
    return fill_year_shop(session)


def test_each_step_sends_its_own_template_subject_and_preheader(
    composer: Composer, session: Session, data: YearShop
) -> None:
    first = queue(session, "lapsed", data.sam, step="hello", order_id=data.sam_order)
    second = queue(session, "lapsed", data.sam, step="reminder", order_id=data.sam_order)
    hello, reminder = composer.prepare(session, [first, second], now=NOW)
    email = parse(hello)
    assert email["Subject"] == "Hello Sam"
    assert "flowtest step 1/2" in email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    email = parse(reminder)
    assert email["Subject"] == "Step 2 of 2"
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "flowtest_reminder step 2/2" in html
    assert re.search(r'class="preheader"[^>]*>reminder</div>', html)


def test_a_step_no_longer_in_the_file_is_unsendable(
    composer: Composer, session: Session, data: YearShop
) -> None:
    message = queue(session, "lapsed", data.sam, step="gone", order_id=data.sam_order)
    result = prepare_one(composer, session, message)
    assert result == Unsendable(
        message.id or 0,
        f"message {message.id}: step gone is no longer in campaign lapsed "
        "(its steps now: hello, reminder)",
    )


def test_a_step_subject_error_names_the_campaign_file_and_step(
    project: Project, session: Session, data: YearShop
) -> None:
    campaign = project.campaigns["lapsed"]
    steps = [campaign.steps[0], campaign.steps[1].model_copy(update={"subject": "{{ nope }}"})]
    changed = {**project.campaigns, "lapsed": campaign.model_copy(update={"steps": steps})}
    project = replace(project, campaigns=changed)
    composer = Composer(project, Secrets(secret=SECRET), renderer=Renderer.for_project(project))
    message = queue(session, "lapsed", data.sam, step="reminder", order_id=data.sam_order)
    result = prepare_one(composer, session, message)
    assert isinstance(result, Unsendable) and result.retry
    assert result.reason.startswith(
        "template error: campaigns/lapsed.yaml step reminder: subject: 'nope' is undefined"
    )


# ---------------------------------------------------------------- preview


def test_preview_shows_the_step_asked_for_and_the_first_by_default(
    composer: Composer, session: Session, data: YearShop
) -> None:
    before = session.execute(select(func.count()).select_from(Message)).scalar_one()
    first = composer.preview(session, "lapsed", data.sam, now=NOW)
    assert first.subject == "Hello Sam" and "flowtest step 1/2" in first.text
    second = composer.preview(session, "lapsed", data.sam, now=NOW, step="reminder")
    assert second.subject == "Step 2 of 2" and "flowtest_reminder step 2/2" in second.text
    assert session.execute(select(func.count()).select_from(Message)).scalar_one() == before


@pytest.mark.parametrize(
    ("campaign", "step", "reason"),
    [
        pytest.param("lapsed", "bye", "campaign lapsed has no step 'bye' (its steps: hello, "
                     "reminder)", id="unknown-step"),
        pytest.param("big_news", "hello", "campaign big_news has no steps: it sends one email",
                     id="no-steps"),
    ],
)  # fmt: skip
def test_preview_of_an_unknown_step_names_the_known_ones(
    composer: Composer, session: Session, data: YearShop, campaign: str, step: str, reason: str
) -> None:
    with pytest.raises(DataError) as caught:
        composer.preview(session, campaign, data.sam, now=NOW, step=step)
    assert str(caught.value) == reason


def test_preview_builds_what_each_new_trigger_is_about(
    project: Project, session: Session, data: YearShop
) -> None:
    shop.upsert_customer(
        session, external_id="c1", email="rahima@example.com", birthday=date(1990, 2, 28), now=NOW
    )

    def about(campaign: str, customer: int) -> Message:
        return preview_message(session, project, campaign, customer, now=NOW)

    lapsed = about("lapsed", data.rahima)
    assert (lapsed.step, lapsed.order_id, lapsed.context) == (
        "hello", data.last_order, {"inactive_days": 10},
    )  # fmt: skip
    # NOW is 22 November 2026: the next 28 February is in 2027.
    assert about("birthday_note", data.rahima).context == {
        "date_field": "birthday", "date": "2027-02-28", "years": 37,
    }  # fmt: skip
    ladder = about("ladder", data.sam)  # two orders: his second
    assert (ladder.order_id, ladder.context) == (data.sam_order, {"nth": 2})
    tea = about("tea_again", data.sam)
    assert tea.order_id is not None and tea.order_id != data.sam_order  # the tea order
    assert about("new_arrival", data.sam).context == {"product_id": data.products["TEA-GREEN"]}
    assert about("restocked", data.sam).context == {
        "product_id": data.products["TEA-500G"], "restock_id": data.restock,
    }  # fmt: skip
    # Every 14 days from Monday 5 January 2026: the period of 22 November began on the 9th.
    assert about("fortnight", data.sam).context == {"period_start": "2026-11-09"}
    assert about("basket", data.rahima).context == {"cart_id": "cart-77"}
    assert about("big_news", data.sam).context == {"broadcast_at": "2026-12-10 10:00"}


def test_preview_renders_the_new_triggers_from_the_customers_data(
    composer: Composer, session: Session, data: YearShop
) -> None:
    for campaign in ("lapsed", "ladder", "new_arrival", "restocked", "fortnight", "basket"):
        shown = composer.preview(session, campaign, data.rahima, now=NOW)
        assert "flowtest" in shown.text, campaign


@pytest.mark.parametrize(
    ("campaign", "reason"),
    [
        pytest.param("lapsed", "customer {id} has no orders, and the lapsed email is about one",
                     id="inactive"),
        pytest.param("basket", "customer {id} has no checkout, and the basket email is about one",
                     id="checkout"),
        pytest.param("birthday_note", "customer {id} has no birthday, and the birthday_note "
                     "email is about it", id="birthday"),
        pytest.param("ladder", "customer {id} has 0 orders, and the ladder email is about order "
                     "number 2", id="nth-order"),
        pytest.param("tea_again", "customer {id} has no order with tea, and the tea_again email "
                     "is about one", id="after-purchase"),
    ],
)  # fmt: skip
def test_preview_says_what_the_customer_lacks(
    composer: Composer, session: Session, data: YearShop, campaign: str, reason: str
) -> None:
    lonely = shop.upsert_customer(session, external_id="c9", email="l@example.com", now=NOW)
    with pytest.raises(DataError) as caught:
        composer.preview(session, campaign, lonely.id or 0, now=NOW)
    assert str(caught.value) == reason.format(id=lonely.id)
