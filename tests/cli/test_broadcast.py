"""`lifecycle broadcast`: set, list and cancel a broadcast campaign's times, on both stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from engine.cli import main
from engine.errors import DataError, UnknownRecord
from engine.intake.shop import upsert_customer
from engine.plan import cancel_broadcast, list_broadcasts, parse_local_at, set_broadcast
from engine.project.loader import load_project
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import BroadcastTime, Message, MessageStatus
from tests.cli.test_planning import run_only

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka
CAMPAIGN = """\
name: {name}
description: A one-off announcement to everyone
trigger:
  type: broadcast
{at}segment: everyone
template: thank_you
subject: "News from {{{{ shop.name }}}}"
"""


@pytest.fixture
def config(project_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shipped project with two broadcast campaigns (one timed in its file), on both stores."""
    folder = project_dir / "campaigns"
    (folder / "winter_sale.yaml").write_text(CAMPAIGN.format(name="winter_sale", at=""))
    timed = '  at: "2026-12-16 09:00"\n'
    (folder / "victory_day.yaml").write_text(CAMPAIGN.format(name="victory_day", at=timed))
    path = project_dir / "config.yaml"
    run_only(path, "winter_sale", "welcome")
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", store_url)
    engine = make_engine(store_url)
    upgrade(engine)
    engine.dispose()
    yield path


@pytest.fixture
def engine(config: Path, store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    yield engine
    engine.dispose()


def run(config: Path, *args: str, at: datetime = NOW) -> tuple[int, str]:
    with freeze_time(at):
        result = CliRunner().invoke(main, ["broadcast", *args, "--config", str(config)])
    return result.exit_code, result.output


def queue(engine: Engine, campaign: str, local_at: str, *statuses: MessageStatus) -> None:
    """One message of the broadcast's occurrence per status, each to a customer of its own."""
    with session_scope(engine) as s:
        for i, status in enumerate(statuses):
            who = f"{campaign}-{local_at[:10]}-{i}"
            customer = upsert_customer(s, external_id=who, email=f"{who}@example.com", now=NOW)
            s.flush()
            assert customer.id is not None
            s.add(
                Message(
                    dedupe_key=f"{campaign}:{customer.id}:broadcast-{local_at}",
                    campaign=campaign,
                    customer_id=customer.id,
                    occurrence=f"broadcast-{local_at}",
                    status=status,
                    created_at=NOW,
                    send_after=NOW,
                    context={"broadcast_at": local_at},
                )
            )


def statuses(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(col(Message.status), col(Message.last_error))).all()
    return sorted((str(status), error) for status, error in rows)


def test_set_then_list_with_the_file_time(config: Path) -> None:
    code, out = run(config, "winter_sale", "--at", "2026-12-10 10:00")
    assert code == 0, out
    assert "winter_sale goes out at 2026-12-10 10:00 on each customer's clock" in out
    code, out = run(config, "winter_sale", "--at", "2026-12-10T10:00")
    assert code == 0 and "(already set)" in out
    code, out = run(config, "winter_sale", "--list", "--json")
    assert code == 0, out
    [entry] = json.loads(out)
    assert entry == {
        "campaign": "winter_sale",
        "at": "2026-12-10 10:00",
        "occurrence": "broadcast-2026-12-10 10:00",
        "source": "set",
        "set_at": "2026-12-01T04:00:00+00:00",
        "cancelled_at": None,
        "state": "planned",
        "messages": {},
    }
    code, out = run(config, "victory_day", "--at", "2026-12-20 08:30")
    assert code == 0, out
    assert "not listed under campaigns: in config.yaml: it sends nothing until it is" in out
    code, out = run(config, "victory_day", "--list")
    assert code == 0, out
    assert "2026-12-16 09:00" in out and "campaign file" in out and "2026-12-20 08:30" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["winter_sail", "--at", "2026-12-10 10:00"],
            1,
            "no campaign named 'winter_sail' in campaigns/ (did you mean 'winter_sale'?)",
            id="unknown-campaign",
        ),
        pytest.param(
            ["welcome", "--list"],
            1,
            "campaign 'welcome' is triggered by first_order, not broadcast",
            id="not-a-broadcast",
        ),
        pytest.param(
            ["winter_sale", "--at", "10 December 10am"],
            2,
            'expected a local date and time like "2026-12-10 10:00"',
            id="bad-format",
        ),
        pytest.param(
            ["winter_sale", "--at", "2026-02-30 10:00"],
            2,
            "got '2026-02-30 10:00'",
            id="no-such-day",
        ),
        pytest.param(
            ["winter_sale", "--at", "2026-12-01 09:59"],
            1,
            "2026-12-01 09:59 has already passed on the shop's clock "
            "(Asia/Dhaka: now 2026-12-01 10:00)",
            id="past",
        ),
        pytest.param(
            ["winter_sale", "--at", "2026-12-10 10:00", "--cancel"],
            2,
            "give one of --at, --cancel or --list, not --at and --cancel",
            id="two-actions",
        ),
    ],
)
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # refused before any SQL
def test_clear_errors(config: Path, args: list[str], code: int, message: str) -> None:
    found, out = run(config, *args)
    assert found == code, out
    assert message in " ".join(out.split())


