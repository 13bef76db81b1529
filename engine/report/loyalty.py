"""Loyalty tiers and referrals in the rewards report.

The rules (docs/metrics.md, "Rewards"):

- Tiers: customers per tier **now** (`customer.tier`, a snapshot whatever the
  period, "no tier" included), and the moves of [start, end) (`tier_change.at`)
  per tier: up into it, down into it, and out of it (a first placement,
  direction `start`, is not a move). Rows follow tiers.yaml from
  the lowest tier to the highest, after "no tier"; a tier no longer in the file
  that customers or moves still name comes last.
- Referrals: the referred orders of [start, end) (`referral.at`, when the order
  with the code came in), each by its status now, the refused ones also by
  reason (the stored reason without its detail); and the rewards paid in [start, end) (`referral_reward.at`) per
  threshold: how many, their store credit (the amount of `credit_id`) and the
  coupons among them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlmodel import Session, col

from ..project import Project, pick_text
from ..store import CENT, Credit, Customer, Referral, ReferralReward, ReferralStatus, TierChange

NO_TIER = "(no tier)"  # customers in no tier; never a tier's id
MOVES = ("up", "down", "left")
MOVED = ("up", "down")  # not "start": the program's first placement of a customer is no move


def tiers(session: Session, project: Project, start: datetime, end: datetime) -> dict[str, Any]:
    """{"tiers": {tier id or NO_TIER: figures}, "total": figures}."""
    now_in = dict(
        session.execute(select(col(Customer.tier), func.count()).group_by(col(Customer.tier))).all()
    )
    moves = _moves(session, start, end)
    names = {t.id: pick_text(t.name, "en") for t in project.tiers.tiers} if project.tiers else {}
    gone = sorted(t for t in {*now_in, *moves} - {*names, None} if isinstance(t, str))
    rows: dict[str, dict[str, Any]] = {}
    for tier in [None, *names, *gone]:
        counted = moves.get(tier, dict.fromkeys(MOVES, 0))
        rows[NO_TIER if tier is None else tier] = {
            "name": "no tier" if tier is None else names.get(tier, tier),
            "in_file": tier is None or tier in names,
            "customers": int(now_in.get(tier, 0)),
            **counted,
        }
    total = {k: sum(r[k] for r in rows.values()) for k in ("customers", *MOVES)}
    return {"tiers": rows, "total": total}


def _moves(session: Session, start: datetime, end: datetime) -> dict[str | None, dict[str, int]]:
    during = and_(col(TierChange.at) >= start, col(TierChange.at) < end)
    direction = col(TierChange.direction)
    into = select(
        col(TierChange.to_tier),
        func.coalesce(func.sum(case((direction == "up", 1), else_=0)), 0),
        func.coalesce(func.sum(case((direction == "down", 1), else_=0)), 0),
    ).where(during, direction.in_(MOVED))
    out: dict[str | None, dict[str, int]] = {}
    for tier, up, down in session.execute(into.group_by(col(TierChange.to_tier))):
        out.setdefault(tier, dict.fromkeys(MOVES, 0)).update(up=int(up), down=int(down))
    left = select(col(TierChange.from_tier), func.count()).where(during, direction.in_(MOVED))
    for tier, count in session.execute(left.group_by(col(TierChange.from_tier))):
        out.setdefault(tier, dict.fromkeys(MOVES, 0))["left"] = int(count)
    return out


STATUSES = tuple(s.value for s in ReferralStatus)


def referrals(session: Session, project: Project, start: datetime, end: datetime) -> dict[str, Any]:
    """{"referred", <each status>, "refused_by_reason", "rewards"} for [start, end)."""
    at = col(Referral.at)
    during = and_(at >= start, at < end)
    counts = dict(
        session.execute(
            select(col(Referral.status), func.count()).where(during).group_by(col(Referral.status))
        ).all()
    )
    reasons = session.execute(
        select(col(Referral.reason), func.count())
        .where(during, col(Referral.status) == ReferralStatus.REFUSED)
        .group_by(col(Referral.reason))
    ).all()
    return {
        "referred": sum(int(n) for n in counts.values()),
        **{status: int(counts.get(status, 0)) for status in STATUSES},
        "refused_by_reason": _by_reason(reasons),
        "rewards": _rewards(session, project, start, end),
    }


def _by_reason(reasons: Iterable[Any]) -> dict[str, int]:
    """{reason: referrals}, most first: a stored reason without its detail
    ("self-referral: the same email as the referrer" is "self-referral")."""
    out: dict[str, int] = {}
    for reason, count in reasons:
        key = (reason or "").split(": ", 1)[0].strip() or "(no reason given)"
        out[key] = out.get(key, 0) + int(count)
    return dict(sorted(out.items(), key=lambda item: (-item[1], item[0])))


def _rewards(session: Session, project: Project, start: datetime, end: datetime) -> dict[str, Any]:
    """{"thresholds": {n: figures}, "total": figures}: the configured thresholds in order
    (zeros when none was reached), then any other found on the period's rewards."""
    at = col(ReferralReward.at)
    query = (
        select(
            col(ReferralReward.threshold),
            func.count(),
            func.sum(col(Credit.amount)),
            func.count(col(ReferralReward.coupon_id)),
        )
        .select_from(ReferralReward)
        .outerjoin(Credit, col(Credit.id) == col(ReferralReward.credit_id))
        .where(at >= start, at < end)
        .group_by(col(ReferralReward.threshold))
    )
    paid: dict[int, dict[str, Any]] = {
        int(threshold): {
            "paid": int(count),
            "credit": (Decimal(amount) if amount is not None else Decimal(0)).quantize(CENT),
            "coupons": int(coupons),
        }
        for threshold, count, amount, coupons in session.execute(query)
    }
    configured = [reward.at for reward in project.config.referrals.rewards]
    rows = {
        n: paid.get(n, {"paid": 0, "credit": Decimal("0.00"), "coupons": 0})
        for n in [*configured, *sorted(set(paid) - set(configured))]
    }
    total = {
        "paid": sum(r["paid"] for r in rows.values()),
        "credit": sum((r["credit"] for r in rows.values()), Decimal("0.00")),
        "coupons": sum(r["coupons"] for r in rows.values()),
    }
    return {"thresholds": rows, "total": total}
