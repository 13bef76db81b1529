"""What the campaigns did: the campaign report, the activity series, the queue.

`build_report` is the one source of every figure `lifecycle report` prints and
the dashboard shows. The rules (docs/metrics.md, "Reports"):

- A message belongs to the period [start, end) by the time it was sent, or,
  if it was never sent, by the time it was planned: `coalesce(sent_at,
  created_at)`. Its status is its status now.
- Delivered = sent. Events count only on delivered messages and only up to
  `now`. A human open is an open or a click not flagged `machine` (a click
  needs a person even when images are blocked); unique = distinct messages.
- An order is attributed to a campaign when the same customer placed it (not
  cancelled) no earlier than a human open or click of one of the campaign's
  period messages and at most `attribution_days` days after it (inclusive,
  to the millisecond). Each order counts once per campaign, however many
  opens precede it; one order may count for two campaigns, so the total row
  counts each order once overall.
- Store credit: the credits of the order items the campaign's messages are
  about (the price-drop refund), each credit once.

Every number comes from GROUP BY queries; nothing loops over messages.
Rates are Decimal percentages with two places, None when nothing was sent.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Interval, and_, case, distinct, exists, func, literal, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col

from ..errors import StoreError
from ..project import FirstOrder, Project
from ..store import (
    Credit,
    Customer,
    EventKind,
    Message,
    MessageEvent,
    MessageStatus,
    Order,
    OrderStatus,
    is_postgres,
    session_scope,
)
from .retention import ACTIVITY_DAYS, ReportError, buckets, percent, retention

DEFAULT_DAYS = 30
RECENT = 20
# Open rates quoted by the seed documents (Omnisend): greeting emails, all email, e-commerce.
BENCHMARKS = {
    "greeting": Decimal("42.00"),
    "email_overall": Decimal("22.33"),
    "ecommerce": Decimal("15.68"),
}
WAITING = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRY)
COUNTED_STATUSES = {
    "queued": (MessageStatus.QUEUED, MessageStatus.SENDING),
    "retrying": (MessageStatus.RETRY,),
    "sent": (MessageStatus.SENT,),
    "failed": (MessageStatus.FAILED,),
    "expired": (MessageStatus.EXPIRED,),
    "in_doubt": (MessageStatus.IN_DOUBT,),
    "suppressed": (MessageStatus.SUPPRESSED,),
}
EVENT_FIGURES = (
    "unique_human_opens",
    "machine_opens",
    "unique_clicks",
    "total_clicks",
    "unsubscribes",
    "bounces",
    "complaints",
)


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


SECTIONS = frozenset({"campaigns", "activity", "retention", "queue"})


def build_report(
    engine: Engine,
    project: Project,
    start: datetime,
    end: datetime,
    by: str,
    now: datetime,
    *,
    activity_days: int = ACTIVITY_DAYS,
    sections: Collection[str] = SECTIONS,
) -> dict[str, Any]:
    """Every figure of the campaign report, activity, queue and retention for [start, end).

    `sections` leaves out the parts a caller does not show ("campaigns" brings
    "totals" with it); the parts computed are the same whatever else is asked.
    Values are ints, Decimals, datetimes, strings and None; `to_json` makes them
    JSON-ready. Raises ReportError for an impossible period or bucket size.
    """
    unknown = set(sections) - SECTIONS
    if unknown:
        raise ReportError(f"unknown report sections: {', '.join(sorted(unknown))}")
    timezone = project.config.shop.timezone
    buckets(start, end, by, timezone)  # validates the period and `by` before any query
    days = project.config.reports.attribution_days
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
    activity_days: int,
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


def _period_messages(start: datetime, end: datetime) -> Any:
    """The period's messages, computed once per query (MATERIALIZED).

    Materialising keeps SQLite from walking ix_message_campaign_created row by
    row to save a sort, which is ten times slower than one scan.
    """
    when = func.coalesce(col(Message.sent_at), col(Message.created_at))
    return (
        select(
            col(Message.id),
            col(Message.campaign),
            col(Message.customer_id),
            col(Message.status),
            col(Message.order_item_id),
            col(Message.sent_at),
        )
        .where(when >= start, when < end)
        .cte("period_messages")
        .prefix_with("MATERIALIZED")
    )


def _human(now: datetime) -> Any:
    return and_(
        col(MessageEvent.kind).in_([EventKind.OPEN, EventKind.CLICK]),
        col(MessageEvent.machine).is_(False),
        col(MessageEvent.at) <= now,
    )


def campaign_report(
    session: Session, project: Project, start: datetime, end: datetime, now: datetime
) -> dict[str, dict[str, Any]]:
    """Per campaign: message counts by status, events, rates, credit, attributed orders.

    Every campaign of the project appears (zeros when idle), and so does any
    campaign name found on messages of the period but no longer in the project.
    """
    rows: dict[str, dict[str, Any]] = {}
    for name in [*project.config.campaigns, *sorted(project.campaigns)]:
        rows.setdefault(name, _empty())
    statuses = _status_counts(session, start, end)
    events = _event_counts(session, start, end, now)
    credits = _credits(session, start, end)
    orders = _attributed(session, start, end, now, project.config.reports.attribution_days)
    for name in sorted({*statuses, *events, *credits, *orders} - set(rows)):
        rows[name] = _empty()
    for name, row in rows.items():
        row.update(statuses.get(name, {}))
        row.update(events.get(name, {}))
        campaign = project.campaigns.get(name)
        refund = campaign is not None and campaign.trigger.type == "price_drop"
        row["store_credit"] = (
            credits.get(name, Decimal("0.00")) if refund or name in credits else None
        )
        count, revenue = orders.get(name, (0, Decimal("0.00")))
        row["attributed_orders"], row["attributed_revenue"] = count, revenue
        row["trigger"] = campaign.trigger.type if campaign else None
        row["enabled"] = name in project.config.campaigns
        greeting = campaign is not None and isinstance(campaign.trigger, FirstOrder)
        row["reference_open_rate"] = BENCHMARKS["greeting" if greeting else "ecommerce"]
        _rates(row)
    return rows


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTED_STATUSES, 0), **dict.fromkeys(EVENT_FIGURES, 0)}


def _rates(row: dict[str, Any]) -> None:
    row["messages"] = sum(row[k] for k in COUNTED_STATUSES)
    row["delivered"] = row["sent"]
    row["human_open_rate"] = percent(row["unique_human_opens"], row["delivered"])
    row["click_rate"] = percent(row["unique_clicks"], row["delivered"])
    row["unsubscribe_rate"] = percent(row["unsubscribes"], row["delivered"])


def _status_counts(session: Session, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    messages = _period_messages(start, end)
    query = select(messages.c.campaign, messages.c.status, func.count()).group_by(
        messages.c.campaign, messages.c.status
    )
    out: dict[str, dict[str, int]] = {}
    for campaign, status, count in session.execute(query):
        figure = next((k for k, v in COUNTED_STATUSES.items() if status in v), None)
        if figure is not None:
            row = out.setdefault(campaign, dict.fromkeys(COUNTED_STATUSES, 0))
            row[figure] += count
    return out


def _event_counts(
    session: Session, start: datetime, end: datetime, now: datetime, *, by_campaign: bool = True
) -> dict[str, dict[str, int]]:
    messages = _period_messages(start, end)
    message = messages.c.id
    kind, machine = col(MessageEvent.kind), col(MessageEvent.machine)

    def unique(*when: Any) -> Any:
        return func.count(distinct(case((and_(*when), message))))

    columns = [
        unique(kind.in_([EventKind.OPEN, EventKind.CLICK]), machine.is_(False)),
        unique(kind == EventKind.OPEN, machine.is_(True)),
        unique(kind == EventKind.CLICK, machine.is_(False)),
        func.count(case((and_(kind == EventKind.CLICK, machine.is_(False)), col(MessageEvent.id)))),
        unique(kind == EventKind.UNSUBSCRIBE),
        unique(kind == EventKind.BOUNCE),
        unique(kind == EventKind.COMPLAINT),
    ]
    group = [messages.c.campaign] if by_campaign else [literal("*").label("everything")]
    query = (
        select(*group, *columns)
        .select_from(messages)
        .join(MessageEvent, col(MessageEvent.message_id) == message)
        .where(messages.c.status == MessageStatus.SENT, col(MessageEvent.at) <= now)
    )
    if by_campaign:
        query = query.group_by(messages.c.campaign)
    return {
        row[0]: dict(zip(EVENT_FIGURES, row[1:], strict=True)) for row in session.execute(query)
    }


def _credits(session: Session, start: datetime, end: datetime) -> dict[str, Decimal]:
    messages = _period_messages(start, end)
    pairs = (
        select(messages.c.campaign, col(Credit.id), col(Credit.amount))
        .distinct()
        .select_from(messages)
        .join(
            Credit,
            and_(
                col(Credit.order_item_id) == messages.c.order_item_id,
                col(Credit.customer_id) == messages.c.customer_id,
            ),
        )
        .subquery()
    )
    query = select(pairs.c.campaign, func.sum(pairs.c.amount)).group_by(pairs.c.campaign)
    return {campaign: Decimal(amount) for campaign, amount in session.execute(query)}


def _no_later_than(session: Session, later: Any, earlier: Any, days: int) -> Any:
    """`later <= earlier + days` in the store's own date arithmetic."""
    if is_postgres(session):
        return later <= earlier + literal(timedelta(days=days), Interval())
    # SQLite keeps times as 'YYYY-MM-DD HH:MM:SS.ffffff' text: shift in the same shape.
    shifted = func.strftime("%Y-%m-%d %H:%M:%f", earlier, f"+{days} days").concat("000")
    return later <= shifted


