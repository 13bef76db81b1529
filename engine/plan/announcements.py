"""Holiday pre-announcements: which holiday occurrences are open, and moving queued ones.

For each listed holiday and each of its dates this year and next, the
occurrence `<holiday id>-<year>` is due at `at` on the customer's clock
`days_before` the date, and is queued from then until the end of the holiday
date (local), and not past `expires_after`. When a holiday's date moves,
queued messages for it get the new `holiday_date`, `send_after` and
`expires_at` in one UPDATE.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Date, String, and_, column, false, literal, not_, or_, select, update, values
from sqlalchemy.sql.selectable import CTE

from ..project import HolidayTrigger
from ..store import MessageStatus, UTCDateTime
from .calendar import HolidayDate, holiday_dates
from .plansql import Candidates, customer, message
from .sendwindow import customer_zone, into_window, local

if TYPE_CHECKING:
    from .campaignpass import CampaignPass

log = logging.getLogger(__name__)


def plan_announcements(run: CampaignPass, trigger: HolidayTrigger) -> None:
    """Move queued messages whose holiday moved, then queue the occurrences open now.

    With `early_access`, customers in those loyalty tiers are queued first, from
    `early_access.days_before` the date; everyone else (and a customer who joins the
    tier later) from `days_before`. Both share the occurrence, so each gets one email.
    """
    holidays = _holiday_occurrences(run, trigger)
    _move_holidays(run, trigger, holidays)
    early, first = trigger.early_access, None
    if early is not None:
        sooner = trigger.model_copy(update={"days_before": early.days_before})
        first = _holiday_rows(run, sooner, holidays)
        if first is not None:
            first.where.append(customer.c.tier.in_(early.tiers))
            run.queue(first)
    candidates = _holiday_rows(run, trigger, holidays)
    if candidates is not None:
        if early is not None and first is not None:  # (those are counted once, above)
            tier = customer.c.tier
            candidates.where.append(or_(tier.is_(None), tier.not_in(early.tiers)))
        run.queue(candidates)


def _holiday_occurrences(run: CampaignPass, trigger: HolidayTrigger) -> list[HolidayDate]:
    """The trigger's holidays this year and next (read once per pass)."""
    years = [run.now.year, run.now.year + 1]
    dated = holiday_dates(run.project, years, run.conn)
    return [h for h in dated if h.id in trigger.holidays]


def _holiday_table(
    run: CampaignPass,
    trigger: HolidayTrigger,
    holidays: list[HolidayDate],
    zones: Iterable[str],
    only_open: bool,
) -> CTE | None:
    """Per zone and holiday occurrence: due, send_after and expiry, computed in Python.

    Due at `at` local time `days_before` the holiday; queued from then until the
    end of the holiday date (local), and not past `expires_after`.
    """
    window = run.project.config.sending.window
    rows = []
    for name in zones:
        zone = customer_zone(name, run.shop_zone)
        for holiday in holidays:
            day = holiday.date - timedelta(days=trigger.days_before)
            due = local(day, trigger.at, zone)
            expires = local(holiday.date + timedelta(days=1), time(0), zone)
            if trigger.expires_after is not None:
                expires = min(expires, due + trigger.expires_after)
            if only_open and not due <= run.now < expires:
                continue
            if only_open and run.since is not None and due <= run.since:
                continue  # looked at by an earlier pass
            send_after = into_window(max(due, run.now), window.start, window.end, zone)
            context = json.dumps({"holiday_name": holiday.name}, ensure_ascii=False)
            rows.append(
                (
                    name,
                    holiday.id,
                    holiday.occurrence,
                    holiday.date,
                    due,
                    send_after,
                    expires,
                    context,
                )
            )
    if not rows:
        return None
    return (
        values(
            column("zone", String),
            column("holiday", String),
            column("occurrence", String),
            column("holiday_date", Date),
            column("due", UTCDateTime),
            column("send_after", UTCDateTime),
            column("expires_at", UTCDateTime),
            column("context", String),
            name="holiday_due",
        )
        .data(rows)
        .cte("holiday_due", nesting=True)
    )


def _holiday_rows(
    run: CampaignPass, trigger: HolidayTrigger, holidays: list[HolidayDate]
) -> Candidates | None:
    if not _any_holiday_open(run, trigger, holidays):
        return None
    zones = run.zones(customer, [literal(True)])
    due = _holiday_table(run, trigger, holidays, zones, only_open=True)
    if due is None:
        return None
    return Candidates(
        customer.join(due, due.c.zone == run.tz),
        [],
        due.c.occurrence,
        due.c.due,
        due.c.send_after,
        due.c.expires_at,
        {
            "holiday": due.c.holiday,
            "holiday_date": due.c.holiday_date,
            "context": run.sql.json_text(due.c.context),
        },
    )


def _any_holiday_open(
    run: CampaignPass, trigger: HolidayTrigger, holidays: list[HolidayDate]
) -> bool:
    """Cheap test before looking at customers: is any occurrence open in any zone?"""
    widest = timedelta(hours=15)  # UTC−12 … UTC+14, and a little
    for holiday in holidays:
        day = holiday.date - timedelta(days=trigger.days_before)
        due = datetime.combine(day, trigger.at, UTC)
        end = datetime.combine(holiday.date + timedelta(days=1), time(0), UTC)
        if not due - widest <= run.now < end + widest:
            continue
        if run.since is None or due + widest > run.since:
            return True  # (between full passes: only when a zone's due time may be new)
    return False


def _move_holidays(run: CampaignPass, trigger: HolidayTrigger, current: list[HolidayDate]) -> None:
    """Unsent (queued or retrying) messages whose holiday moved get the new date, send_after, expiry."""
    unchanged = or_(
        false(),
        *(
            and_(message.c.occurrence == h.occurrence, message.c.holiday_date == h.date)
            for h in current
        ),
    )
    stale = [
        message.c.campaign == run.campaign.name,
        message.c.status.in_([MessageStatus.QUEUED.value, MessageStatus.RETRY.value]),
        message.c.occurrence.in_([h.occurrence for h in current]),
        not_(unchanged),
    ]
    owner = customer.c.id == message.c.customer_id
    zones_query = select(run.tz).distinct().select_from(message.join(customer, owner)).where(*stale)
    zones = [z for z in run.conn.execute(zones_query).scalars() if z is not None]
    table = _holiday_table(run, trigger, current, zones, only_open=False) if zones else None
    if table is None:
        return

    def new(name: str) -> Any:
        return (
            select(table.c[name])
            .select_from(customer)
            .where(owner, table.c.zone == run.tz, table.c.occurrence == message.c.occurrence)
            .scalar_subquery()
        )

    moved = run.write(
        update(message)
        .where(*stale)
        .values(
            holiday_date=new("holiday_date"),
            send_after=new("send_after"),
            expires_at=new("expires_at"),
        )
    )
    if moved:
        log.info("campaign %s: %d queued messages follow a moved holiday", run.campaign.name, moved)
