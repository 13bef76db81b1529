"""Triggers on the customer's clock: yearly dates, a fixed schedule, a one-off broadcast.

Each is due at a local time of day in the customer's timezone (their own, else
the shop's), so the due instants are worked out in Python for each of the few
distinct zones the customers have (read from the index, one seek per zone) and
joined to the customers as a small table; nothing loops over customers. A pass
in which no due instant fell within the step's lookback (or since the previous
pass) reads no customer at all.

- `date`: yearly on `birthday`, the first order's anniversary or the signup's,
  `days_before` it at `at`. The customer's date is matched through its index: for
  each due day, the exact birthday dates of every year (or the UTC range of each
  past year's local day, for a first order or a signup). 29 February falls on 28
  February in other years. Occurrence `<field>-<year>`: once per customer per year.
- `schedule`: every `every` days from `starting`, at `at`; occurrence
  `every-<first day of the period>`.
- `broadcast`: once at a local date and time, set in the file (`at`) or with
  `lifecycle broadcast`; cancelled ones are skipped. Occurrence
  `broadcast-<YYYY-MM-DD HH:MM>`.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, String, and_, column, literal, or_, select, values
from sqlalchemy.sql.selectable import CTE

from ..project import Broadcast, DateTrigger, Schedule
from ..store import UTCDateTime
from .campaignpass import DEFAULT_LOOKBACK, CampaignPass
from .plansql import Candidates, broadcast, customer
from .sendwindow import customer_zone, into_window, local

# The oldest birthday looked for, in years (and so the most dates matched per day).
OLDEST = 130


def plan_date(run: CampaignPass, trigger: DateTrigger) -> None:
    column_of = {
        "birthday": customer.c.birthday,
        "first_order": customer.c.first_order_at,
        "signup": customer.c.created_at,
    }
    field = column_of[trigger.field]
    first = run.conn.execute(select(field).where(field.is_not(None)).order_by(field).limit(1))
    oldest = first.scalar_one_or_none()
    if oldest is None:
        return
    rows = []
    for zone_name, day, due in _due_days(run, trigger.at):
        anniversary = day + timedelta(days=trigger.days_before)
        for original in _same_days(anniversary, oldest.year, trigger.field == "birthday"):
            zone = customer_zone(zone_name, run.shop_zone)
            if trigger.field == "birthday":
                lo: Any = original
                hi: Any = original + timedelta(days=1)
            else:
                lo = local(original, time(0), zone)
                hi = local(original + timedelta(days=1), time(0), zone)
            context = {
                "date_field": trigger.field,
                "date": anniversary.isoformat(),
                "years": anniversary.year - original.year,
            }
            rows.append(
                (
                    zone_name,
                    lo,
                    hi,
                    f"{trigger.field}-{anniversary.year}",
                    *_times(run, due, zone),
                    json.dumps(context),
                )
            )
    if not rows:
        return
    kind = Date if trigger.field == "birthday" else UTCDateTime
    table = _table(rows, [column("lo", kind), column("hi", kind)], "date_due")
    # A birthday is a whole day: equal to it, so the index on birthday is used.
    on_day = field == table.c.lo if trigger.field == "birthday" else field >= table.c.lo
    joined = customer.join(table, _in_zone(run, table) & on_day & (field < table.c.hi))
    run.queue(_candidates(run, joined, table))


def plan_schedule(run: CampaignPass, trigger: Schedule) -> None:
    rows = []
    every = trigger.every.days
    for zone_name, day, due in _due_days(run, trigger.at):
        since_start = (day - trigger.starting).days
        if since_start < 0 or since_start % every:
            continue
        zone = customer_zone(zone_name, run.shop_zone)
        context = {"period_start": day.isoformat()}
        rows.append(
            (zone_name, f"every-{day.isoformat()}", *_times(run, due, zone), json.dumps(context))
        )
    if rows:
        table = _table(rows, [], "schedule_due")
        run.queue(_candidates(run, customer.join(table, _in_zone(run, table)), table))


def plan_broadcast(run: CampaignPass, trigger: Broadcast) -> None:
    rows = []
    latest, earliest = _bounds(run)
    for moment in broadcast_times(run, trigger):
        text = moment.strftime("%Y-%m-%d %H:%M")
        for zone_name in run.customer_zones():
            zone = customer_zone(zone_name, run.shop_zone)
            due = local(moment.date(), moment.time(), zone)
            if earliest < due <= latest:
                context = {"broadcast_at": text}
                rows.append(
                    (zone_name, f"broadcast-{text}", *_times(run, due, zone), json.dumps(context))
                )
    if rows:
        table = _table(rows, [], "broadcast_due")
        run.queue(_candidates(run, customer.join(table, _in_zone(run, table)), table))


def broadcast_times(run: CampaignPass, trigger: Broadcast) -> list[datetime]:
    """The campaign's broadcasts not cancelled: the file's `at` and those set since."""
    rows = run.conn.execute(
        select(broadcast.c.local_at, broadcast.c.cancelled_at).where(
            broadcast.c.campaign == run.campaign.name
        )
    ).all()
    cancelled = {at for at, when in rows if when is not None}
    wanted = {at for at, when in rows if when is None}
    if trigger.at is not None:
        wanted.add(trigger.at.strftime("%Y-%m-%d %H:%M"))
    out = []
    for text in sorted(wanted - cancelled):
        try:
            out.append(datetime.strptime(text, "%Y-%m-%d %H:%M"))
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------- the due table


def _bounds(run: CampaignPass) -> tuple[datetime, datetime]:
    """(latest, earliest) trigger due times this step looks at: within its lookback,
    or since the previous pass."""
    latest = run.now - run.delay
    earliest = latest - (run.expires_after or DEFAULT_LOOKBACK)
    if run.since is not None:
        earliest = max(earliest, run.since - run.delay)
    return latest, earliest


def _due_days(run: CampaignPass, at: time) -> Iterator[tuple[str, date, datetime]]:
    """(zone, local day, the trigger's due instant in UTC) within the step's bounds."""
    latest, earliest = _bounds(run)
    for zone_name in run.customer_zones():
        zone = customer_zone(zone_name, run.shop_zone)
        day = earliest.astimezone(zone).date() - timedelta(days=1)
        while day <= latest.astimezone(zone).date() + timedelta(days=1):
            due = local(day, at, zone)
            if earliest < due <= latest:
                yield zone_name, day, due
            day += timedelta(days=1)


def _same_days(anniversary: date, oldest_year: int, birthday: bool) -> Iterator[date]:
    """Every earlier date whose yearly day is `anniversary` (29 February on the 28th
    in a year without one). A birthday may be this year's; an anniversary is not."""
    first_year = max(oldest_year, anniversary.year - OLDEST)
    last_year = anniversary.year if birthday else anniversary.year - 1
    leap_day_too = (
        anniversary.month == 2 and anniversary.day == 28 and not calendar.isleap(anniversary.year)
    )
    for year in range(first_year, last_year + 1):
        if anniversary.month == 2 and anniversary.day == 29 and not calendar.isleap(year):
            continue  # a 28 February date has its own day, also in leap years
        yield anniversary.replace(year=year)
        if leap_day_too and calendar.isleap(year):
            yield date(year, 2, 29)


def _times(
    run: CampaignPass, due: datetime, zone: Any
) -> tuple[datetime, datetime, datetime, datetime]:
    """(entry, the step's due instant, when it may go, when it expires) for a trigger due at
    `due`: the customer enters the flow when the trigger falls due."""
    step_due = due + run.delay
    window = run.project.config.sending.window
    send_after = into_window(max(step_due, run.now), window.start, window.end, zone)
    expires = step_due + (run.expires_after or DEFAULT_LOOKBACK)
    return (
        due.astimezone(UTC),
        step_due.astimezone(UTC),
        send_after.astimezone(UTC),
        expires.astimezone(UTC),
    )


def _table(rows: list[tuple[Any, ...]], keys: list[Any], name: str) -> CTE:
    return (
        values(
            column("zone", String),
            *keys,
            column("occurrence", String),
            column("entry", UTCDateTime),
            column("due", UTCDateTime),
            column("send_after", UTCDateTime),
            column("expires_at", UTCDateTime),
            column("context", String),
            name=name,
        )
        .data(rows)
        .cte(name, nesting=True)
    )


def _in_zone(run: CampaignPass, table: CTE) -> Any:
    """The customer's zone is the row's: their own, or the shop's when they have none.

    Written on the plain column (not coalesce) so PostgreSQL estimates the audience from
    the column's statistics; a wrong guess of a few rows made it check suppressions by
    a nested loop over a million customers.
    """
    shop = run.project.config.shop.timezone
    return or_(
        customer.c.timezone == table.c.zone,
        and_(customer.c.timezone.is_(None), table.c.zone == literal(shop)),
    )


def _candidates(run: CampaignPass, joined: Any, table: CTE) -> Candidates:
    return Candidates(
        joined,
        [],
        table.c.occurrence,
        table.c.due,
        table.c.send_after,
        table.c.expires_at,
        {"context": run.sql.json_text(table.c.context)},
        entry=table.c.entry,
    )