def _attributed(
    session: Session,
    start: datetime,
    end: datetime,
    now: datetime,
    days: int,
    *,
    by_campaign: bool = True,
) -> dict[str, tuple[int, Decimal]]:
    messages = _period_messages(start, end)
    engaged = (
        select(messages.c.campaign, messages.c.customer_id, col(MessageEvent.at).label("at"))
        .select_from(messages)
        .join(MessageEvent, col(MessageEvent.message_id) == messages.c.id)
        .where(messages.c.status == MessageStatus.SENT, _human(now))
        .subquery()
    )
    placed = col(Order.placed_at)
    campaign = engaged.c.campaign if by_campaign else literal("*").label("campaign")
    pairs = (
        select(campaign, col(Order.id), col(Order.total))
        .distinct()
        .select_from(engaged)
        .join(
            Order,
            and_(
                col(Order.customer_id) == engaged.c.customer_id,
                col(Order.status) != OrderStatus.CANCELLED,
                placed >= engaged.c.at,
                _no_later_than(session, placed, engaged.c.at, days),
                placed <= now,
            ),
        )
        .subquery()
    )
    query = select(pairs.c.campaign, func.count(), func.sum(pairs.c.total)).group_by(
        pairs.c.campaign
    )
    return {name: (count, Decimal(total)) for name, count, total in session.execute(query)}


