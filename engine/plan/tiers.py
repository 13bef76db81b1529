"""Loyalty tiers: every customer's tier worked out again, set-based, with a history.

A customer is in the highest tier of tiers.yaml whose rule they meet (a rule in
the segment vocabulary, `engine.plan.segments`), or in a tier a referral reward
granted them (`referrals.rewards: [{at: 10, tier: diamond}]`: at least that
tier, for good), or in none. `recompute_tiers` compares that with
`customer.tier` in two statements: one INSERT writes a `tier_change` row (up or
down, by the order of tiers.yaml) for every customer whose tier differs, one
UPDATE moves those customers. Nothing is read into Python.

It runs before the campaigns of a planning pass when the last recomputation is
`FULL_RESCAN` old, when tiers.yaml changed since, or on a rescan; so a tier
follows an order within 15 minutes and an idle tick costs one checkpoint read.
Without tiers.yaml, customers who had a tier lose it (with a history row).

The program's first recomputation (no checkpoint yet) places every customer in
their tier with direction `start`: a shop that installs the engine or first adds
tiers.yaml does not congratulate its whole list at once (a broadcast to
`tier: [...]` announces a launch, if the shop wants one).

The `tier_changed` trigger reads `tier_change`: occurrence `tier-<change id>`,
each change once, and only while the customer is still in the tier it announces.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, literal, null, or_, select, update
from sqlalchemy.engine import Connection

from ..project import Project, TierChanged
from ..store import ReferralReward, TierChange, is_postgres
from .campaignpass import FULL_RESCAN, CampaignPass
from .plansql import as_text, checkpoint, customer, save_checkpoint
from .segments import compile_rule

log = logging.getLogger(__name__)

tier_change = TierChange.__table__  # type: ignore[attr-defined]
referral_reward = ReferralReward.__table__  # type: ignore[attr-defined]

CHECKPOINT = "tiers"


@dataclass
class TierResult:
    """What one recomputation did (`ran` False: it was not due); `start`: customers placed
    by the program's first recomputation."""

    ran: bool = False
    up: int = 0
    down: int = 0
    start: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ran": self.ran, "up": self.up, "down": self.down, "start": self.start}


def recompute_tiers(
    conn: Connection, project: Project, now: datetime, *, force: bool = False
) -> TierResult:
    """Move every customer whose tier changed, writing the history; in `conn`'s transaction."""
    fingerprint = _fingerprint(project)
    last = _recall(conn)
    if not force and last is not None and _due(last, fingerprint, now) is False:
        return TierResult()
    if is_postgres(conn):  # two recomputations take turns: each move is written once
        conn.execute(select(func.pg_advisory_xact_lock(zlib.crc32(b"lifecycle.tiers"))))
    result = TierResult(ran=True)
    before = conn.execute(select(func.coalesce(func.max(tier_change.c.id), 0))).scalar_one()
    conn.execute(
        insert(tier_change).from_select(
            ["customer_id", "from_tier", "to_tier", "direction", "at"],
            _moves(project, now, first=last is None),
        )
    )
    written = tier_change.c.id > before
    counts = conn.execute(
        select(tier_change.c.direction, func.count())
        .where(written)
        .group_by(tier_change.c.direction)
    ).all()
    for moved, count in counts:
        setattr(result, moved, int(count))
    if result.up or result.down or result.start:
        conn.execute(
            update(customer)
            .where(customer.c.id == tier_change.c.customer_id, written)
            .values(tier=tier_change.c.to_tier, tier_since=now)
        )
        log.info(
            "tiers: %d customer(s) moved up, %d down, %d placed by the first recomputation",
            result.up,
            result.down,
            result.start,
        )
    save_checkpoint(conn, CHECKPOINT, f"{now.isoformat()} {fingerprint}", now)
    return result


