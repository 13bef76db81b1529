"""Customers' send windows: local clock times as UTC, and the window's openings per zone.

A customer's zone is their stored timezone, else the shop's; an invalid stored
timezone is logged and falls back to the shop's. A window whose end is before
its start closes the next day.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import String, column, values
from sqlalchemy.sql.selectable import CTE

from ..project import SendWindow
from ..store import UTCDateTime

log = logging.getLogger(__name__)


def customer_zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        log.warning("customer timezone %r is not valid (%s); using %s", name, exc, fallback.key)
        return fallback


def local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`at` o'clock on `day` in `zone`, as UTC (a time skipped by DST moves forward)."""
    moment = datetime.combine(day, at, zone)
    return moment.astimezone(UTC)


def window_on(day: date, start: time, end: time, zone: ZoneInfo) -> tuple[datetime, datetime]:
    closes_day = day if end > start else day + timedelta(days=1)
    return local(day, start, zone), local(closes_day, end, zone)


def into_window(due: datetime, start: time, end: time, zone: ZoneInfo) -> datetime:
    """`due` if the customer's clock then reads inside the window, else the next opening."""
    day = due.astimezone(zone).date() - timedelta(days=1)
    for _ in range(4):
        opens, closes = window_on(day, start, end, zone)
        if due < closes:
            return max(due, opens)
        day += timedelta(days=1)
    raise AssertionError("a daily window always opens within a few days")


def window_rows(
    zones: Iterable[str], start: datetime, end: datetime, window: SendWindow, shop_zone: ZoneInfo
) -> CTE:
    """(zone, opens, closes) in UTC for every local day from `start` to `end`, per zone."""
    rows = []
    for name in zones:
        zone = customer_zone(name, shop_zone)
        day = start.astimezone(zone).date() - timedelta(days=1)
        while day <= end.astimezone(zone).date() + timedelta(days=1):
            opens, closes = window_on(day, window.start, window.end, zone)
            rows.append((name, opens, closes))
            day += timedelta(days=1)
    # nesting=True keeps the WITH inside the INSERT, so the statement still
    # begins with INSERT (Python's sqlite3 opens transactions only for those).
    return (
        values(
            column("zone", String),
            column("opens", UTCDateTime),
            column("closes", UTCDateTime),
            name="send_window",
        )
        .data(rows)
        .cte("send_window", nesting=True)
    )
