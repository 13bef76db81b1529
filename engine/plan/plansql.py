"""SQL pieces the planner's steps share: the tables, a campaign's candidates, dialect expressions.

Everything here builds SQLAlchemy Core expressions and runs nothing. `Sql`
holds the few expressions that differ between SQLite and PostgreSQL;
`Candidates` is what a trigger hands to the pass that queues its messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, case, cast, func, literal, type_coerce, update
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.engine import Connection

from ..store import (
    BroadcastTime,
    Checkout,
    Checkpoint,
    Credit,
    Customer,
    FlowExit,
    FlowStepSeen,
    Message,
    MessageEvent,
    Order,
    OrderItem,
    PriceChange,
    Product,
    ProductWanted,
    Restock,
    Suppression,
    UTCDateTime,
    ignoring_insert,
    is_postgres,
)

customer = Customer.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]
order_item = OrderItem.__table__  # type: ignore[attr-defined]
product = Product.__table__  # type: ignore[attr-defined]
restock = Restock.__table__  # type: ignore[attr-defined]
product_wanted = ProductWanted.__table__  # type: ignore[attr-defined]
checkout = Checkout.__table__  # type: ignore[attr-defined]
broadcast = BroadcastTime.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]
credit = Credit.__table__  # type: ignore[attr-defined]
price_change = PriceChange.__table__  # type: ignore[attr-defined]
suppression = Suppression.__table__  # type: ignore[attr-defined]
checkpoint = Checkpoint.__table__  # type: ignore[attr-defined]
message_event = MessageEvent.__table__  # type: ignore[attr-defined]
flow_exit = FlowExit.__table__  # type: ignore[attr-defined]
flow_step = FlowStepSeen.__table__  # type: ignore[attr-defined]


@dataclass
class Candidates:
    """What a trigger contributes: a FROM with conditions and the row's values."""

    select_from: Any
    where: list[Any]
    occurrence: Any
    due: Any
    send_after: Any
    expires_at: Any
    extra: dict[str, Any] = field(default_factory=dict)
    # When the customer entered the flow (the trigger's event; None: `due`), for exits.
    entry: Any = None


class Sql:
    """The few expressions that differ between SQLite and PostgreSQL."""

    def __init__(self, conn: Connection):
        self.pg = is_postgres(conn)

    def plus(self, moment: Any, delta: timedelta) -> ColumnElement[datetime]:
        """A stored UTC datetime column plus a constant duration."""
        if not delta:
            return type_coerce(moment, UTCDateTime)
        if self.pg:
            return type_coerce(moment + literal(delta), UTCDateTime)
        seconds = f"{int(delta.total_seconds()):+d} seconds"
        shifted = func.strftime("%Y-%m-%d %H:%M:%f", moment, seconds) + literal("000")
        return type_coerce(shifted, UTCDateTime)

    def seconds_between(self, earlier: Any, later: Any) -> Any:
        if self.pg:
            return func.extract("epoch", later - earlier)
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0

    def later(self, a: Any, b: Any) -> ColumnElement[datetime]:
        return type_coerce(func.greatest(a, b) if self.pg else func.max(a, b), UTCDateTime)

    def json_object(self, *pairs: Any) -> Any:
        return func.json_build_object(*pairs) if self.pg else func.json_object(*pairs)

    def stamp(self, moment: Any) -> ColumnElement[str]:
        """A stored UTC datetime as YYYYMMDDHHMMSS text (an occurrence's part)."""
        if self.pg:
            return func.to_char(moment, literal("YYYYMMDDHH24MISS", String))
        return func.strftime(literal("%Y%m%d%H%M%S", String), moment)

    def json_text(self, text: Any) -> Any:
        return cast(text, PG_JSON) if self.pg else func.json(text)


def as_text(value: Any) -> ColumnElement[str]:
    return cast(value, String)


def money_text(paisa: Any) -> ColumnElement[str]:
    """Integer paisa → '350.00' (amounts are never negative here)."""
    cents = paisa % 100
    return (
        as_text(paisa // 100)
        + literal(".")
        + case((cents < 10, literal("0")), else_=literal(""))
        + as_text(cents)
    )


def save_checkpoint(conn: Connection, name: str, value: str, now: datetime) -> None:
    """Store `value` under the checkpoint `name` (updated, or inserted the first time)."""
    stored = {"value": value, "updated_at": now}
    changed = conn.execute(
        update(checkpoint)
        .where(checkpoint.c.name == name)
        .values(**stored)
        .execution_options(preserve_rowcount=True)
    ).rowcount
    if not changed:
        conn.execute(ignoring_insert(conn, checkpoint, "name").values(name=name, **stored))
