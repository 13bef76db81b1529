"""Detractors' comments forwarded to the shop's support address over a real SMTP server on
loopback: once each, only scores 0–6 with a comment, retried after a refusal, held (and
said once) without an address, and sent by the daemon's tick."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.daemon import Daemon
from engine.deliver.detractors import DetractorForwarder, forward_detractors
from engine.deliver.mailer import SmtpMailer
from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import Project, Secrets, load_project
from engine.reload import ProjectWatcher
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.locks import FileLock
from engine.store.models import Message, MessageStatus, SurveyAnswer
from tests.conftest import BOTH_DIALECTS
from tests.daemon_fixtures import SECRET, configure
from tests.delivery_fixtures import project_for
from tests.smtp_servers import Script, serving

SUPPORT = "help@nakshighor.example"


def answered(
    db: Engine, now: datetime, n: int, score: int, comment: str | None, locale: str = "en"
) -> int:
    """Customer `n` got order NG-<n> and its survey email, and answered `score` an hour ago."""
    with session_scope(db) as session:
        upsert_product(session, sku="TEA-500G", name="Sylhet tea", price="380.00", now=now)
        customer = upsert_customer(
            session, external_id=f"c{n}", email=f"customer{n}@example.com", name=f"Customer {n}",
            locale=locale, marketing_consent=True, now=now - timedelta(days=20),
        )  # fmt: skip
        order = record_order(
            session, external_id=f"NG-{n}", customer_id=f"c{n}", items=[Line("TEA-500G", 1)],
            placed_at=now - timedelta(days=10), delivered_at=now - timedelta(days=8),
        )  # fmt: skip
        message = Message(
            dedupe_key=f"survey_after_delivery:{customer.id}:order-{order.id}",
            campaign="survey_after_delivery", customer_id=customer.id,
            occurrence=f"order-{order.id}", order_id=order.id, status=MessageStatus.SENT,
            created_at=now - timedelta(days=1), send_after=now - timedelta(days=1),
        )  # fmt: skip
        session.add(message)
        session.flush()
        answer = SurveyAnswer(
            customer_id=customer.id, message_id=message.id, score=score,
            at=now - timedelta(hours=1), comment=comment,
        )  # fmt: skip
        session.add(answer)
        session.flush()
        return int(answer.id)


def text_of(data: bytes) -> str:
    """The plain-text body of an email as sent, with its CRLF line ends read as LF."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage) and message.get_content_type() == "text/plain"
    return str(message.get_content()).replace("\r\n", "\n")


def forwarded_at(db: Engine) -> dict[int, datetime | None]:
    with Session(db) as session:
        rows = session.execute(select(SurveyAnswer.id, SurveyAnswer.forwarded_at)).all()
    return dict(rows)


def forward(project: Project, db: Engine, script: Script, now: datetime) -> object:
    async def go() -> object:
        async with serving(script) as port:
            mailer = SmtpMailer(project_for(project.root, port).config.sending)
            try:
                return await forward_detractors(db, project, mailer, now)
            finally:
                await mailer.close()

    return asyncio.run(go())


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@BOTH_DIALECTS
def test_a_detractors_comment_is_forwarded_once_to_support(
    db: Engine, project: Project, now: datetime
) -> None:
    bengali = answered(db, now, 1, 3, "চা ভালো, কিন্তু\nপার্সেল ভেজা ছিল", locale="bn_BD")
    six = answered(db, now, 2, 6, "Slow delivery")
    answered(db, now, 3, 2, None)  # no comment: nothing to forward
    answered(db, now, 4, 7, "A passive's comment")
    answered(db, now, 5, 10, "Lovely")
    script = Script()
    done = forward(project, db, script, now)
    assert (done.sent, done.failed, done.unaddressed) == (2, [], 0)
    assert [r.recipients for r in script.received] == [[SUPPORT], [SUPPORT]]
    first = email.message_from_bytes(script.received[0].data, policy=email.policy.default)
    assert first["Subject"] == "Survey: 3 of 10, with a comment from customer1@example.com"
    assert first["Reply-To"].addresses[0].addr_spec == "customer1@example.com"
    assert first["From"] == "Nakshi Ghor <hello@nakshighor.example>"
    assert first["Auto-Submitted"] == "auto-generated"
    body = text_of(script.received[0].data)
    assert "Score:    3 of 10 (0 to 6: would not recommend)" in body
    assert "\nচা ভালো, কিন্তু\nপার্সেল ভেজা ছিল\n" in body
    assert "Customer: Customer 1 <customer1@example.com>, shop id c1, language bn_BD" in body
    assert "Order:    NG-1" in body
    assert "Email:    survey_after_delivery, message " in body
    assert "Answered: 2026-11-22 11:00 Asia/Dhaka" in body  # an hour before now, Dhaka time
    assert (
        "Score:    6 of 10"
        in email.message_from_bytes(
            script.received[1].data, policy=email.policy.default
        ).get_content()
    )
    marked = forwarded_at(db)
    assert marked[bengali] == marked[six] == now
    assert sum(at is not None for at in marked.values()) == 2
    again = Script()
    assert forward(project, db, again, now + timedelta(minutes=1)).sent == 0
    assert again.received == []


