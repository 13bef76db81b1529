"""The demo's visitors: survey emails in the outbox, as the composer writes them (MIME,
base64), answered through the tracking server's pages over real HTTP on loopback, on
SQLite and PostgreSQL; nothing followed off this machine, nothing from an earlier run."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.deliver.compose import Composer, Outgoing
from engine.demo.visitor import VISITS, SurveyVisitor, read_survey_email
from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import Project, Secrets, load_project
from engine.store.db import make_engine, session_scope
from engine.store.models import Message, MessageStatus, SurveyAnswer
from engine.track.app import create_app
from tests import test_readme
from tests.conftest import BOTH_DIALECTS
from tests.tracking_server import serving

SECRET = "visitor-secret-0123456789abcdef"


@dataclass
class Shop:
    """The tracking app on loopback, its store, and the project whose links point at it."""

    url: str
    db: Engine
    project: Project
    outbox: Path
    now: datetime

    def survey_email(self, name: str, locale: str = "en", *, base_url: str | None = None) -> int:
        """A survey email sent to `name` an hour ago, written to the outbox as the sink
        writes it; returns the message's id."""
        project = self.project
        if base_url is not None:
            tracking = project.config.tracking.model_copy(update={"base_url": base_url})
            project = replace(project, config=project.config.model_copy(update={"tracking": tracking}))  # fmt: skip
        with session_scope(self.db) as session:
            upsert_customer(session, external_id=name, email=f"{name}@example.com", name=name,
                            locale=locale, marketing_consent=True, now=self.now - 20 * DAY)  # fmt: skip
            order = record_order(session, external_id=f"O-{name}", customer_id=name,
                                 items=[Line("TEA-500G", 1)], placed_at=self.now - 12 * DAY,
                                 delivered_at=self.now - 8 * DAY)  # fmt: skip
            message = Message(
                dedupe_key=f"survey_after_delivery:{name}", campaign="survey_after_delivery",
                customer_id=order.customer_id, occurrence=f"order-{order.id}",
                order_id=order.id, created_at=self.now - HOUR, send_after=self.now - HOUR,
            )  # fmt: skip
            session.add(message)
            session.flush()
            [outgoing] = Composer(project, Secrets(secret=SECRET)).prepare(
                session, [message], now=self.now
            )
            assert isinstance(outgoing, Outgoing), outgoing
            message.status, message.sent_at = MessageStatus.SENT, self.now - HOUR
            message.message_id = outgoing.header_message_id
            (self.outbox / f"{self.now:%Y%m%dT%H%M%S}-{name}.eml").write_bytes(outgoing.data)
            return int(message.id or 0)

    def answers(self) -> dict[int, tuple[int, str | None]]:
        with Session(self.db) as session:
            rows = session.execute(select(SurveyAnswer)).scalars()
            return {int(a.message_id or 0): (a.score, a.comment) for a in rows}


DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@pytest.fixture
def shop(db: Engine, project_dir: Path, now: datetime, tmp_path: Path) -> Iterator[Shop]:
    project = load_project(project_dir / "config.yaml")
    with session_scope(db) as session:
        upsert_product(session, sku="TEA-500G", name="Sylhet tea", price="320", now=now - 30 * DAY)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
    with serving(app) as url:
        tracking = project.config.tracking.model_copy(update={"base_url": url})
        project = replace(project, config=project.config.model_copy(update={"tracking": tracking}))
        yield Shop(url, db, project, outbox, now)


def test_a_survey_email_is_read_as_a_mail_program_reads_it(shop: Shop) -> None:
    shop.survey_email("rahima", "bn_BD")
    [path] = shop.outbox.glob("*.eml")
    assert b"Content-Transfer-Encoding: base64" in path.read_bytes()  # the links are encoded
    survey = read_survey_email(path)
    assert survey is not None
    assert sorted(survey.links) == list(range(11))
    assert all(link.startswith(f"{shop.url}/s/") for link in survey.links.values())
    assert survey.links[7].endswith("?score=7")
    assert survey.message_id.startswith("<") and survey.message_id.endswith(">")


