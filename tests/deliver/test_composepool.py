"""Composing claimed messages in this process and in a composer process, on a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.composepool import (
    ComposeFailure,
    compose,
    compose_ids,
    compose_in_worker,
    start_compose_pool,
    stop_compose_pool,
    unsendable_reason,
)
from engine.project.loader import Secrets, load_project
from engine.store.models import Message
from tests.delivery_fixtures import BrokenComposer, Outbox, PlainComposer

SECRETS = Secrets(secret="compose-pool-secret-0123456789")


def test_a_failing_batch_is_composed_one_by_one(sqlite_store: Engine, now: datetime) -> None:
    box = Outbox(sqlite_store, now)
    ids = box.queue(4)
    composer = BrokenComposer()
    with Session(sqlite_store) as session:
        messages = list(session.scalars(select(Message).order_by(Message.id)))
        results = compose(composer, session, messages, now)
    assert composer.attempts == 1 + 4  # the batch, then each message
    reasons = [unsendable_reason(r) for r in results]
    broken = [i for i, m in zip(ids, messages, strict=True) if m.occurrence == "4"]
    assert [r.message_id for r in results if isinstance(r, ComposeFailure)] == broken
    assert [reason for reason in reasons if reason] == [
        "ValueError: cannot render message with occurrence 4"
    ]


def test_compose_ids_keeps_the_order_it_was_given(sqlite_store: Engine, now: datetime) -> None:
    ids = Outbox(sqlite_store, now).queue(3)
    with Session(sqlite_store) as session:
        results = compose_ids(PlainComposer(), session, list(reversed(ids)), now)
    assert [r.message_id for r in results] == list(reversed(ids))


def test_a_composer_process_composes_what_this_process_would(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    """The real Composer, in a spawned process with its own engine: same bytes as here."""
    from engine.deliver.compose import Composer

    ids = Outbox(sqlite_store, now).queue(2)
    project = load_project(project_dir / "config.yaml")
    with Session(sqlite_store) as session:
        here = compose_ids(Composer(project, SECRETS), session, ids, now)
    pool = start_compose_pool(sqlite_store, project, SECRETS)
    try:
        loop = asyncio.new_event_loop()
        there = loop.run_until_complete(loop.run_in_executor(pool, compose_in_worker, ids, now))
        loop.close()
    finally:
        pool.shutdown()
    assert [r.data for r in there] == [r.data for r in here]
    assert all(b"Subject:" in r.data for r in there)


def test_stopping_a_busy_composer_process_kills_it_in_time(
    sqlite_store: Engine, project_dir: Path
) -> None:
    pool = start_compose_pool(sqlite_store, load_project(project_dir / "config.yaml"), SECRETS)
    pool.submit(time.sleep, 600)  # a batch that would take ten minutes
    [worker] = pool._processes.values()  # type: ignore[attr-defined]
    time.sleep(0.5)
    started = time.monotonic()
    stop_compose_pool(pool, 1)
    assert time.monotonic() - started < 4
    assert not worker.is_alive()
