"""Retention metrics from the orders table, for a period and its calendar buckets.

Every figure follows the definitions in docs/metrics.md ("Retention"), so anyone
can recompute it from `orders`. In short, with W = `activity_days` (365 by
default) and the period [start, end):

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
in [end − 365 days, end) / customers who placed them, CLV = average order value ×
purchases per year × CRR / 100 (taka per customer), NPS = % promoters (9–10) −
% detractors (0–6) over the survey answers given in the period.

A figure whose denominator is zero is None ("no data"), never a division by
zero. Percentages and ratios are Decimals rounded half-up to two places; money
is rounded to the paisa; CLV is computed from the unrounded parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, distinct, exists, func, or_, select
from sqlmodel import Session, col

from ..errors import EngineError
from ..store import Order, OrderStatus, SurveyAnswer

ACTIVITY_DAYS = 365
YEAR = timedelta(days=365)
TWO_PLACES = Decimal("0.01")
GRAINS = ("day", "month", "year")


class ReportError(EngineError, ValueError):
    """A report was asked for an impossible period or an unknown bucket size."""


@dataclass(frozen=True)
class Bucket:
    """One calendar slice [start, end) of a period, labelled in the shop's timezone."""

    start: datetime
    end: datetime
    label: str


def percent(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part / whole × 100 with two places, or None when whole is 0."""
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(TWO_PLACES, ROUND_HALF_UP)


def ratio(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part / whole with two places, or None when whole is 0."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(TWO_PLACES, ROUND_HALF_UP)


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
    out: list[Bucket] = []
    while cursor < end:
        following = _next(cursor, by)
        lo, hi = max(cursor, start), min(following, end)
        label = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[by]
        out.append(
            Bucket(lo.astimezone(start.tzinfo), hi.astimezone(start.tzinfo), cursor.strftime(label))
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


def retention(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    by: str,
    timezone: str,
    activity_days: int = ACTIVITY_DAYS,
) -> dict[str, Any]:
    """The retention figures for [start, end) and for each of its `by` buckets."""
    if activity_days < 1:
        raise ReportError(f"the activity window must be at least one day, got: {activity_days}")
    known: dict[datetime, dict[str, int]] = {}  # a bucket's end is the next one's start
    return {
        "activity_days": activity_days,
        "by": by,
        "total": figures(session, start, end, activity_days=activity_days, known=known),
        "buckets": [
            {
                "label": b.label,
                **figures(session, b.start, b.end, activity_days=activity_days, known=known),
            }
            for b in buckets(start, end, by, timezone)
        ],
    }


def figures(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    activity_days: int = ACTIVITY_DAYS,
    known: dict[datetime, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Every retention figure of [start, end).

    `known` keeps the counts at each moment already asked for, so buckets that
    share a boundary count its active customers once.
    """
    if start >= end:
        raise ReportError(f"the period must end after it starts, got {start} to {end}")
    window = timedelta(days=activity_days)
    known = {} if known is None else known
    for moment in (start, end):
        if moment not in known:
            known[moment] = _at(session, moment, window)
    counts = {**_between(session, start, end, window)}
    counts["at_start"] = known[start]["active"]
    counts["at_end"] = known[end]["active"]
    counts["year_orders"] = known[end]["year_orders"]
    counts["year_customers"] = known[end]["year_customers"]
    # In S and in E = |S| + |E| − |in S or in E|
    counts["retained"] = counts["at_start"] + counts["at_end"] - counts["either"]
    nps = net_promoter_score(session, start, end)
    s, e, n = counts["at_start"], counts["at_end"], counts["new"]
    lost = s - counts["retained"]
    orders, revenue = counts["orders"], counts["revenue"]
    aov = revenue / orders if orders else None
    per_year = (
        Decimal(counts["year_orders"]) / counts["year_customers"]
        if counts["year_customers"]
        else None
    )
    crr = Decimal(e - n) / s if s else None
    clv = None
    if aov is not None and per_year is not None and crr is not None:
        clv = (aov * per_year * crr).quantize(TWO_PLACES, ROUND_HALF_UP)
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
        "orders": orders,
        "revenue": revenue,
        "retention_rate": percent(e - n, s),
        "churn_rate": percent(lost, s),
        "repeat_customer_rate": percent(counts["repeaters"], counts["ordering"]),
        "purchase_frequency": ratio(orders, counts["ordering"]),
        "average_order_value": aov.quantize(TWO_PLACES, ROUND_HALF_UP) if aov is not None else None,
        "purchases_per_year": per_year.quantize(TWO_PLACES, ROUND_HALF_UP)
        if per_year is not None
        else None,
        "customer_lifetime_value": clv,
        "nps": nps,
    }


