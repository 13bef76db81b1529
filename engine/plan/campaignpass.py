"""One campaign's pass: its trigger's candidates, read once, then queued and counted.

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

from sqlalchemy import String, and_, case, exists, func, literal, not_, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.selectable import CTE, Select, TableClause

from ..project import Campaign, Exit, Project
from ..store import (
    EventKind,
    MessageKind,
    MessageStatus,
    UTCDateTime,
    ignoring_insert,
    is_purchase,
)
from .plansql import (
    Candidates,
    Sql,
    as_text,
    checkpoint,
    customer,
    flow_exit,
    flow_step,
    found_table,
    message,
    message_event,
    orders,
    suppression,
)
from .segments import compile_segment
from .sendwindow import window_rows

# Between full passes a pass looks only at what became due since the last one.
FULL_RESCAN = timedelta(minutes=15)

# Messages that do not count towards the frequency cap.
UNCOUNTED = (MessageStatus.FAILED, MessageStatus.EXPIRED, MessageStatus.SUPPRESSED)

# How far back a trigger without expires_after looks for what fell due.
DEFAULT_LOOKBACK = timedelta(days=7)
# Up to this many customer zones, a trigger's send windows cover them all.
FEW_ZONES = 8

# The most expired-unsent messages a pass lists one by one (all are counted).
EXPIRED_LISTED = 20


@dataclass
class StepResult:
    """One step's figures in a pass: queued, held back and why, exited and why."""

    queued: int = 0
    skipped_consent: int = 0
    skipped_suppressed: int = 0
    skipped_cap: int = 0
    # Not queued: the customer already had a later step (a step added or moved behind them).
    skipped_passed: int = 0
    exited: dict[str, int] = field(default_factory=dict)
    # Coupons minted for the messages this step queued.
    coupons: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "skipped_consent": self.skipped_consent,
            "skipped_suppressed": self.skipped_suppressed,
            "skipped_cap": self.skipped_cap,
            "skipped_passed": self.skipped_passed,
            "exited": dict(self.exited),
            "coupons": self.coupons,
        }


