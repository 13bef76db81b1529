"""The dry run: what `dispatch` would do now, writing nothing.

`rehearse` takes the due messages as `dispatch` would claim them (without a
lease), re-checks them with the outbox's `precheck`, composes them and hands
them to a `MemoryMailer`; the `DispatchReport` counts each with the status it
would get. Every change to the session is rolled back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ..project import Project, Secrets
from ..store import Message, MessageStatus
from .composepool import Composes, compose, unsendable_reason
from .dispatchreport import DispatchReport
from .mailer import MemoryMailer, Outcome
from .outbox import M, due, load_claimed, precheck


async def rehearse(
    engine: Engine,
    project: Project,
    secrets: Secrets,
    now: datetime,
    *,
    limit: int | None = None,
    composer: Composes | None = None,
) -> DispatchReport:
    """What `dispatch` would do now, writing nothing: the due messages are checked,
    composed and 'sent' to a MemoryMailer. Counts use the statuses they would get."""
    if composer is None:
        from .compose import Composer

        composer = Composer(project, secrets)
    report = DispatchReport("dry-run", dry_run=True)
    mailer = MemoryMailer()
    query = select(M.id).where(due(now)).order_by(M.send_after, M.id).limit(limit)
    with Session(engine) as session:
        ids = list(session.scalars(query))
        report.claimed = len(ids)
        for start in range(0, len(ids), project.config.sending.batch_size):
            chunk = load_claimed(session, ids[start : start + project.config.sending.batch_size])
            await _rehearse_chunk(session, chunk, composer, mailer, report, now)
        session.rollback()
    return report


async def _rehearse_chunk(
    session: Session,
    chunk: list[Any],
    composer: Composes,
    mailer: MemoryMailer,
    report: DispatchReport,
    now: datetime,
) -> None:
    to_send = []
    for row in chunk:
        verdict = precheck(row, now)
        if verdict is None:
            to_send.append(row)
        else:
            report.count(row.campaign, verdict[0])
    messages = list(
        session.scalars(select(Message).where(M.id.in_([r.id for r in to_send])).order_by(M.id))
    )
    for row, result in zip(to_send, compose(composer, session, messages, now), strict=True):
        reason = unsendable_reason(result)
        if reason is not None:
            report.count(row.campaign, MessageStatus.FAILED)
            report.error(row.id, f"failed: {reason}")
            continue
        sent = await mailer.send(result.sender, result.recipient, result.data)
        report.count(row.campaign, MessageStatus.SENT if sent.outcome is Outcome.SENT else "other")
