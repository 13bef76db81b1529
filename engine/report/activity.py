"""The activity series: sends and the human open rate over time, for one period.

Each sent message counts in the slice of its `sent_at`; it counts as opened when
it has a human open or click up to `now` (`counting`). The slices are days up to
92 days, months up to ten years, years beyond, in the shop's timezone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, exists, func, select
from sqlmodel import Session, col

from ..store import MessageEvent, MessageStatus
from .counting import human, period_messages
from .retention import buckets, percent


def activity(
    session: Session, start: datetime, end: datetime, now: datetime, timezone: str
) -> dict[str, Any]:
    """Sends and human open rate over time: by day up to 92 days, else by month, then year."""
    span = end - start
    grain = (
        "day"
        if span <= timedelta(days=92)
        else ("month" if span <= timedelta(days=3660) else "year")
    )
    slices = buckets(start, end, grain, timezone)
    messages = period_messages(start, end)
    sent_at = messages.c.sent_at
    opened = (
        exists()
        .where(col(MessageEvent.message_id) == messages.c.id, human(now))
        .correlate(messages)
    )
    per_message = (
        select(
            case(*[(sent_at < b.end, i) for i, b in enumerate(slices)], else_=len(slices)).label(
                "slot"
            ),
            case((opened, 1), else_=0).label("opened"),
        )
        .where(messages.c.status == MessageStatus.SENT)
        .subquery()
    )
    query = select(per_message.c.slot, func.count(), func.sum(per_message.c.opened)).group_by(
        per_message.c.slot
    )
    counts = {slot: (sent, opened) for slot, sent, opened in session.execute(query)}
    points = []
    for i, b in enumerate(slices):
        sent, opened = counts.get(i, (0, 0))
        points.append(
            {
                "label": b.label,
                "start": b.start,
                "end": b.end,
                "sent": sent,
                "unique_human_opens": opened,
                "human_open_rate": percent(opened, sent),
            }
        )
    return {"grain": grain, "points": points}
