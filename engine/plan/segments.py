"""Segments: the `rules:` of segments/*.yaml compiled to SQL over `customer`.

A rule is a mapping. `all: [rules]`, `any: [rules]` and `not: rule` combine
rules; a mapping with several keys means all of them. The conditions
(windows such as `180d` are counted back from `now`):

    orders:      {at_least: n, at_most: n, within: 180d}  non-cancelled orders
    spent:       {at_least: amount, at_most: amount, within: 365d}
    first_order: {within: 30d} or {before: 30d}
    last_order:  {within: 30d} or {before: 120d}
    created:     {within: 30d} or {before: 365d}
    bought:      {sku: X} or {category: Y}, optionally with within
    locale:      bn (or a list; "bn" also matches bn_BD)
    city:        Dhaka (or a list; case does not matter)
    tag:         wholesale (or a list: any of them)
    birthday:    {month: 4, day: 14} (day optional)
    consent:     true or false (marketing consent)
    opened:      {within: 30d}   human opens only (machine opens do not count)
    clicked:     {within: 30d}
    received:    {campaign: welcome, within: 30d}  a message of it was sent
    credit:      {at_least: amount, at_most: amount}  store-credit balance at `now`
                 (credits not expired, less what was redeemed: `intake.wallet`)
    tier:        gold (or a list: any of them), a tier id of tiers.yaml; `none`: no tier
    referrals:   {at_least: n, at_most: n}  referred orders delivered and not reversed
    payment:     cod, prepaid, or a method (bkash, or a list): how the customer's latest
                 order was paid (cancelled, refused and returned orders aside;
                 an order that does not say how is neither cod nor prepaid)

Windows are positive and at most 3650d; counts run from 0 to 1,000,000;
amounts from 0 to 1,000,000,000 with at most two decimals.

Only this whitelisted vocabulary exists: no raw SQL, no eval. Without a
window, `orders` and `spent` read the denormalised `customer.orders_count`
and `customer.total_spent`. `compile_segment` raises `ConfigError` for a bad
rule; `check_segments` lists every problem with file, line and key path.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, extract, func, literal, not_, or_, select, true
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import Grouping, UnaryExpression
from sqlalchemy.sql.selectable import Select
from sqlmodel import col

from ..errors import ConfigError, Problem
from ..intake import balance_sql
from ..project import KeyPath, Project, Segment, describe, dotted, parse_amount, parse_duration
from ..store import (
    CASH_ON_DELIVERY,
    Customer,
    CustomerTag,
    EventKind,
    Message,
    MessageEvent,
    MessageStatus,
    Money,
    Order,
    OrderItem,
    Product,
    Referral,
    ReferralStatus,
    is_purchase,
)

Rule = ColumnElement[bool]
# More orders than any customer places; a larger bound is a typo (and overflows a SQL integer).
MAX_COUNT = 1_000_000


class _Invalid(Exception):
    """A bad rule at `path` (relative to the rule being compiled)."""

    def __init__(self, path: KeyPath, message: str):
        self.path = path
        self.message = message
        super().__init__(message)


class _Compiler:
    """Turns one segment's rules into a boolean expression, collecting problems.

    With `tiers` (the ids of tiers.yaml), a `tier:` naming another id is a problem.
    """

    def __init__(self, now: datetime, tiers: list[str] | None = None):
        self.now = now
        self.tiers = tiers
        self.problems: list[tuple[KeyPath, str]] = []

    def rule(self, node: Any, path: KeyPath) -> Rule:
        if not isinstance(node, dict) or not node:
            self.problems.append(
                (path, f"expected a rule such as {{orders: ...}}, got {describe(node)}")
            )
            return true()
        parts = [self._one(str(key), value, (*path, key)) for key, value in node.items()]
        return parts[0] if len(parts) == 1 else and_(*parts)

    def _one(self, key: str, value: Any, path: KeyPath) -> Rule:
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                self.problems.append(
                    (path, f"{key}: expected a list of rules, got {describe(value)}")
                )
                return true()
            parts = [self.rule(item, (*path, i)) for i, item in enumerate(value)]
            return and_(*parts) if key == "all" else or_(*parts)
        if key == "not":
            return not_(self.rule(value, path))
        condition = CONDITIONS.get(key)
        if condition is None:
            close = difflib.get_close_matches(key, [*CONDITIONS, "all", "any", "not"], n=1)
            hint = (
                f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(CONDITIONS)})"
            )
            self.problems.append((path, f"unknown rule {key!r}{hint}"))
            return true()
        try:
            if key == "tier" and self.tiers is not None:
                _known_tiers(value, self.tiers)
            return condition(value, self.now)
        except _Invalid as exc:
            self.problems.append(((*path, *exc.path), exc.message))
            return true()


def compile_segment(segment: Segment, now: datetime) -> Rule:
    """The segment as a boolean SQL expression over `customer`; ConfigError if invalid."""
    if segment.rules is None:
        return true()
    return compile_rule(segment.rules, now, f"segments/{segment.name}.yaml", ("rules",))


def compile_rule(rule: dict[str, Any], now: datetime, file: str, at: KeyPath) -> Rule:
    """A rule written at `at` in `file` (a segment's, a tier's) as a boolean SQL expression
    over `customer`; ConfigError naming the file and key path if invalid."""
    compiler = _Compiler(now)
    expression = compiler.rule(rule, at)
    if compiler.problems:
        raise ConfigError([Problem(file, None, dotted(p), m) for p, m in compiler.problems])
    return expression


def check_segments(project: Project) -> list[Problem]:
    """Every bad rule in every segment and tier, with file, line and key path."""
    problems: list[Problem] = []
    now = datetime(2000, 1, 1, tzinfo=UTC)  # any moment: only the shape is checked
    tiers = project.tiers
    tier_ids = [t.id for t in tiers.tiers] if tiers else []
    rules: list[tuple[str, KeyPath, dict[str, Any]]] = [
        (project.segment_files.get(name, f"segments/{name}.yaml"), ("rules",), segment.rules)
        for name, segment in project.segments.items()
        if segment.rules is not None
    ]
    if tiers is not None:
        file = project.config.paths.tiers
        rules += [(file, ("tiers", i, "rule"), t.rule) for i, t in enumerate(tiers.tiers)]
    for file, at, rule in rules:
        compiler = _Compiler(now, tier_ids)
        compiler.rule(rule, at)
        for path, message in compiler.problems:
            problems.append(Problem(file, project.where(file, path), dotted(path), message))
    return problems


def _known_tiers(value: Any, tiers: list[str]) -> None:
    for name in _texts(value):
        if name != "none" and name not in tiers:
            close = difflib.get_close_matches(name, tiers, n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"tiers: {', '.join(tiers) or 'none'}"
            )
            raise _Invalid((), f"unknown tier {name!r} ({hint})")


# ---------------------------------------------------------------- the vocabulary


def _options(value: Any, allowed: set[str], required: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(
            (), f"expected a mapping with {', '.join(sorted(allowed))}, got {describe(value)}"
        )
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"expected one of: {', '.join(sorted(allowed))}"
            )
            raise _Invalid((key,), f"unknown option {key!r} ({hint})")
    missing = sorted((required or set()) - set(value))
    if missing:
        raise _Invalid((), f"required option {missing[0]!r} is missing")
    return value


def _duration(options: dict[str, Any], key: str) -> timedelta | None:
    if key not in options:
        return None
    try:
        duration = parse_duration(options[key])
    except ValueError as exc:
        raise _Invalid((key,), str(exc)) from exc
    if duration <= timedelta(0):
        raise _Invalid((key,), f"expected a positive duration, got {describe(options[key])}")
    return duration


def _count(options: dict[str, Any], key: str) -> int | None:
    value = options.get(key)
    if value is None and key not in options:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise _Invalid(
            (key,), f"expected a whole number from 0 to {MAX_COUNT:,}, got {describe(value)}"
        )
    return value


def _amount(options: dict[str, Any], key: str) -> Decimal | None:
    if key not in options:
        return None
    try:
        return parse_amount(options[key])
    except ValueError as exc:
        raise _Invalid((key,), str(exc)) from exc


def _bounds(options: dict[str, Any], read: Callable[[dict[str, Any], str], Any]) -> tuple[Any, Any]:
    low, high = read(options, "at_least"), read(options, "at_most")
    if low is None and high is None:
        raise _Invalid((), "expected at_least or at_most (or both)")
    if low is not None and high is not None and low > high:
        raise _Invalid(("at_most",), f"at_most ({high}) is below at_least ({low})")
    return low, high


def _in_range(ids: Callable[[str, Any], Select[Any]], low: Any, high: Any) -> Rule:
    """low ≤ f(customer) ≤ high, given `ids(op, bound)` = customers with f op bound."""
    parts: list[Rule] = []
    if low is not None:
        parts.append(col(Customer.id).in_(ids(">=", low)))
    if high is not None:
        parts.append(col(Customer.id).not_in(ids(">", high)))
    return and_(*parts)


def _counted_orders(since: datetime, now: datetime) -> list[Rule]:
    """Orders not cancelled placed from `since` up to `now` (one dated later is not yet)."""
    return [
        col(Order.placed_at) >= since,
        _not_after(col(Order.placed_at), now),
        is_purchase(col(Order.status)),
    ]


def _not_after(column: Any, now: datetime) -> Rule:
    """`NOT (column > now)`: the same rows as `column <= now`, but SQLite (which has no
    histograms) then reads a window of orders by customer through
    ix_orders_customer_placed, in GROUP BY order, instead of guessing that a two-sided
    range of ix_orders_placed_at is small and sorting half the table (4-5x slower)."""
    return UnaryExpression(Grouping(column > now), operator=operators.inv)


def _orders(value: Any, now: datetime) -> Rule:
    options = _options(value, {"at_least", "at_most", "within"})
    low, high = _bounds(options, _count)
    within = _duration(options, "within")
    if within is None:
        column = col(Customer.orders_count)
        return and_(
            *(c for c in (_cmp(column, ">=", low), _cmp(column, "<=", high)) if c is not None)
        )

    def ids(op: str, bound: int) -> Select[Any]:
        return (
            select(col(Order.customer_id))
            .where(*_counted_orders(now - within, now))
            .group_by(col(Order.customer_id))
            .having(_cmp(func.count(), op, bound))  # type: ignore[arg-type]
        )

    if low == 0:
        low = None
    return _in_range(ids, low, high) if (low, high) != (None, None) else true()


def _spent(value: Any, now: datetime) -> Rule:
    options = _options(value, {"at_least", "at_most", "within"})
    low, high = _bounds(options, _amount)
    within = _duration(options, "within")
    if within is None:
        column = col(Customer.total_spent)
        return and_(
            *(c for c in (_cmp(column, ">=", low), _cmp(column, "<=", high)) if c is not None)
        )

    def ids(op: str, bound: Decimal) -> Select[Any]:
        total = func.sum(col(Order.total))
        return (
            select(col(Order.customer_id))
            .where(*_counted_orders(now - within, now))
            .group_by(col(Order.customer_id))
            .having(_cmp(total, op, literal(bound, Money)))  # type: ignore[arg-type]
        )

    if low == 0:
        low = None
    return _in_range(ids, low, high) if (low, high) != (None, None) else true()


def _cmp(left: Any, op: str, right: Any) -> Rule | None:
    if right is None:
        return None
    comparisons: dict[str, Rule] = {">=": left >= right, ">": left > right, "<=": left <= right}
    return comparisons[op]


def _moment(column: Any) -> Callable[[Any, datetime], Rule]:
    """{within: d}: at or after now − d; {before: d}: earlier than now − d (never: false)."""

    def condition(value: Any, now: datetime) -> Rule:
        options = _options(value, {"within", "before"})
        within, before = _duration(options, "within"), _duration(options, "before")
        if (within is None) == (before is None):
            raise _Invalid((), "expected exactly one of within or before")
        if within is not None:
            return and_(column.is_not(None), column >= now - within)
        return and_(column.is_not(None), column < now - before)  # type: ignore[operator]

    return condition


def _bought(value: Any, now: datetime) -> Rule:
    options = _options(value, {"sku", "category", "within"})
    if ("sku" in options) == ("category" in options):
        raise _Invalid((), "expected exactly one of sku or category")
    key = "sku" if "sku" in options else "category"
    wanted = _texts(options[key], (key,))
    column = col(Product.sku) if key == "sku" else col(Product.category)
    within = _duration(options, "within")
    query = (
        select(col(Order.customer_id))
        .join(OrderItem, col(OrderItem.order_id) == col(Order.id))
        .join(Product, col(Product.id) == col(OrderItem.product_id))
        .where(column.in_(wanted), is_purchase(col(Order.status)))
    )
    if within is not None:
        query = query.where(col(Order.placed_at) >= now - within)
    return col(Customer.id).in_(query)


def _texts(value: Any, path: KeyPath = ()) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise _Invalid(path, f"expected a name or a list of names, got {describe(value)}")
    return [v.strip() for v in values]


def _locale(value: Any, now: datetime) -> Rule:
    column = col(Customer.locale)
    parts = []
    for name in _texts(value):
        name = name.replace("-", "_")
        parts.append(or_(column == name, column.like(f"{name}\\_%", escape="\\")))
    return or_(*parts)


def _city(value: Any, now: datetime) -> Rule:
    city = col(Customer.city)  # NULL-safe, so that `not` is the true complement
    return and_(city.is_not(None), func.lower(city).in_([v.lower() for v in _texts(value)]))


def _tag(value: Any, now: datetime) -> Rule:
    tagged = select(col(CustomerTag.customer_id)).where(col(CustomerTag.tag).in_(_texts(value)))
    return col(Customer.id).in_(tagged)


def _birthday(value: Any, now: datetime) -> Rule:
    options = _options(value, {"month", "day"}, required={"month"})
    month, day = options["month"], options.get("day")
    if isinstance(month, bool) or not isinstance(month, int) or not 1 <= month <= 12:
        raise _Invalid(("month",), f"expected a month from 1 to 12, got {describe(month)}")
    if day is not None and (
        isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 31
    ):
        raise _Invalid(("day",), f"expected a day from 1 to 31, got {describe(day)}")
    birthday = col(Customer.birthday)
    parts = [birthday.is_not(None), extract("month", birthday) == month]
    if day is not None:
        parts.append(extract("day", birthday) == day)
    return and_(*parts)


def _consent(value: Any, now: datetime) -> Rule:
    if not isinstance(value, bool):
        raise _Invalid((), f"expected true or false, got {describe(value)}")
    return (
        col(Customer.marketing_consent).is_(True)
        if value
        else col(Customer.marketing_consent).is_(False)
    )


def _event(kind: EventKind) -> Callable[[Any, datetime], Rule]:
    def condition(value: Any, now: datetime) -> Rule:
        options = _options(value, {"within"}, required={"within"})
        within = _duration(options, "within")
        assert within is not None
        events = select(col(MessageEvent.customer_id)).where(
            col(MessageEvent.kind) == kind, col(MessageEvent.at) >= now - within
        )
        if kind == EventKind.OPEN:
            events = events.where(col(MessageEvent.machine).is_(False))
        return col(Customer.id).in_(events)

    return condition


def _received(value: Any, now: datetime) -> Rule:
    options = _options(value, {"campaign", "within"}, required={"campaign"})
    campaign = _texts(options["campaign"], ("campaign",))
    sent = select(col(Message.customer_id)).where(
        col(Message.campaign).in_(campaign), col(Message.status) == MessageStatus.SENT
    )
    within = _duration(options, "within")
    if within is not None:
        sent = sent.where(col(Message.sent_at) >= now - within)
    return col(Customer.id).in_(sent)


def _credit(value: Any, now: datetime) -> Rule:
    """A correlated sum per customer: one without credit has a balance of 0."""
    options = _options(value, {"at_least", "at_most"})
    low, high = _bounds(options, _amount)
    balance = balance_sql(col(Customer.id), now)  # in paisa
    paisa = [None if bound is None else int(bound * 100) for bound in (low, high)]
    parts = (_cmp(balance, ">=", paisa[0]), _cmp(balance, "<=", paisa[1]))
    return and_(*(part for part in parts if part is not None))


def _tier(value: Any, now: datetime) -> Rule:
    names = _texts(value)
    column = col(Customer.tier)
    named = column.in_([n for n in names if n != "none"])
    return or_(named, column.is_(None)) if "none" in names else and_(column.is_not(None), named)


def _referrals(value: Any, now: datetime) -> Rule:
    options = _options(value, {"at_least", "at_most"})
    low, high = _bounds(options, _count)

    def ids(op: str, bound: int) -> Select[Any]:
        return (
            select(col(Referral.referrer_id))
            .where(col(Referral.status) == ReferralStatus.COUNTED)
            .group_by(col(Referral.referrer_id))
            .having(_cmp(func.count(), op, bound))  # type: ignore[arg-type]
        )

    if low == 0:
        low = None
    return _in_range(ids, low, high) if (low, high) != (None, None) else true()


def _payment(value: Any, now: datetime) -> Rule:
    """A correlated read of the customer's latest counted order's payment method."""
    names = [name.lower() for name in _texts(value)]
    latest = (
        select(col(Order.payment_method))
        .where(
            col(Order.customer_id) == col(Customer.id),
            is_purchase(col(Order.status)),
            _not_after(col(Order.placed_at), now),
        )
        .order_by(col(Order.placed_at).desc(), col(Order.id).desc())
        .limit(1)
        .correlate(Customer)
        .scalar_subquery()
    )
    parts: list[Rule] = []
    methods = [n for n in names if n not in ("cod", "prepaid")]
    if "cod" in names:
        methods.append(CASH_ON_DELIVERY)
    if methods:
        parts.append(latest.in_(methods))
    if "prepaid" in names:
        parts.append(and_(latest.is_not(None), latest != CASH_ON_DELIVERY))
    return and_(latest.is_not(None), or_(*parts))


CONDITIONS: dict[str, Callable[[Any, datetime], Rule]] = {
    "orders": _orders,
    "spent": _spent,
    "first_order": _moment(col(Customer.first_order_at)),
    "last_order": _moment(col(Customer.last_order_at)),
    "created": _moment(col(Customer.created_at)),
    "bought": _bought,
    "locale": _locale,
    "city": _city,
    "tag": _tag,
    "birthday": _birthday,
    "consent": _consent,
    "opened": _event(EventKind.OPEN),
    "clicked": _event(EventKind.CLICK),
    "received": _received,
    "credit": _credit,
    "tier": _tier,
    "referrals": _referrals,
    "payment": _payment,
}
