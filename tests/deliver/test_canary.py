"""The safety brake for big sends, on SQLite and PostgreSQL: a blast's canary goes
first, the rest waits for its figures; a bad canary pauses the campaign until
`lifecycle resume`; a clean one lets the rest go."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.cli import main
from engine.deliver.canary import judge_blasts, resume_campaign, waiting_blasts
from engine.deliver.dispatcher import dispatch
from engine.deliver.mailer import MemoryMailer
from engine.deliver.ramp import day_cap
from engine.plan.blasts import every, open_blast
from engine.project.config import Ramp
from engine.project.loader import Project, Secrets, load_project
from engine.report.queue import queue
from engine.store.models import Blast, EventKind, Message, MessageEvent, MessageKind
from tests.delivery_fixtures import Outbox, PlainComposer, project_for

SECRETS = Secrets(smtp_password="x")


def canary_project(project_dir: Path, **canary: Any) -> Project:
    project = project_for(project_dir)
    settings = {"min_recipients": 50, "share": Decimal("10"), "watch": timedelta(hours=1)} | canary
    sending = project.config.sending
    config = project.config.model_copy(
        update={
            "sending": sending.model_copy(
                update={"canary": sending.canary.model_copy(update=settings)}
            )
        }
    )
    return project.__class__(**{**project.__dict__, "config": config})


def send(engine: Engine, project: Project, now: datetime) -> MemoryMailer:
    mailer = MemoryMailer()
    asyncio.run(dispatch(engine, project, SECRETS, mailer, now, composer=PlainComposer()))
    return mailer


def blast(box: Outbox, project: Project, count: int) -> list[int]:
    """`count` marketing emails queued by one pass (one created_at), opened as a blast."""
    created = box.now - timedelta(minutes=10)
    ids = box.queue(count, campaign="welcome", created_at=created)
    campaign = project.campaigns["welcome"]
    with box.engine.begin() as conn:
        assert open_blast(conn, project, campaign, count, created)
    return ids


def events(engine: Engine, ids: list[int], kind: EventKind, detail: str | None = None) -> None:
    with Session(engine) as session:
        for mid in ids:
            row = session.get(Blast, 1)
            assert row is not None
            message = session.get(Message, mid)
            assert message is not None
            customer = message.customer_id
            session.add(
                MessageEvent(
                    message_id=mid,
                    customer_id=customer,
                    kind=kind,
                    at=row.created_at,
                    detail=detail,
                )
            )
        session.commit()


def state(engine: Engine) -> str:
    with Session(engine) as session:
        return str(session.scalars(select(Blast)).one().state)


def test_only_the_canary_goes_until_it_is_judged_then_the_rest(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    project = canary_project(project_dir)
    box = Outbox(store, now)
    ids = blast(box, project, 100)
    first = send(store, project, now)
    canary = {i for i in ids if (i - ids[0]) % every(Decimal("10")) == 0}
    assert len(first.sent) == len(canary) == 10
    statuses = box.statuses()
    assert {i for i in ids if statuses[i] == "sent"} == canary
    assert all(statuses[i] == "queued" for i in ids if i not in canary)
    assert [b["state"] for b in waiting_blasts(store)] == ["canary"]

    # The canary has ended: the watch starts; nothing is judged before it is over.
    assert judge_blasts(store, project, now) == []
    assert judge_blasts(store, project, now + timedelta(minutes=59)) == []
    assert send(store, project, now + timedelta(minutes=59)).sent == []
    [line] = judge_blasts(store, project, now + timedelta(hours=1))
    assert "under the limits" in line and "10 sent" in line and state(store) == "released"
    assert len(send(store, project, now + timedelta(hours=1)).sent) == 90


def test_a_canary_with_too_many_hard_bounces_pauses_the_campaign(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    project = canary_project(project_dir)
    box = Outbox(store, now)
    ids = blast(box, project, 100)
    send(store, project, now)
    canary = [i for i in ids if (i - ids[0]) % 10 == 0]
    events(store, canary[:2], EventKind.BOUNCE, "hard 5.1.1: 550 user unknown")  # 20 %
    events(store, canary[2:3], EventKind.BOUNCE, "soft 4.2.2: 452 full")  # not counted
    judge_blasts(store, project, now)
    [line] = judge_blasts(store, project, now + timedelta(hours=2))
    assert line.startswith("error ") and "20.00% hard bounces" in line and "paused" in line
    assert "lifecycle resume welcome" in line and state(store) == "paused"
    # Paused: neither the rest nor what the campaign queues later goes out.
    later = box.message(
        box.customer(), created_at=now + timedelta(hours=3), send_after=now + timedelta(hours=3)
    )
    assert send(store, project, now + timedelta(hours=4)).sent == []
    assert box.statuses()[later] == "queued"
    [waiting] = waiting_blasts(store)
    assert waiting["state"] == "paused" and "20.00% hard bounces" in waiting["reason"]
    with Session(store) as session:  # the dashboard's queue page and `report --json`
        [held] = queue(session, now)["held_sends"]
    assert (held["campaign"], held["state"], held["recipients"]) == ("welcome", "paused", 100)
    assert "20.00% hard bounces" in held["reason"]

    assert resume_campaign(store, "welcome", now + timedelta(hours=5)) == 1
    assert len(send(store, project, now + timedelta(hours=5)).sent) == 91
    assert state(store) == "resumed"


@pytest.mark.parametrize(
    ("kind", "detail", "count", "limit_name"),
    [
        (EventKind.COMPLAINT, "abuse report", 1, "complaints"),
        (EventKind.UNSUBSCRIBE, None, 1, "unsubscribes"),
    ],
)
def test_complaints_and_unsubscribes_have_their_own_limits(
    store: Engine,
    project_dir: Path,
    now: datetime,
    kind: EventKind,
    detail: str | None,
    count: int,
    limit_name: str,
) -> None:
    project = canary_project(project_dir)
    box = Outbox(store, now)
    ids = blast(box, project, 100)
    send(store, project, now)
    events(store, [ids[0]], kind, detail)  # 1 of 10: 10 %
    judge_blasts(store, project, now)
    [line] = judge_blasts(store, project, now + timedelta(hours=1))
    assert f"{limit_name} 10.00% over the limit" in line and state(store) == "paused"


def test_a_small_send_and_a_transactional_one_get_no_canary(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    project = canary_project(project_dir)
    campaign = project.campaigns["welcome"]
    with store.begin() as conn:
        assert not open_blast(conn, project, campaign, 50, now)  # not more than min_recipients
        assert not open_blast(
            conn, project, campaign.model_copy(update={"kind": "transactional"}), 500, now
        )
    off = canary_project(project_dir, enabled=False)
    with store.begin() as conn:
        assert not open_blast(conn, off, campaign, 500, now)


def test_resume_on_the_command_line(
    project_dir: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.store.db import make_engine, upgrade

    config = project_dir / "config.yaml"
    engine = make_engine(load_project(config).database_url())
    upgrade(engine)
    project = canary_project(project_dir)
    box = Outbox(engine, now)
    blast(box, project, 100)
    with engine.begin() as conn:
        conn.execute(Blast.__table__.update().values(state="paused"))  # type: ignore[attr-defined]
    engine.dispose()
    runner = CliRunner()
    result = runner.invoke(main, ["resume", "welcome", "--config", str(config)])
    assert result.exit_code == 0 and "welcome: resumed" in result.output
    result = runner.invoke(main, ["resume", "welcome", "--config", str(config)])
    assert result.exit_code == 0 and "nothing waits" in result.output
    result = runner.invoke(main, ["resume", "no_such", "--config", str(config)])
    assert result.exit_code == 1 and "no campaign named 'no_such'" in result.output


# ---------------------------------------------------------------- the ramp of a new domain


def ramp_project(
    project_dir: Path, start: date, first_day: int = 5, growth: float = 2.0
) -> Project:
    project = project_for(project_dir)
    sending = project.config.sending
    ramp = Ramp(start=start, first_day=first_day, growth=growth)
    canary = sending.canary.model_copy(update={"enabled": False})
    config = project.config.model_copy(
        update={"sending": sending.model_copy(update={"ramp": ramp, "canary": canary})}
    )
    return project.__class__(**{**project.__dict__, "config": config})


def test_a_new_domain_sends_a_growing_number_of_marketing_emails_a_day(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    zone = ZoneInfo("Asia/Dhaka")
    today = now.astimezone(zone).date()
    project = ramp_project(project_dir, start=today)
    box = Outbox(store, now)
    box.queue(30)
    receipt = box.message(box.customer(), kind=MessageKind.TRANSACTIONAL)
    assert day_cap(project, now) == 5
    first = send(store, project, now)
    statuses = box.statuses()
    assert statuses[receipt] == "sent"  # never held back
    assert sum(1 for s in statuses.values() if s == "sent") == 6  # 5 marketing + the receipt
    assert send(store, project, now + timedelta(minutes=5)).sent == []  # the day's room is used
    assert len(first.sent) == 6
    # The next shop day: twice as many.
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone).astimezone(
        UTC
    ) + timedelta(hours=9)
    assert day_cap(project, tomorrow) == 10
    assert len(send(store, project, tomorrow).sent) == 10
    # After the ramp has grown past any real send, no limit.
    assert day_cap(ramp_project(project_dir, start=today - timedelta(days=60)), now) is None
    assert day_cap(project_for(project_dir), now) is None
