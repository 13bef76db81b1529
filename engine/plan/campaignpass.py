"""One campaign's pass: its trigger's candidates, filtered and queued in one statement.

`planner.plan` makes a `CampaignPass` per enabled campaign and runs it with the
planner's trigger step, which hands the pass to the campaign's trigger module
(`ordertriggers`, `announcements`, `refunds`). Those build their candidates with
`zones`, `window_rows` and `in_window` and give them to `queue`. The pass lives
below both the planner and the trigger modules, so neither imports the other for it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, false, func, literal, not_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.selectable import CTE, Select

from ..project import Campaign, Project
from ..store import MessageKind, MessageStatus, UTCDateTime, ignoring_insert
from .plansql import (
    Candidates,
    Sql,
    as_text,
    checkpoint,
    customer,
    message,
    orders,
    suppression,
)
from .segments import compile_segment
from .sendwindow import window_rows

# Between full passes a pass looks only at what became due since the last one.
FULL_RESCAN = timedelta(minutes=15)

# Messages that do not count towards the frequency cap.
UNCOUNTED = (MessageStatus.FAILED, MessageStatus.EXPIRED, MessageStatus.SUPPRESSED)

# The most expired-unsent messages a pass lists one by one (all are counted).
EXPIRED_LISTED = 20


@dataclass
class CampaignResult:
    queued: int = 0
    skipped_consent: int = 0
    skipped_suppressed: int = 0
    skipped_cap: int = 0
    # Recorded as expired unsent: their order was recorded after the email had expired.
    expired: int = 0
    expired_messages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "queued": self.queued,
            "skipped_consent": self.skipped_consent,
            "skipped_suppressed": self.skipped_suppressed,
            "skipped_cap": self.skipped_cap,
            "expired": self.expired,
            "expired_messages": self.expired_messages,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


# What a pass runs to select and queue its trigger's candidates (the planner's table).
TriggerStep = Callable[["CampaignPass"], None]


class CampaignPass:
    """One campaign's pass in its transaction: its trigger's candidates, filtered and queued.

    The trigger modules (`ordertriggers`, `announcements`, `refunds`) build their
    candidates with `zones`, `window_rows` and `in_window`, and hand them to `queue`.
    """

    def __init__(self, conn: Connection, project: Project, campaign: Campaign, now: datetime):
        self.conn = conn
        self.project = project
        self.campaign = campaign
        self.trigger = campaign.trigger
        self.now = now
        self.sql = Sql(conn)
        self.shop_zone = ZoneInfo(project.config.shop.timezone)
        self.tz = func.coalesce(customer.c.timezone, project.config.shop.timezone)
        self.marketing = campaign.kind == MessageKind.MARKETING
        self.result = CampaignResult()
        self.since: datetime | None = None
        # The campaign's last full pass before this one (None: there was none). An order
        # recorded since then has not been looked at whole (a pass between full ones
        # sees only what fell due since the previous); one recorded before it has been.
        self.last_full_pass: datetime | None = None

    def run(self, plan_trigger: TriggerStep, rescan: bool = False) -> CampaignResult:
        if self.sql.pg:  # concurrent passes of one campaign take turns
            key = zlib.crc32(f"lifecycle.plan:{self.campaign.name}".encode())
            self.conn.execute(select(func.pg_advisory_xact_lock(key)))
        last_full = self._recall("plan-full")
        self.last_full_pass = last_full if last_full is not None and last_full <= self.now else None
        self.since = None if rescan else self._incremental_since()
        plan_trigger(self)
        self._remember("plan", self.now)
        if self.since is None:
            self._remember("plan-full", self.now)
        return self.result

    # -- incremental passes

    def _incremental_since(self) -> datetime | None:
        """The last pass's `now` if this pass may look only at what is new, else None."""
        last, full = self._recall("plan"), self._recall("plan-full")
        if last is None or full is None or not full <= last <= self.now:
            return None
        return last if self.now - full < FULL_RESCAN else None

    def _recall(self, what: str) -> datetime | None:
        name = f"{what}:{self.campaign.name}"
        value = self.conn.execute(
            select(checkpoint.c.value).where(checkpoint.c.name == name)
        ).scalar_one_or_none()
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    def _remember(self, what: str, moment: datetime) -> None:
        name, value = f"{what}:{self.campaign.name}", moment.isoformat()
        stored = {"value": value, "updated_at": self.now}
        changed = self.write(update(checkpoint).where(checkpoint.c.name == name).values(**stored))
        if not changed:
            self.write(ignoring_insert(self.conn, checkpoint, "name").values(name=name, **stored))

    # -- the common audience and the insert

    def write(self, statement: Any) -> int:
        """Run an INSERT or UPDATE; return how many rows it wrote."""
        rowcount = self.conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount
        if rowcount >= 0 or self.sql.pg:
            return rowcount
        # Python's sqlite3 does not count for a statement that begins with WITH.
        return int(self.conn.execute(select(func.changes())).scalar_one())

    def _dedupe_key(self, occurrence: Any) -> Any:
        return (
            literal(f"{self.campaign.name}:") + as_text(customer.c.id) + literal(":") + occurrence
        )

    def _not_suppressed(self) -> Any:
        return ~exists().where(suppression.c.email == customer.c.email)

    def _under_cap(self) -> Any:
        recent = self._recent_marketing()
        cap = self.project.config.sending.frequency_cap
        return None if recent is None or cap is None else recent < cap.max

    def _recent_marketing(self) -> Any:
        """The customer's marketing messages within the cap's period (None: no cap here)."""
        cap = self.project.config.sending.frequency_cap
        if cap is None or not self.marketing:
            return None
        return (
            select(func.count())
            .select_from(message)
            .where(
                message.c.customer_id == customer.c.id,
                message.c.kind == MessageKind.MARKETING.value,
                message.c.created_at > self.now - cap.per,
                message.c.status.not_in([s.value for s in UNCOUNTED]),
            )
            .scalar_subquery()
        )

    def _within_cap(self, chosen: Select[Any], columns: list[str]) -> Select[Any]:
        """Of one customer's candidates in this pass, only as many as the cap has room
        for (the earliest first): the cap's count does not see rows this insert adds."""
        recent = self._recent_marketing()
        cap = self.project.config.sending.frequency_cap
        if recent is None or cap is None:
            return chosen
        inner = chosen.add_columns(recent.label("cap_recent")).subquery("candidate")
        rank = func.row_number().over(
            partition_by=inner.c.customer_id, order_by=(inner.c.send_after, inner.c.occurrence)
        )
        ranked = select(inner, rank.label("cap_rank")).subquery("ranked")
        return select(*(ranked.c[name] for name in columns)).where(
            ranked.c.cap_recent + ranked.c.cap_rank <= cap.max
        )

    def _base(self, rows: Candidates) -> Select[Any]:
        """Candidates in the segment, not queued before, not expired: before consent etc."""
        segment = compile_segment(self.project.segments[self.campaign.segment], self.now)
        fresh = ~exists().where(message.c.dedupe_key == self._dedupe_key(rows.occurrence))
        not_expired = rows.expires_at > self.now if rows.expires_at is not None else None
        # Cheap, selective tests first: most candidates of a pass were queued by an earlier one.
        where = [*rows.where[:1], fresh, *rows.where[1:], segment]
        if not_expired is not None:
            where.append(not_expired)
        return select().select_from(rows.select_from).where(*where)

    def _eligible(self, *, capped: bool = True) -> list[Any]:
        conditions = [self._not_suppressed()]
        if self.marketing:
            conditions.insert(0, customer.c.marketing_consent.is_(True))
        cap = self._under_cap() if capped else None
        if cap is not None:
            conditions.append(cap)
        return conditions

    def queue(self, rows: Candidates) -> None:
        base = self._base(rows)
        values_ = self._values(rows, MessageStatus.QUEUED)
        chosen = base.add_columns(*(v.label(k) for k, v in values_.items())).where(
            *self._eligible()
        )
        chosen = self._within_cap(chosen, list(values_))
        insert = ignoring_insert(self.conn, message, "dedupe_key").from_select(
            list(values_), chosen
        )
        self.result.queued = self.write(insert)
        self._count_skipped(base)

    def _values(self, rows: Candidates, status: MessageStatus) -> dict[str, Any]:
        """The columns of the messages these candidates become, with `status`."""
        return {
            "dedupe_key": self._dedupe_key(rows.occurrence),
            "campaign": literal(self.campaign.name),
            "kind": literal(self.campaign.kind.value),
            "customer_id": customer.c.id,
            "occurrence": rows.occurrence,
            "status": literal(status.value),
            "created_at": literal(self.now, UTCDateTime),
            "send_after": rows.send_after,
            "expires_at": rows.expires_at if rows.expires_at is not None else literal(None),
            "attempts": literal(0),
            **rows.extra,
        }

    def record_expired(self, rows: Candidates) -> None:
        """Record candidates already past `expires_at` as `expired` messages, once each.

        `rows.extra` carries their `last_error` (why). Segment, consent and suppression
        apply as for `queue` (a message that would not have been sent did not expire
        unsent); the cap does not, as nothing is sent.
        """
        segment = compile_segment(self.project.segments[self.campaign.segment], self.now)
        fresh = ~exists().where(message.c.dedupe_key == self._dedupe_key(rows.occurrence))
        values_ = self._values(rows, MessageStatus.EXPIRED)
        conditions = self._eligible(capped=False)
        chosen = (
            select(*(v.label(k) for k, v in values_.items()))
            .select_from(rows.select_from)
            .where(*rows.where[:1], fresh, *rows.where[1:], rows.expires_at <= self.now)
            .where(segment, *conditions)
        )
        insert = ignoring_insert(self.conn, message, "dedupe_key").from_select(
            list(values_), chosen
        )
        recorded = self.write(insert)
        if recorded:
            self.result.expired += recorded
            self.result.expired_messages = self._expired_listed()

    def _expired_listed(self) -> list[dict[str, Any]]:
        """The first `EXPIRED_LISTED` messages this pass recorded as expired unsent."""
        query = (
            select(
                customer.c.external_id,
                message.c.occurrence,
                orders.c.external_id,
                message.c.send_after,
                message.c.expires_at,
                message.c.last_error,
            )
            .join_from(message, customer, customer.c.id == message.c.customer_id)
            .outerjoin(orders, orders.c.id == message.c.order_id)
            .where(
                message.c.campaign == self.campaign.name,
                message.c.status == MessageStatus.EXPIRED.value,
                message.c.created_at == literal(self.now, UTCDateTime),
            )
            .order_by(message.c.id)
            .limit(EXPIRED_LISTED)
        )
        return [
            {
                "customer": customer_id,
                "occurrence": occurrence,
                "order": order_id,
                "due": due.isoformat(),
                "expires_at": expires_at.isoformat(),
                "why": why,
            }
            for customer_id, occurrence, order_id, due, expires_at, why in self.conn.execute(query)
        ]

    def _count_skipped(self, base: Select[Any]) -> None:
        """After the insert, what is left of the audience was skipped: say why."""
        consent = customer.c.marketing_consent.is_(True) if self.marketing else literal(True)
        suppressed = not_(self._not_suppressed())
        cap = self._under_cap()
        capped = not_(cap) if cap is not None else false()

        def count(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        row = self.conn.execute(
            base.add_columns(
                count(not_(consent)),
                count(and_(consent, suppressed)),
                count(and_(consent, not_(suppressed), capped)),
            )
        ).one()
        self.result.skipped_consent, self.result.skipped_suppressed, self.result.skipped_cap = (
            int(v) for v in row
        )

    # -- send windows

    def window_rows(self, zones: Iterable[str], start: datetime, end: datetime) -> CTE:
        """(zone, opens, closes) in UTC for every local day from `start` to `end`, per zone."""
        window = self.project.config.sending.window
        return window_rows(zones, start, end, window, self.shop_zone)

    def in_window(self, due: Any, windows: CTE) -> Any:
        """The first moment, not before `due` nor before now, inside the customer's window.

        Counting from now matters for late occurrences: an email due yesterday at
        10:00 and planned at 06:00 local today waits for 09:00, not goes at once.
        """
        earliest = self.sql.later(due, literal(self.now, UTCDateTime))
        opens = (
            select(func.min(windows.c.opens))
            .where(windows.c.zone == self.tz, windows.c.closes > earliest)
            .scalar_subquery()
        )
        return self.sql.later(earliest, func.coalesce(opens, earliest))

    def zones(self, select_from: Any, where: list[Any]) -> list[str]:
        query = select(self.tz).distinct().select_from(select_from).where(*where)
        return [z for z in self.conn.execute(query).scalars() if z is not None]
