"""No process outlives the one that started it: SIGKILL `lifecycle send` or `lifecycle run`
while its composer process works, and nothing it started is left running."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.deliver.composepool import POOL_FROM
from engine.store.db import make_engine, upgrade
from tests.daemon_fixtures import SLOW_MARK, Daemon, SlowSink, configure, free_port, slow_check_env
from tests.delivery_fixtures import Outbox


@pytest.fixture
def sink() -> Iterator[SlowSink]:
    sink = SlowSink()
    sink.slow.set()  # every send stays in flight: the composer process is alive
    yield sink
    sink.close()


@pytest.fixture
def processes() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for process in started:
        process.kill()


def queued_shop(project_dir: Path, sink: SlowSink, due: int) -> Path:
    database = project_dir / "shop.db"
    config = configure(
        project_dir, smtp_port=sink.port, http_port=free_port(), database=f"sqlite:///{database}"
    )
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    Outbox(engine, datetime.now(UTC)).queue(due)
    engine.dispose()
    return config


def killed_leaves_nothing(process: Daemon, sink: SlowSink) -> None:
    process.wait_for(lambda: sink.started, why="a send in flight")
    children = process.descendants()
    assert any("multiprocessing" in command for command in children.values()), children
    process.stop(signal.SIGKILL)
    left = process.left_behind()
    assert not left, f"left running after SIGKILL: {left}"


@pytest.mark.slow
def test_sigkill_of_send_leaves_no_composer_behind(project_dir: Path, sink: SlowSink, processes):
    config = queued_shop(project_dir, sink, 3)
    send = Daemon(config, ["--compose-processes", "1"], command="send").start("send")
    processes.append(send)
    killed_leaves_nothing(send, sink)


@pytest.mark.slow
def test_sigkill_of_run_leaves_no_composer_behind(project_dir: Path, sink: SlowSink, processes):
    config = queued_shop(project_dir, sink, POOL_FROM + 1)  # a rush: composed in a process
    run = Daemon(config).start()
    processes.append(run)
    killed_leaves_nothing(run, sink)


@pytest.mark.slow
def test_sigkill_of_run_leaves_no_check_of_an_edit_behind(project_dir: Path, processes):
    config = configure(
        project_dir,
        smtp_port=free_port(),
        http_port=free_port(),
        database=f"sqlite:///{project_dir / 'shop.db'}",
    )
    run = Daemon(config, env=slow_check_env()).start()
    processes.append(run)
    run.wait_for(lambda: "running: tick every" in run.output(), why="the daemon")
    template = project_dir / "templates" / "emails" / "welcome.txt"
    template.write_text(template.read_text() + SLOW_MARK + "\n")
    run.wait_for(
        lambda: any("spawn_main" in command for command in run.descendants().values()),
        why="the check of the edit",
    )
    run.stop(signal.SIGKILL)
    left = run.left_behind()
    assert not left, f"left running after SIGKILL: {left}"
