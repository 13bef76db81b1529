"""Referrals in the planner: codes minted, referred orders counted, rewards paid, and told.

Every planning pass (not a dry run), before the campaigns:

- `mint_referral_codes`: each customer without a referral code gets one, set-based,
  `CHUNK` customers a statement: `CODE_LENGTH` characters from `secrets`, from the
  coupon alphabet without look-alikes (`engine.intake.couponcodes`), like `7KQ2M9XDP4`
  (50 random bits). A coupon code always holds a dash and a referral code never
  does, so the two never meet. A code is never changed. Should one collide with a
  stored code (`customer.referral_code` is unique), the pass's minting rolls back
  and the next pass mints anew. Idle, it is one index probe.
- `settle_referrals`: a pending referral (`engine.intake.referrals`) whose order
  was delivered at least `referrals.count_after` ago becomes `counted`; a pending
  or counted one whose order was cancelled becomes `reversed`. Then each referrer
  whose counted referrals (their orders not cancelled) reach a reward's `at`
  without a `referral_reward` row for it gets the row and the reward, in the same
  transaction: a `credit` (dedupe key `referral-reward:<customer>:<at>`, expiring
  `refunds.credit_expires_after` after it, if set), a `coupon` of their own
  (campaign `referral`, code from `engine.intake.new_code`, expiring the
  coupon's `expires_after` from now), or for a tier only the row (the tiers'
  recomputation, `engine.plan.tiers`, lifts them). The row is unique per customer
  and `at`: each reward is paid once, ever; a referral reversed after its reward
  was paid takes nothing back.

  Between full passes (every `FULL_RESCAN`) a pass looks only at orders delivered
  since the previous pass (the index on `orders.delivered_at`) and pays only their
  referrers; a full pass looks at every pending referral, reverses the cancelled,
  and pays every referrer who is owed a reward (one a shop added to config.yaml,
  one whose delivery was reported late). On PostgreSQL a pass takes an advisory
  lock, so two planners never pay one reward twice.

The `referral_reward` trigger (`plan_referral_reward`) reads `referral_reward`:
occurrence `reward-<at>`, so each reward is told once, due when it was paid.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, literal, select, update
from sqlalchemy.engine import Connection

from ..intake import new_code, random_characters
from ..project import CouponSpec, Project, ReferralRewardSpec, ReferralRewardTrigger
from ..store import (
    ENDED_ORDER,
    Coupon,
    OrderStatus,
    Referral,
    ReferralReward,
    ReferralStatus,
    UTCDateTime,
    ignoring_insert,
    is_postgres,
    is_purchase,
)
from .campaignpass import FULL_RESCAN, CampaignPass
from .plansql import as_text, checkpoint, credit, customer, orders, save_checkpoint

log = logging.getLogger(__name__)

referral = Referral.__table__  # type: ignore[attr-defined]
referral_reward = ReferralReward.__table__  # type: ignore[attr-defined]
coupon = Coupon.__table__  # type: ignore[attr-defined]

CODE_LENGTH = 10
# The most codes one statement writes, and referrers one statement pays.
CHUNK = 50_000
PAY_CHUNK = 500
# A reward credit's dedupe key starts with this: a dash, so no campaign name can.
CREDIT_KEY = "referral-reward:"
# The campaign a reward coupon is recorded under.
COUPON_CAMPAIGN = "referral"
CHECKPOINT = "referrals"
CHECKPOINT_FULL = "referrals-full"


@dataclass
class ReferralResult:
    """What one settling pass did."""

    full: bool = False
    counted: int = 0
    reversed: int = 0
    rewards: int = 0  # reward rows written (credits, coupons and tiers)
    tiers: int = 0  # of which tier rewards (the tiers' recomputation applies them)

    def as_dict(self) -> dict[str, Any]:
        return {
            "full": self.full,
            "counted": self.counted,
            "reversed": self.reversed,
            "rewards": self.rewards,
            "tiers": self.tiers,
        }


# ---------------------------------------------------------------- codes


def mint_referral_codes(conn: Connection) -> int:
    """Give every customer without a referral code one; return how many were minted."""
    minted = 0
    while True:
        # In no order: the index on referral_code finds the customers without one (every
        # pass asks; read in id order, it read every customer to find none).
        ids = (
            conn.execute(
                select(customer.c.id).where(customer.c.referral_code.is_(None)).limit(CHUNK)
            )
            .scalars()
            .all()
        )
        if not ids:
            break
        _write_codes(conn, [(random_characters(CODE_LENGTH), i) for i in ids])
        minted += len(ids)
    if minted >= CHUNK and is_postgres(conn):
        # Many customers just got a code: PostgreSQL learns it now, not at the next
        # autovacuum, so the next pass's question is an index lookup.
        conn.exec_driver_sql(f"ANALYZE {customer.name}")
    return minted


def _write_codes(conn: Connection, rows: list[tuple[str, int]]) -> None:
    """One statement: PostgreSQL an UPDATE … FROM unnest() of two arrays, SQLite executemany.
    A customer given a code meanwhile (another planner) keeps theirs."""
    table = customer.name
    if is_postgres(conn):
        codes, ids = (list(column) for column in zip(*rows, strict=True))
        conn.exec_driver_sql(
            f"UPDATE {table} SET referral_code = minted.code "
            "FROM unnest(%s::varchar[], %s::integer[]) AS minted(code, id) "
            f"WHERE {table}.id = minted.id AND {table}.referral_code IS NULL",
            (codes, ids),
        )
    else:
        conn.exec_driver_sql(
            f"UPDATE {table} SET referral_code = ? WHERE id = ? AND referral_code IS NULL", rows
        )


# ---------------------------------------------------------------- counting and paying


def settle_referrals(
    conn: Connection, project: Project, now: datetime, *, rescan: bool = False
) -> ReferralResult:
    """Count delivered referrals, reverse cancelled ones, pay the rewards now owed.

    In `conn`'s transaction; see the module's docstring for what a pass looks at.
    """
    if is_postgres(conn):  # two planners take turns: a reward is paid once
        conn.execute(select(func.pg_advisory_xact_lock(zlib.crc32(b"lifecycle.referrals"))))
    since = None if rescan else _incremental_since(conn, now)
    result = ReferralResult(full=since is None)
    referrers = _count_delivered(conn, project, now, since, result)
    if result.full:
        result.reversed = _reverse_cancelled(conn, now)
    rewards = project.config.referrals.rewards
    if rewards and (result.full or referrers):
        _pay(conn, project, now, None if result.full else referrers, result)
    save_checkpoint(conn, CHECKPOINT, now.isoformat(), now)
    if result.full:
        save_checkpoint(conn, CHECKPOINT_FULL, now.isoformat(), now)
    if result.counted or result.reversed or result.rewards:
        log.info(
            "referrals: %d counted, %d reversed, %d reward(s) paid",
            result.counted,
            result.reversed,
            result.rewards,
        )
    return result


def _count_delivered(
    conn: Connection,
    project: Project,
    now: datetime,
    since: datetime | None,
    result: ReferralResult,
) -> set[int]:
    """Pending referrals whose order was delivered `count_after` ago become counted;
    return their referrers."""
    wait = project.config.referrals.count_after
    delivered = [
        orders.c.status == OrderStatus.DELIVERED.value,
        orders.c.delivered_at <= now - wait,
    ]
    if since is not None:
        delivered.append(orders.c.delivered_at > since - wait)
    due = conn.execute(
        select(referral.c.id, referral.c.referrer_id)
        .join(orders, orders.c.id == referral.c.order_id)
        .where(referral.c.status == ReferralStatus.PENDING.value, *delivered)
    ).all()
    for chunk in _chunks([row.id for row in due], PAY_CHUNK):
        conn.execute(
            update(referral)
            .where(referral.c.id.in_(chunk), referral.c.status == ReferralStatus.PENDING.value)
            .values(status=ReferralStatus.COUNTED.value, counted_at=now)
        )
    result.counted = len(due)
    return {row.referrer_id for row in due}


def _reverse_cancelled(conn: Connection, now: datetime) -> int:
    """Pending or counted referrals whose order is cancelled, refused or returned become
    reversed."""
    standing = (ReferralStatus.PENDING.value, ReferralStatus.COUNTED.value)
    ids = (
        conn.execute(
            select(referral.c.id)
            .join(orders, orders.c.id == referral.c.order_id)
            .where(
                referral.c.status.in_(standing),
                orders.c.status.in_(ENDED_ORDER),
            )
        )
        .scalars()
        .all()
    )
    for chunk in _chunks(ids, PAY_CHUNK):
        conn.execute(
            update(referral)
            .where(referral.c.id.in_(chunk), referral.c.status.in_(standing))
            .values(status=ReferralStatus.REVERSED.value, reversed_at=now)
        )
    return len(ids)


def _pay(
    conn: Connection,
    project: Project,
    now: datetime,
    referrers: set[int] | None,
    result: ReferralResult,
) -> None:
    """Write and pay each reward now owed to `referrers` (None: to anyone owed one)."""
    chunks = [None] if referrers is None else _chunks(referrers, PAY_CHUNK)
    for chunk in chunks:
        counts = _counted(chunk).subquery("counted")
        for spec in project.config.referrals.rewards:
            paid = exists().where(
                referral_reward.c.customer_id == counts.c.referrer_id,
                referral_reward.c.threshold == spec.at,
            )
            owed = select(counts.c.referrer_id, literal(spec.at), literal(now, UTCDateTime)).where(
                counts.c.n >= spec.at, ~paid
            )
            written = conn.execute(
                ignoring_insert(conn, referral_reward, "customer_id", "threshold")
                .from_select(["customer_id", "threshold", "at"], owed)
                .execution_options(preserve_rowcount=True)
            ).rowcount
            if written > 0:
                _pay_each(conn, project, now, spec)
                result.rewards += written
                result.tiers += written if spec.tier is not None else 0


def _counted(referrers: list[int] | None) -> Any:
    """(referrer_id, n): each referrer's counted referrals whose order is not cancelled."""
    query = (
        select(referral.c.referrer_id, func.count().label("n"))
        .join(orders, orders.c.id == referral.c.order_id)
        .where(
            referral.c.status == ReferralStatus.COUNTED.value,
            is_purchase(orders.c.status),
        )
        .group_by(referral.c.referrer_id)
    )
    if referrers is not None:
        query = query.where(referral.c.referrer_id.in_(referrers))
    return query


