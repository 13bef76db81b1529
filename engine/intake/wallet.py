"""The store-credit wallet: each customer's balance, entries and redemptions.

For the shop (the `credit.redeemed` event, `GET /api/customers/{id}/credit`), the
planner (the `credit` segment rule) and the templates (`customer.credit_balance`).

The ledger is the `credit` table, append-only, each entry written once by its
dedupe key. A credit (a price-drop refund) is a positive entry, optionally
expiring. A redemption is one or more negative entries, each drawing from one
credit (`source_id`) and carrying that credit's `expires_at`, allocated first to
expire first (credits without an expiry last, then the oldest first). So the
balance at `now` is the sum of the entries whose `expires_at` is null or later
than `now` (`counts_at`): exact (whole paisa) and one indexed sum
(`ix_credit_customer_expires`). A refund taken back (`reversals`) is a negative
entry of its order item without a source: for allocation it draws from that
item's credits. `credits_left` is what is left of each credit, in SQL, as a
redemption would find it (the planner's `credit_unused` reminder, and the soonest
expiry a template shows: `soonest_expiries`).

`redeem` writes in the caller's transaction and never overdraws, even with two
redemptions at once: it first locks the customer's row (`SELECT … FOR UPDATE`
on PostgreSQL; on SQLite a write, which takes the database's one write lock),
and only then reads the ledger. It is idempotent by the event id it is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Table,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import type_coerce as _coerce
from sqlmodel import Session

from ..errors import DataError, UnknownRecord
from ..store import CENT, Credit, Customer, Order, OrderItem, is_postgres, to_money

# A redemption's entries: KEY_PREFIX + event id + ":" + part number (1, 2, ...). Not a
# campaign's key: campaign names are lowercase letters, digits and _.
KEY_PREFIX = "redemption:"
MAX_ENTRIES = 500  # entries one statement lists
MAX_ORDER_ID = 64
MAX_EVENT_ID = 128
ZERO = Decimal("0.00")


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


credit, customer = _table(Credit), _table(Customer)
orders, order_item = _table(Order), _table(OrderItem)


class CreditRefused(DataError):
    """A redemption the wallet does not make; nothing was written.

    `balance` is the customer's balance when it was refused for being more than that.
    """

    def __init__(self, message: str, *, balance: Decimal | None = None):
        self.balance = balance
        super().__init__(message)


@dataclass(frozen=True)
class Entry:
    """One line of a customer's statement."""

    at: datetime
    amount: Decimal
    reason: str
    expires_at: datetime | None
    order_id: str | None  # the shop's order: the one redeemed for, or the refunded one


@dataclass(frozen=True)
class Redemption:
    """What `redeem` did: the credits it drew from and the balance after."""

    event_id: str
    amount: Decimal
    drawn: tuple[tuple[int, Decimal], ...]  # (credit id, amount drawn from it)
    balance: Decimal  # the customer's, after it
    duplicate: bool  # made before under this event id: nothing written now


def counts_at(now: datetime) -> ColumnElement[bool]:
    """The entries a balance at `now` adds up: without an expiry, or expiring later."""
    return or_(credit.c.expires_at.is_(None), credit.c.expires_at > now)


def _paisa(column: Any) -> Any:
    return _coerce(column, BigInteger)


def from_paisa(paisa: Any) -> Decimal:
    return (Decimal(int(paisa or 0)) / 100).quantize(CENT)


def balance_sql(customer_id: Any, now: datetime) -> Any:
    """The balance at `now` in paisa as a scalar subquery, correlated when
    `customer_id` is a column of the outer query (a segment's `customer.id`)."""
    return (
        select(func.coalesce(func.sum(_paisa(credit.c.amount)), 0))
        .where(credit.c.customer_id == customer_id, counts_at(now))
        .correlate_except(credit)
        .scalar_subquery()
    )


