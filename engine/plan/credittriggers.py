"""The store-credit reminder: `credit_unused`, credit held unspent or about to expire.

A customer's *live* credits are those not expired at `now` with something left
(`engine.intake.wallet.credits_left`: less what was redeemed from each, less what was
taken back). The reminder is about one of them, the *cause*:

- `after`: the oldest live credit, once it and the wallet's last change are `after`
  old. The wallet changes when credit is spent or taken back (a negative entry) and
  when a credit expires; so a customer who spends some of it starts the clock again,
  and the credit that becomes the oldest when an older one is spent or expires is
  counted from then.
- `expiring_within`: the live credit that expires first, once it expires within
  `expiring_within`, counted from then or from the last expiry of another credit of
  the customer, whichever is later (a credit that expired unspent brings the next
  forward). Credits that expire at the same moment are one reminder, about the first
  of them granted: spending it does not remind again of the others.
- both: the expiring one when it is due, else the oldest.

The customer enters when that moment comes (the step's wait counts from it) and is
queued while it is within the step's lookback, like every trigger (its
`expires_after`, 3 days by default): a new install does not remind of history. The
balance at `now` must be at least `min_balance`. Occurrence `credit-<id of the
cause>`: the same credit never reminds twice, a new credit can. The email never goes
after the credit it is about has expired.

Only customers with a credit entry that could have moved their moment into this
pass's window are looked at (its creation, its expiry or a redemption in the shifted
range); the ledger has no index on these times, so that is one scan of `credit`
with plain comparisons, and the per-credit sums run for those customers alone.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, and_, case, false, func, literal, or_, select, type_coerce
from sqlalchemy.sql.selectable import Subquery

from ..intake import balance_sql, credits_left
from ..project import CreditUnused
from ..store import UTCDateTime
from .campaignpass import DEFAULT_LOOKBACK, CampaignPass
from .plansql import Candidates, as_text, credit, customer


def plan_credit_unused(run: CampaignPass, trigger: CreditUnused) -> None:
    offset = run.delay  # the step's wait after entry
    latest = run.now - offset
    earliest = latest - (run.expires_after or DEFAULT_LOOKBACK)
    if run.since is not None:
        earliest = max(earliest, run.since - offset)
    looked_at = _looked_at(trigger, earliest, latest)
    moments = _moments(run, trigger, looked_at, (earliest, latest))
    select_from = customer.join(moments, moments.c.customer_id == customer.c.id)
    minimum = math.ceil(trigger.min_balance * 100)
    where = [
        moments.c.entry > literal(earliest, UTCDateTime),
        moments.c.entry <= literal(latest, UTCDateTime),
        balance_sql(customer.c.id, run.now) >= minimum,
    ]
    zones = run.zones(select_from, where)
    if not zones:
        return
    windows = run.window_rows(zones, run.now, run.now)
    due = run.sql.plus(moments.c.entry, offset)
    run.queue(
        Candidates(
            select_from,
            where,
            literal("credit-") + as_text(moments.c.credit_id),
            due,
            run.in_window(due, windows),
            _expiry(run, due, moments.c.credit_expires_at),
            {},
            entry=moments.c.entry,
        )
    )


def _looked_at(trigger: CreditUnused, earliest: datetime, latest: datetime) -> Any:
    """The customers with an entry that could put their moment in (earliest, latest]."""
    conditions = []

    def within(column: Any, shift: timedelta) -> Any:
        return and_(column > earliest + shift, column <= latest + shift)

    if trigger.after is not None:
        back = -trigger.after
        conditions += [within(credit.c.created_at, back), within(credit.c.expires_at, back)]
    if trigger.expiring_within is not None:
        ahead = trigger.expiring_within
        conditions += [within(credit.c.expires_at, ahead), within(credit.c.expires_at, timedelta())]
    return select(credit.c.customer_id).where(or_(*conditions) if conditions else false())


def _moments(
    run: CampaignPass,
    trigger: CreditUnused,
    looked_at: Any,
    bounds: tuple[datetime, datetime],
) -> Subquery:
    """Per customer looked at: the credit the reminder is about (`credit_id`), its expiry,
    and the moment the customer entered (`entry`), by the trigger's rule."""
    now = literal(run.now, UTCDateTime)
    left = credits_left(looked_at)
    live = (
        select(left)
        .where(left.c.left > 0, or_(left.c.expires_at.is_(None), left.c.expires_at > now))
        .subquery("live_credit")
    )
    by_age = func.row_number().over(
        partition_by=live.c.customer_id, order_by=(live.c.created_at, live.c.id)
    )
    never = case((live.c.expires_at.is_(None), 1), else_=0)
    by_expiry = func.row_number().over(
        partition_by=live.c.customer_id, order_by=(never, live.c.expires_at, live.c.id)
    )
    ranked = select(live, by_age.label("by_age"), by_expiry.label("by_expiry")).subquery(
        "ranked_credit"
    )
    # The oldest and the soonest-expiring live credit of each customer, side by side:
    # one row per customer from one read of the ranked credits (joining two readings
    # of them made SQLite compare every customer's with every other's).
    is_oldest = ranked.c.by_age == 1
    is_soonest = and_(ranked.c.by_expiry == 1, ranked.c.expires_at.is_not(None))

    def of(which: Any, value: Any) -> Any:
        return func.max(case((which, value)))

    pair = (
        select(
            ranked.c.customer_id,
            of(is_oldest, ranked.c.id).label("oldest_id"),
            of(is_oldest, ranked.c.created_at).label("oldest_created_at"),
            of(is_oldest, ranked.c.expires_at).label("oldest_expires_at"),
            of(is_soonest, ranked.c.id).label("soonest_id"),
            of(is_soonest, ranked.c.expires_at).label("soonest_expires_at"),
        )
        .where(or_(is_oldest, is_soonest))
        .group_by(ranked.c.customer_id)
        .subquery("credit_pair")
    )
    oldest_created = type_coerce(pair.c.oldest_created_at, UTCDateTime)
    oldest_ends = type_coerce(pair.c.oldest_expires_at, UTCDateTime)
    soonest_ends = type_coerce(pair.c.soonest_expires_at, UTCDateTime)
    if trigger.after is not None:
        changed = _last_change(run, pair.c.customer_id)
        since = run.sql.later(oldest_created, func.coalesce(changed, oldest_created))
        held = run.sql.plus(since, trigger.after)
    if trigger.expiring_within is not None:
        soonest_id = _first_expiring_then(pair.c.customer_id, soonest_ends)
        expired = _last_expiry(run, pair.c.customer_id)
        window_opens = run.sql.plus(soonest_ends, -trigger.expiring_within)
        expiring = run.sql.later(window_opens, func.coalesce(expired, window_opens))
    cause: Any
    ends: Any
    if trigger.after is None:
        cause, entry, ends = soonest_id, expiring, soonest_ends
    elif trigger.expiring_within is None:
        cause, entry, ends = pair.c.oldest_id, held, oldest_ends
    else:
        earliest, latest = (literal(moment, UTCDateTime) for moment in bounds)
        soon = and_(pair.c.soonest_id.is_not(None), expiring > earliest, expiring <= latest)
        cause = case((soon, soonest_id), else_=pair.c.oldest_id)
        entry = case((soon, expiring), else_=held)
        ends = case((soon, soonest_ends), else_=oldest_ends)
    return (
        select(
            pair.c.customer_id.label("customer_id"),
            cause.label("credit_id"),
            type_coerce(entry, UTCDateTime).label("entry"),
            type_coerce(ends, UTCDateTime).label("credit_expires_at"),
        )
        .where(cause.is_not(None))
        .subquery("credit_moment")
    )


