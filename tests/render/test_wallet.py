"""`customer.credit_balance`: each customer's store credit now, one grouped query per
batch, shown by the money filter; and in the sample data `lifecycle check` renders."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.intake import wallet
from engine.project import pick_text
from engine.project.loader import Project, load_project
from engine.render.context import load_contexts
from engine.render.renderer import Renderer
from engine.render.samplecontext import sample_context
from engine.render.templatecheck import check_templates
from engine.store.models import Credit
from tests import store_fixtures
from tests.render.test_context import NOW, fill_shop, links, queue

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def session(fresh_store: Engine) -> Iterator[Session]:
    with Session(fresh_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


def give(session: Session, customer_id: int, amount: str, **values: Any) -> int:
    row = Credit(
        dedupe_key=f"test:{customer_id}:{amount}",
        customer_id=customer_id,
        amount=Decimal(amount),
        reason="price drop before delivery",
        created_at=NOW - timedelta(days=20),
        **values,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def test_each_customer_of_a_batch_gets_the_balance_now_in_one_query(
    session: Session, project: Project, fresh_store: Engine
) -> None:
    data = fill_shop(session)  # Sam has a refund credit of 0.30
    give(session, data.rahima, "120.50")
    give(session, data.rahima, "30.00", expires_at=NOW - timedelta(hours=1))
    wallet.redeem(session, data.rahima, "20.25", "NG-9", "evt-1", NOW)  # the 30.00 has expired
    messages = [
        queue(session, "thank_you", data.rahima, order_id=data.order_bn),
        queue(session, "thank_you", data.sam, order_id=data.order_en),
        queue(session, "thank_you", data.rahima, order_id=data.order_bn),
    ]
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(fresh_store, "before_cursor_execute", seen)
    try:
        contexts = load_contexts(session, project, messages, links, now=NOW)
    finally:
        event.remove(fresh_store, "before_cursor_execute", seen)
    balances = [c["customer"]["credit_balance"] for c in contexts if isinstance(c, dict)]
    assert balances == [Decimal("100.25"), Decimal("0.30"), Decimal("100.25")]
    assert len([s for s in statements if "GROUP BY credit.customer_id" in s]) == 1


@pytest.mark.parametrize(
    ("locale", "balance", "shown"),
    [
        pytest.param("en", Decimal("100.25"), "Store credit: ৳100.25", id="english"),
        pytest.param("bn_BD", Decimal("1250.50"), "Store credit: ১,২৫০.৫০৳", id="bengali"),
        pytest.param("en", Decimal("0.00"), "Store credit: ৳0.00", id="none"),
    ],
)
def test_the_money_filter_shows_the_balance_in_the_customers_language(
    tmp_path: Path, project: Project, locale: str, balance: Decimal, shown: str
) -> None:
    folder = tmp_path / "emails"
    folder.mkdir()
    (folder / "note.txt").write_text("Store credit: {{ customer.credit_balance | money }}")
    context = sample_context(project, project.campaigns["thank_you"], locale)
    context["customer"]["credit_balance"] = balance
    assert Renderer(folder).render_file("note.txt", context) == shown


def test_lifecycle_check_renders_templates_with_the_balance(project_dir: Path) -> None:
    text = project_dir / "templates" / "emails" / "thank_you.txt"
    text.write_text(
        text.read_text() + "\nYour store credit: {{ customer.credit_balance | money }}\n",
        encoding="utf-8",
    )
    project = load_project(project_dir / "config.yaml")
    sample = sample_context(project, project.campaigns["thank_you"], "en")
    assert sample["customer"]["credit_balance"] == Decimal("250.50")
    assert [str(p) for p in check_templates(project) if "thank_you" in p.file] == []


# ---------------------------------------------------------------- the soonest expiry

EXPIRES = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)  # 6 December, 02:00 in Dhaka


def test_a_reminder_shows_the_soonest_expiry_in_the_customers_zone_and_language(
    session: Session, project: Project
) -> None:
    data = fill_shop(session)  # Sam's 0.30 does not expire
    give(session, data.rahima, "120.50")
    give(session, data.rahima, "30.00", expires_at=EXPIRES)
    give(session, data.rahima, "5.00", expires_at=EXPIRES + timedelta(days=30))
    wallet.redeem(session, data.rahima, "10.00", "NG-9", "evt-1", NOW)  # from the 30.00
    messages = [
        queue(session, "credit_reminder", data.rahima),
        queue(session, "credit_reminder", data.sam),
    ]
    rahima, sam = load_contexts(session, project, messages, links, now=NOW)
    assert isinstance(rahima, dict) and isinstance(sam, dict)
    assert rahima["customer"]["credit_balance"] == Decimal("145.50")
    assert (rahima["customer"]["credit_expires_at"], rahima["customer"]["credit_expiring"]) == (
        EXPIRES,
        Decimal("20.00"),
    )
    assert (sam["customer"]["credit_expires_at"], sam["customer"]["credit_expiring"]) == (
        None,
        None,
    )
    campaign = project.campaigns["credit_reminder"]
    email = Renderer.for_project(project).render_email(
        "credit_reminder",
        "bn_BD",
        rahima,
        subject=pick_text(campaign.subject or "", "bn_BD"),
        preheader=pick_text(campaign.preheader, "bn_BD"),
    )
    assert email.subject == "রহিমা, আপনার ১৪৫.৫০৳ স্টোর ক্রেডিট জমা আছে"
    assert "এর মধ্যে ৬ ডিসেম্বর, ২০২৬ তারিখে মেয়াদ শেষ হবে: ২০.০০৳" in email.text
    english = Renderer.for_project(project).render_email(
        "credit_reminder", "en", sam, subject=pick_text(campaign.subject or "", "en")
    )
    assert english.subject == "Sam, you have ৳0.30 of store credit"
    assert "It does not expire, so there is no hurry." in english.text
    assert "expiring on" not in english.text


def test_a_batch_without_credit_reads_no_expiry(
    session: Session, project: Project, fresh_store: Engine
) -> None:
    data = fill_shop(session)
    messages = [queue(session, "thank_you", data.rahima, order_id=data.order_bn)]
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(fresh_store, "before_cursor_execute", seen)
    try:
        [context] = load_contexts(session, project, messages, links, now=NOW)
    finally:
        event.remove(fresh_store, "before_cursor_execute", seen)
    assert isinstance(context, dict)
    assert context["customer"]["credit_expires_at"] is None
    assert not [s for s in statements if "credit_left" in s]


def test_the_sample_data_has_an_expiry_for_lifecycle_check(project: Project) -> None:
    sample = sample_context(project, project.campaigns["credit_reminder"], "en")
    assert sample["customer"]["credit_expires_at"] is not None
    assert sample["customer"]["credit_expiring"] == Decimal("120.00")
    assert sample["order"] is None  # a credit reminder is about no order
    assert [str(p) for p in check_templates(project) if "credit_reminder" in p.file] == []
