"""`lifecycle run`: the secret rule, one tick in-process, and real daemons on loopback."""

from __future__ import annotations

import asyncio
import email
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.cli import main
from engine.daemon import SHUTDOWN_GRACE_SECONDS, _scheduler, demo_secret, describe
from engine.daemon import Daemon as InProcessDaemon
from engine.deliver.mailer import MemoryMailer
from engine.project.loader import Secrets, load_project
from engine.reload import ProjectWatcher
from engine.store.db import make_engine, upgrade
from engine.store.locks import FileLock
from engine.store.models import Customer, EventKind, Message, MessageEvent, MessageStatus
from tests.daemon_fixtures import (
    API_KEY,
    SECRET,
    SLOW_MARK,
    Daemon,
    SlowSink,
    configure,
    free_port,
    seed_first_orders,
    slow_check_env,
)
from tests.founding import founding_project


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    """The shipped project with the founding campaigns only (see tests/founding.py)."""
    return founding_project(project_dir)


def test_run_refuses_to_start_without_a_secret(project_dir: Path):
    result = CliRunner().invoke(
        main, ["run", "--config", str(project_dir / "config.yaml")], env={"LIFECYCLE_SECRET": ""}
    )
    assert result.exit_code == 2
    assert "LIFECYCLE_SECRET is not set" in result.output
    assert "--demo" in result.output


def test_run_refuses_a_short_secret(project_dir: Path):
    result = CliRunner().invoke(
        main,
        ["run", "--config", str(project_dir / "config.yaml")],
        env={"LIFECYCLE_SECRET": "short"},
    )
    assert result.exit_code == 2


def test_run_refuses_an_invalid_project(project_dir: Path):
    (project_dir / "campaigns" / "welcome.yaml").write_text("name: welcome\nshedule: 1\n")
    result = CliRunner().invoke(
        main,
        ["run", "--config", str(project_dir / "config.yaml")],
        env={"LIFECYCLE_SECRET": SECRET},
    )
    assert result.exit_code == 2
    assert "campaigns/welcome.yaml" in result.output


def test_the_demo_secret_is_made_once_and_kept_private(tmp_path: Path):
    first = demo_secret(tmp_path)
    path = tmp_path / ".lifecycle-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert demo_secret(tmp_path) == first


# ---------------------------------------------------------------- one tick, in-process


NOON = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)  # noon in Dhaka, inside any send window


@dataclass
class InProcess:
    """A daemon in this process on a SQLite file, sending to a MemoryMailer; `moment` is its clock."""

    config: Path
    engine: Engine
    mailer: MemoryMailer
    moment: list[datetime]

    def daemon(self, lock: Path, **options: Any) -> InProcessDaemon:
        project = load_project(self.config)
        daemon = InProcessDaemon(
            self.config,
            self.engine,
            Secrets(secret=SECRET),
            ProjectWatcher(project, self.config),
            FileLock(lock),
            clock=lambda: self.moment[0],
            **options,
        )
        daemon.mailer = self.mailer
        return daemon

    def touch_config(self) -> None:
        """Make the config look edited (a later mtime), as a marketer's save would."""
        self.config.write_text(self.config.read_text())
        os.utime(self.config, ns=(0, self.config.stat().st_mtime_ns + 2_000_000_000))


@pytest.fixture
def in_process(project_dir: Path, tmp_path: Path) -> Iterator[InProcess]:
    config = configure(
        project_dir, smtp_port=1, http_port=1, database=f"sqlite:///{tmp_path / 'shop.db'}"
    )
    engine = make_engine(load_project(config).database_url(Secrets()))
    upgrade(engine)
    yield InProcess(config, engine, MemoryMailer(), [NOON])
    engine.dispose()


def test_one_tick_plans_sends_and_picks_up_an_edit(in_process: InProcess, tmp_path: Path):
    engine, config, mailer = in_process.engine, in_process.config, in_process.mailer
    seed_first_orders(engine, NOON, 3)

    async def scenario() -> tuple[object, object]:
        daemon = in_process.daemon(tmp_path / "l")
        first = await daemon.tick_once()
        # The marketer turns the welcome off while it runs.
        config.write_text(config.read_text().replace("  - welcome\n", ""))
        in_process.touch_config()
        seed_first_orders(engine, NOON, 2, prefix="d")
        second = await daemon.tick_once()
        assert "welcome" not in daemon.project.config.campaigns
        return first, second

    first, second = asyncio.run(scenario())
    assert first.dispatch.counts["sent"] == 3
    assert {r for _, r, _ in mailer.sent} == {"c0@example.com", "c1@example.com", "c2@example.com"}
    assert "welcome" not in second.plan.campaigns
    assert any("campaign welcome: queued 3" in line for line in describe(first))


