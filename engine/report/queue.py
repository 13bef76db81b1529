"""The queue: what waits to be sent now, and the newest errors and events.

Unlike the campaign report it covers no period: it shows the store as it is at
`now`, for the operator (the dashboard's queue page, `lifecycle report`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from ..store import (
    Blast,
    BlastState,
    Customer,
    Message,
    MessageEvent,
    MessageStatus,
    WebhookDelivery,
)

RECENT = 20
WAITING = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRY)


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
        "webhooks": webhooks(session),
        "held_sends": held_sends(session),
    }


def held_sends(session: Session) -> list[dict[str, Any]]:
    """Big sends whose rest waits: for their canary to be judged, or paused after it
    (with the figures that paused them, and `lifecycle resume CAMPAIGN` to go on)."""
    rows = session.scalars(
        select(Blast)
        .where(col(Blast.state).in_([BlastState.CANARY, BlastState.PAUSED]))
        .order_by(col(Blast.created_at))
    )
    return [
        {
            "campaign": b.campaign,
            "state": str(b.state),
            "recipients": b.recipients,
            "queued_at": b.created_at,
            "canary_done_at": b.canary_done_at,
            "reason": b.reason,
        }
        for b in rows
    ]


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


def webhooks(session: Session, limit: int = RECENT) -> dict[str, Any]:
    """The platforms' deliveries waiting to be applied, and the newest that the engine
    could not wholly use, with why (one reason per line)."""
    pending = session.execute(
        select(func.count()).where(col(WebhookDelivery.status) == "pending")
    ).scalar_one()
    query = (
        select(
            col(WebhookDelivery.source),
            col(WebhookDelivery.topic),
            col(WebhookDelivery.delivery_id),
            col(WebhookDelivery.received_at),
            col(WebhookDelivery.problems),
        )
        .where(col(WebhookDelivery.status) == "problem")
        .order_by(col(WebhookDelivery.id).desc())
        .limit(limit)
    )
    keys = ["source", "topic", "delivery_id", "received_at", "problems"]
    problems = [dict(zip(keys, row, strict=True)) for row in session.execute(query)]
    return {"pending": int(pending), "recent_problems": problems}
