"""The report: one entry for every figure, and its JSON form.

`build_report` is the one source of every figure `lifecycle report` prints and
the dashboard shows (docs/metrics.md, "Reports"). It computes the sections asked
for over one period [start, end) as of `now`, in one read of the store: the
campaign report and its totals (`campaigns`), the activity series (`activity`),
the retention metrics (`retention`), the queue (`queue`) and the rewards
(`rewards`: coupons, store credit, tiers, referrals).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from ..errors import StoreError
from ..project import Project
from ..store import session_scope
from .activity import activity
from .campaigns import BENCHMARKS, campaign_report, totals
from .queue import queue
from .retention import ACTIVITY_DAYS, ReportError, buckets, retention
from .rewards import rewards

DEFAULT_DAYS = 30


def period(
    first: date | None, last: date | None, now: datetime, timezone: str
) -> tuple[datetime, datetime]:
    """[start, end) from calendar dates in the shop's timezone, both inclusive.

    Without dates: the last 30 days up to `now`. With only `first`: from it to
    `now`; with only `last`: the 30 days up to the end of that day.
    """
    zone = ZoneInfo(timezone)
    end = now if last is None else datetime.combine(last + timedelta(days=1), time(), zone)
    start = (
        end - timedelta(days=DEFAULT_DAYS)
        if first is None
        else datetime.combine(first, time(), zone)
    )
    if start >= end:
        raise ReportError(f"--from {first} must be on or before --to {last or now.date()}")
    return start.astimezone(now.tzinfo), end.astimezone(now.tzinfo)


SECTIONS = frozenset({"campaigns", "activity", "retention", "queue", "rewards"})


def build_report(
    engine: Engine,
    project: Project,
    start: datetime,
    end: datetime,
    by: str,
    now: datetime,
    *,
    activity_days: int | None = ACTIVITY_DAYS,
    sections: Collection[str] = SECTIONS,
) -> dict[str, Any]:
    """Every figure of the campaign report, activity, queue, retention and rewards for
    [start, end).

    `sections` leaves out the parts a caller does not show ("campaigns" brings
    "totals" with it); the parts computed are the same whatever else is asked.
    `activity_days` (None: config.yaml's `reports.activity_days`, whose default is
    a calendar year) sets the retention's activity window.
    Values are ints, Decimals, datetimes, strings and None; `to_json` makes them
    JSON-ready. Raises ReportError for an impossible period or bucket size.
    """
    unknown = set(sections) - SECTIONS
    if unknown:
        raise ReportError(f"unknown report sections: {', '.join(sorted(unknown))}")
    timezone = project.config.shop.timezone
    buckets(start, end, by, timezone)  # validates the period and `by` before any query
    days = project.config.reports.attribution_days
    if activity_days is None:
        activity_days = project.config.reports.activity_days
    report: dict[str, Any] = {
        "period": {
            "start": start,
            "end": end,
            "by": by,
            "timezone": timezone,
            "now": now,
            "attribution_days": days,
        },
        "benchmarks": dict(BENCHMARKS),
    }
    try:
        with session_scope(engine) as session:
            _fill(report, session, project, sections, activity_days)
    except OperationalError as exc:
        raise StoreError(f"cannot read the report from the database: {exc.orig}") from exc
    return report


def _fill(
    report: dict[str, Any],
    session: Session,
    project: Project,
    sections: Collection[str],
    activity_days: int | None,
) -> None:
    """Compute the asked-for sections of `report` for its period."""
    info = report["period"]
    start, end, now, by, timezone = (info[k] for k in ("start", "end", "now", "by", "timezone"))
    if "campaigns" in sections:
        campaigns = campaign_report(session, project, start, end, now)
        report["campaigns"] = campaigns
        report["totals"] = totals(session, campaigns, start, end, now, info["attribution_days"])
    if "activity" in sections:
        report["activity"] = activity(session, start, end, now, timezone)
    if "retention" in sections:
        report["retention"] = retention(
            session, start, end, by=by, timezone=timezone, activity_days=activity_days
        )
    if "queue" in sections:
        report["queue"] = queue(session, now)
    if "rewards" in sections:
        report["rewards"] = rewards(session, project, start, end, now)


def to_json(value: Any) -> Any:
    """The report with Decimals as strings and times as ISO 8601, ready for json.dumps."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool | int | str) or value is None:
        return value
    return str(value)
