"""SQL pieces the planner's steps share: the tables, a campaign's candidates, dialect expressions.

Everything here builds SQLAlchemy Core expressions and runs nothing. `Sql`
holds the few expressions that differ between SQLite and PostgreSQL;
`Candidates` is what a trigger hands to the pass that queues its messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    case,
    cast,
    column,
    func,
    literal,
    table,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable
from sqlalchemy.sql.selectable import Select, TableClause

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


# PostgreSQL's memory for a pass's sorts and hashes (its default, 4MB, sends the
# frequency cap's sort of a big send to disk).
WORK_MEM = "64MB"


def tune_pass(conn: Connection) -> None:
    """Settings for the rest of the transaction of a planning pass, on PostgreSQL: sorts
    in memory, and no JIT compilation (each statement runs once; compiling it cost
    more than it saved)."""
    if is_postgres(conn):
        conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        conn.execute(text("SET LOCAL jit = off"))


class _CreateTempAs(Executable, ClauseElement):
    """`CREATE TEMPORARY TABLE name AS <select>`, its parameters bound as the select's."""

    inherit_cache = False

    def __init__(self, name: str, query: Select[Any]):
        self.name, self.query = name, query


@compiles(_CreateTempAs)
def _compile_create_temp_as(element: _CreateTempAs, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CREATE TEMPORARY TABLE {element.name} AS {compiler.process(element.query, **kw)}"


FLAGS = {"found_consent": Boolean, "found_suppressed": Boolean}


def found_table(conn: Connection, name: str, query: Select[Any]) -> TableClause:
    """Write `query`'s rows to the temporary table `name` (replacing one left by a pass
    that failed); its columns are the query's labels. A pass reads its candidates
    once this way, then queues and counts them from the table."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    conn.execute(_CreateTempAs(name, query))
    return table(name, *(column(c.name, FLAGS.get(c.name, c.type)) for c in query.selected_columns))


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
