"""No process outlives the one that started it: SIGKILL `lifecycle send` or `lifecycle run`
while its composer process works, and nothing it started is left running."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.composepool import POOL_FROM
from engine.db import make_engine, upgrade
from tests.daemon_fixtures import Daemon, SlowSink, configure, free_port
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
    deadline = time.monotonic() + 5
    while (left := process.descendants()) and time.monotonic() < deadline:
        time.sleep(0.05)
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
