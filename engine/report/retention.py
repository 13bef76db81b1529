"""Retention metrics from the orders table, for a period and its calendar buckets.

Every figure follows the definitions in docs/metrics.md ("Retention"), so anyone
can recompute it from `orders`. In short, with the activity window W (a calendar
year back by default, or `activity_days` days) and the period [start, end):

- counted orders: every order whose status is not `cancelled`;
- a customer is *active at t* when they have a counted order placed in [t − W, t);
- S = active at `start`; E = active at `end`; retained = in S and in E;
- N (new) = first counted order ever placed in [start, end);
- lost = S − retained; ordering = customers with a counted order in the period;
- returning = ordering customers who also had a counted order before `start`;
- repeat = ordering customers with at least two counted orders placed before `end`
  (both may lie in the period: a new customer who bought twice is a repeat customer).

CRR = (E − N) / S × 100, churn = lost / S × 100, repeat customer rate =
repeat / ordering × 100, purchase frequency = orders / ordering customers,
average order value = revenue / orders, purchases per year = counted orders
in the calendar year before `end` / customers who placed them, CLV = average
order value × purchases per year × CRR / 100 (taka per customer), NPS = %
promoters (9–10) − % detractors (0–6) over the survey answers given in the period.

A figure whose denominator is zero is None ("no data"), never a division by
zero. Rates, ratios and the money figures derived by division are exact Decimals
(28 significant digits; at least two places): the report's JSON and CSV carry
them unrounded, and only the pages and the terminal round them for display.
All buckets come from one scan of the orders table (`orderscan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal_column, select
from sqlmodel import Session, col

from ..errors import EngineError
from ..store import SurveyAnswer
from .orderscan import Scan, bits, scan

TWO_PLACES = Decimal("0.01")
GRAINS = ("day", "month", "year")
YEAR_WINDOW = "a calendar year"
ACTIVITY_DAYS: int | None = None  # the default activity window: a calendar year


class ReportError(EngineError, ValueError):
    """A report was asked for an impossible period or an unknown bucket size."""


@dataclass(frozen=True)
class Bucket:
    """One calendar slice [start, end) of a period, labelled in the shop's timezone;
    `partial` when the period cuts it (it starts or ends inside the calendar slice)."""

    start: datetime
    end: datetime
    label: str
    partial: bool = False


def exact(value: Decimal) -> Decimal:
    """`value` unrounded, written with at least two places (50 as 50.00)."""
    exponent = value.as_tuple().exponent
    return value.quantize(TWO_PLACES) if isinstance(exponent, int) and exponent > -2 else value


def percent(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part / whole × 100, unrounded, or None when whole is 0."""
    if not whole:
        return None
    return exact(Decimal(part) * 100 / Decimal(whole))


