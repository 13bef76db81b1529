"""Two `lifecycle run` daemons on one PostgreSQL database: one plans, both send,
every message goes out exactly once, and the planner role moves when its holder stops."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from engine.store.db import make_engine, upgrade
from engine.store.models import Customer, Message, MessageStatus
from tests.daemon_fixtures import Daemon, SlowSink, configure, free_port, seed_first_orders
from tests.founding import founding_project


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    """The shipped project with the founding campaigns only (see tests/founding.py)."""
    return founding_project(project_dir)


pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CUSTOMERS = 40
PLANNER = "this daemon is now the planner"


def test_two_daemons_send_each_message_exactly_once(
    postgres_url: str, project_dir: Path, tmp_path: Path
):
    engine = make_engine(postgres_url)
    upgrade(engine)
    addresses = seed_first_orders(engine, datetime.now(UTC), CUSTOMERS)
    sink = SlowSink(delay=0.08)
    started: list[Daemon] = []
    try:
        for name in ("a", "b"):
            shop = tmp_path / name
            shop.mkdir()
            for part in ("config.yaml", "tiers.yaml", "campaigns", "segments", "templates"):
                source = project_dir / part
                target = shop / part
                if source.is_dir():
                    shutil.copytree(source, target)
                else:
                    target.write_bytes(source.read_bytes())
            config = configure(
                shop,
                smtp_port=sink.port,
                http_port=free_port(),
                database="sqlite:///unused.db",
                batch_size="2",
                connections="1",
            )
            daemon = Daemon(config, env={"LIFECYCLE_DATABASE_URL": postgres_url})
            started.append(daemon.start(name))
        a, b = started

        def all_sent() -> bool:
            with Session(engine) as session:
                counts = dict(
                    session.execute(
                        select(Message.status, func.count()).group_by(Message.status)
                    ).all()
                )
            return counts.get(MessageStatus.SENT, 0) == CUSTOMERS

        a.wait_for(all_sent, timeout=60, why=f"{CUSTOMERS} messages sent")
        with Session(engine) as session:
            total = session.execute(select(func.count()).select_from(Message)).scalar_one()
            welcomed = set(
                session.execute(
                    select(Customer.email).join(Message, Message.customer_id == Customer.id)
                ).scalars()
            )
        assert total == CUSTOMERS and welcomed == set(addresses)
        assert sorted(sink.accepted) == sorted(addresses), "a message went out twice or not at all"
        assert len(sink.started) == CUSTOMERS
        planners = [d for d in started if PLANNER in d.output()]
        assert len(planners) == 1, [d.output() for d in started]
        for daemon in started:  # all of them send
            assert re.search(r"campaign welcome: \d+ sent", daemon.output()), daemon.output()

        # The planner stops; the other takes the advisory lock at its next tick.
        [planner] = planners
        other = b if planner is a else a
        assert planner.stop() == 0
        other.wait_for(
            lambda: PLANNER in other.output(), timeout=20, why="the planner role to move"
        )
        assert other.stop() == 0
    finally:
        for daemon in started:
            daemon.kill()
        sink.close()
        engine.dispose()