def test_a_rush_is_composed_in_a_process_of_its_own(in_process: InProcess, tmp_path: Path):
    """More due than `pool_from`: a composer process helps; an edit or a quiet tick stops it."""
    engine = in_process.engine
    seed_first_orders(engine, NOON, 5)

    async def scenario() -> list[object]:
        daemon = in_process.daemon(tmp_path / "l", pool_from=3)
        pools = []
        report = await daemon.tick_once()  # 5 due: composed in the pool
        assert report.dispatch.counts["sent"] == 5
        pools.append(daemon.compose_pool)
        in_process.touch_config()
        in_process.moment[0] = NOON + timedelta(minutes=2)
        seed_first_orders(engine, in_process.moment[0], 4, prefix="d")
        report = await daemon.tick_once()  # reloaded: a new pool for the new project
        assert report.dispatch.counts["sent"] == 4
        pools.append(daemon.compose_pool)
        await daemon.tick_once()  # nothing due: the pool is stopped
        pools.append(daemon.compose_pool)
        return pools

    first, second, quiet = asyncio.run(scenario())
    assert first is not None and second is not None and first is not second
    assert quiet is None
    sent = [data for _, _, data in in_process.mailer.sent]
    assert len(sent) == 9 and all(b"List-Unsubscribe-Post" in data for data in sent)


def test_a_broken_template_is_refused_and_the_last_good_one_still_sends(
    in_process: InProcess, tmp_path: Path
):
    """The marketer breaks the welcome while the daemon runs: the reload is refused and
    a welcome due meanwhile goes out with the template the daemon last accepted."""
    engine = in_process.engine
    page = in_process.config.parent / "templates" / "emails" / "welcome.html"

    async def scenario() -> Any:
        daemon = in_process.daemon(tmp_path / "l")
        page.write_text(
            page.read_text().replace("{% block content %}", "{% block content %}{% if %}", 1)
        )
        os.utime(page, ns=(0, page.stat().st_mtime_ns + 2_000_000_000))
        seed_first_orders(engine, NOON, 1)
        report = await daemon.tick_once()
        assert daemon.watcher.refused == 1
        return report

    report = asyncio.run(scenario())
    assert report.dispatch.counts == {"sent": 1}, report.dispatch.errors
    [(_, recipient, data)] = in_process.mailer.sent
    assert recipient == "c0@example.com"
    with Session(engine) as session:
        [status] = session.scalars(select(Message.status)).all()
    assert status == MessageStatus.SENT
    body = email.message_from_bytes(data, policy=default)
    html = body.get_body(("html",))
    assert html is not None and "{% if %}" not in html.get_content()


# ---------------------------------------------------------------- real daemons


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def message_urls(eml: Path) -> dict[str, str]:
    parsed = email.message_from_bytes(eml.read_bytes(), policy=default)
    html = parsed.get_body(("html",)).get_content()
    urls = dict.fromkeys(("o", "c", "u"), "")
    for kind in urls:
        found = re.search(rf'"(http://127\.0\.0\.1:\d+/{kind}/[^"]+)"', html)
        assert found, f"no /{kind}/ link in {eml.name}"
        urls[kind] = found.group(1).replace("&amp;", "&")
    return urls


