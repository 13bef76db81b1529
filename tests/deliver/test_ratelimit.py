"""The shop's sending rate, shared by its daemons: slots from one row of the store, on
SQLite and PostgreSQL; two dispatchers with a mailer each, sending to one SMTP server
on 127.0.0.1, keep to the rate together."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from engine.deliver.dispatcher import dispatch
from engine.deliver.mailer import SmtpMailer
from engine.deliver.ratelimit import SharedRate, SharedSlots
from engine.project.loader import Project, Secrets
from engine.store.db import make_engine
from tests.delivery_fixtures import Outbox, PlainComposer, project_for
from tests.founding import founding_project
from tests.smtp_servers import Script, ServerThread


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    return founding_project(project_dir)


def two_daemons_send(postgres_url: str, project: Project, now: datetime) -> None:
    """Two dispatch passes at once, each with its own engine and mailer (two daemons)."""

    def daemon() -> None:
        own = make_engine(postgres_url)  # a daemon of its own: its own pool

        async def go() -> None:
            secrets = Secrets(smtp_password="x")
            mailer = SmtpMailer.from_project(project, secrets, own)
            try:
                await dispatch(
                    own,
                    project,
                    secrets,
                    mailer,
                    now,
                    composer=PlainComposer(),
                    worker_id=f"w{threading.get_ident()}",
                )
            finally:
                await mailer.close()

        asyncio.run(go())
        own.dispose()

    threads = [threading.Thread(target=daemon) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_two_takers_share_the_slots_without_overlap(store: Engine) -> None:
    clock = lambda: 1_000.0  # noqa: E731 - a frozen clock: slots are laid end to end
    first, second = SharedRate(store, 10, clock), SharedRate(store, 10, clock)
    slots = first._grab(3) + second._grab(2) + first._grab(3)
    assert slots == pytest.approx([1000.0 + k * 0.1 for k in range(8)])


def test_after_a_quiet_time_slots_start_from_now_not_the_past(store: Engine) -> None:
    now = [1_000.0]
    rate = SharedRate(store, 4, lambda: now[0])
    assert rate._grab(2) == pytest.approx([1000.0, 1000.25])
    now[0] = 2_000.0  # nothing saved up while nobody sent: no burst
    assert rate._grab(2) == pytest.approx([2000.0, 2000.25])


@pytest.mark.postgres
def test_two_daemons_together_keep_to_the_shops_rate(
    postgres_url: str, project_dir: Path, now: datetime
) -> None:
    """40 emails at 20 a second take about 2 s whether one daemon sends them or two:
    each daemon alone would go at 20 a second, together at 40 without the shared row."""
    from engine.store.db import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    box = Outbox(engine, now)
    box.queue(40)
    script = Script()
    arrivals: list[float] = []
    original = script.handle_DATA

    async def timed(*args: object) -> str:
        arrivals.append(time.monotonic())
        return await original(*args)  # type: ignore[arg-type]

    script.handle_DATA = timed  # type: ignore[method-assign]
    with ServerThread(script).running() as port:
        project = project_for(project_dir, port, rate_per_second=20.0, connections=2, batch_size=5)

        two_daemons_send(postgres_url, project, now)
    engine.dispose()
    assert len(arrivals) == 40 and len(script.received) == 40
    took = max(arrivals) - min(arrivals)
    # 39 gaps of 50 ms at least (a slot's moment is when it may start; none earlier).
    assert took >= 39 / 20 - 0.05, f"40 emails in {took:.2f} s: faster than 20 a second"
    # And in any one second of the run, no more than the rate, give or take the one
    # slot at each edge that the server's own timing (an arrival, not a slot) shifts.
    for start in arrivals:
        assert sum(1 for a in arrivals if start <= a < start + 1) <= 22


def test_connection_slots_are_the_shops_and_leased(store: Engine) -> None:
    now = [datetime(2026, 11, 20, tzinfo=UTC)]
    slots = SharedSlots(store, 2, lambda: now[0])
    assert [slots.acquire("a"), slots.acquire("b"), slots.acquire("c")] == [0, 1, None]
    slots.release(0, "a")
    assert slots.acquire("c") == 0
    assert not slots.renew(1, "a")  # not a's
    now[0] += timedelta(seconds=61)  # b and c died: their leases ran out
    assert slots.acquire("d") == 0 and slots.renew(0, "d") and slots.acquire("x") == 1
    assert SharedSlots(store, 3, lambda: now[0]).acquire("e") == 2  # more connections: a new slot


@pytest.mark.postgres
def test_two_daemons_together_open_no_more_connections_than_the_shops(
    postgres_url: str, project_dir: Path, now: datetime
) -> None:
    from engine.store.db import upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    box = Outbox(engine, now)
    box.queue(30)
    script = Script()
    most = [0]
    original = script.handle_DATA

    async def counted(*args: object) -> str:
        live = sum(
            1 for s in script.open if s.transport is not None and not s.transport.is_closing()
        )
        most[0] = max(most[0], live)
        await asyncio.sleep(0.02)  # keep each connection busy a little, so they overlap
        return await original(*args)  # type: ignore[arg-type]

    script.handle_DATA = counted  # type: ignore[method-assign]
    with ServerThread(script).running() as port:
        project = project_for(
            project_dir, port, rate_per_second=1000.0, connections=2, batch_size=5
        )

        two_daemons_send(postgres_url, project, now)
    engine.dispose()
    assert len(script.received) == 30, box.statuses()
    assert 1 <= most[0] <= 2, f"{most[0]} connections open at once for a shop that allows 2"


def test_a_very_high_rate_takes_a_bounded_number_of_slots_at_once(store: Engine) -> None:
    rate = SharedRate(store, 1e9, lambda: 1_000.0)
    assert rate.chunk == 1000 and len(rate._grab(rate.chunk)) == 1000
