"""The safety brake for big marketing sends: the canary goes first, the rest waits.

A pass that queues more than `sending.canary.min_recipients` marketing emails for a
campaign records them as a blast (`engine.plan.blasts`). While the blast is in
state `canary`, only its canary share is due (`held` keeps the rest out of every
claim). Once every canary email has ended (sent, failed, expired) and
`sending.canary.watch` has passed, `judge_blasts` counts what came back for the
canary's sent emails:

- hard bounces (`bounce` events recorded as hard), complaints and unsubscribes, each
  as a share of the canary's sent emails;
- all under their limits (`max_hard_bounces`, `max_complaints`, `max_unsubscribes`):
  the blast is `released` and the rest goes out;
- any over: the blast is `paused`, the log says why with the figures, and the
  campaign's emails queued since wait too, until `lifecycle resume CAMPAIGN`
  (`resume_campaign`). Waiting emails still expire at their `expires_at`.

A canary of which nothing could be sent (every address suppressed, every email
expired) gives no evidence; the blast is released and the log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, exists, func, select, update
from sqlalchemy.engine import Connection, Engine

from ..project import Project
from ..store import Blast, BlastState, EventKind, Message, MessageEvent, MessageStatus

log = logging.getLogger(__name__)

BLAST: Any = Blast.__table__  # type: ignore[attr-defined]
MESSAGE: Any = Message.__table__  # type: ignore[attr-defined]
EVENT: Any = MessageEvent.__table__  # type: ignore[attr-defined]
B, M, E = BLAST.c, MESSAGE.c, EVENT.c
PENDING = (MessageStatus.QUEUED, MessageStatus.RETRY, MessageStatus.SENDING)
HUNDRED = Decimal(100)


def held() -> Any:
    """Messages that wait: a blast's beyond its canary while the canary is judged, and
    every message of a paused campaign queued since the paused blast."""
    waiting_for_canary = (
        (B.state == BlastState.CANARY.value)
        & (B.created_at == M.created_at)
        & ((M.id - B.first_message_id) % B.canary_every != 0)
    )
    paused = (B.state == BlastState.PAUSED.value) & (B.created_at <= M.created_at)
    return exists().where(B.campaign == M.campaign, waiting_for_canary | paused)


@dataclass(frozen=True)
class Figures:
    sent: int
    hard_bounces: int
    complaints: int
    unsubscribes: int

    def share(self, count: int) -> Decimal:
        return (
            (Decimal(count) * HUNDRED / self.sent).quantize(Decimal("0.01"))
            if self.sent
            else Decimal(0)
        )


def judge_blasts(engine: Engine, project: Project, now: datetime) -> list[str]:
    """Judge every blast whose canary has ended and been watched; return log lines."""
    canary = project.config.sending.canary
    lines: list[str] = []
    with engine.begin() as conn:
        for blast in conn.execute(select(BLAST).where(B.state == BlastState.CANARY.value)).all():
            of_canary = and_(
                M.campaign == blast.campaign,
                M.created_at == blast.created_at,
                (M.id - blast.first_message_id) % blast.canary_every == 0,
            )
            pending = conn.execute(
                select(func.count()).where(of_canary, M.status.in_([s.value for s in PENDING]))
            ).scalar_one()
            if pending:
                continue
            if blast.canary_done_at is None:
                conn.execute(update(BLAST).where(B.id == blast.id).values(canary_done_at=now))
                continue
            if now < blast.canary_done_at + canary.watch:
                continue
            figures = _figures(conn, of_canary)
            over = _over_limits(figures, project)
            said = (
                f"campaign {blast.campaign}: the canary of a send to {blast.recipients:,} "
                f"({figures.sent:,} sent): {figures.share(figures.hard_bounces)}% hard bounces, "
                f"{figures.share(figures.complaints)}% complaints, "
                f"{figures.share(figures.unsubscribes)}% unsubscribes"
            )
            if over:
                state, line = (
                    BlastState.PAUSED,
                    f"error {said}; paused: {'; '.join(over)} (`lifecycle resume {blast.campaign}` sends the rest)",
                )
            elif figures.sent == 0:
                state, line = (
                    BlastState.RELEASED,
                    f"campaign {blast.campaign}: nothing of the canary could be sent, so it says nothing; the rest goes out",
                )
            else:
                state, line = BlastState.RELEASED, f"{said}; under the limits, the rest goes out"
            conn.execute(
                update(BLAST)
                .where(B.id == blast.id, B.state == BlastState.CANARY.value)
                .values(
                    state=state.value, decided_at=now, reason=line.removeprefix("error ")[:1000]
                )
            )
            lines.append(line)
    return lines


def _figures(conn: Connection, of_canary: Any) -> Figures:
    sent = conn.execute(
        select(func.count()).where(of_canary, M.status == MessageStatus.SENT.value)
    ).scalar_one()

    def messages_with(condition: Any) -> Any:
        return func.count(func.distinct(case((condition, E.message_id))))

    row = conn.execute(
        select(
            messages_with((E.kind == EventKind.BOUNCE.value) & E.detail.startswith("hard ")),
            messages_with(E.kind == EventKind.COMPLAINT.value),
            messages_with(E.kind == EventKind.UNSUBSCRIBE.value),
        )
        .select_from(EVENT.join(MESSAGE, M.id == E.message_id))
        .where(of_canary)
    ).one()
    return Figures(int(sent), int(row[0]), int(row[1]), int(row[2]))


def _over_limits(figures: Figures, project: Project) -> list[str]:
    canary = project.config.sending.canary
    over = []
    for name, count, limit in (
        ("hard bounces", figures.hard_bounces, canary.max_hard_bounces),
        ("complaints", figures.complaints, canary.max_complaints),
        ("unsubscribes", figures.unsubscribes, canary.max_unsubscribes),
    ):
        share = figures.share(count)
        if figures.sent and share > limit:
            over.append(f"{name} {share}% over the limit of {limit}%")
    return over


def resume_campaign(engine: Engine, campaign: str, now: datetime) -> int:
    """Let a paused (or still judged) campaign's waiting emails go; return how many
    blasts were resumed."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                update(BLAST)
                .where(
                    B.campaign == campaign,
                    B.state.in_([BlastState.PAUSED.value, BlastState.CANARY.value]),
                )
                .values(state=BlastState.RESUMED.value, decided_at=now)
            ).rowcount
        )


def waiting_blasts(engine: Engine) -> list[dict[str, Any]]:
    """The blasts whose emails wait (canary judged, or paused), for the log and dashboard."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(BLAST)
            .where(B.state.in_([BlastState.CANARY.value, BlastState.PAUSED.value]))
            .order_by(B.created_at)
        ).all()
    return [dict(row._mapping) for row in rows]
