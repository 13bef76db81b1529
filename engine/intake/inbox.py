"""The webhook inbox: platform deliveries kept as they came, then applied in order.

A platform wants its answer fast and retries for days when it does not get one,
so the tracking app keeps a delivery (signature already checked) before it
answers (`keep_deliveries`: many requests' deliveries in one transaction), and
applies what it kept afterwards (`apply_pending`: oldest first, each as
`engine.intake.woocommerce` or `.shopify` reads it). A delivery sent again
finds its row and is not kept twice. Each row ends `applied`, or `problem` with
the reasons (one per line) that the dashboard lists: a problem never holds up
the deliveries after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from ..errors import StoreError
from ..project import Holidays
from ..store import WebhookDelivery, ignoring_insert
from . import shopify, woocommerce
from .connector import Translate, take_delivery

log = logging.getLogger(__name__)

PENDING, APPLIED, PROBLEM = "pending", "applied", "problem"
BATCH = 200  # deliveries read per round of `apply_pending`
READERS: dict[str, Translate] = {"shopify": shopify.translate, "woocommerce": woocommerce.translate}
_TABLE: Any = WebhookDelivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Received:
    """One delivery as it came: its platform, id, topic and body."""

    source: str
    delivery_id: str
    topic: str
    body: str
    received_at: datetime


def keep_deliveries(bind: Engine | Connection, received: list[Received]) -> list[bool]:
    """Keep these deliveries to apply, in one transaction (of `bind`, an engine or a
    connection not in a transaction); for each, True when it is new, False when the same
    platform sent the same delivery id before."""
    rows = [
        {
            "source": r.source,
            "delivery_id": r.delivery_id,
            "topic": r.topic,
            "body": r.body,
            "received_at": r.received_at,
            "status": PENDING,
        }
        for r in received
    ]
    with bind.begin() as began:
        conn = began if isinstance(began, Connection) else bind
        assert isinstance(conn, Connection)
        statement = ignoring_insert(conn, _TABLE, "source", "delivery_id").returning(
            _TABLE.c.source, _TABLE.c.delivery_id
        )
        kept = {tuple(row) for row in conn.execute(statement, rows)}
    return [(r.source, r.delivery_id) in kept for r in received]


def apply_pending(
    engine: Engine, *, now: datetime, holidays: Holidays | None = None, limit: int = BATCH
) -> int:
    """Apply the oldest kept deliveries (at most `limit`) in the order they came; return
    how many. Raises StoreError when the database fails (the rest waits for the next
    round)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    _TABLE.c.id,
                    _TABLE.c.source,
                    _TABLE.c.delivery_id,
                    _TABLE.c.topic,
                    _TABLE.c.body,
                )
                .where(_TABLE.c.status == PENDING)
                .order_by(_TABLE.c.id)
                .limit(limit)
            ).all()
        for row in rows:
            problems = _apply(engine, row, now, holidays)
            with engine.begin() as conn:
                conn.execute(
                    update(_TABLE)
                    .where(col(WebhookDelivery.id) == row.id)
                    .values(
                        status=PROBLEM if problems else APPLIED,
                        problems="\n".join(problems) or None,
                        applied_at=now,
                    )
                )
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot apply webhook deliveries: {exc}") from exc
    return len(rows)


def _apply(engine: Engine, row: Any, now: datetime, holidays: Holidays | None) -> list[str]:
    """The problems of one delivery, applied as its platform reads it."""
    translate = READERS.get(row.source)
    if translate is None:
        return [f"no connector reads deliveries from {row.source!r}"]
    body = row.body.encode()
    try:
        delivery = take_delivery(
            engine,
            row.source,
            translate,
            row.topic,
            row.delivery_id,
            body,
            now=now,
            holidays=holidays,
        )
    except (SQLAlchemyError, StoreError):
        raise
    except Exception as exc:  # a payload the connector trips on must not block the others
        log.exception("%s delivery %s could not be applied", row.source, row.delivery_id)
        return [f"could not be applied: {type(exc).__name__}: {exc}"]
    for problem in delivery.problems:
        log.warning("%s %s %s: %s", row.source, row.topic, row.delivery_id, problem)
    return delivery.problems
