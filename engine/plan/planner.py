"""The planner: every tick, which customer is due which email.

`plan(engine, project, now)` runs each enabled campaign in its own
transaction: its trigger selects candidate (customer, occurrence) pairs in its
segment, read once into a temporary table with their consent and suppression;
one `INSERT … SELECT … ON CONFLICT DO NOTHING` per step queues those that may be
mailed within the frequency cap (marketing only), and the rest are counted by
why from the same table. The unique `dedupe_key`
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
- `order_shipped` / `order_returned`: due at `shipped_at` / `returned_at` +
  delay (default expiry 2 and 3 days); occurrence `order-<id>`. Shipped only
  while the order is on its way; returned only while refused or returned, and
  never for a customer who refused two orders (`engine.plan.ordertriggers`).
- `holiday`: see `engine.plan.announcements`; occurrence `<holiday id>-<year>`.
- `price_drop`: see `engine.plan.refunds`; occurrence `item-<order item id>-<lowest
  price in paisa>`.
- `tier_changed`: see `engine.plan.tiers`; occurrence `tier-<tier change id>`.
- `referral_reward`: see `engine.plan.referrals`; occurrence `reward-<at>` (the
  reward's count of referrals).

Before the campaigns, reward upkeep (`_refresh_rewards`): customers without a
referral code get one, referred orders delivered are counted and cancelled ones
reversed, and the referral rewards now owed are paid (`engine.plan.referrals`);
then loyalty tiers are
recomputed (`engine.plan.tiers`, at most every `FULL_RESCAN` unless tiers.yaml
changed or a rescan is asked for). A dry run changes nothing and skips it.

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
past `expires_at` are not queued. For an order trigger with `expires_after`,
one whose order was recorded (`orders.recorded_at`) since the campaign's last
full pass and is already past its expiry is recorded once as `expired`, with
why in `last_error`, logged, and reported (`expired`, `expired_messages`); a
campaign's first pass records none, so a new install's history is not news.
One failing campaign is logged with its name and reported; the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from ..errors import DataError
from ..intake import shop
from ..project import (
    AfterPurchase,
    BackInStock,
    Broadcast,
    Campaign,
    CheckoutAbandoned,
    CreditUnused,
    DateTrigger,
    FirstOrder,
    HolidayTrigger,
    Inactive,
    NthOrder,
    OrderDelivered,
    OrderPlaced,
    OrderReturned,
    OrderShipped,
    PriceDrop,
    ProductAdded,
    Project,
    ReferralRewardTrigger,
    Schedule,
    TierChanged,
)
from ..store import session_scope
from .announcements import plan_announcements
from .blasts import open_blast
from .campaignpass import DEFAULT_LOOKBACK, FULL_RESCAN, UNCOUNTED, CampaignPass, CampaignResult
from .checkouts import plan_checkout_abandoned
from .clocktriggers import plan_broadcast, plan_date, plan_schedule
from .coupons import mint_coupons
from .credittriggers import plan_credit_unused
from .ordertriggers import late_orders, late_rows, order_rows
from .plansql import tune_pass
from .products import plan_back_in_stock, plan_product_added
from .purchases import plan_after_purchase, plan_inactive, plan_nth_order
from .referrals import mint_referral_codes, plan_referral_reward, settle_referrals
from .refunds import REFUND_LOOKBACK, plan_refunds
from .tiers import plan_tier_changed, recompute_tiers

log = logging.getLogger(__name__)

# A pass that queues this many emails has the database's statistics of the send log
# brought up to date (PostgreSQL).
BIG_PASS = 50_000

__all__ = [
    "DEFAULT_LOOKBACK",
    "FULL_RESCAN",
    "REFUND_LOOKBACK",
    "UNCOUNTED",
    "CampaignPass",
    "CampaignResult",
    "PlanReport",
    "plan",
]


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
    if not dry_run:
        _apply_due_prices(engine, now)
        _refresh_rewards(engine, project, now, rescan)
    for campaign in sorted(project.enabled_campaigns, key=_run_order):
        try:
            with engine.connect() as conn, conn.begin() as transaction:
                tune_pass(conn)
                result = CampaignPass(conn, project, campaign, now).run(_plan_trigger, rescan)
                if open_blast(conn, project, campaign, result.queued, now) and not dry_run:
                    log.info(
                        "campaign %s: %d emails queued; a canary of %s%% goes first",
                        campaign.name,
                        result.queued,
                        project.config.sending.canary.share,
                    )
                if dry_run:
                    transaction.rollback()
            if result.queued >= BIG_PASS and not dry_run:
                _analyze_messages(engine)
        except Exception as exc:  # one failing campaign never stops the others
            log.exception("campaign %s: planning failed", campaign.name)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            result = CampaignResult(error=f"{type(exc).__name__}: {first_line}"[:300])
        report.campaigns[campaign.name] = result
        if result.expired and not dry_run:
            _log_expired(campaign, result)
    return report


def _analyze_messages(engine: Engine) -> None:
    """After a pass that queued many emails, PostgreSQL learns so at once: until its
    next automatic analysis it would think few are queued, and find this pass's
    messages (their coupons, the outbox) by reading every queued one."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE message")
            conn.commit()
    except Exception:  # the emails are queued; the statistics catch up later
        log.exception("analyzing the send log after a big pass failed")