def _written_now(spec: ReferralRewardSpec, now: datetime) -> Any:
    """The reward rows of `spec` this pass wrote and has not paid yet."""
    return and_(
        referral_reward.c.threshold == spec.at,
        referral_reward.c.at == literal(now, UTCDateTime),
        referral_reward.c.credit_id.is_(None),
        referral_reward.c.coupon_id.is_(None),
    )


def _pay_each(conn: Connection, project: Project, now: datetime, spec: ReferralRewardSpec) -> None:
    if spec.credit is not None:
        _pay_credits(conn, project, now, spec, spec.credit)
    elif spec.coupon is not None:
        _pay_coupons(conn, now, spec, spec.coupon)


def _credit_key(customer_id: Any, threshold: Any) -> Any:
    return literal(CREDIT_KEY) + as_text(customer_id) + literal(":") + as_text(threshold)


def _pay_credits(
    conn: Connection, project: Project, now: datetime, spec: ReferralRewardSpec, amount: Decimal
) -> None:
    """One credit per new reward row, then each row pointed at its credit."""
    lasts = project.config.refunds.credit_expires_after
    reason = f"referral reward: {spec.at} referred friend{'s' if spec.at != 1 else ''}"
    rows = select(
        _credit_key(referral_reward.c.customer_id, referral_reward.c.threshold),
        referral_reward.c.customer_id,
        literal(amount, credit.c.amount.type),
        literal(reason),
        literal(now, UTCDateTime),
        literal(now + lasts if lasts else None, UTCDateTime),
    ).where(_written_now(spec, now))
    conn.execute(
        ignoring_insert(conn, credit, "dedupe_key").from_select(
            ["dedupe_key", "customer_id", "amount", "reason", "created_at", "expires_at"], rows
        )
    )
    paid = (
        select(credit.c.id)
        .where(
            credit.c.dedupe_key
            == _credit_key(referral_reward.c.customer_id, referral_reward.c.threshold)
        )
        .scalar_subquery()
    )
    conn.execute(update(referral_reward).where(_written_now(spec, now)).values(credit_id=paid))