def _moves(project: Project, now: datetime, *, first: bool) -> Any:
    """Every customer whose tier differs from the one they should be in, with the direction.

    `ranked` is fenced (OFFSET 0): without it both databases inline it, copying
    the tier CASE, with a grouped list of the window's orders per rule, into
    each place the outer query names `to_tier` (five).
    """
    ranked = (
        select(
            customer.c.id.label("customer_id"),
            customer.c.tier.label("from_tier"),
            _tier_expression(project, now).label("to_tier"),
        )
        .offset(0)
        .subquery("ranked")
    )
    direction: Any = case(
        (_rank(project, ranked.c.to_tier) > _rank(project, ranked.c.from_tier), "up"),
        else_="down",
    )
    if first:  # the program's first recomputation places everyone: no news
        direction = literal("start")
    return select(
        ranked.c.customer_id,
        ranked.c.from_tier,
        ranked.c.to_tier,
        direction,
        literal(now, tier_change.c.at.type),
    ).where(ranked.c.to_tier.is_distinct_from(ranked.c.from_tier))


def _tier_expression(project: Project, now: datetime) -> Any:
    """The tier each customer should be in now: CASE over the rules, highest first."""
    tiers = project.tiers
    if tiers is None:
        return null()
    file = project.config.paths.tiers
    granted: dict[str, list[int]] = {}
    for reward in project.config.referrals.rewards:
        if reward.tier is not None:
            granted.setdefault(reward.tier, []).append(reward.at)
    whens = []
    for index in reversed(range(len(tiers.tiers))):
        tier = tiers.tiers[index]
        rule = compile_rule(tier.rule, now, file, ("tiers", index, "rule"))
        if tier.id in granted:
            holders = select(referral_reward.c.customer_id).where(
                referral_reward.c.threshold.in_(granted[tier.id])
            )
            rule = or_(rule, customer.c.id.in_(holders))
        whens.append((rule, literal(tier.id)))
    return case(*whens, else_=null())


def _rank(project: Project, tier: Any) -> Any:
    """0 for no tier (or one no longer in tiers.yaml), 1 for the lowest, …"""
    ids = [t.id for t in project.tiers.tiers] if project.tiers else []
    if not ids:
        return literal(0)
    return case(*((tier == tier_id, i + 1) for i, tier_id in enumerate(ids)), else_=0)


def _fingerprint(project: Project) -> str:
    """What the tiers depend on besides the data: tiers.yaml and the referral tier grants."""
    tiers = project.tiers.model_dump(mode="json") if project.tiers else None
    grants = [(r.at, r.tier) for r in project.config.referrals.rewards if r.tier]
    text = json.dumps([tiers, grants], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _due(last: tuple[datetime, str], fingerprint: str, now: datetime) -> bool:
    at, seen = last
    return seen != fingerprint or not at <= now < at + FULL_RESCAN


def _recall(conn: Connection) -> tuple[datetime, str] | None:
    value = conn.execute(
        select(checkpoint.c.value).where(checkpoint.c.name == CHECKPOINT)
    ).scalar_one_or_none()
    at, _, fingerprint = (value or "").partition(" ")
    try:
        return datetime.fromisoformat(at), fingerprint
    except ValueError:
        return None


# ---------------------------------------------------------------- the trigger


def plan_tier_changed(run: CampaignPass, trigger: TierChanged) -> None:
    """One email per tier change in the lookback, while the customer is still in that tier."""
    where = [customer.c.tier.is_not_distinct_from(tier_change.c.to_tier)]
    wanted = ["up", "down"] if trigger.direction == "any" else [trigger.direction]
    where.append(tier_change.c.direction.in_(wanted))
    if trigger.to:
        where.append(tier_change.c.to_tier.in_(trigger.to))
    select_from = tier_change.join(customer, customer.c.id == tier_change.c.customer_id)
    occurrence = literal("tier-") + as_text(tier_change.c.id)
    extra = {
        "context": run.sql.json_object(
            literal("tier_change_id"),
            tier_change.c.id,
            literal("from_tier"),
            tier_change.c.from_tier,
            literal("to_tier"),
            tier_change.c.to_tier,
            literal("direction"),
            tier_change.c.direction,
        )
    }
    rows = run.timed(select_from, [and_(*where)], tier_change.c.at, occurrence, extra)
    if rows is not None:
        run.queue(rows)
