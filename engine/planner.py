"""The planner: every tick, which customer is due which email.

`plan(engine, project, now)` runs each enabled campaign in its own
transaction: its trigger selects candidate (customer, occurrence) pairs, its
segment, consent (marketing only), suppression and the frequency cap
(marketing only) filter them, and ONE `INSERT … SELECT … ON CONFLICT DO
NOTHING` per campaign queues what is left. The unique `dedupe_key`
(`campaign:customer_id:occurrence`) makes a second or concurrent pass a no-op.
Nothing loops over customers in Python; the only Python loops are over the
handful of distinct timezones, to place `send_after` in each customer's send
window.

Triggers and their rules:

- `first_order`: due at `customer.first_order_at + delay`. Only first orders
  due within the lookback are welcomed: `expires_after` when set (a later one
  would be expired anyway), else 7 days, so a new install never welcomes every
  past customer. Occurrence `first`; `order_id` = the first order.
- `order_placed` / `order_delivered`: due at `placed_at` / `delivered_at` +
  delay, same lookback; occurrence `order-<id>`. With `quiet_after_welcome`,
  a customer's first order gets no thank-you when its due time lies within
  that long of the due time of an enabled welcome (first_order) campaign whose
  message for the customer exists or is not due yet. First-order campaigns run
  before order campaigns in a pass.
- `holiday`: see `_holiday_rows`; occurrence `<holiday id>-<year>`.
- `price_drop`: see `_plan_refunds`; occurrence `item-<order item id>-<lowest
  price in paisa>`.

A full pass looks at everything due within each trigger's lookback; between
full passes (every `FULL_RESCAN`, 15 minutes) a pass looks only at what fell
due since the previous pass, so an idle tick costs next to nothing. A
customer skipped for consent, cap or segment, or an event recorded late with
an earlier timestamp, is picked up by the next full pass.

Holiday pre-announcements: for each listed holiday and each of its dates this
year and next, the occurrence is due at `at` on the customer's clock
`days_before` the date, and is queued from then until the end of the holiday
date (local), and not past `expires_after`. When a holiday's date moves
(confirmed in config, or a new `shop_holiday` date), queued messages for it
get the new `holiday_date`, `send_after` and `expires_at` in one UPDATE.

Price-drop refunds write the `credit` rows and queue the notices in the same
transaction; a suppressed customer is credited but not emailed.

On PostgreSQL a pass of a campaign takes a transaction-level advisory lock, so
two planners never credit the same drop from different snapshots; on SQLite
writers are serialised by the database itself.

Due times are moved into the customer's local send window
(`config.sending.window`, the customer's timezone, else the shop's; an
invalid stored timezone is logged and falls back to the shop's). Messages
past `expires_at` are not queued. One failing campaign is logged with its
name and reported; the others still run.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    type_coerce,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.selectable import CTE, Select

from .calendar import HolidayDate, holiday_dates
from .config import (
    Campaign,
    FirstOrder,
    HolidayTrigger,
    OrderDelivered,
    OrderPlaced,
    PriceDrop,
)
from .db import ignoring_insert, is_postgres
from .errors import DataError
from .loader import Project
from .models import (
    Checkpoint,
    Credit,
    Customer,
    Message,
    MessageKind,
    MessageStatus,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Suppression,
)
from .segments import compile_segment
from .types import UTCDateTime

log = logging.getLogger(__name__)

customer = Customer.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]
order_item = OrderItem.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]
credit = Credit.__table__  # type: ignore[attr-defined]
price_change = PriceChange.__table__  # type: ignore[attr-defined]
suppression = Suppression.__table__  # type: ignore[attr-defined]
checkpoint = Checkpoint.__table__  # type: ignore[attr-defined]

DEFAULT_LOOKBACK = timedelta(days=7)
# Price drops this recent are looked at; a drop is credited at the next pass,
# so this only matters after a long outage.
REFUND_LOOKBACK = timedelta(days=30)
# Between full passes a pass looks only at what became due since the last one.
FULL_RESCAN = timedelta(minutes=15)
# Messages that do not count towards the frequency cap.
UNCOUNTED = (MessageStatus.FAILED, MessageStatus.EXPIRED, MessageStatus.SUPPRESSED)


@dataclass
class CampaignResult:
    queued: int = 0
    skipped_consent: int = 0
    skipped_suppressed: int = 0
    skipped_cap: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "queued": self.queued,
            "skipped_consent": self.skipped_consent,
            "skipped_suppressed": self.skipped_suppressed,
            "skipped_cap": self.skipped_cap,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class PlanReport:
    at: datetime
    campaigns: dict[str, CampaignResult] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "campaigns": {name: r.as_dict() for name, r in self.campaigns.items()},
        }


def plan(
    engine: Engine, project: Project, now: datetime, *, dry_run: bool = False, rescan: bool = False
) -> PlanReport:
    """Queue every message due at `now`; with `dry_run`, roll back and only report.

    A pass looks at everything due within each trigger's lookback when the last
    full pass of the campaign is `FULL_RESCAN` old (or `rescan` is set, or time
    went backwards); otherwise only at what became due since the last pass. So
    a customer who was skipped (no consent yet, capped, not yet in the segment)
    is looked at again within 15 minutes, and an idle pass costs next to nothing.
    """
    if now.tzinfo is None:
        raise DataError(f"now must be a timezone-aware datetime, got: {now!r}")
    now = now.astimezone(UTC)
    report = PlanReport(now)
    for campaign in sorted(project.enabled_campaigns, key=_run_order):
        try:
            with engine.connect() as conn, conn.begin() as transaction:
                result = _Pass(conn, project, campaign, now).run(rescan)
                if dry_run:
                    transaction.rollback()
        except Exception as exc:  # one failing campaign never stops the others
            log.exception("campaign %s: planning failed", campaign.name)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            result = CampaignResult(error=f"{type(exc).__name__}: {first_line}"[:300])
        report.campaigns[campaign.name] = result
    return report


def _run_order(campaign: Campaign) -> int:
    order = {FirstOrder: 0, OrderPlaced: 1, OrderDelivered: 1, HolidayTrigger: 2, PriceDrop: 3}
    return order[type(campaign.trigger)]


# ---------------------------------------------------------------- SQL helpers


class _Sql:
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

    def json_text(self, text: Any) -> Any:
        return cast(text, PG_JSON) if self.pg else func.json(text)


def _text(value: Any) -> ColumnElement[str]:
    return cast(value, String)


def _money_text(paisa: Any) -> ColumnElement[str]:
    """Integer paisa → '350.00' (amounts are never negative here)."""
    cents = paisa % 100
    return (
        _text(paisa // 100)
        + literal(".")
        + case((cents < 10, literal("0")), else_=literal(""))
        + _text(cents)
    )


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        log.warning("customer timezone %r is not valid (%s); using %s", name, exc, fallback.key)
        return fallback


# ---------------------------------------------------------------- one campaign


@dataclass
class _Candidates:
    """What a trigger contributes: a FROM with conditions and the row's values."""

    select_from: Any
    where: list[Any]
    occurrence: Any
    due: Any
    send_after: Any
    expires_at: Any
    extra: dict[str, Any] = field(default_factory=dict)


