"""One step of the daemon: plan, then send. `lifecycle tick` and the scheduler call it.

`tick(now)` is steppable: tests call it with a fixed `now`, never through the
scheduler thread.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from .deliver import Composes, DispatchReport, Mailer, dispatch, judge_blasts
from .project import Project, Secrets

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    at: datetime
    plan: Any | None  # engine.plan.planner.PlanReport, or None when planning was skipped
    dispatch: DispatchReport

    @property
    def paused(self) -> bool:
        return self.dispatch.paused

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "plan": self.plan.as_dict() if self.plan is not None else None,
            "dispatch": self.dispatch.as_dict(),
        }


async def tick(
    engine: Engine,
    project: Project,
    secrets: Secrets,
    mailer: Mailer,
    now: datetime,
    *,
    plan: bool = True,
    limit: int | None = None,
    worker_id: str | None = None,
    composer: Composes | None = None,
    stop: asyncio.Event | None = None,
    progress: Any = None,
    compose_pool: Executor | None = None,
) -> TickReport:
    """Queue what is due at `now` (unless `plan` is false), judge the canaries of big
    sends whose time has come (`engine.deliver.canary`), then send what is due.

    The planner is imported here, not at module load, so sending works on its own.
    A long-running caller (the daemon) may pass a `compose_pool` from
    `engine.deliver.composepool.start_compose_pool`, made once and reused every tick.
    """
    planned = None
    if plan:
        from .plan import plan as run_planner

        planned = run_planner(engine, project, now)
    for line in await asyncio.to_thread(judge_blasts, engine, project, now):
        if line.startswith("error "):
            log.error(line.removeprefix("error "))
        else:
            log.info(line)
    sent = await dispatch(
        engine,
        project,
        secrets,
        mailer,
        now,
        limit=limit,
        worker_id=worker_id,
        composer=composer,
        progress=progress,
        stop=stop,
        compose_pool=compose_pool,
    )
    return TickReport(now, planned, sent)