@pytest.mark.slow
def test_a_real_daemon_takes_an_event_sends_and_tracks(project_dir: Path, daemons):
    http_port, smtp_port = free_port(), free_port()
    database = project_dir / "shop.db"
    config = configure(
        project_dir, smtp_port=smtp_port, http_port=http_port, database=f"sqlite:///{database}"
    )
    daemon = Daemon(config, ["--demo"]).start()
    daemons.append(daemon)
    base = f"http://127.0.0.1:{http_port}"
    daemon.wait_for(lambda: _ok(f"{base}/healthz"), why="the tracking server")
    assert f"emails land in {project_dir / 'outbox'}" in daemon.output()

    # Dated a few seconds ahead: a planning pass that runs between an order's time and
    # its recording sees it only at the next full pass (15 minutes on), by design.
    now = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    events = [
        {
            "id": f"p-{sku}",
            "type": "product.upserted",
            "product": {"sku": sku, "name": sku, "price": "100"},
        }
        for sku in ("JUTE-BAG-01", "SARI-JAM-01")  # the holiday offers' products
    ] + [
        {
            "id": "e1",
            "type": "product.upserted",
            "product": {"sku": "TEA-500G", "name": "Sylhet tea", "price": "450.00"},
        },
        {
            "id": "e2",
            "type": "customer.upserted",
            "customer": {
                "id": "c1",
                "email": "rahim@example.com",
                "name": "Rahim",
                "locale": "en",
                "marketing_consent": True,
            },
        },
        {
            "id": "e3",
            "type": "order.placed",
            "order": {
                "id": "o1",
                "customer_id": "c1",
                "placed_at": now,
                "items": [{"sku": "TEA-500G", "quantity": 1}],
            },
        },
    ]
    with httpx.Client(timeout=10) as client:
        response = client.post(
            f"{base}/api/events", json=events, headers={"authorization": f"Bearer {API_KEY}"}
        )
        assert response.status_code == 200, response.text
        # A second daemon on the same SQLite database refuses to start.
        second = Daemon(config, ["--demo"]).start("second")
        daemons.append(second)
        assert second.process.wait(30) == 1
        assert "only one daemon" in second.output()
        outbox = project_dir / "outbox"
        [eml] = daemon.wait_for(
            lambda: sorted(outbox.glob("*.eml")), why="the welcome email in outbox/"
        )
        urls = message_urls(eml)
        pixel = client.get(
            urls["o"], headers={"user-agent": "Mozilla/5.0 (X11; Linux) Firefox/120"}
        )
        assert (pixel.status_code, pixel.headers["content-type"]) == (200, "image/gif")
        click = client.get(urls["c"])
        assert click.status_code == 302 and click.headers["location"].startswith("https://")
        page = client.get(urls["u"])
        assert page.status_code == 200 and "<form" in page.text
        done = client.post(urls["u"], content=b"List-Unsubscribe=One-Click")
        assert done.status_code == 200

    engine = make_engine(f"sqlite:///{database}")

    def tracked() -> set[str]:
        with Session(engine) as session:
            return set(session.execute(select(MessageEvent.kind)).scalars())

    daemon.wait_for(
        lambda: tracked() >= {EventKind.OPEN, EventKind.CLICK, EventKind.UNSUBSCRIBE}, why="events"
    )
    with Session(engine) as session:
        assert session.execute(select(Customer.marketing_consent)).scalar_one() is False
        message = session.execute(select(Message)).scalar_one()
        assert (message.campaign, message.status) == ("welcome", MessageStatus.SENT)
    engine.dispose()
    assert daemon.stop(signal.SIGTERM) == 0
    assert "stopped" in daemon.output()
    FileLock(f"{database}.lock").acquire()  # released on the way out


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_sigkill_mid_send_then_restart_sends_nothing_twice(project_dir: Path, daemons):
    sink = SlowSink()
    try:
        database = project_dir / "shop.db"
        config = configure(
            project_dir,
            smtp_port=sink.port,
            http_port=free_port(),
            database=f"sqlite:///{database}",
            lease="2s",
            batch_size="1",
            connections="1",
        )
        engine = make_engine(f"sqlite:///{database}")
        upgrade(engine)
        seed_first_orders(engine, datetime.now(UTC), 6)
        sink.slow.set()
        first = Daemon(config).start("first")
        daemons.append(first)
        first.wait_for(lambda: sink.started, why="a send in flight")
        first.stop(signal.SIGKILL)
        in_flight = set(sink.started)
        sink.slow.clear()

        second = Daemon(config).start("second")
        daemons.append(second)

        def settled() -> bool:
            with Session(engine) as session:
                open_rows = session.execute(
                    select(func.count()).where(
                        Message.status.in_(
                            [MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRY]
                        )
                    )
                ).scalar_one()
                total = session.execute(select(func.count()).select_from(Message)).scalar_one()
            return total == 6 and open_rows == 0

        second.wait_for(settled, timeout=40, why="every message sent or in doubt")
        assert second.stop() == 0
        with Session(engine) as session:
            rows = session.execute(
                select(Customer.email, Message.status).join(
                    Customer, Customer.id == Message.customer_id
                )
            ).all()
        status = dict(rows)
        assert len(sink.started) == len(set(sink.started)), (
            f"a message went out twice: {sink.started}"
        )
        assert all(status[address] == MessageStatus.IN_DOUBT for address in in_flight)
        assert set(status.values()) <= {MessageStatus.SENT, MessageStatus.IN_DOUBT}
        sent = {a for a, s in status.items() if s == MessageStatus.SENT}
        assert sent and sent <= set(sink.accepted)
        engine.dispose()
    finally:
        sink.close()


@pytest.mark.slow
def test_sigterm_lets_the_send_in_flight_finish(project_dir: Path, daemons):
    sink = SlowSink(delay=1.5)
    try:
        database = project_dir / "shop.db"
        config = configure(
            project_dir,
            smtp_port=sink.port,
            http_port=free_port(),
            database=f"sqlite:///{database}",
            batch_size="1",
            connections="1",
        )
        engine = make_engine(f"sqlite:///{database}")
        upgrade(engine)
        seed_first_orders(engine, datetime.now(UTC), 4)
        daemon = Daemon(config).start()
        daemons.append(daemon)
        daemon.wait_for(lambda: sink.started, why="a send in flight")
        assert daemon.stop(signal.SIGTERM) == 0
        assert not sink.slow.is_set() and sink.accepted  # the server answered it
        with Session(engine) as session:
            status = dict(
                session.execute(
                    select(Customer.email, Message.status).join(
                        Customer, Customer.id == Message.customer_id
                    )
                ).all()
            )
        assert {status[address] for address in sink.accepted} == {MessageStatus.SENT}
        unsent = [a for a, s in status.items() if a not in sink.started]
        assert unsent and all(status[a] == MessageStatus.QUEUED for a in unsent)
        engine.dispose()
    finally:
        sink.close()