@BOTH_DIALECTS
def test_a_refused_forward_waits_for_the_next_tick(
    db: Engine, project: Project, now: datetime
) -> None:
    answer_id = answered(db, now, 1, 0, "Never arrived")
    refusing = Script(rcpt_replies={SUPPORT: "450 4.2.1 mailbox busy, try later"})
    done = forward(project, db, refusing, now)
    assert done.sent == 0
    assert done.failed == [
        f"survey answer {answer_id}: forwarding to {SUPPORT} failed, tried again at the next "
        "tick: 450 4.2.1 mailbox busy, try later (at rcpt)"
    ]
    assert forwarded_at(db)[answer_id] is None
    script = Script()
    assert forward(project, db, script, now + timedelta(minutes=1)).sent == 1
    assert forwarded_at(db)[answer_id] == now + timedelta(minutes=1)
    assert text_of(script.received[0].data).count("Never arrived") == 1


@BOTH_DIALECTS
def test_without_a_support_address_nothing_is_sent_and_the_log_says_so_once(
    db: Engine, project: Project, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    answered(db, now, 1, 4, "Too expensive")
    shop = project.config.shop.model_copy(update={"support_email": None})
    config = project.config.model_copy(update={"shop": shop})
    unaddressed = dataclasses.replace(project, config=config)
    forwarder = DetractorForwarder()
    script = Script()

    async def twice() -> list[object]:
        async with serving(script) as port:
            mailer = SmtpMailer(project_for(project.root, port).config.sending)
            try:
                return [await forwarder(db, unaddressed, mailer, now) for _ in range(2)]
            finally:
                await mailer.close()

    with caplog.at_level(logging.WARNING, logger="engine.deliver.detractors"):
        first, second = asyncio.run(twice())
    assert first.unaddressed == second.unaddressed == 1
    assert script.received == []
    assert [r.getMessage() for r in caplog.records] == [
        "survey: 1 detractors' comments are not forwarded: shop.support_email is not set in "
        "config.yaml"
    ]
    assert list(forwarded_at(db).values()) == [None]


def test_the_daemons_tick_forwards_over_the_configured_smtp_server(
    project_dir: Path, tmp_path: Path, now: datetime
) -> None:
    script = Script()

    async def tick() -> None:
        async with serving(script) as port:
            config = configure(
                project_dir, smtp_port=port, http_port=1,
                database=f"sqlite:///{tmp_path / 'shop.db'}",
            )  # fmt: skip
            project = load_project(config)
            engine = make_engine(project.database_url(Secrets()))
            upgrade(engine)
            answered(engine, now, 1, 5, "The sari's colour ran")
            daemon = Daemon(
                config, engine, Secrets(secret=SECRET), ProjectWatcher(project, config),
                FileLock(tmp_path / "lock"), clock=lambda: now,
            )  # fmt: skip
            daemon.mailer = SmtpMailer.from_project(project, Secrets())
            try:
                assert await daemon.tick_once() is not None
            finally:
                await daemon.mailer.close()
                daemon.lock.release()
                engine.dispose()

    asyncio.run(tick())
    forwards = [r for r in script.received if r.recipients == [SUPPORT]]
    assert len(forwards) == 1
    assert "\nThe sari's colour ran\n" in text_of(forwards[0].data)
