"""tick(now): the real planner, the real Composer, a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.compose import Composer
from engine.deliver.mailer import SmtpMailer
from engine.demo import MIN_CUSTOMERS
from engine.demo.seed import seed_demo
from engine.project.loader import Secrets
from engine.store.models import Message, MessageStatus
from engine.tick import tick
from tests.delivery_fixtures import project_for
from tests.smtp_servers import Script, serving

SECRETS = Secrets(secret="tick-test-secret-" * 2)
COMPOSERS: dict[Path, Composer] = {}  # templates compiled once per project copy


def run_tick(engine: Engine, project_dir: Path, script: Script, at: datetime, **kw: Any) -> Any:
    async def go() -> Any:
        async with serving(script) as port:
            project = project_for(project_dir, port)
            mailer = SmtpMailer.from_project(project, SECRETS)
            composer = COMPOSERS.setdefault(project_dir, Composer(project, SECRETS))
            try:
                return await tick(engine, project, SECRETS, mailer, at, composer=composer, **kw)
            finally:
                await mailer.close()

    return asyncio.run(go())


@pytest.mark.slow
def test_tick_plans_then_sends_real_emails(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    with Session(sqlite_store) as session:
        seed_demo(session, now=now, customers=MIN_CUSTOMERS)
        session.commit()
    script = Script()
    at = now + timedelta(hours=1)
    # Without planning, a tick only sends: nothing is queued yet, so nothing goes.
    alone = run_tick(sqlite_store, project_dir, script, at, plan=False)
    assert alone.plan is None and alone.as_dict()["plan"] is None
    assert alone.dispatch.claimed == 0 and script.received == []
    report = run_tick(sqlite_store, project_dir, script, at)
    with Session(sqlite_store) as session:
        messages = list(session.scalars(select(Message)))
    sent = [m for m in messages if m.status == MessageStatus.SENT]
    planned = report.as_dict()["plan"]["campaigns"]
    assert sum(c["queued"] for c in planned.values()) == len(messages) > 0
    assert len(sent) == report.dispatch.counts["sent"] == len(script.received) > 0
    assert not any(m.status == MessageStatus.SENDING for m in messages)
    # What the server got is what the store says was sent, header for header.
    assert {r.message["Message-ID"] for r in script.received} == {m.message_id for m in sent}
    for received in script.received:
        assert received.message["Subject"] and received.message.is_multipart()
    # A second tick at the same time queues nothing new and sends nothing twice.
    again = run_tick(sqlite_store, project_dir, script, at)
    assert again.dispatch.counts.get("sent", 0) == 0
    assert all(c["queued"] == 0 for c in again.as_dict()["plan"]["campaigns"].values())
    assert len(script.received) == len(sent)
    assert Counter(r.recipients[0] for r in script.received).most_common(1)[0][1] <= 3
