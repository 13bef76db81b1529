"""The rewards report: coupons per campaign and the store-credit wallet, for one period.

The rules (docs/metrics.md, "Rewards"):

- Coupons are counted by when they were issued (`coupon.created_at` in
  [start, end), or for an email's coupon not redeemed, which has no row of
  its own, its issue's `minted_at`: `engine.intake.couponissue`), the way a
  campaign's messages are; what became of them is counted up to `now`:
  redeemed (`used_at`), expired unused (`expires_at` at or before `now`; an
  email's coupon expires its issue's `expires_after` after the later of its
  `send_after` and `minted_at`), and the revenue of the orders that redeemed
  them (`used_order` = `orders.external_id`, not cancelled, each order once
  per campaign and once in the total).
- Store credit follows the wallet's rule (`engine.intake.wallet`): an entry
  counts in a balance while its `expires_at` is null or later. Over [start,
  end), both clipped to `now`: credits issued, redeemed (negative entries
  drawn from a credit), taken back (negative entries without one), expired,
  and the balance of every wallet at the start and at the end, so that
  at start + issued − redeemed − taken back − expired = outstanding, to the paisa.

Tiers and referrals are in `loyalty`. Every figure comes from grouped queries;
sums of money are sums of integer paisa.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlmodel import Session, col

from ..intake import covers, not_stored
from ..project import Project
from ..store import CENT, Coupon, CouponIssue, Credit, Message, Order, is_purchase
from .loyalty import referrals, tiers
from .retention import percent

NO_CAMPAIGN = "(no campaign)"  # coupons not made by a campaign; never a campaign's name
COUPON_FIGURES = ("issued", "redeemed", "expired")
ZERO = Decimal("0.00")


def rewards(
    session: Session, project: Project, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """Coupons, store credit, tiers and referrals for [start, end) as of `now`."""
    return {
        "coupons": coupons(session, project, start, end, now),
        "credit": credit(session, start, end, now),
        "tiers": tiers(session, project, start, end),
        "referrals": referrals(session, project, start, end),
    }


def coupons(
    session: Session, project: Project, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """{"campaigns": {campaign: figures}, "total": figures} of the coupons issued in
    [start, end): every campaign of the project that gives coupons (zeros when idle),
    then any other name found on them, then NO_CAMPAIGN."""
    counted = _coupon_counts(session, start, end, now)
    revenue = _revenue(session, start, end, now)
    giving = {n for n, c in project.campaigns.items() if any(step.coupon for step in c.flow)}
    names = [n for n in project.config.campaigns if n in giving] + sorted(giving)
    others = sorted(n for n in {*counted, *revenue} - {*names, None} if isinstance(n, str))
    rows: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys([*names, *others, *([None] if None in counted else [])]):
        figures = counted.get(name, dict.fromkeys(COUPON_FIGURES, 0))
        rows[NO_CAMPAIGN if name is None else name] = _coupon_row(figures, revenue.get(name, ZERO))
    total = {k: sum(r[k] for r in rows.values()) for k in COUPON_FIGURES}
    everything = _revenue(session, start, end, now, by_campaign=False).get("*", ZERO)
    return {"campaigns": rows, "total": _coupon_row(total, everything)}


def _coupon_row(figures: dict[str, int], revenue: Decimal) -> dict[str, Any]:
    return {
        **figures,
        "redemption_rate": percent(figures["redeemed"], figures["issued"]),
        "revenue": revenue,
    }


def _issued(start: datetime, end: datetime) -> Any:
    return and_(col(Coupon.created_at) >= start, col(Coupon.created_at) < end)


def _used(now: datetime) -> Any:
    return and_(col(Coupon.used_at).is_not(None), col(Coupon.used_at) <= now)


def _coupon_counts(
    session: Session, start: datetime, end: datetime, now: datetime
) -> dict[str | None, dict[str, int]]:
    used = _used(now)
    expired = and_(not_(used), col(Coupon.expires_at) <= now)
    query = (
        select(
            col(Coupon.campaign),
            func.count(),
            func.coalesce(func.sum(case((used, 1), else_=0)), 0),
            func.coalesce(func.sum(case((expired, 1), else_=0)), 0),
        )
        .where(_issued(start, end))
        .group_by(col(Coupon.campaign))
    )
    counted = {
        campaign: dict(zip(COUPON_FIGURES, (int(v) for v in values), strict=True))
        for campaign, *values in session.execute(query)
    }
    for campaign, issued, expired_unused in _emails_coupons(session, start, end, now):
        figures = counted.setdefault(campaign, dict.fromkeys(COUPON_FIGURES, 0))
        figures["issued"] += int(issued)
        figures["expired"] += int(expired_unused or 0)
    return counted


def _emails_coupons(session: Session, start: datetime, end: datetime, now: datetime) -> Any:
    """(campaign, issued, expired) of the emails' coupons issued in [start, end) that
    have no row of their own (none redeemed: a redeemed one is stored, counted above)."""
    issue: Any = CouponIssue.__table__  # type: ignore[attr-defined]
    message: Any = Message.__table__  # type: ignore[attr-defined]
    minted = and_(issue.c.minted_at >= start, issue.c.minted_at < end)
    lifetimes = session.execute(select(issue.c.expires_after).distinct().where(minted)).scalars()
    gone = [
        and_(
            issue.c.expires_after == seconds,
            message.c.send_after <= now - timedelta(seconds=seconds),
            issue.c.minted_at <= now - timedelta(seconds=seconds),
        )
        for seconds in lifetimes
    ]
    query = (
        select(issue.c.campaign, func.count(), func.sum(case((or_(false(), *gone), 1), else_=0)))
        .select_from(issue)
        .join(message, covers())
        .where(minted, not_stored())
        .group_by(issue.c.campaign)
    )
    return session.execute(query).all()


def _revenue(
    session: Session, start: datetime, end: datetime, now: datetime, *, by_campaign: bool = True
) -> dict[str | None, Decimal]:
    """The totals of the orders (not cancelled) that redeemed the period's coupons,
    each order once per campaign (or once overall, under "*")."""
    campaign = col(Coupon.campaign) if by_campaign else literal("*")
    pairs = (
        select(campaign.label("campaign"), col(Order.id), col(Order.total))
        .distinct()
        .select_from(Coupon)
        .join(Order, col(Order.external_id) == col(Coupon.used_order))
        .where(_issued(start, end), _used(now), is_purchase(col(Order.status)))
        .subquery()
    )
    query = select(pairs.c.campaign, func.sum(pairs.c.total)).group_by(pairs.c.campaign)
    return {name: Decimal(total).quantize(CENT) for name, total in session.execute(query)}


CREDIT_FIGURES = (
    "outstanding_at_start",
    "issued",
    "redeemed",
    "taken_back",
    "expired",
    "outstanding",
)


def credit(session: Session, start: datetime, end: datetime, now: datetime) -> dict[str, Decimal]:
    """The wallet over [start, end) clipped to `now`, in taka to the paisa (see the module)."""
    first, last = min(start, now), min(end, now)
    amount = type_coerce(col(Credit.amount), BigInteger)
    created, expires = col(Credit.created_at), col(Credit.expires_at)
    during = and_(created >= first, created < last)

    def total(*where: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*where), amount), else_=0)), 0)

    def held(moment: datetime) -> Any:  # in a balance at `moment` (wallet.counts_at)
        return and_(created < moment, or_(expires.is_(None), expires > moment))

    def gone(moment: datetime) -> Any:  # expired by `moment`
        return and_(created < moment, expires.is_not(None), expires <= moment)

    drawn = col(Credit.source_id).is_not(None)
    query = select(
        total(held(first)),
        total(during, amount > 0),
        -total(during, amount < 0, drawn),
        -total(during, amount < 0, not_(drawn)),
        total(gone(last), not_(gone(first))),
        total(held(last)),
    )
    paisa = session.execute(query).one()
    return {
        name: (Decimal(int(value)) / 100).quantize(CENT)
        for name, value in zip(CREDIT_FIGURES, paisa, strict=True)
    }