def credits_left(customers: Any) -> Any:
    """Every credit (a positive entry) of `customers` (ids, or a select of them) with
    what is left of it in paisa (`left`), as `_allocate` counts it: its amount, less
    what redemptions drew from it, less its share of what was taken back of its order
    item (taken from the item's credits first to expire first). Expired credits are
    included (with `expires_at`): the caller keeps those that count at its `now`.
    A subquery of id, customer_id, created_at, expires_at, left."""
    drawn_from = credit.alias("drawn_from")
    taken_back = credit.alias("taken_back")
    drawn = (
        select(func.coalesce(func.sum(_paisa(drawn_from.c.amount)), 0))
        .where(drawn_from.c.source_id == credit.c.id)
        .correlate(credit)
        .scalar_subquery()
    )
    # What was taken back of the credit's order item. Looked up by the order item (the
    # `+ 0` keeps SQLite from reading every entry without a source through the
    # source_id index instead), and not at all for a credit of no order item.
    taken = (
        select(func.coalesce(func.sum(_paisa(taken_back.c.amount)), 0))
        .where(
            taken_back.c.order_item_id == credit.c.order_item_id,
            (taken_back.c.source_id + 0).is_(None),
            _paisa(taken_back.c.amount) < 0,
        )
        .correlate(credit)
        .scalar_subquery()
    )
    reversed_ = case((credit.c.order_item_id.is_(None), 0), else_=taken)
    kept = _paisa(credit.c.amount) + drawn
    first_to_expire = (
        case((credit.c.expires_at.is_(None), 1), else_=0),
        func.coalesce(credit.c.expires_at, credit.c.created_at),
        credit.c.created_at,
        credit.c.id,
    )
    ahead = func.sum(kept).over(
        partition_by=credit.c.order_item_id, order_by=first_to_expire, rows=(None, -1)
    )
    each = (
        select(
            credit.c.id,
            credit.c.customer_id,
            credit.c.created_at,
            credit.c.expires_at,
            kept.label("kept"),
            (-reversed_).label("taken"),
            func.coalesce(ahead, 0).label("ahead"),
        )
        .where(credit.c.customer_id.in_(customers), _paisa(credit.c.amount) > 0)
        .subquery("credit_kept")
    )
    # What was taken back of the item falls on this credit once the credits ahead of
    # it are used up, and never more than it kept.
    share = each.c.taken - each.c.ahead
    on_this = case((share <= 0, literal(0)), (share >= each.c.kept, each.c.kept), else_=share)
    return select(
        each.c.id,
        each.c.customer_id,
        each.c.created_at,
        each.c.expires_at,
        (each.c.kept - on_this).label("left"),
    ).subquery("credit_left")


def soonest_expiries(
    session: Session, customer_ids: Iterable[int], now: datetime
) -> dict[int, tuple[datetime, Decimal]]:
    """For these customers, when their first credit with something left expires at
    `now` and how much of it (and of others expiring at that moment) is left, in one
    query; the caller chunks long lists. A customer none of whose credit expires is absent."""
    left = credits_left(list(customer_ids))
    rows = session.execute(
        select(left.c.customer_id, left.c.expires_at, func.sum(left.c.left))
        .where(left.c.expires_at > now, left.c.left > 0)
        .group_by(left.c.customer_id, left.c.expires_at)
    )
    found: dict[int, tuple[datetime, Decimal]] = {}
    for customer_id, expires_at, paisa in rows:
        if customer_id not in found or expires_at < found[customer_id][0]:
            found[customer_id] = (expires_at, from_paisa(paisa))
    return found


def balance(session: Session, customer_id: int, now: datetime) -> Decimal:
    """The customer's balance at `now` (0.00 without entries)."""
    return from_paisa(session.execute(select(balance_sql(customer_id, now))).scalar_one())


