"""Broadcasts: when a broadcast campaign goes out, set and cancelled by the shop.

A broadcast campaign (`trigger: {type: broadcast}`) sends once, to its segment, at a
date and time on each customer's own clock: `trigger.at` in its file, or each time
set with `lifecycle broadcast CAMPAIGN --at "2026-12-10 10:00"`. The `broadcast`
table holds the times set here and the cancellations; the planner reads it and
queues occurrence `broadcast-<YYYY-MM-DD HH:MM>` for each time not cancelled.

Cancelling is refused once any email of that occurrence was sent or is being sent
(it cannot be taken back); otherwise the row gets `cancelled_at` and the
occurrence's queued and retrying emails are expired, saying why. The file's time is
cancelled with a row of its own, so the file need not change.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from ..errors import DataError, UnknownRecord
from ..project import Broadcast, Campaign, Project
from ..store import BroadcastTime, Message, MessageStatus

LOCAL_FORMAT = "%Y-%m-%d %H:%M"
EXAMPLE = '"2026-12-10 10:00"'
# A broadcast with any email in these states has started: it can no longer be cancelled.
STARTED = (MessageStatus.SENT, MessageStatus.SENDING, MessageStatus.IN_DOUBT)
# What cancelling stops: emails that have not gone yet.
STOPPABLE = (MessageStatus.QUEUED, MessageStatus.RETRY)


@dataclass(frozen=True)
class BroadcastEntry:
    """One time a broadcast campaign goes out (or was to), with its emails so far."""

    campaign: str
    local_at: str  # 'YYYY-MM-DD HH:MM' on each customer's clock
    in_file: bool  # the campaign file's `trigger.at` (else set with `lifecycle broadcast`)
    set_at: datetime | None  # when it was set with `lifecycle broadcast`
    cancelled_at: datetime | None
    messages: dict[str, int] = field(default_factory=dict)  # status → emails

    @property
    def occurrence(self) -> str:
        return occurrence(self.local_at)

    @property
    def state(self) -> str:
        """cancelled, sent (some went), queued (emails wait) or planned (none yet)."""
        if self.cancelled_at is not None:
            return "cancelled"
        if any(self.messages.get(s, 0) for s in STARTED):
            return "sent"
        return "queued" if self.messages else "planned"

    def as_dict(self) -> dict[str, object]:
        return {
            "campaign": self.campaign,
            "at": self.local_at,
            "occurrence": self.occurrence,
            "source": "file" if self.in_file else "set",
            "set_at": self.set_at.isoformat() if self.set_at else None,
            "cancelled_at": self.cancelled_at.isoformat() if self.cancelled_at else None,
            "state": self.state,
            "messages": dict(self.messages),
        }


@dataclass(frozen=True)
class Cancelled:
    entry: BroadcastEntry
    expired: int  # queued or retrying emails expired


def occurrence(local_at: str) -> str:
    """The occurrence (and dedupe key part) of the broadcast at `local_at`."""
    return f"broadcast-{local_at}"


def parse_local_at(text: str) -> str:
    """'2026-12-10 10:00' (or 2026-12-10T10:00, or 9:30) → the stored 'YYYY-MM-DD HH:MM'.

    Raises DataError for anything else, saying what was expected.
    """
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[ T](\d{1,2}):(\d{2})", text.strip())
    try:
        if match is None:
            raise ValueError
        moment = datetime.combine(
            date.fromisoformat(match.group(1)), time(int(match.group(2)), int(match.group(3)))
        )
    except ValueError:
        raise DataError(
            f"expected a local date and time like {EXAMPLE} (on each customer's clock), "
            f"got {text!r}"
        ) from None
    return moment.strftime(LOCAL_FORMAT)


def broadcast_campaign(project: Project, name: str) -> Campaign:
    """The campaign `name`, which must be a broadcast campaign.

    Raises UnknownRecord (with the closest name) or DataError (another trigger).
    """
    campaign = project.campaigns.get(name)
    if campaign is None:
        broadcasts = sorted(n for n, c in project.campaigns.items() if _is_broadcast(c))
        close = difflib.get_close_matches(name, sorted(project.campaigns), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else "broadcast campaigns: " + (", ".join(broadcasts) or "none")
        )
        raise UnknownRecord(f"no campaign named {name!r} in campaigns/ ({hint})")
    if not _is_broadcast(campaign):
        raise DataError(
            f"campaign {name!r} is triggered by {campaign.trigger.type}, not broadcast: "
            "only a campaign with `trigger: {type: broadcast}` is sent at a time set here"
        )
    return campaign


def list_broadcasts(session: Session, project: Project, name: str) -> list[BroadcastEntry]:
    """Every time of campaign `name`, the file's and those set, earliest first."""
    campaign = broadcast_campaign(project, name)
    rows = {
        row.local_at: row
        for row in session.execute(
            select(BroadcastTime).where(col(BroadcastTime.campaign) == name)
        ).scalars()
    }
    from_file = _file_time(campaign)
    counts = _message_counts(session, name)
    entries = []
    for local_at in sorted({*rows, *([from_file] if from_file else [])}):
        row = rows.get(local_at)
        in_file = local_at == from_file
        entries.append(
            BroadcastEntry(
                name,
                local_at,
                in_file,
                None if row is None or in_file else row.created_at,
                None if row is None else row.cancelled_at,
                counts.get(occurrence(local_at), {}),
            )
        )
    return entries