@dataclass
class CampaignResult:
    queued: int = 0
    skipped_consent: int = 0
    skipped_suppressed: int = 0
    skipped_cap: int = 0
    # Recorded as expired unsent: their order was recorded after the email had expired.
    expired: int = 0
    expired_messages: list[dict[str, Any]] = field(default_factory=list)
    # Customers who left the flow in this pass (every step's exits).
    exited: int = 0
    coupons: int = 0
    # Per step, in flow order ("email" for a campaign without steps).
    steps: dict[str, StepResult] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "queued": self.queued,
            "skipped_consent": self.skipped_consent,
            "skipped_suppressed": self.skipped_suppressed,
            "skipped_cap": self.skipped_cap,
            "expired": self.expired,
            "expired_messages": self.expired_messages,
            "exited": self.exited,
            "coupons": self.coupons,
            "steps": {label: step.as_dict() for label, step in self.steps.items()},
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
        self.flow = campaign.flow
        self.step = self.flow[0]
        self.index = 0
        self.step_result = StepResult()
        # When each step first appeared (None: it was there from the campaign's first pass).
        self.first_seen: dict[str, datetime | None] = {}
        self._zones: list[str] | None = None
        self.since: datetime | None = None
        # The campaign's last full pass before this one (None: there was none). An order
        # recorded since then has not been looked at whole (a pass between full ones
        # sees only what fell due since the previous); one recorded before it has been.
        self.last_full_pass: datetime | None = None

    @property
    def delay(self) -> timedelta:
        """How long after the trigger's event this step falls due (its delay and wait)."""
        return getattr(self.trigger, "delay", timedelta(0)) + self.step.offset

    @property
    def expires_after(self) -> timedelta | None:
        """How long this step may wait to go (the step's own, else the trigger's)."""
        return self.step.expires_after or self.trigger.expires_after

    def run(self, plan_trigger: TriggerStep, rescan: bool = False) -> CampaignResult:
        if self.sql.pg:  # concurrent passes of one campaign take turns
            key = zlib.crc32(f"lifecycle.plan:{self.campaign.name}".encode())
            self.conn.execute(select(func.pg_advisory_xact_lock(key)))
        last_full = self._recall("plan-full")
        self.last_full_pass = last_full if last_full is not None and last_full <= self.now else None
        self.since = None if rescan else self._incremental_since()
        if self.campaign.steps:
            self._see_steps()
            if self.since is None:
                self._expire_removed_steps()
        for index, step in enumerate(self.flow):
            self.index, self.step, self.step_result = index, step, StepResult()
            plan_trigger(self)
            self.result.steps[step.label] = self.step_result
        self._remember("plan", self.now)
        if self.since is None:
            self._remember("plan-full", self.now)
        return self.result

    # -- steps

    def _see_steps(self) -> None:
        """Note when each step first appeared; a campaign's first steps count from the start."""
        rows = self.conn.execute(
            select(flow_step.c.step, flow_step.c.first_seen_at).where(
                flow_step.c.campaign == self.campaign.name
            )
        ).all()
        self.first_seen = {step: seen for step, seen in rows}
        fresh = not rows and self.last_full_pass is None and self._recall("plan") is None
        for step in self.flow:
            if step.id is not None and step.id not in self.first_seen:
                seen = None if fresh else self.now
                self.write(
                    ignoring_insert(self.conn, flow_step, "campaign", "step").values(
                        campaign=self.campaign.name, step=step.id, first_seen_at=seen
                    )
                )
                self.first_seen[step.id] = seen

    def _expire_removed_steps(self) -> None:
        """Messages waiting for a step that is no longer in the file do not go."""
        current = [step.id for step in self.flow if step.id is not None]
        self.write(
            update(message)
            .where(
                message.c.status.in_([MessageStatus.QUEUED.value, MessageStatus.RETRY.value]),
                message.c.campaign == self.campaign.name,
                or_(message.c.step.is_(None), message.c.step.not_in(current)),
            )
            .values(
                status=MessageStatus.EXPIRED.value,
                last_error="not sent: its step was removed from the campaign file",
            )
        )

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

    def _dedupe_key(self, occurrence: Any, step: str | None = "") -> Any:
        """`campaign:customer:occurrence`, and `:step` for a step of a flow with steps."""
        step = self.step.id if step == "" else step
        key = literal(f"{self.campaign.name}:") + as_text(customer.c.id) + literal(":") + occurrence
        return key + literal(f":{step}") if step is not None else key

    def _not_suppressed(self) -> Any:
        return ~exists().where(suppression.c.email == customer.c.email)

    def _base(self, rows: Candidates) -> Select[Any]:
        """Candidates in the segment, not queued before, not expired: before consent etc."""
        where = [*rows.where[:1], *self._fresh(rows), *rows.where[1:], *self._segments()]
        if rows.expires_at is not None:
            where.append(rows.expires_at > self.now)
        return select().select_from(rows.select_from).where(*where)

    def _segments(self) -> list[Any]:
        names = [self.campaign.segment] + ([self.step.segment] if self.step.segment else [])
        return [compile_segment(self.project.segments[name], self.now) for name in names]

    def _fresh(self, rows: Candidates) -> list[Any]:
        """Not queued before, not out of the flow, not past this step (and the step was
        there when the customer's time for it came)."""
        occurrence = rows.occurrence
        fresh = [~exists().where(message.c.dedupe_key == self._dedupe_key(occurrence))]
        if not self.campaign.steps:
            return fresh
        if self.index == 0:  # the campaign's one email, from before it had steps, was this step
            fresh.append(
                ~exists().where(message.c.dedupe_key == self._dedupe_key(occurrence, None))
            )
        fresh.append(self._not_exited(occurrence))
        later = [step.id for step in self.flow[self.index + 1 :]]
        if later:
            fresh.append(self._not_passed(occurrence, later))
        seen = self.first_seen.get(self.step.id or "")
        if seen is not None:
            fresh.append(rows.due >= literal(seen, UTCDateTime))
        return fresh

    def _not_exited(self, occurrence: Any) -> Any:
        return ~exists().where(
            flow_exit.c.campaign == self.campaign.name,
            flow_exit.c.customer_id == customer.c.id,
            flow_exit.c.occurrence == occurrence,
        )

    def _not_passed(self, occurrence: Any, later: list[Any]) -> Any:
        passed = message.alias("passed")
        return ~exists().where(
            passed.c.customer_id == customer.c.id,
            passed.c.campaign == self.campaign.name,
            passed.c.occurrence == occurrence,
            passed.c.step.in_(later),
        )

    # -- exits

    def _exit_reason(self, rows: Candidates) -> Any:
        """Why the customer leaves the flow now (the first exit that holds), else NULL."""
        entry = rows.entry if rows.entry is not None else rows.due
        whens = []
        for condition in self.campaign.exit:
            whens.append((self._exit_holds(condition, rows, entry), literal(condition.describe())))
        return case(*whens, else_=literal(None, String)) if whens else None

    def _exit_holds(self, condition: Exit, rows: Candidates, entry: Any) -> Any:
        if condition.kind == "ordered":
            later = orders.alias("ordered_since")
            return exists().where(
                later.c.customer_id == customer.c.id,
                later.c.placed_at > entry,
                is_purchase(later.c.status),
            )
        if condition.kind == "unsubscribed":
            left = message_event.alias("unsubscribed")
            return or_(
                customer.c.marketing_consent.is_not(True),
                exists().where(
                    left.c.customer_id == customer.c.id,
                    left.c.kind == EventKind.UNSUBSCRIBE.value,
                    left.c.at > entry,
                ),
            )
        if condition.kind == "clicked":
            click, sent = message_event.alias("flow_click"), message.alias("flow_message")
            return exists().where(
                click.c.customer_id == customer.c.id,
                click.c.kind == EventKind.CLICK.value,
                sent.c.id == click.c.message_id,
                sent.c.campaign == self.campaign.name,
                sent.c.occurrence == rows.occurrence,
            )
        if condition.kind == "segment":
            return not_(compile_segment(self.project.segments[condition.segment or ""], self.now))
        return customer.c.orders_count >= (condition.orders or 1)

    def _record_exits(self, rows: Candidates) -> None:
        """Customers due this step who meet an exit condition leave the flow, once."""
        reason = self._exit_reason(rows)
        if reason is None:
            return
        where = [*rows.where[:1], *self._fresh(rows), *rows.where[1:]]
        if rows.expires_at is not None:
            where.append(rows.expires_at > self.now)
        values_ = {
            "campaign": literal(self.campaign.name),
            "customer_id": customer.c.id,
            "occurrence": rows.occurrence,
            "step": literal(self.step.id, String),
            "reason": reason,
            "at": literal(self.now, UTCDateTime),
        }
        chosen = (
            select(*(v.label(k) for k, v in values_.items()))
            .select_from(rows.select_from)
            .where(*where)
            .subquery("leaving")
        )
        leaving = select(chosen).where(chosen.c.reason.is_not(None))
        insert = ignoring_insert(
            self.conn, flow_exit, "campaign", "customer_id", "occurrence"
        ).from_select(list(values_), leaving)
        if not self.write(insert):
            return
        counted = self.conn.execute(
            select(flow_exit.c.reason, func.count())
            .where(
                flow_exit.c.campaign == self.campaign.name,
                flow_exit.c.at == literal(self.now, UTCDateTime),
                flow_exit.c.step == literal(self.step.id, String),
            )
            .group_by(flow_exit.c.reason)
        ).all()
        self.step_result.exited = {why: int(n) for why, n in counted}
        self.result.exited += sum(self.step_result.exited.values())

    def _eligible(self) -> list[Any]:
        """Consent (marketing only) and not suppressed; the cap is `queue`'s."""
        conditions = [self._not_suppressed()]
        if self.marketing:
            conditions.insert(0, customer.c.marketing_consent.is_(True))
        return conditions

    def queue(self, rows: Candidates) -> None:
        """Queue the candidates that may be mailed; count the others, by why.

        The candidates are read once, into a temporary table with their consent and
        suppression; the insert (with the cap's count joined) and the counts read
        that table. Reading them twice, as the insert and then as the counts, took
        seconds each for a send to hundreds of thousands."""
        if self.campaign.exit:
            self._record_exits(rows)
        base = self._base(rows)
        values_ = self._values(rows, MessageStatus.QUEUED)
        flags = {
            "found_consent": (
                customer.c.marketing_consent.is_(True) if self.marketing else literal(True)
            ),
            "found_suppressed": not_(self._not_suppressed()),
        }
        found = found_table(
            self.conn,
            "plan_found",
            base.add_columns(*(v.label(k) for k, v in {**values_, **flags}.items())),
        )
        if self.sql.pg:  # it knows how many they are: a few are looked up, many joined
            self.conn.exec_driver_sql("ANALYZE plan_found")
        try:
            self._queue_found(found, list(values_))
        finally:
            self.conn.exec_driver_sql("DROP TABLE IF EXISTS plan_found")
        later = [s.id for s in self.flow[self.index + 1 :]]
        if self.campaign.steps and later:
            self.step_result.skipped_passed = self._count_passed(rows, later)

    def _queue_found(self, found: TableClause, columns: list[str]) -> None:
        consent, suppressed = found.c.found_consent, found.c.found_suppressed
        eligible = and_(consent, not_(suppressed))
        cap = self.project.config.sending.frequency_cap if self.marketing else None
        if cap is None:
            chosen = select(*(found.c[name] for name in columns)).where(eligible)
        else:
            # Of one customer's candidates, as many as the cap has room for, the earliest
            # first: the cap's count does not see the rows this insert adds.
            # What the cap counts: the candidates' marketing emails within its period.
            recent = (
                select(message.c.customer_id, func.count().label("sent"))
                .where(
                    message.c.customer_id.in_(select(found.c.customer_id)),
                    message.c.kind == MessageKind.MARKETING.value,
                    message.c.created_at > self.now - cap.per,
                    message.c.status.not_in([s.value for s in UNCOUNTED]),
                )
                .group_by(message.c.customer_id)
                .subquery("recent")
            )
            rank: Any = literal(1)  # one candidate a customer: no ranking to do
            if self._several_each(found):
                rank = func.row_number().over(
                    partition_by=found.c.customer_id,
                    order_by=(found.c.send_after, found.c.occurrence),
                )
            ranked = (
                select(
                    *(found.c[name] for name in columns),
                    (func.coalesce(recent.c.sent, 0) + rank).label("cap_count"),
                )
                .select_from(found.outerjoin(recent, recent.c.customer_id == found.c.customer_id))
                .where(eligible)
                .subquery("ranked")
            )
            chosen = select(*(ranked.c[name] for name in columns)).where(
                ranked.c.cap_count <= cap.max
            )
        insert = ignoring_insert(self.conn, message, "dedupe_key").from_select(columns, chosen)
        queued = self.write(insert)
        step = self.step_result
        step.queued += queued
        self.result.queued += queued

        def count(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        consent_, suppressed_, eligible_ = self.conn.execute(
            select(
                count(not_(consent)), count(and_(consent, suppressed)), count(eligible)
            ).select_from(found)
        ).one()
        # Each candidate left out for neither reason was over the cap (their keys are
        # new: `_base` left out those already queued).
        capped_ = int(eligible_) - queued
        for result in (step, self.result):
            result.skipped_consent += int(consent_)
            result.skipped_suppressed += int(suppressed_)
            result.skipped_cap += int(capped_)

    def _several_each(self, found: TableClause) -> bool:
        """Whether a customer has more than one candidate here (then the cap's room is
        shared out in order; a sort of every candidate, seconds for a broadcast)."""
        several = (
            select(found.c.customer_id)
            .group_by(found.c.customer_id)
            .having(func.count() > 1)
            .limit(1)
        )
        return self.conn.execute(several).first() is not None

    def _values(self, rows: Candidates, status: MessageStatus) -> dict[str, Any]:
        """The columns of the messages these candidates become, with `status`."""
        return {
            "dedupe_key": self._dedupe_key(rows.occurrence),
            "campaign": literal(self.campaign.name),
            "kind": literal(self.campaign.kind.value),
            "customer_id": customer.c.id,
            "occurrence": rows.occurrence,
            "step": literal(self.step.id, String),
            "status": literal(status.value),
            "created_at": literal(self.now, UTCDateTime),
            "send_after": rows.send_after,
            "expires_at": (
                rows.expires_at if rows.expires_at is not None else literal(None, UTCDateTime)
            ),
            "attempts": literal(0),
            **rows.extra,
        }

    def record_expired(self, rows: Candidates) -> None:
        """Record candidates already past `expires_at` as `expired` messages, once each.

        `rows.extra` carries their `last_error` (why). Segment, consent and suppression
        apply as for `queue` (a message that would not have been sent did not expire
        unsent); the cap does not, as nothing is sent.
        """
        values_ = self._values(rows, MessageStatus.EXPIRED)
        conditions = self._eligible()
        chosen = (
            select(*(v.label(k) for k, v in values_.items()))
            .select_from(rows.select_from)
            .where(*rows.where[:1], *self._fresh(rows), *rows.where[1:])
            .where(rows.expires_at <= self.now, *self._segments(), *conditions)
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

    def _count_passed(self, rows: Candidates, later: list[Any]) -> int:
        """Candidates not queued because they already had a later step."""
        where = [*rows.where, *self._segments()]
        where.append(~exists().where(message.c.dedupe_key == self._dedupe_key(rows.occurrence)))
        where.append(not_(self._not_passed(rows.occurrence, later)))
        if rows.expires_at is not None:
            where.append(rows.expires_at > self.now)
        query = select(func.count()).select_from(rows.select_from).where(*where)
        return int(self.conn.execute(query).scalar_one())

    # -- candidates due a fixed time after an event

    def timed(
        self,
        select_from: Any,
        where: list[Any],
        event: Any,
        occurrence: Any,
        extra: dict[str, Any] | None = None,
        *,
        shift: timedelta = timedelta(0),
    ) -> Candidates | None:
        """Candidates whose event (a stored UTC time) plus `shift`, the trigger's delay and
        the step's wait fell due within the lookback (or since the last pass); None if none.

        The customer enters the flow at event + `shift` (an `inactive` customer lapses
        N days after the last order). The lookback is the step's `expires_after`, else
        `DEFAULT_LOOKBACK`: nothing is ever looked for further back than it could go.
        """
        delay, expires_after = self.delay + shift, self.expires_after
        latest = self.now - delay
        earliest = latest - (expires_after or DEFAULT_LOOKBACK)
        if self.since is not None:
            earliest = max(earliest, self.since - delay)
        where = [*where, event > earliest, event <= latest]
        zones = self.zones(select_from, where)
        if not zones:
            return None
        windows = self.window_rows(zones, earliest, self.now)
        due = self.sql.plus(event, delay)
        expires = self.sql.plus(event, delay + expires_after) if expires_after else None
        return Candidates(
            select_from,
            where,
            occurrence,
            due,
            self.in_window(due, windows),
            expires,
            extra or {},
            entry=self.sql.plus(event, shift),
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

    def customer_zones(self) -> list[str]:
        """Every zone a customer is in (their own, else the shop's), read from the index
        on customer.timezone one seek per distinct zone, never by reading every customer."""
        if self._zones is None:
            tz = customer.c.timezone
            zones: list[str] = []
            while True:
                query = select(func.min(tz))
                if zones:
                    query = query.where(tz > zones[-1])
                zone = self.conn.execute(query).scalar_one_or_none()
                if zone is None:
                    break
                zones.append(zone)
            unset = self.conn.execute(select(customer.c.id).where(tz.is_(None)).limit(1)).first()
            shop = self.project.config.shop.timezone
            if unset is not None and shop not in zones:
                zones.append(shop)
            self._zones = zones
        return self._zones

    def zones(self, select_from: Any, where: list[Any]) -> list[str]:
        """The zones the send windows are needed for: none when there is no candidate.

        A shop with a few zones gets them all once a first candidate is found (finding
        the candidates' own zones reads every candidate: seconds for a send to
        hundreds of thousands); with more, only the candidates' zones."""
        everywhere = self.customer_zones()
        if len(everywhere) <= FEW_ZONES:
            first = select(literal(1)).select_from(select_from).where(*where).limit(1)
            return everywhere if self.conn.execute(first).first() is not None else []
        query = select(self.tz).distinct().select_from(select_from).where(*where)
        return [z for z in self.conn.execute(query).scalars() if z is not None]