def totals(
    session: Session,
    campaigns: dict[str, dict[str, Any]],
    start: datetime,
    end: datetime,
    now: datetime,
    days: int,
) -> dict[str, Any]:
    """All campaigns together: the sums of their rows (a message belongs to one campaign),
    except attributed orders, which are counted again so that each counts once."""
    row = _empty()
    for figures in campaigns.values():
        for key in row:
            row[key] += figures[key]
    credits = [f["store_credit"] for f in campaigns.values() if f["store_credit"] is not None]
    row["store_credit"] = sum(credits, Decimal("0.00"))
    count, revenue = _attributed(session, start, end, now, days, by_campaign=False).get(
        "*", (0, Decimal("0.00"))
    )
    row["attributed_orders"], row["attributed_revenue"] = count, revenue
    row["reference_open_rate"] = BENCHMARKS["email_overall"]
    _rates(row)
    return row


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
    messages = _period_messages(start, end)
    sent_at = messages.c.sent_at
    opened = (
        exists()
        .where(col(MessageEvent.message_id) == messages.c.id, _human(now))
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


def queue(session: Session, now: datetime) -> dict[str, Any]:
    """What waits now (queued, retrying, in doubt) by campaign, recent errors and events."""
    statuses = [*WAITING, MessageStatus.IN_DOUBT]
    query = (
        select(
            col(Message.campaign),
            col(Message.status),
            func.count(),
            func.min(col(Message.send_after)),
        )
        .where(col(Message.status).in_(statuses))
        .group_by(col(Message.campaign), col(Message.status))
        .order_by(col(Message.campaign))
    )
    waiting: dict[str, dict[str, Any]] = {}
    for campaign, status, count, oldest in session.execute(query):
        row = waiting.setdefault(
            campaign, {"queued": 0, "retrying": 0, "in_doubt": 0, "oldest_send_after": None}
        )
        key = {MessageStatus.RETRY: "retrying", MessageStatus.IN_DOUBT: "in_doubt"}.get(
            MessageStatus(status), "queued"
        )
        row[key] += count
        if status in WAITING and oldest is not None:
            row["oldest_send_after"] = min(filter(None, [row["oldest_send_after"], oldest]))
    return {
        "waiting": waiting,
        "recent_errors": recent_errors(session),
        "recent_events": recent_events(session, now),
    }


def recent_errors(session: Session, limit: int = RECENT) -> list[dict[str, Any]]:
    """The newest messages that carry a delivery error, with whom they were for."""
    query = (
        select(
            col(Message.id),
            col(Message.campaign),
            col(Message.status),
            col(Message.attempts),
            col(Message.smtp_code),
            col(Message.last_error),
            col(Message.created_at),
            col(Message.next_attempt_at),
            col(Customer.name),
            col(Customer.email),
        )
        .join(Customer, col(Customer.id) == col(Message.customer_id))
        .where(col(Message.last_error).is_not(None))
        .order_by(col(Message.id).desc())
        .limit(limit)
    )
    keys = [
        "message_id",
        "campaign",
        "status",
        "attempts",
        "smtp_code",
        "last_error",
        "created_at",
        "next_attempt_at",
        "customer_name",
        "customer_email",
    ]
    return [dict(zip(keys, row, strict=True)) for row in session.execute(query)]


def recent_events(session: Session, now: datetime, limit: int = RECENT) -> list[dict[str, Any]]:
    """The newest opens, clicks and unsubscribes, with the user agent as it arrived."""
    query = (
        select(
            col(MessageEvent.at),
            col(MessageEvent.kind),
            col(MessageEvent.machine),
            col(Message.campaign),
            col(Customer.name),
            col(MessageEvent.user_agent),
            col(MessageEvent.url),
        )
        .join(Message, col(Message.id) == col(MessageEvent.message_id))
        .join(Customer, col(Customer.id) == col(MessageEvent.customer_id))
        .where(col(MessageEvent.at) <= now)
        .order_by(col(MessageEvent.at).desc(), col(MessageEvent.id).desc())
        .limit(limit)
    )
    keys = ["at", "kind", "machine", "campaign", "customer_name", "user_agent", "url"]
    return [dict(zip(keys, row, strict=True)) for row in session.execute(query)]


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