def _pay_coupons(
    conn: Connection, now: datetime, spec: ReferralRewardSpec, given: CouponSpec
) -> None:
    """A coupon of the referrer's own per new reward row, then each row pointed at it."""
    owed = conn.execute(
        select(referral_reward.c.id, referral_reward.c.customer_id).where(_written_now(spec, now))
    ).all()
    if not owed:
        return
    shared = {
        "campaign": COUPON_CAMPAIGN,
        "percent_off": given.percent,
        "amount_off": given.amount,
        "min_order": given.min_order,
        "created_at": now,
        "expires_at": now + given.expires_after,
    }
    codes = {new_code(given.prefix): row for row in owed}
    made = conn.execute(
        insert(coupon).returning(coupon.c.id, coupon.c.code),
        [{"code": code, "customer_id": row.customer_id, **shared} for code, row in codes.items()],
    ).all()
    conn.execute(
        update(referral_reward)
        .where(referral_reward.c.id == bindparam("b_reward"))
        .values(coupon_id=bindparam("b_coupon")),
        [{"b_reward": codes[code].id, "b_coupon": coupon_id} for coupon_id, code in made],
    )


# ---------------------------------------------------------------- incremental passes


def _incremental_since(conn: Connection, now: datetime) -> datetime | None:
    """The last pass's `now` if this pass may look only at what is new, else None."""
    last, full = _recall(conn, CHECKPOINT), _recall(conn, CHECKPOINT_FULL)
    if last is None or full is None or not full <= last <= now:
        return None
    return last if now - full < FULL_RESCAN else None


def _recall(conn: Connection, name: str) -> datetime | None:
    value = conn.execute(
        select(checkpoint.c.value).where(checkpoint.c.name == name)
    ).scalar_one_or_none()
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _chunks(ids: Iterable[int], size: int) -> list[list[int]]:
    ordered = sorted(ids)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


# ---------------------------------------------------------------- the trigger


def plan_referral_reward(run: CampaignPass, trigger: ReferralRewardTrigger) -> None:
    """One email per reward paid within the lookback: occurrence `reward-<at>`."""
    select_from = referral_reward.join(customer, customer.c.id == referral_reward.c.customer_id)
    occurrence = literal("reward-") + as_text(referral_reward.c.threshold)
    extra = {
        "context": run.sql.json_object(
            literal("reward_id"),
            referral_reward.c.id,
            literal("threshold"),
            referral_reward.c.threshold,
        )
    }
    rows = run.timed(select_from, [], referral_reward.c.at, occurrence, extra)
    if rows is not None:
        run.queue(rows)
