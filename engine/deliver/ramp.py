"""A daily ramp for a new sending domain: few marketing emails the first day, more each day.

Mailbox providers distrust a domain that starts with a flood. With `sending.ramp`
(`start` date, `first_day` emails, `growth` per day), the marketing emails sent on
day n of the ramp (days counted from `start` in the shop's timezone; before it, day
0) are at most `first_day × growthⁿ`; once that passes `UNLIMITED` the ramp is over.
Transactional emails are never held back. What waits goes out on the next day, or
expires at its `expires_at` like any email.

The count is of this shop day's marketing emails sent, and those in flight
(claimed by any dispatcher), so two daemons together keep to it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from ..project import Project
from ..store import Message, MessageKind, MessageStatus

M: Any = Message.__table__.c  # type: ignore[attr-defined]
UNLIMITED = 10_000_000


def day_cap(project: Project, now: datetime) -> int | None:
    """Today's most marketing emails under the ramp (None: no ramp, or it is over)."""
    ramp = project.config.sending.ramp
    if ramp is None:
        return None
    zone = ZoneInfo(project.config.shop.timezone)
    day = max(0, (now.astimezone(zone).date() - ramp.start).days)
    cap = float(ramp.first_day) * float(ramp.growth) ** min(day, 400)
    return None if cap >= UNLIMITED else int(cap)


def marketing_room(engine: Engine, project: Project, now: datetime) -> int | None:
    """How many more marketing emails may be claimed today (None: no limit)."""
    cap = day_cap(project, now)
    if cap is None:
        return None
    zone = ZoneInfo(project.config.shop.timezone)
    local = now.astimezone(zone)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(now.tzinfo)
    # ix_message_due (status, send_after): sent rows of the last days only.
    recent = day_start - project.config.sending.max_age - timedelta(days=1)
    sent_today = (
        (M.status == MessageStatus.SENT.value) & (M.send_after >= recent) & (M.sent_at >= day_start)
    )
    in_flight = M.status == MessageStatus.SENDING.value
    with engine.connect() as conn:
        used = conn.execute(
            select(func.count()).where(
                M.kind == MessageKind.MARKETING.value, or_(sent_today, in_flight)
            )
        ).scalar_one()
    return max(0, cap - int(used))