def test_cancel_expires_the_queued_emails_and_keeps_it_cancelled(
    config: Path, engine: Engine
) -> None:
    assert run(config, "winter_sale", "--at", "2026-12-10 10:00")[0] == 0
    queue(engine, "winter_sale", "2026-12-10 10:00", MessageStatus.QUEUED, MessageStatus.RETRY,
          MessageStatus.FAILED)  # fmt: skip
    code, out = run(config, "winter_sale", "--cancel", at=NOW + timedelta(hours=1))
    assert code == 0, out
    assert (
        "cancelled the broadcast of winter_sale at 2026-12-10 10:00: 2 queued emails expired" in out
    )
    why = "broadcast cancelled at 2026-12-01T05:00:00+00:00"
    assert statuses(engine) == [("expired", why), ("expired", why), ("failed", None)]
    code, out = run(config, "winter_sale", "--list", "--json")
    [entry] = json.loads(out)
    assert (entry["state"], entry["cancelled_at"]) == ("cancelled", "2026-12-01T05:00:00+00:00")
    code, out = run(config, "winter_sale", "--cancel", "2026-12-10 10:00")
    assert code == 1 and "is already cancelled (at 2026-12-01T05:00:00+00:00)" in out
    code, out = run(config, "winter_sale", "--at", "2026-12-10 10:00")
    assert code == 1 and "a cancelled broadcast is not sent again" in " ".join(out.split())
    code, out = run(config, "winter_sale", "--cancel")
    assert code == 1 and "has no broadcast waiting to go out" in out


@pytest.mark.parametrize(
    "status", [MessageStatus.SENT, MessageStatus.SENDING, MessageStatus.IN_DOUBT]
)
def test_a_broadcast_that_has_started_cannot_be_cancelled(
    config: Path, engine: Engine, status: MessageStatus
) -> None:
    assert run(config, "winter_sale", "--at", "2026-12-10 10:00")[0] == 0
    queue(engine, "winter_sale", "2026-12-10 10:00", MessageStatus.QUEUED, status)
    code, out = run(config, "winter_sale", "--cancel", "2026-12-10 10:00")
    assert code == 1
    assert "has started: 1 email sent or being sent; it can no longer be cancelled" in " ".join(
        out.split()
    )
    assert statuses(engine) == sorted([("queued", None), (str(status), None)])
    with engine.connect() as conn:
        cancelled = conn.execute(select(col(BroadcastTime.cancelled_at))).scalars().all()
    assert cancelled == [None]