def _log_expired(campaign: Campaign, result: CampaignResult) -> None:
    """One line per campaign: how many expired unsent, and the first few, each with why."""
    listed = "".join(
        f"\n  customer {m['customer']} ({m['occurrence']}, order {m['order']}): {m['why']}"
        for m in result.expired_messages
    )
    more = result.expired - len(result.expired_messages)
    log.warning(
        "campaign %s: %d message(s) expired unsent, their order recorded too late%s%s",
        campaign.name,
        result.expired,
        listed,
        f"\n  and {more} more" if more > 0 else "",
    )


def _apply_due_prices(engine: Engine, now: datetime) -> None:
    """A price dated ahead becomes the product's price once its time has come."""
    try:
        with session_scope(engine) as session:
            changed = shop.apply_due_prices(session, now)
    except Exception:  # prices stay as they were; the campaigns still run
        log.exception("applying prices dated up to %s failed", now.isoformat())
        return
    if changed:
        log.info("%d product price(s) dated ahead took effect", changed)


def _refresh_rewards(engine: Engine, project: Project, now: datetime, rescan: bool) -> None:
    """Reward upkeep before the campaigns, each part in its own transaction: referral
    codes, referrals and their rewards, then tiers (at once when a tier reward was paid).

    A failure is logged and leaves that part as it was; the campaigns still run.
    """
    tier_granted = _refresh_referrals(engine, project, now, rescan)
    try:
        with engine.connect() as conn, conn.begin():
            tune_pass(conn)
            recompute_tiers(conn, project, now, force=rescan or tier_granted)
    except Exception:
        log.exception("recomputing loyalty tiers at %s failed", now.isoformat())


def _refresh_referrals(engine: Engine, project: Project, now: datetime, rescan: bool) -> bool:
    """Mint the missing referral codes, then settle referrals; True if a tier reward was paid."""
    try:
        with engine.connect() as conn, conn.begin():
            minted = mint_referral_codes(conn)
        if minted:
            log.info("%d referral code(s) minted", minted)
    except Exception:
        log.exception("minting referral codes at %s failed", now.isoformat())
    try:
        with engine.connect() as conn, conn.begin():
            return settle_referrals(conn, project, now, rescan=rescan).tiers > 0
    except Exception:
        log.exception("settling referrals at %s failed", now.isoformat())
        return False


def _run_order(campaign: Campaign) -> int:
    """First orders before order campaigns (quiet_after_welcome reads the welcomes)."""
    order = {FirstOrder: 0, OrderPlaced: 1, OrderDelivered: 1, HolidayTrigger: 2, PriceDrop: 3}
    return order.get(type(campaign.trigger), 4)


# ---------------------------------------------------------------- one campaign


def _plan_trigger(run: CampaignPass) -> None:
    """Hand the pass to its trigger's module, which selects and queues its candidates."""
    trigger = run.trigger
    if isinstance(trigger, PriceDrop):
        plan_refunds(run, trigger)
    elif isinstance(trigger, HolidayTrigger):
        plan_announcements(run, trigger)
    elif isinstance(trigger, OrderShipped | OrderReturned):
        candidates = order_rows(run, trigger)
        if candidates is not None:
            run.queue(candidates)
    elif isinstance(trigger, FirstOrder | OrderPlaced | OrderDelivered):
        candidates = order_rows(run, trigger)
        if candidates is not None:
            run.queue(candidates)
        for order_ids in late_orders(run, trigger):
            run.record_expired(late_rows(run, trigger, order_ids))
    else:
        _TRIGGERS[type(trigger)](run, trigger)
    minted = mint_coupons(run)
    run.step_result.coupons = minted
    run.result.coupons += minted


# The triggers of a shop's year: each module selects and queues its candidates.
_TRIGGERS: dict[type, Callable[[CampaignPass, Any], None]] = {
    Inactive: plan_inactive,
    NthOrder: plan_nth_order,
    AfterPurchase: plan_after_purchase,
    DateTrigger: plan_date,
    Schedule: plan_schedule,
    Broadcast: plan_broadcast,
    ProductAdded: plan_product_added,
    BackInStock: plan_back_in_stock,
    CheckoutAbandoned: plan_checkout_abandoned,
    CreditUnused: plan_credit_unused,
    TierChanged: plan_tier_changed,
    ReferralRewardTrigger: plan_referral_reward,
}