def test_the_tick_job_is_coalesced_single_and_never_dropped():
    async def job() -> None:
        return None

    async def scenario() -> None:
        scheduler = _scheduler(job, 60)
        [tick] = scheduler.get_jobs()
        assert (tick.coalesce, tick.max_instances, tick.misfire_grace_time) == (True, 1, None)
        assert tick.trigger.interval.total_seconds() == 60
        assert str(scheduler.timezone) == "UTC"
        assert tick.next_run_time <= datetime.now(UTC)  # the first tick runs at start

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_runaway_edit_neither_stalls_tracking_nor_holds_up_sigterm(project_dir: Path, daemons):
    http_port = free_port()
    config = configure(
        project_dir,
        smtp_port=free_port(),
        http_port=http_port,
        database=f"sqlite:///{project_dir / 'shop.db'}",
    )
    daemon = Daemon(config, env=slow_check_env()).start()
    daemons.append(daemon)
    base = f"http://127.0.0.1:{http_port}"
    daemon.wait_for(lambda: _ok(f"{base}/healthz"), why="the tracking server")

    template = project_dir / "templates" / "emails" / "welcome.txt"
    template.write_text(template.read_text() + SLOW_MARK + "\n")
    time.sleep(2)  # a tick every second: the check has begun
    slowest = 0.0
    with httpx.Client(timeout=5) as client:
        for _ in range(25):
            started = time.monotonic()
            pixel = client.get(f"{base}/o/not-a-token.gif")
            slowest = max(slowest, time.monotonic() - started)
            assert pixel.status_code == 200
            time.sleep(0.05)
    assert slowest < 1, f"the pixel took {slowest:.2f} s while the edit was checked"
    assert "checking the edited project (welcome.txt)" in daemon.output()
    assert daemon.descendants(), "the check is no longer running: the test proves nothing"

    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=SHUTDOWN_GRACE_SECONDS) == 0
    assert time.monotonic() - started < 10
    assert "stopped" in daemon.output()
    assert not daemon.left_behind(), "the check outlived the daemon"


# ---------------------------------------------------------------- what waits for its window

DHAKA_8AM = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # the shop's clock reads 08:00


def test_run_says_what_waits_for_the_send_window_and_when_it_opens(
    sqlite_store: Engine, project_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """At 08:00 in Dhaka most of the demo waits: `run` says how many, and that
    the first of them goes at 09:00 in Dhaka; said once, not every minute."""
    import logging

    from engine.demo import MIN_CUSTOMERS, seed_demo
    from engine.store.db import session_scope

    with session_scope(sqlite_store) as session:
        seed_demo(session, now=DHAKA_8AM, customers=MIN_CUSTOMERS)
    config = project_dir / "config.yaml"  # the shipped window, 09:00-20:00
    moment = [DHAKA_8AM]
    daemon = InProcessDaemon(
        config,
        sqlite_store,
        Secrets(secret=SECRET),
        ProjectWatcher(load_project(config), config),
        FileLock(tmp_path / "lock"),
        clock=lambda: moment[0],
    )
    daemon.mailer = MemoryMailer()

    async def two_ticks() -> None:
        await daemon.tick_once()
        moment[0] += timedelta(minutes=1)
        await daemon.tick_once()

    with caplog.at_level(logging.INFO, logger="engine.daemon"):
        asyncio.run(two_ticks())
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]
    (line,) = [text for text in said if text.startswith("waiting for the send window")]
    assert "09:00-20:00 in each customer's own time" in line
    assert line.endswith("the next window opens at 2026-11-22 09:00 Asia/Dhaka")
    with Session(sqlite_store) as session:
        waiting = session.execute(
            select(Message.campaign, func.count())
            .where(Message.status == MessageStatus.QUEUED, Message.send_after > moment[0])
            .group_by(Message.campaign)
        ).all()
    assert dict(waiting)["holiday_preannounce"] > 0
    told = sum(int(n) for text in said for n in re.findall(r": (\d+) queued", text))
    assert told == sum(n for _, n in waiting)
    for campaign, _ in waiting:
        assert any(re.search(rf"\b{campaign} \d+", text) for text in said), campaign