def _customers(*where: Any) -> Any:
    counted = col(Order.status) != OrderStatus.CANCELLED
    return select(func.count(distinct(col(Order.customer_id)))).where(counted, *where)


def _at(session: Session, moment: datetime, window: timedelta) -> dict[str, int]:
    """Customers active at `moment`, and the orders and customers of the year before it."""
    placed = col(Order.placed_at)
    counted = col(Order.status) != OrderStatus.CANCELLED
    columns = [
        select(func.count(col(Order.id)))
        .where(counted, placed >= moment - YEAR, placed < moment)
        .scalar_subquery()
        .label("year_orders"),
        _customers(placed >= moment - YEAR, placed < moment)
        .scalar_subquery()
        .label("year_customers"),
    ]
    if window != YEAR:
        active = _customers(placed >= moment - window, placed < moment).scalar_subquery()
        columns.append(active.label("active"))
    values = dict(session.execute(select(*columns)).one()._mapping)
    values.setdefault("active", values["year_customers"])  # the same window: count it once
    return values


def _between(session: Session, start: datetime, end: datetime, window: timedelta) -> dict[str, Any]:
    """The counts that belong to [start, end) itself, as scalar subqueries of one SELECT."""
    counted = col(Order.status) != OrderStatus.CANCELLED
    placed = col(Order.placed_at)
    customer = col(Order.customer_id)
    earlier = Order.__table__.alias("earlier")  # type: ignore[attr-defined]
    ordered_before = exists().where(
        earlier.c.customer_id == customer,
        earlier.c.status != OrderStatus.CANCELLED,
        earlier.c.placed_at < start,
    )
    firsts = (
        select(customer)
        .where(counted)
        .group_by(customer)
        .having(and_(func.min(placed) >= start, func.min(placed) < end))
        .subquery()
    )
    repeaters = (  # ordering customers with two or more counted orders up to `end`
        select(customer)
        .where(counted, placed < end)
        .group_by(customer)
        .having(and_(func.count() >= 2, func.max(placed) >= start))
        .subquery()
    )
    in_period = (placed >= start, placed < end)
    at_start = and_(placed >= start - window, placed < start)
    at_end = and_(placed >= end - window, placed < end)
    query = select(
        _customers(or_(at_start, at_end)).scalar_subquery().label("either"),
        select(func.count()).select_from(firsts).scalar_subquery().label("new"),
        _customers(*in_period).scalar_subquery().label("ordering"),
        _customers(*in_period, ordered_before).scalar_subquery().label("returners"),
        select(func.count()).select_from(repeaters).scalar_subquery().label("repeaters"),
        select(func.count(col(Order.id)))
        .where(counted, *in_period)
        .scalar_subquery()
        .label("orders"),
        select(func.coalesce(func.sum(Order.total), 0))
        .where(counted, *in_period)
        .scalar_subquery()
        .label("revenue"),
    )
    values = dict(session.execute(query).one()._mapping)
    values["revenue"] = Decimal(values["revenue"] or 0).quantize(TWO_PLACES)
    return values


def net_promoter_score(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Answers given in [start, end), by group, and the score (None without answers)."""
    score = col(SurveyAnswer.score)
    query = select(
        func.count(col(SurveyAnswer.id)),
        func.coalesce(func.sum(case((score >= 9, 1), else_=0)), 0),
        func.coalesce(func.sum(case((score <= 6, 1), else_=0)), 0),
    ).where(
        col(SurveyAnswer.at) >= start,
        col(SurveyAnswer.at) < end,
        score >= 0,
        score <= 10,
    )
    answers, promoters, detractors = (int(v) for v in session.execute(query).one())
    return {
        "answers": answers,
        "promoters": promoters,
        "passives": answers - promoters - detractors,
        "detractors": detractors,
        "score": percent(promoters - detractors, answers),
    }
