"""The campaign report: per campaign and all together, for one period.

The rules (docs/metrics.md, "Reports"; which messages and opens count is in `counting`):

- Delivered = sent. Events count only on delivered messages and only up to
  `now`; unique = distinct messages.
- An order is attributed to a campaign when the same customer placed it (not
  cancelled) no earlier than a human open or click of one of the campaign's
  period messages and at most `attribution_days` days after it (inclusive,
  to the millisecond). Each order counts once per campaign, however many
  opens precede it; one order may count for two campaigns, so the total row
  counts each order once overall.
- Store credit: the credits of the order items the campaign's messages are
  about (the price-drop refund), each credit once.
- Steps: a campaign with steps has, per step (`message.step`), its sent emails,
  unique human opens and unique clicks, counted as above, with their rates: the
  file's steps in flow order (zeros when idle), then any step no longer in the
  file that the period's messages still carry. A campaign without steps has none.

Every number comes from GROUP BY queries; nothing loops over messages.
Rates are Decimal percentages with two places, None when nothing was sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Interval, and_, case, distinct, func, literal, select
from sqlmodel import Session, col

from ..project import Campaign, FirstOrder, Project
from ..store import (
    Credit,
    EventKind,
    MessageEvent,
    MessageStatus,
    Order,
    is_postgres,
    is_purchase,
)
from .counting import human, period_messages
from .retention import percent

# Open rates quoted by the seed documents (Omnisend): greeting emails, all email, e-commerce.
BENCHMARKS = {
    "greeting": Decimal("42.00"),
    "email_overall": Decimal("22.33"),
    "ecommerce": Decimal("15.68"),
}
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
    steps = _step_counts(session, start, end, now)
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
        row["steps"] = _steps(campaign, steps.get(name, {}))
    return rows


STEP_FIGURES = ("sent", "unique_human_opens", "unique_clicks")


def _steps(
    campaign: Campaign | None, counted: dict[str, dict[str, int]]
) -> dict[str, dict[str, Any]]:
    """{step id: its figures}: the file's steps in order, then those it no longer has."""
    in_file = [step.id for step in campaign.flow if step.id] if campaign else []
    out: dict[str, dict[str, Any]] = {}
    for number, step in enumerate([*in_file, *sorted(set(counted) - set(in_file))], start=1):
        figures = {**dict.fromkeys(STEP_FIGURES, 0), **counted.get(step, {})}
        out[step] = {
            "number": number if step in in_file else None,  # None: no longer in the file
            **figures,
            "human_open_rate": percent(figures["unique_human_opens"], figures["sent"]),
            "click_rate": percent(figures["unique_clicks"], figures["sent"]),
        }
    return out


def _step_counts(
    session: Session, start: datetime, end: datetime, now: datetime
) -> dict[str, dict[str, dict[str, int]]]:
    """{campaign: {step: {sent, unique_human_opens, unique_clicks}}} of the period's sent
    messages that carry a step; events up to `now`, as for the campaign row."""
    messages = period_messages(start, end)
    message, kind, machine = messages.c.id, col(MessageEvent.kind), col(MessageEvent.machine)
    human_at = and_(machine.is_(False), col(MessageEvent.at) <= now)
    opened = case((and_(kind.in_([EventKind.OPEN, EventKind.CLICK]), human_at), message))
    clicked = case((and_(kind == EventKind.CLICK, human_at), message))
    query = (
        select(
            messages.c.campaign,
            messages.c.step,
            func.count(distinct(message)),
            func.count(distinct(opened)),
            func.count(distinct(clicked)),
        )
        .select_from(messages)
        .outerjoin(MessageEvent, col(MessageEvent.message_id) == message)
        .where(messages.c.status == MessageStatus.SENT, messages.c.step.is_not(None))
        .group_by(messages.c.campaign, messages.c.step)
    )
    out: dict[str, dict[str, dict[str, int]]] = {}
    for campaign, step, *figures in session.execute(query):
        out.setdefault(campaign, {})[step] = dict(zip(STEP_FIGURES, figures, strict=True))
    return out


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTED_STATUSES, 0), **dict.fromkeys(EVENT_FIGURES, 0)}


def _rates(row: dict[str, Any]) -> None:
    row["messages"] = sum(row[k] for k in COUNTED_STATUSES)
    row["delivered"] = row["sent"]
    row["human_open_rate"] = percent(row["unique_human_opens"], row["delivered"])
    row["click_rate"] = percent(row["unique_clicks"], row["delivered"])
    row["unsubscribe_rate"] = percent(row["unsubscribes"], row["delivered"])


def _status_counts(session: Session, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    messages = period_messages(start, end)
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
    messages = period_messages(start, end)
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
    messages = period_messages(start, end)
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
    messages = period_messages(start, end)
    engaged = (
        select(messages.c.campaign, messages.c.customer_id, col(MessageEvent.at).label("at"))
        .select_from(messages)
        .join(MessageEvent, col(MessageEvent.message_id) == messages.c.id)
        .where(messages.c.status == MessageStatus.SENT, human(now))
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
                is_purchase(col(Order.status)),
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