def set_broadcast(
    session: Session, project: Project, name: str, at: str, *, now: datetime
) -> tuple[BroadcastEntry, bool]:
    """Send campaign `name` at `at` on each customer's clock; (the entry, whether new).

    Setting a time already set changes nothing. Raises DataError for a time that
    has passed on the shop's clock, or one that was cancelled.
    """
    broadcast_campaign(project, name)
    local_at = parse_local_at(at)
    _refuse_past(project, local_at, now)
    existing = _entry(list_broadcasts(session, project, name), local_at)
    if existing is not None:
        if existing.cancelled_at is not None:
            raise DataError(
                f"the broadcast of {name} at {local_at} was cancelled at "
                f"{existing.cancelled_at.isoformat()}; a cancelled broadcast is not sent "
                "again: choose another time"
            )
        return existing, False
    session.add(BroadcastTime(campaign=name, local_at=local_at, created_at=now))
    session.flush()
    return BroadcastEntry(name, local_at, False, now, None), True


def cancel_broadcast(
    session: Session, project: Project, name: str, at: str | None, *, now: datetime
) -> Cancelled:
    """Cancel the broadcast of campaign `name` at `at` (None: its one time still to go).

    Raises DataError when there is no such time, it is already cancelled, or any of
    its emails was sent or is being sent (also when a sender claims one while this
    runs: the caller must then roll back, as `session_scope` does).
    """
    entries = list_broadcasts(session, project, name)
    entry = _chosen(entries, name, None if at is None else parse_local_at(at))
    if entry.cancelled_at is not None:
        raise DataError(
            f"the broadcast of {name} at {entry.local_at} is already cancelled "
            f"(at {entry.cancelled_at.isoformat()})"
        )
    _refuse_started(name, entry.local_at, sum(entry.messages.get(s, 0) for s in STARTED))
    _mark_cancelled(session, entry, now)
    expired = session.execute(
        update(Message)
        .where(
            col(Message.campaign) == name,
            col(Message.occurrence) == entry.occurrence,
            col(Message.status).in_(STOPPABLE),
        )
        .values(
            status=MessageStatus.EXPIRED,
            last_error=f"broadcast cancelled at {now.isoformat()}",
        )
        .execution_options(synchronize_session=False)
    )
    # A sender may have claimed one between the count and the update: then the caller's
    # transaction rolls back, and the broadcast stays as it was.
    counts = _message_counts(session, name).get(entry.occurrence, {})
    _refuse_started(name, entry.local_at, sum(counts.get(s, 0) for s in STARTED))
    cancelled = BroadcastEntry(
        name, entry.local_at, entry.in_file, entry.set_at, now, entry.messages
    )
    return Cancelled(cancelled, int(expired.rowcount or 0))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the steps


def _is_broadcast(campaign: Campaign) -> bool:
    return isinstance(campaign.trigger, Broadcast)


def _file_time(campaign: Campaign) -> str | None:
    at = campaign.trigger.at if isinstance(campaign.trigger, Broadcast) else None
    return at.strftime(LOCAL_FORMAT) if at is not None else None


def _message_counts(session: Session, name: str) -> dict[str, dict[str, int]]:
    """{occurrence: {status: emails}} of the campaign's broadcasts."""
    query = (
        select(col(Message.occurrence), col(Message.status), func.count())
        .where(col(Message.campaign) == name, col(Message.occurrence).startswith("broadcast-"))
        .group_by(col(Message.occurrence), col(Message.status))
    )
    out: dict[str, Counter[str]] = {}
    for found, status, count in session.execute(query):
        out.setdefault(found, Counter())[str(status)] += count
    return {k: dict(v) for k, v in out.items()}


def _refuse_started(name: str, local_at: str, started: int) -> None:
    if started:
        raise DataError(
            f"the broadcast of {name} at {local_at} has started: {started} email"
            f"{'s' if started != 1 else ''} sent or being sent; it can no longer be cancelled"
        )


def _refuse_past(project: Project, local_at: str, now: datetime) -> None:
    zone = ZoneInfo(project.config.shop.timezone)
    shop_now = now.astimezone(zone)
    if datetime.strptime(local_at, LOCAL_FORMAT).replace(tzinfo=zone) <= shop_now:
        raise DataError(
            f"{local_at} has already passed on the shop's clock "
            f"({project.config.shop.timezone}: now {shop_now:{LOCAL_FORMAT}}): "
            "choose a time still to come"
        )


def _entry(entries: list[BroadcastEntry], local_at: str) -> BroadcastEntry | None:
    return next((e for e in entries if e.local_at == local_at), None)


def _chosen(entries: list[BroadcastEntry], name: str, local_at: str | None) -> BroadcastEntry:
    """The entry at `local_at`, or the one not cancelled that has not started."""
    if local_at is not None:
        entry = _entry(entries, local_at)
        if entry is None:
            times = ", ".join(e.local_at for e in entries) or "none"
            raise DataError(f"campaign {name} has no broadcast at {local_at} (set: {times})")
        return entry
    waiting = [e for e in entries if e.state in ("planned", "queued")]
    if len(waiting) == 1:
        return waiting[0]
    if not waiting:
        raise DataError(f"campaign {name} has no broadcast waiting to go out")
    times = ", ".join(e.local_at for e in waiting)
    raise DataError(f"campaign {name} has {len(waiting)} broadcasts to go ({times}): say which")


def _mark_cancelled(session: Session, entry: BroadcastEntry, now: datetime) -> None:
    row = session.execute(
        select(BroadcastTime).where(
            col(BroadcastTime.campaign) == entry.campaign,
            col(BroadcastTime.local_at) == entry.local_at,
        )
    ).scalar_one_or_none()
    if row is None:  # the file's time: a row of its own says it is cancelled
        row = BroadcastTime(campaign=entry.campaign, local_at=entry.local_at, created_at=now)
    row.cancelled_at = now
    session.add(row)
    session.flush()
