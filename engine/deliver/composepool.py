"""Composing claimed messages for the dispatcher, in this process or in a pool.

`compose` builds a batch with the `Composer` and, if the batch fails, each
message on its own, so one bad message cannot hold the others. With a pool
from `start_compose_pool`, batches are composed in separate processes (each
with its own database engine and templates compiled once) while the
dispatcher's loop sends, so composing and sending use separate cores.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ..errors import ConfigError
from ..project import Project, Secrets
from ..store import Message

log = logging.getLogger(__name__)

POOL_FROM = 1000  # due messages from which composing gets a process of its own

M: Any = Message.__table__.c  # type: ignore[attr-defined]


class Composes(Protocol):
    """engine.deliver.compose.Composer: one Outgoing (has .data) or Unsendable (has .reason)
    per message, in order; `now` is the Date header."""

    def prepare(
        self, session: Session, messages: Sequence[Message], *, now: datetime
    ) -> list[Any]: ...


def compose(
    composer: Composes, session: Session, messages: Sequence[Message], now: datetime
) -> list[Any]:
    """Compose a batch; if the composer fails on the batch, compose one by one so one
    bad message cannot stop the others (it gets a `ComposeFailure`)."""
    try:
        results = composer.prepare(session, messages, now=now)
        if len(results) != len(messages):
            raise RuntimeError(f"composer returned {len(results)} results for {len(messages)}")
        return results
    except ConfigError:
        raise
    except Exception:
        log.exception("composing a batch of %d failed; composing one by one", len(messages))
    results = []
    for message in messages:
        try:
            results.extend(composer.prepare(session, [message], now=now))
        except ConfigError:
            raise
        except Exception as exc:  # a bug for one message must not hold the batch in `sending`
            log.exception("composing message %s failed", message.id)
            results.append(ComposeFailure(message.id or 0, f"{type(exc).__name__}: {exc}"))
    return results


def compose_ids(
    composer: Composes, session: Session, ids: Sequence[int], now: datetime
) -> list[Any]:
    """Load the messages `ids` (in that order) and compose them."""
    query = select(Message).where(M.id.in_(ids)).order_by(M.id)
    messages = {m.id: m for m in session.scalars(query)}
    return compose(composer, session, [messages[i] for i in ids], now)


# A composer process (see `compose_processes`): its own database engine and Composer.
_IN_WORKER: dict[str, Any] = {}


def _start_worker(parent_pid: int, url: str, project: Project, secrets: Secrets) -> None:
    from ..children import die_with_parent
    from ..store import make_engine
    from .compose import Composer

    die_with_parent(parent_pid)

    _IN_WORKER["engine"] = make_engine(url)
    _IN_WORKER["composer"] = Composer(project, secrets)


def compose_in_worker(ids: list[int], now: datetime) -> list[Any]:
    with Session(_IN_WORKER["engine"]) as session:
        return compose_ids(_IN_WORKER["composer"], session, ids, now)


def start_compose_pool(
    engine: Engine, project: Project, secrets: Secrets, processes: int = 1
) -> Executor:
    """Processes that compose batches beside the sending loop (templates compiled once
    in each), so composing and sending use separate cores.

    They are started now, from the calling thread, and end when this process dies,
    even by SIGKILL (`engine.children`); call it from the main thread.
    """
    url = engine.url.render_as_string(hide_password=False)
    pool = ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), url, project, secrets),
    )
    for _ in range(processes):  # a worker is started by a submit that finds none idle
        pool.submit(int)
    return pool


def stop_compose_pool(pool: Executor, wait: float) -> None:
    """Stop the pool: its processes may finish the batch in hand for `wait` seconds, then
    they are killed (a batch of templates that run to their time limit can take minutes),
    so a stopping daemon stops in time. Blocks for at most about `wait` seconds."""
    # ProcessPoolExecutor cannot kill its workers before Python 3.14 (`terminate_workers`).
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + wait
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning("a composer process did not stop in %g s; killing it", wait)
            worker.kill()
            worker.join()


@dataclass(frozen=True)
class ComposeFailure:
    message_id: int
    reason: str


def unsendable_reason(result: Any) -> str | None:
    return None if hasattr(result, "data") else str(getattr(result, "reason", result))


def unsendable_retries(result: Any) -> bool:
    """Whether an unsendable result waits to be tried again (a template error)."""
    return bool(getattr(result, "retry", False))