@BOTH_DIALECTS
def test_three_customers_answer_through_the_page(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    visitor = SurveyVisitor(shop.outbox)
    sent = [shop.survey_email(name, locale) for name, locale in
            (("rahima", "bn_BD"), ("sam", "en"), ("tania", "en"), ("uma", "bn_BD"))]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="engine.demo"):
        asyncio.run(visitor(shop.db, shop.project, shop.now))
    answers = shop.answers()
    assert sorted(answers) == sent[:3]  # three answers, all to these survey emails
    assert answers[sent[0]] == (3, VISITS[0].comment["bn"])  # in the page's language
    assert (answers[sent[1]], answers[sent[2]]) == ((10, None), (8, None))
    lines = [r.getMessage() for r in caplog.records]
    answered = [line for line in lines if " answered about order " in line]
    assert len(answered) == 3
    assert answered[0].startswith("survey page: customer rahima answered about order O-rahima: 3")
    assert "with a comment" in answered[0] and "in Bengali" in answered[0]
    assert lines[-1] == "survey page: NPS 0 from 3 answers (3 of them just now, through the page)"
    # It has answered all it answers; a later tick asks nothing more.
    asyncio.run(visitor(shop.db, shop.project, shop.now))
    assert sorted(shop.answers()) == sent[:3]


def test_links_off_this_machine_are_not_followed(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    visitor = SurveyVisitor(shop.outbox)
    shop.survey_email("sam", base_url="https://nakshighor.example")
    with caplog.at_level(logging.INFO, logger="engine.demo"):
        visitor.visit(shop.db)
    assert shop.answers() == {}
    assert [r.getMessage() for r in caplog.records] == [
        "survey page: the survey links point at nakshighor.example, not this machine: none is"
        " answered"
    ]


def test_emails_of_an_earlier_run_are_not_answered_again(shop: Shop) -> None:
    shop.survey_email("sam")
    [old] = shop.outbox.glob("*.eml")
    earlier = time.time() - 3600
    os.utime(old, (earlier, earlier))
    visitor = SurveyVisitor(shop.outbox)
    visitor.visit(shop.db)
    assert shop.answers() == {}
    fresh = shop.survey_email("tania")
    visitor.visit(shop.db)
    assert sorted(shop.answers()) == [fresh]


# ---------------------------------------------------------------- in `make demo`

demo = test_readme.demo


@pytest.mark.slow
def test_make_demo_answers_survey_emails_through_the_pages(demo: tuple[Path, int, dict]) -> None:
    """`lifecycle run --demo`: once its first tick's survey emails are in outbox/, a few
    customers answer theirs over HTTP; the answers are the tracking server's, each of a
    survey email the demo sent, and the detractor's comment reaches the shop's support."""
    shop, _, _ = demo
    log = shop / "run.log"
    deadline = time.monotonic() + 60
    while "survey: forwarded 1 detractors' comments" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    said = log.read_text()
    answered = re.findall(r"survey page: customer (\S+) answered about order (\S+): (\d+)", said)
    nps = re.search(r"survey page: NPS (-?\d+) from (\d+) answers \((\d+) of them just now", said)
    assert nps is not None and len(answered) == int(nps[3]) >= 2, said
    engine = make_engine(f"sqlite:///{shop / 'lifecycle.db'}")
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(SurveyAnswer, Message)
                .join(Message, col(Message.id) == col(SurveyAnswer.message_id))
                .order_by(col(SurveyAnswer.id))
            ).all()
            scores = [answer.score for answer in session.execute(select(SurveyAnswer)).scalars()]
    finally:
        engine.dispose()
    assert [(m.campaign, m.status) for _, m in rows] == [
        ("survey_after_delivery", MessageStatus.SENT)
    ] * len(answered)
    assert [a.score for a, _ in rows] == [int(score) for _, _, score in answered]
    detractor = rows[0][0]
    assert detractor.score <= 6 and detractor.comment and detractor.forwarded_at is not None
    promoters, detractors = sum(s >= 9 for s in scores), sum(s <= 6 for s in scores)
    assert (int(nps[1]), int(nps[2])) == (round(100 * (promoters - detractors) / len(scores)), len(scores))  # fmt: skip