def balances(session: Session, customer_ids: Iterable[int], now: datetime) -> dict[int, Decimal]:
    """The balances at `now` of these customers, in one grouped query; the caller
    chunks long lists. A customer without entries is absent."""
    rows = session.execute(
        select(credit.c.customer_id, func.sum(_paisa(credit.c.amount)))
        .where(credit.c.customer_id.in_(list(customer_ids)), counts_at(now))
        .group_by(credit.c.customer_id)
    )
    return {customer_id: from_paisa(paisa) for customer_id, paisa in rows}


def entries(
    session: Session, customer_id: int, *, limit: int = MAX_ENTRIES
) -> tuple[list[Entry], bool]:
    """The customer's entries, newest first, at most `limit`, and whether there are more."""
    order_id = func.coalesce(credit.c.order_ref, orders.c.external_id)
    rows = session.execute(
        select(
            credit.c.created_at,
            credit.c.amount,
            credit.c.reason,
            credit.c.expires_at,
            order_id.label("order_id"),
        )
        .select_from(
            credit.outerjoin(order_item, order_item.c.id == credit.c.order_item_id).outerjoin(
                orders, orders.c.id == order_item.c.order_id
            )
        )
        .where(credit.c.customer_id == customer_id)
        .order_by(credit.c.created_at.desc(), credit.c.id.desc())
        .limit(limit + 1)
    ).all()
    shown = [Entry(r.created_at, r.amount, r.reason, r.expires_at, r.order_id) for r in rows]
    return shown[:limit], len(rows) > limit


@dataclass(frozen=True)
class Statement:
    """A customer's wallet as the shop sees it: the balance now and the latest entries."""

    customer: str  # the shop's customer id
    balance: Decimal
    entries: list[Entry]
    more: bool  # there are older entries than these


def statement(session: Session, external_id: str, now: datetime) -> Statement:
    """The wallet of the customer the shop calls `external_id`: the balance at `now` and
    the newest `MAX_ENTRIES` entries. Raises UnknownRecord for an unknown customer."""
    found = session.execute(
        select(customer.c.id).where(customer.c.external_id == external_id)
    ).scalar_one_or_none()
    if found is None:
        raise UnknownRecord(f"unknown customer {external_id!r}")
    shown, more = entries(session, found)
    return Statement(external_id, balance(session, found, now), shown, more)


def redeem(
    session: Session,
    customer_id: int,
    amount: Any,
    order_ref: str,
    event_id: str,
    now: datetime,
) -> Redemption:
    """Draw `amount` from the customer's credits for the shop's order `order_ref`,
    first to expire first, in the caller's transaction.

    Idempotent by `event_id`: a redemption made before under it is returned
    (`duplicate`), and nothing is written. Raises CreditRefused, writing
    nothing, when `amount` is not more than 0 with at most two decimals or is
    more than the balance at `now`; UnknownRecord when there is no such customer.
    """
    wanted = _amount(amount)
    ref = _text("order_id", order_ref, MAX_ORDER_ID)
    key = _text("event id", event_id, MAX_EVENT_ID)
    _lock(session, customer_id)
    made = _made(session, key)
    if made is not None:
        return replace(made, balance=balance(session, customer_id, now))
    have = balance(session, customer_id, now)
    if wanted > have:
        raise CreditRefused(
            f"amount {wanted} is more than the credit balance of {have}", balance=have
        )
    drawn = _allocate(_ledger(session, customer_id), wanted, now)
    if drawn is None:  # entries this engine does not write (never in practice)
        raise CreditRefused(
            f"amount {wanted} cannot be drawn from the customer's credits (balance "
            f"{have}: the ledger has entries without the credit they draw from)",
            balance=have,
        )
    session.execute(
        insert(credit),
        [
            {
                "dedupe_key": f"{KEY_PREFIX}{key}:{part}",
                "customer_id": customer_id,
                "amount": -taken,
                "reason": f"redeemed for order {ref}",
                "created_at": now,
                "expires_at": source.expires_at,
                "source_id": source.id,
                "order_ref": ref,
            }
            for part, (source, taken) in enumerate(drawn, start=1)
        ],
    )
    drawn_ids = tuple((source.id, taken) for source, taken in drawn)
    return Redemption(key, wanted, drawn_ids, have - wanted, duplicate=False)