def test_the_file_time_is_cancelled_with_a_row_of_its_own(config: Path, engine: Engine) -> None:
    assert run(config, "victory_day", "--at", "2026-12-20 08:30")[0] == 0
    code, out = run(config, "victory_day", "--cancel")
    assert code == 1 and "has 2 broadcasts to go (2026-12-16 09:00, 2026-12-20 08:30)" in out
    code, out = run(config, "victory_day", "--cancel", "2026-12-16 9:00", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert (done["source"], done["state"], done["expired"]) == ("file", "cancelled", 0)
    with engine.connect() as conn:
        rows = conn.execute(
            select(BroadcastTime.local_at, BroadcastTime.cancelled_at).order_by(  # type: ignore[call-overload]
                BroadcastTime.local_at
            )
        ).all()
    assert rows == [("2026-12-16 09:00", NOW), ("2026-12-20 08:30", None)]
    code, out = run(config, "victory_day", "--cancel", "2026-12-24 09:00")
    assert code == 1
    assert "has no broadcast at 2026-12-24 09:00 (set: 2026-12-16 09:00, 2026-12-20 08:30)" in out


def test_another_campaigns_emails_are_left_alone(config: Path, engine: Engine) -> None:
    """Cancelling touches only this campaign's occurrence, not another time or campaign."""
    project = load_project(config)
    with session_scope(engine) as s:
        set_broadcast(s, project, "winter_sale", "2026-12-10 10:00", now=NOW)
        set_broadcast(s, project, "winter_sale", "2026-12-11 10:00", now=NOW)
    queue(engine, "winter_sale", "2026-12-11 10:00", MessageStatus.QUEUED)
    queue(engine, "victory_day", "2026-12-10 10:00", MessageStatus.QUEUED)
    with session_scope(engine) as s:
        done = cancel_broadcast(s, project, "winter_sale", "2026-12-10 10:00", now=NOW)
    assert done.expired == 0
    assert statuses(engine) == [("queued", None), ("queued", None)]
    with session_scope(engine) as s:
        states = [(e.local_at, e.state) for e in list_broadcasts(s, project, "winter_sale")]
    assert states == [("2026-12-10 10:00", "cancelled"), ("2026-12-11 10:00", "queued")]


def test_the_functions_refuse_what_the_command_refuses(config: Path, engine: Engine) -> None:
    project = load_project(config)
    with session_scope(engine) as s:
        with pytest.raises(UnknownRecord, match="did you mean 'victory_day'"):
            list_broadcasts(s, project, "victory-day")
        with pytest.raises(DataError, match="already passed"):
            set_broadcast(s, project, "winter_sale", "2026-11-30 12:00", now=NOW)
    assert parse_local_at(" 2026-12-10 9:05 ") == "2026-12-10 09:05"
    with pytest.raises(DataError, match="got '2026-12-10 25:00'"):
        parse_local_at("2026-12-10 25:00")


def test_the_planner_queues_a_set_time_and_cancelling_stops_it(
    config: Path, engine: Engine
) -> None:
    """Set with the command, queued by `lifecycle plan` at 10:00 Dhaka, then cancelled."""
    with session_scope(engine) as s:
        for who in ("rima", "tanvir"):
            upsert_customer(s, external_id=who, email=f"{who}@example.com", now=NOW,
                            marketing_consent=True, timezone="Asia/Dhaka")  # fmt: skip
    assert run(config, "winter_sale", "--at", "2026-12-10 10:00")[0] == 0
    with freeze_time(datetime(2026, 12, 10, 4, 1, tzinfo=UTC)):
        done = CliRunner().invoke(main, ["plan", "--json", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["campaigns"]["winter_sale"]["queued"] == 2
    with engine.connect() as conn:
        queued = conn.execute(
            select(col(Message.occurrence), col(Message.context)).where(
                col(Message.campaign) == "winter_sale"
            )
        ).all()
    assert queued == [("broadcast-2026-12-10 10:00", {"broadcast_at": "2026-12-10 10:00"})] * 2
    code, out = run(config, "winter_sale", "--cancel", at=datetime(2026, 12, 10, 4, 2, tzinfo=UTC))
    assert code == 0 and "2 queued emails expired" in out, out
    why = "broadcast cancelled at 2026-12-10T04:02:00+00:00"
    assert statuses(engine) == [("expired", why), ("expired", why)]


def test_a_send_that_starts_while_cancelling_keeps_the_broadcast(
    config: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender claims an email between the check and the update: nothing is cancelled."""
    from engine.plan import broadcasts

    project = load_project(config)
    with session_scope(engine) as s:
        set_broadcast(s, project, "winter_sale", "2026-12-10 10:00", now=NOW)
    queue(engine, "winter_sale", "2026-12-10 10:00", MessageStatus.QUEUED, MessageStatus.QUEUED)
    mark = broadcasts._mark_cancelled

    def claimed_meanwhile(session: Any, entry: Any, now: datetime) -> None:
        first = session.execute(select(Message).order_by(col(Message.id))).scalars().first()
        first.status = MessageStatus.SENDING  # as a dispatcher's lease would
        session.flush()
        mark(session, entry, now)

    monkeypatch.setattr(broadcasts, "_mark_cancelled", claimed_meanwhile)
    started = pytest.raises(DataError, match="has started: 1 email sent or being sent")
    with started, session_scope(engine) as s:
        cancel_broadcast(s, project, "winter_sale", None, now=NOW)
    assert statuses(engine) == [("queued", None), ("queued", None)]  # rolled back, all of it
    with engine.connect() as conn:
        assert conn.execute(select(col(BroadcastTime.cancelled_at))).scalars().all() == [None]