def _last_change(run: CampaignPass, customer_id: Any) -> Any:
    """When the customer's wallet last changed other than by a new credit: the latest
    negative entry (spent, taken back) or expiry of a credit, up to now."""
    entry = credit.alias("wallet_change")
    spent = type_coerce(entry.c.amount, BigInteger) < 0
    expired = entry.c.expires_at <= literal(run.now, UTCDateTime)
    moment = case(
        (spent, entry.c.created_at),
        (expired, entry.c.expires_at),
        else_=literal(None, UTCDateTime),
    )
    return (
        select(func.max(moment))
        .where(entry.c.customer_id == customer_id, or_(spent, expired))
        .scalar_subquery()
    )


def _first_expiring_then(customer_id: Any, expires_at: Any) -> Any:
    """The first granted of the customer's credits expiring at `expires_at`, spent or not."""
    entry = credit.alias("expiring_then")
    return (
        select(func.min(entry.c.id))
        .where(
            entry.c.customer_id == customer_id,
            entry.c.expires_at == expires_at,
            type_coerce(entry.c.amount, BigInteger) > 0,
        )
        .scalar_subquery()
    )


def _last_expiry(run: CampaignPass, customer_id: Any) -> Any:
    """When a credit of the customer last expired, up to now."""
    entry = credit.alias("expired_credit")
    return (
        select(func.max(entry.c.expires_at))
        .where(
            entry.c.customer_id == customer_id,
            type_coerce(entry.c.amount, BigInteger) > 0,
            entry.c.expires_at <= literal(run.now, UTCDateTime),
        )
        .scalar_subquery()
    )


def _expiry(run: CampaignPass, due: Any, credit_expires_at: Any) -> Any:
    """The email's expiry: `expires_after` after it fell due, never after its credit's."""
    if run.expires_after is None:
        return credit_expires_at
    lasts = run.sql.plus(due, run.expires_after)
    return type_coerce(
        case(
            (credit_expires_at.is_(None), lasts),
            (credit_expires_at < lasts, credit_expires_at),
            else_=lasts,
        ),
        UTCDateTime,
    )