def _amount(value: Any) -> Decimal:
    try:
        amount = to_money(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise CreditRefused(f"amount must be an amount like 120.50, got: {value!r}") from exc
    if amount <= 0:
        raise CreditRefused(f"amount must be more than 0, got: {value}")
    if amount != amount.quantize(CENT):
        raise CreditRefused(f"amount has more than two decimal places, got: {value}")
    return amount.quantize(CENT)


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise CreditRefused(f"{name} must be a text of 1 to {limit} characters, got: {value!r}")
    return value


def _lock(session: Session, customer_id: int) -> None:
    """Hold the customer's row (PostgreSQL) or the write lock (SQLite) until commit."""
    if is_postgres(session):
        statement: Any = select(customer.c.id).where(customer.c.id == customer_id).with_for_update()
        found = session.execute(statement).first() is not None
    else:
        # SQLite starts a transaction with its one write lock at the first write; every
        # read after it sees what other writers committed, and none can commit meanwhile.
        statement = (
            update(customer).where(customer.c.id == customer_id).values(name=customer.c.name)
        )
        found = session.execute(statement).rowcount == 1  # type: ignore[attr-defined]
    if not found:
        raise UnknownRecord(f"unknown customer {customer_id}")


def _made(session: Session, event_id: str) -> Redemption | None:
    """The redemption written before under `event_id`, or None."""
    prefix = f"{KEY_PREFIX}{event_id}:"
    first = session.execute(
        select(credit.c.customer_id).where(credit.c.dedupe_key == f"{prefix}1")
    ).first()
    if first is None:
        return None
    rows = session.execute(
        select(credit.c.amount, credit.c.source_id).where(
            credit.c.customer_id == first.customer_id,
            credit.c.dedupe_key.startswith(prefix, autoescape=True),
        )
    ).all()
    drawn = tuple((row.source_id, -row.amount) for row in rows)
    total = sum((taken for _, taken in drawn), ZERO)
    return Redemption(event_id, total, drawn, ZERO, duplicate=True)


def _ledger(session: Session, customer_id: int) -> list[Any]:
    query = select(credit).where(credit.c.customer_id == customer_id).order_by(credit.c.id)
    return list(session.execute(query))


def _first_to_expire(entry: Any) -> tuple[Any, ...]:
    """Credits that expire first, then those without an expiry; the oldest first."""
    expires = entry.expires_at or entry.created_at
    return (entry.expires_at is None, expires, entry.created_at, entry.id)


def _allocate(
    ledger: list[Any], wanted: Decimal, now: datetime
) -> list[tuple[Any, Decimal]] | None:
    """(credit, amount) pairs that make `wanted` from what is left of each credit
    not expired at `now`, first to expire first; None if they cannot."""
    credits = sorted((e for e in ledger if e.amount > 0), key=_first_to_expire)
    left = {c.id: c.amount for c in credits}
    for entry in ledger:  # in the order they were written
        if entry.amount >= 0:
            continue
        if entry.source_id is not None:
            left[entry.source_id] = left.get(entry.source_id, ZERO) + entry.amount
            continue
        owed = -entry.amount  # taken back: from its item's credits (any, if it names none)
        for c in credits:
            if entry.order_item_id is None or c.order_item_id == entry.order_item_id:
                taken = min(owed, max(left[c.id], ZERO))
                left[c.id] -= taken
                owed -= taken
    drawn: list[tuple[Any, Decimal]] = []
    for c in credits:
        if wanted <= 0:
            break
        if (c.expires_at is None or c.expires_at > now) and left[c.id] > 0:
            taken = min(wanted, left[c.id])
            drawn.append((c, taken))
            wanted -= taken
    return drawn if wanted <= 0 else None