class _Pass:
    def __init__(self, conn: Connection, project: Project, campaign: Campaign, now: datetime):
        self.conn = conn
        self.project = project
        self.campaign = campaign
        self.trigger = campaign.trigger
        self.now = now
        self.sql = _Sql(conn)
        self.shop_zone = ZoneInfo(project.config.shop.timezone)
        self.tz = func.coalesce(customer.c.timezone, project.config.shop.timezone)
        self.marketing = campaign.kind == MessageKind.MARKETING
        self.result = CampaignResult()
        self._holidays: list[HolidayDate] | None = None
        self.since: datetime | None = None

    def run(self, rescan: bool = False) -> CampaignResult:
        if self.sql.pg:  # concurrent passes of one campaign take turns
            key = zlib.crc32(f"lifecycle.plan:{self.campaign.name}".encode())
            self.conn.execute(select(func.pg_advisory_xact_lock(key)))
        self.since = None if rescan else self._incremental_since()
        self._plan()
        self._remember("plan", self.now)
        if self.since is None:
            self._remember("plan-full", self.now)
        return self.result

    def _plan(self) -> None:
        trigger = self.trigger
        if isinstance(trigger, PriceDrop):
            self._plan_refunds()
        elif isinstance(trigger, HolidayTrigger):
            self._move_holidays(trigger)
            candidates = self._holiday_rows(trigger)
            if candidates is not None:
                self._queue(candidates)
        else:
            candidates = self._event_rows()
            if candidates is not None:
                self._queue(candidates)

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
        changed = self._write(update(checkpoint).where(checkpoint.c.name == name).values(**stored))
        if not changed:
            self._write(ignoring_insert(self.conn, checkpoint, "name").values(name=name, **stored))

    # -- the common audience and the insert

    def _write(self, statement: Any) -> int:
        """Run an INSERT or UPDATE; return how many rows it wrote."""
        rowcount = self.conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount
        if rowcount >= 0 or self.sql.pg:
            return rowcount
        # Python's sqlite3 does not count for a statement that begins with WITH.
        return int(self.conn.execute(select(func.changes())).scalar_one())

    def _dedupe_key(self, occurrence: Any) -> Any:
        return literal(f"{self.campaign.name}:") + _text(customer.c.id) + literal(":") + occurrence

    def _not_suppressed(self) -> Any:
        return ~exists().where(suppression.c.email == customer.c.email)

    def _under_cap(self) -> Any:
        cap = self.project.config.sending.frequency_cap
        if cap is None or not self.marketing:
            return None
        recent = (
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
        return recent < cap.max

    def _base(self, rows: _Candidates) -> Select[Any]:
        """Candidates in the segment, not queued before, not expired: before consent etc."""
        segment = compile_segment(self.project.segments[self.campaign.segment], self.now)
        fresh = ~exists().where(message.c.dedupe_key == self._dedupe_key(rows.occurrence))
        not_expired = rows.expires_at > self.now if rows.expires_at is not None else None
        # Cheap, selective tests first: most candidates of a pass were queued by an earlier one.
        where = [*rows.where[:1], fresh, *rows.where[1:], segment]
        if not_expired is not None:
            where.append(not_expired)
        return select().select_from(rows.select_from).where(*where)

    def _eligible(self) -> list[Any]:
        conditions = [self._not_suppressed()]
        if self.marketing:
            conditions.insert(0, customer.c.marketing_consent.is_(True))
        cap = self._under_cap()
        if cap is not None:
            conditions.append(cap)
        return conditions

    def _queue(self, rows: _Candidates) -> None:
        base = self._base(rows)
        values_ = {
            "dedupe_key": self._dedupe_key(rows.occurrence),
            "campaign": literal(self.campaign.name),
            "kind": literal(self.campaign.kind.value),
            "customer_id": customer.c.id,
            "occurrence": rows.occurrence,
            "status": literal(MessageStatus.QUEUED.value),
            "created_at": literal(self.now, UTCDateTime),
            "send_after": rows.send_after,
            "expires_at": rows.expires_at if rows.expires_at is not None else literal(None),
            "attempts": literal(0),
            **rows.extra,
        }
        chosen = base.add_columns(*(v.label(k) for k, v in values_.items())).where(
            *self._eligible()
        )
        insert = ignoring_insert(self.conn, message, "dedupe_key").from_select(
            list(values_), chosen
        )
        self.result.queued = self._write(insert)
        self._count_skipped(base)

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

    def _window_rows(self, zones: Iterable[str], start: datetime, end: datetime) -> CTE:
        """(zone, opens, closes) in UTC for every local day from `start` to `end`, per zone."""
        window = self.project.config.sending.window
        rows = []
        for name in zones:
            zone = _zone(name, self.shop_zone)
            day = start.astimezone(zone).date() - timedelta(days=1)
            while day <= end.astimezone(zone).date() + timedelta(days=1):
                opens, closes = _window_on(day, window.start, window.end, zone)
                rows.append((name, opens, closes))
                day += timedelta(days=1)
        # nesting=True keeps the WITH inside the INSERT, so the statement still
        # begins with INSERT (Python's sqlite3 opens transactions only for those).
        return (
            values(
                column("zone", String),
                column("opens", UTCDateTime),
                column("closes", UTCDateTime),
                name="send_window",
            )
            .data(rows)
            .cte("send_window", nesting=True)
        )

    def _in_window(self, due: Any, windows: CTE) -> Any:
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

    def _zones(self, select_from: Any, where: list[Any]) -> list[str]:
        query = select(self.tz).distinct().select_from(select_from).where(*where)
        return [z for z in self.conn.execute(query).scalars() if z is not None]

    # -- welcome and thank-you

    def _event_rows(self) -> _Candidates | None:
        trigger = self.trigger
        assert isinstance(trigger, FirstOrder | OrderPlaced | OrderDelivered)
        lookback = trigger.expires_after or DEFAULT_LOOKBACK
        latest, earliest = self.now - trigger.delay, self.now - trigger.delay - lookback
        if isinstance(trigger, FirstOrder):
            event = customer.c.first_order_at
            select_from: Any = customer
            where = [event.is_not(None)]
            occurrence: Any = literal("first")
            first_order = (
                select(func.min(orders.c.id))
                .where(
                    orders.c.customer_id == customer.c.id,
                    orders.c.placed_at == customer.c.first_order_at,
                    orders.c.status != OrderStatus.CANCELLED.value,
                )
                .scalar_subquery()
            )
            extra = {"order_id": first_order}
        else:
            event = (
                orders.c.placed_at if isinstance(trigger, OrderPlaced) else orders.c.delivered_at
            )
            select_from = orders.join(customer, customer.c.id == orders.c.customer_id)
            where = [event.is_not(None), orders.c.status != OrderStatus.CANCELLED.value]
            where += self._quiet_after_welcome(trigger, event)
            occurrence = literal("order-") + _text(orders.c.id)
            extra = {"order_id": orders.c.id}
        if self.since is not None:
            earliest = max(earliest, self.since - trigger.delay)
        where += [event > earliest, event <= latest]
        zones = self._zones(select_from, where)
        if not zones:
            return None
        windows = self._window_rows(zones, earliest, self.now)
        due = self.sql.plus(event, trigger.delay)
        expires = (
            self.sql.plus(event, trigger.delay + trigger.expires_after)
            if trigger.expires_after
            else None
        )
        return _Candidates(
            select_from,
            where,
            occurrence,
            due,
            self._in_window(due, windows),
            expires,
            extra,
        )

    def _quiet_after_welcome(self, trigger: OrderPlaced | OrderDelivered, event: Any) -> list[Any]:
        quiet = trigger.quiet_after_welcome
        welcomes = [c for c in self.project.enabled_campaigns if isinstance(c.trigger, FirstOrder)]
        if quiet is None or not welcomes:
            return []
        first = orders.c.placed_at == customer.c.first_order_at
        gap = self.sql.seconds_between(customer.c.first_order_at, event)
        hushed = []
        for welcome in welcomes:
            # thank-you due − welcome due = gap + t.delay − w.delay, within ± quiet
            shift = (trigger.delay - welcome.trigger.delay).total_seconds()
            near = gap.between(-quiet.total_seconds() - shift, quiet.total_seconds() - shift)
            welcomed = exists().where(
                message.c.customer_id == customer.c.id, message.c.campaign == welcome.name
            )
            pending = customer.c.first_order_at > self.now - welcome.trigger.delay
            hushed.append(and_(near, or_(welcomed, pending)))
        return [not_(and_(first, or_(*hushed)))]

    # -- holidays

    def _holiday_occurrences(self, trigger: HolidayTrigger) -> list[HolidayDate]:
        """The trigger's holidays this year and next (read once per pass)."""
        if self._holidays is None:
            years = [self.now.year, self.now.year + 1]
            dated = holiday_dates(self.project, years, self.conn)
            self._holidays = [h for h in dated if h.id in trigger.holidays]
        return self._holidays

    def _holiday_table(
        self, trigger: HolidayTrigger, zones: Iterable[str], only_open: bool
    ) -> CTE | None:
        """Per zone and holiday occurrence: due, send_after and expiry, computed in Python.

        Due at `at` local time `days_before` the holiday; queued from then until the
        end of the holiday date (local), and not past `expires_after`.
        """
        window = self.project.config.sending.window
        rows = []
        for name in zones:
            zone = _zone(name, self.shop_zone)
            for holiday in self._holiday_occurrences(trigger):
                day = holiday.date - timedelta(days=trigger.days_before)
                due = _local(day, trigger.at, zone)
                expires = _local(holiday.date + timedelta(days=1), time(0), zone)
                if trigger.expires_after is not None:
                    expires = min(expires, due + trigger.expires_after)
                if only_open and not due <= self.now < expires:
                    continue
                if only_open and self.since is not None and due <= self.since:
                    continue  # looked at by an earlier pass
                send_after = _into_window(max(due, self.now), window.start, window.end, zone)
                context = json.dumps({"holiday_name": holiday.name}, ensure_ascii=False)
                rows.append(
                    (
                        name,
                        holiday.id,
                        holiday.occurrence,
                        holiday.date,
                        due,
                        send_after,
                        expires,
                        context,
                    )
                )
        if not rows:
            return None
        return (
            values(
                column("zone", String),
                column("holiday", String),
                column("occurrence", String),
                column("holiday_date", Date),
                column("due", UTCDateTime),
                column("send_after", UTCDateTime),
                column("expires_at", UTCDateTime),
                column("context", String),
                name="holiday_due",
            )
            .data(rows)
            .cte("holiday_due", nesting=True)
        )

    def _holiday_rows(self, trigger: HolidayTrigger) -> _Candidates | None:
        if not self._any_holiday_open(trigger):
            return None
        zones = self._zones(customer, [literal(True)])
        due = self._holiday_table(trigger, zones, only_open=True)
        if due is None:
            return None
        return _Candidates(
            customer.join(due, due.c.zone == self.tz),
            [],
            due.c.occurrence,
            due.c.due,
            due.c.send_after,
            due.c.expires_at,
            {
                "holiday": due.c.holiday,
                "holiday_date": due.c.holiday_date,
                "context": self.sql.json_text(due.c.context),
            },
        )

    def _any_holiday_open(self, trigger: HolidayTrigger) -> bool:
        """Cheap test before looking at customers: is any occurrence open in any zone?"""
        widest = timedelta(hours=15)  # UTC−12 … UTC+14, and a little
        for holiday in self._holiday_occurrences(trigger):
            day = holiday.date - timedelta(days=trigger.days_before)
            due = datetime.combine(day, trigger.at, UTC)
            end = datetime.combine(holiday.date + timedelta(days=1), time(0), UTC)
            if not due - widest <= self.now < end + widest:
                continue
            if self.since is None or due + widest > self.since:
                return True  # (between full passes: only when a zone's due time may be new)
        return False

    def _move_holidays(self, trigger: HolidayTrigger) -> None:
        """Unsent (queued or retrying) messages whose holiday moved get the new date, send_after, expiry."""
        current = self._holiday_occurrences(trigger)
        unchanged = or_(
            false(),
            *(
                and_(message.c.occurrence == h.occurrence, message.c.holiday_date == h.date)
                for h in current
            ),
        )
        stale = [
            message.c.campaign == self.campaign.name,
            message.c.status.in_([MessageStatus.QUEUED.value, MessageStatus.RETRY.value]),
            message.c.occurrence.in_([h.occurrence for h in current]),
            not_(unchanged),
        ]
        owner = customer.c.id == message.c.customer_id
        zones_query = (
            select(self.tz).distinct().select_from(message.join(customer, owner)).where(*stale)
        )
        zones = [z for z in self.conn.execute(zones_query).scalars() if z is not None]
        table = self._holiday_table(trigger, zones, only_open=False) if zones else None
        if table is None:
            return

        def new(name: str) -> Any:
            return (
                select(table.c[name])
                .select_from(customer)
                .where(owner, table.c.zone == self.tz, table.c.occurrence == message.c.occurrence)
                .scalar_subquery()
            )

        moved = self._write(
            update(message)
            .where(*stale)
            .values(
                holiday_date=new("holiday_date"),
                send_after=new("send_after"),
                expires_at=new("expires_at"),
            )
        )
        if moved:
            log.info(
                "campaign %s: %d queued messages follow a moved holiday", self.campaign.name, moved
            )

    # -- price-drop refunds

    def _plan_refunds(self) -> None:
        """Credit what each buyer overpaid, then queue the notice: one transaction.

        For an order item, the buyer is owed (unit price − lowest price between the
        order's placement and its delivery, or now if undelivered) × quantity, less
        what was already credited for the item. A deeper drop later credits only the
        extra difference, under a new occurrence. Prices are whole paisa, so the
        amount is exact; amounts below `refunds.minimum` are not credited (yet).
        A suppressed customer is still credited (the money is owed) but not emailed.
        """
        new_credits = self._insert_credits()
        self._queue_refund_notices(new_credits)

    def _lowest_price(self) -> Any:
        pc = price_change.alias("lowest_change")
        delivered = orders.c.delivered_at
        return (
            select(func.min(type_coerce(pc.c.price, BigInteger)))
            .where(
                pc.c.product_id == order_item.c.product_id,
                pc.c.changed_at > orders.c.placed_at,
                pc.c.changed_at <= self.now,
                or_(delivered.is_(None), pc.c.changed_at < delivered),
            )
            # Correlated to the order item of the row, even nested inside EXISTS.
            .correlate_except(pc)
            .scalar_subquery()
        )

    def _occurrence(self, lowest: Any) -> Any:
        return literal("item-") + _text(order_item.c.id) + literal("-") + _text(lowest)

    def _insert_credits(self) -> int:
        since = self.now - REFUND_LOOKBACK
        changed_since = since if self.since is None else max(since, self.since)
        recent = select(price_change.c.product_id).where(
            price_change.c.changed_at > changed_since, price_change.c.changed_at <= self.now
        )
        credited = (
            select(func.coalesce(func.sum(type_coerce(credit.c.amount, BigInteger)), 0))
            .where(credit.c.order_item_id == order_item.c.id)
            .correlate_except(credit)
            .scalar_subquery()
        )
        paid = type_coerce(order_item.c.unit_price, BigInteger)
        drops = (
            select(
                order_item.c.id.label("item_id"),
                orders.c.customer_id.label("customer_id"),
                order_item.c.quantity.label("quantity"),
                paid.label("paid"),
                self._lowest_price().label("lowest"),
                credited.label("credited"),
            )
            .select_from(order_item.join(orders, orders.c.id == order_item.c.order_id))
            .where(
                order_item.c.product_id.in_(recent),
                orders.c.status != OrderStatus.CANCELLED.value,
                or_(orders.c.delivered_at.is_(None), orders.c.delivered_at > since),
            )
            .subquery("drops")
        )
        amount = (drops.c.paid - drops.c.lowest) * drops.c.quantity - drops.c.credited
        minimum = math.ceil(self.project.config.refunds.minimum * 100)
        key = (
            literal(f"{self.campaign.name}:")
            + _text(drops.c.customer_id)
            + literal(":item-")
            + _text(drops.c.item_id)
            + literal("-")
            + _text(drops.c.lowest)
        )
        chosen = select(
            key.label("dedupe_key"),
            drops.c.customer_id,
            drops.c.item_id,
            amount.label("amount"),
            literal("price drop before delivery").label("reason"),
            literal(self.now, UTCDateTime).label("created_at"),
        ).where(
            drops.c.lowest.is_not(None), drops.c.lowest < drops.c.paid, amount >= max(minimum, 1)
        )
        insert = ignoring_insert(self.conn, credit, "dedupe_key").from_select(
            ["dedupe_key", "customer_id", "order_item_id", "amount", "reason", "created_at"],
            chosen,
        )
        return self._write(insert)

    def _queue_refund_notices(self, new_credits: int) -> None:
        if not new_credits:
            return
        trigger = self.trigger
        lowest = self._lowest_price()
        amount = type_coerce(credit.c.amount, BigInteger)
        old_price = lowest + amount // order_item.c.quantity
        due = literal(self.now + trigger.delay, UTCDateTime)
        expires = (
            literal(self.now + trigger.delay + trigger.expires_after, UTCDateTime)
            if trigger.expires_after
            else None
        )
        select_from = (
            credit.join(order_item, order_item.c.id == credit.c.order_item_id)
            .join(orders, orders.c.id == order_item.c.order_id)
            .join(customer, customer.c.id == credit.c.customer_id)
        )
        where = [
            credit.c.created_at == literal(self.now, UTCDateTime),
            credit.c.dedupe_key.startswith(f"{self.campaign.name}:"),
        ]
        zones = self._zones(select_from, where)
        windows = self._window_rows(zones, self.now, self.now)
        context = self.sql.json_object(
            literal("credit_id"), credit.c.id,
            literal("old_price"), _money_text(old_price),
            literal("new_price"), _money_text(lowest),
            literal("quantity"), order_item.c.quantity,
            literal("amount"), _money_text(amount),
        )  # fmt: skip
        self._queue(
            _Candidates(
                select_from,
                where,
                self._occurrence(lowest),
                due,
                self._in_window(due, windows),
                expires,
                {
                    "order_id": orders.c.id,
                    "order_item_id": order_item.c.id,
                    "context": context,
                },
            )
        )


# ---------------------------------------------------------------- local time


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`at` o'clock on `day` in `zone`, as UTC (a time skipped by DST moves forward)."""
    moment = datetime.combine(day, at, zone)
    return moment.astimezone(UTC)


def _window_on(day: date, start: time, end: time, zone: ZoneInfo) -> tuple[datetime, datetime]:
    closes_day = day if end > start else day + timedelta(days=1)
    return _local(day, start, zone), _local(closes_day, end, zone)


def _into_window(due: datetime, start: time, end: time, zone: ZoneInfo) -> datetime:
    """`due` if the customer's clock then reads inside the window, else the next opening."""
    day = due.astimezone(zone).date() - timedelta(days=1)
    for _ in range(4):
        opens, closes = _window_on(day, start, end, zone)
        if due < closes:
            return max(due, opens)
        day += timedelta(days=1)
    raise AssertionError("a daily window always opens within a few days")