def ratio(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part / whole, unrounded, or None when whole is 0."""
    if not whole:
        return None
    return exact(Decimal(part) / Decimal(whole))


def rounded(value: Decimal | int) -> Decimal:
    """A figure as shown to a person: half-up to two places."""
    return Decimal(value).quantize(TWO_PLACES, ROUND_HALF_UP)


def buckets(start: datetime, end: datetime, by: str, timezone: str) -> list[Bucket]:
    """Calendar days, months or years of `timezone` covering [start, end), clipped to it."""
    if by not in GRAINS:
        raise ReportError(f"bucket size must be one of {', '.join(GRAINS)}, got: {by!r}")
    if start >= end:
        raise ReportError(f"the period must end after it starts, got {start} to {end}")
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    cursor = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if by in ("month", "year"):
        cursor = cursor.replace(day=1)
    if by == "year":
        cursor = cursor.replace(month=1)
    label = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[by]
    out: list[Bucket] = []
    while cursor < end:
        following = _next(cursor, by)
        lo, hi = max(cursor, start), min(following, end)
        out.append(
            Bucket(
                lo.astimezone(start.tzinfo),
                hi.astimezone(start.tzinfo),
                cursor.strftime(label),
                partial=lo != cursor or hi != following,
            )
        )
        cursor = following
    return out


def _next(local: datetime, by: str) -> datetime:
    zone = local.tzinfo
    naive = local.replace(tzinfo=None)
    if by == "day":
        naive = naive + timedelta(days=1)
    elif by == "month":
        naive = naive.replace(year=naive.year + naive.month // 12, month=naive.month % 12 + 1)
    else:
        naive = naive.replace(year=naive.year + 1)
    return naive.replace(tzinfo=zone)


def bucket_label(figures: dict[str, Any]) -> str:
    """A bucket's name as a person reads it: its label, whether the period cuts it,
    and whether nobody ordered in it (so its rates are read with that in mind)."""
    notes = [
        note
        for note, on in (("partial", figures["partial"]), ("no orders", not figures["orders"]))
        if on
    ]
    return f"{figures['label']} ({', '.join(notes)})" if notes else figures["label"]


def year_before(moment: datetime, timezone: str) -> datetime:
    """The same wall-clock time a calendar year earlier in `timezone` (29 February
    goes back to 28 February), in UTC."""
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone).replace(tzinfo=None)
    day = 28 if (local.month, local.day) == (2, 29) else local.day
    return local.replace(year=local.year - 1, day=day).replace(tzinfo=zone).astimezone(UTC)


def window_start(timezone: str, activity_days: int | None) -> Callable[[datetime], datetime]:
    """Where the activity window of a moment begins: a calendar year back, or
    `activity_days` days back."""
    if activity_days is None:
        return lambda moment: year_before(moment, timezone)
    if activity_days < 1:
        raise ReportError(f"the activity window must be at least one day, got: {activity_days}")
    days = timedelta(days=activity_days)
    return lambda moment: moment - days


def retention(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    by: str,
    timezone: str,
    activity_days: int | None = None,
) -> dict[str, Any]:
    """The retention figures for [start, end) and for each of its `by` buckets
    (`activity_days`: None for a calendar year)."""
    window = window_start(timezone, activity_days)
    year = partial(year_before, timezone=timezone)
    slices = buckets(start, end, by, timezone)
    orders = _scan_at(session, {start, end, *(b.start for b in slices)}, window, year)
    answers = net_promoter_scores(session, slices)
    return {
        "activity_days": activity_days,
        "activity_window": YEAR_WINDOW if activity_days is None else f"{activity_days} days",
        "by": by,
        "total": _figures(orders, start, end, window, year, _sum_answers(answers)),
        "buckets": [
            {
                "label": b.label,
                "partial": b.partial,
                **_figures(orders, b.start, b.end, window, year, nps),
            }
            for b, nps in zip(slices, answers, strict=True)
        ],
    }


def figures(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    timezone: str = "UTC",
    activity_days: int | None = None,
) -> dict[str, Any]:
    """Every retention figure of the one period [start, end)."""
    if start >= end:
        raise ReportError(f"the period must end after it starts, got {start} to {end}")
    window = window_start(timezone, activity_days)
    year = partial(year_before, timezone=timezone)
    orders = _scan_at(session, {start, end}, window, year)
    [answers] = net_promoter_scores(session, [Bucket(start, end, "")])
    return _figures(orders, start, end, window, year, answers)


def _scan_at(
    session: Session,
    moments: set[datetime],
    window: Callable[[datetime], datetime],
    year: Callable[[datetime], datetime],
) -> Scan:
    """The orders scanned once, cut at `moments` and where their windows and years begin."""
    return scan(session, moments | {window(m) for m in moments} | {year(m) for m in moments})


def _figures(
    orders: Scan,
    start: datetime,
    end: datetime,
    window: Callable[[datetime], datetime],
    year: Callable[[datetime], datetime],
    answers: dict[str, int],
) -> dict[str, Any]:
    """Every retention figure of [start, end), counted from `orders` (which is cut
    at `start`, `end` and where their windows and years begin)."""
    counts = _counts(orders, start, end, window, year)
    s, e, n = counts["at_start"], counts["at_end"], counts["new"]
    lost = s - counts["retained"]
    count, revenue = counts["orders"], counts["revenue"]
    aov = ratio(revenue, count)
    per_year = ratio(counts["year_orders"], counts["year_customers"])
    crr = ratio(e - n, s)
    clv = None
    if aov is not None and per_year is not None and crr is not None:
        clv = exact(aov * per_year * crr)
    return {
        "start": start,
        "end": end,
        "customers_at_start": s,
        "customers_at_end": e,
        "new_customers": n,
        "retained_customers": counts["retained"],
        "lost_customers": lost,
        "ordering_customers": counts["ordering"],
        "returning_customers": counts["returners"],
        "repeat_customers": counts["repeaters"],
        "orders": count,
        "revenue": revenue.quantize(TWO_PLACES),
        "retention_rate": percent(e - n, s),
        "churn_rate": percent(lost, s),
        "repeat_customer_rate": percent(counts["repeaters"], counts["ordering"]),
        "purchase_frequency": ratio(count, counts["ordering"]),
        "average_order_value": aov,
        "purchases_per_year": per_year,
        "customer_lifetime_value": clv,
        "nps": _nps(answers),
    }


def _counts(
    orders: Scan,
    start: datetime,
    end: datetime,
    window: Callable[[datetime], datetime],
    year: Callable[[datetime], datetime],
) -> dict[str, Any]:
    """The customer and order counts of [start, end), by the rules in the module doc."""
    first, last = orders.between(start, end)
    at_start = bits(*orders.between(window(start), start))
    at_end = bits(*orders.between(window(end), end))
    in_period = bits(first, last)
    in_year = bits(*orders.between(year(end), end))
    either = at_start | at_end
    s = e = both = year_customers = new = ordering = returners = repeaters = 0
    for profile in orders.profiles:  # a few thousand shapes; plain ints, for speed
        mask, customers = profile.mask, profile.customers
        if mask & either:
            both += customers
            if mask & at_start:
                s += customers
            if mask & at_end:
                e += customers
        if mask & in_year:
            year_customers += customers
        if first <= profile.first < last:
            new += customers
        if mask & in_period:
            ordering += customers
            if profile.first < first:
                returners += customers
            if profile.second is not None and profile.second < last:
                repeaters += customers
    counts: dict[str, Any] = {
        "at_start": s,
        "at_end": e,
        "retained": s + e - both,  # in S and in E = |S| + |E| − |in S or in E|
        "new": new,
        "ordering": ordering,
        "returners": returners,
        "repeaters": repeaters,
        "year_customers": year_customers,
    }
    counts["orders"] = sum(orders.orders[first:last])
    counts["revenue"] = sum(orders.revenue[first:last], Decimal(0))
    year_first, year_last = orders.between(year(end), end)
    counts["year_orders"] = sum(orders.orders[year_first:year_last])
    return counts


def net_promoter_scores(session: Session, slices: list[Bucket]) -> list[dict[str, int]]:
    """Per bucket, the survey answers given in it with a score from 0 to 10: how many,
    promoters (9–10) and detractors (0–6); one grouped query for all buckets."""
    score, at = col(SurveyAnswer.score), col(SurveyAnswer.at)
    which = case(*((at < b.end, k) for k, b in enumerate(slices)))
    query = (
        select(
            which.label("bucket"),
            func.count(),
            func.sum(case((score >= 9, 1), else_=0)),
            func.sum(case((score <= 6, 1), else_=0)),
        )
        .where(at >= slices[0].start, at < slices[-1].end, score >= 0, score <= 10)
        .group_by(literal_column("bucket"))  # PostgreSQL: not the CASE's own binds
    )
    found = {
        int(k): {"answers": int(n), "promoters": int(p), "detractors": int(d)}
        for k, n, p, d in session.execute(query)
    }
    empty = {"answers": 0, "promoters": 0, "detractors": 0}
    return [found.get(k, empty) for k in range(len(slices))]


def _sum_answers(per_bucket: list[dict[str, int]]) -> dict[str, int]:
    keys = ("answers", "promoters", "detractors")
    return {k: sum(b[k] for b in per_bucket) for k in keys}


def _nps(answers: dict[str, int]) -> dict[str, Any]:
    """The answers by group and the score (None without answers)."""
    total, promoters, detractors = answers["answers"], answers["promoters"], answers["detractors"]
    return {
        "answers": total,
        "promoters": promoters,
        "passives": total - promoters - detractors,
        "detractors": detractors,
        "score": percent(promoters - detractors, total),
    }
