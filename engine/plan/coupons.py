"""Coupons: each message that promises one carries its own code, from the pass that queues it.

A campaign or a step with `coupon:` (or an `nth_order` trigger with a `ladder`)
issues, right after its step's insert and in the same transaction, one
`coupon_issue` row for the messages the step queued in this pass: the coupon's
percent or amount, ladder, minimum, prefix and lifetime, frozen as they are now,
for the messages of this campaign, step and `created_at`. Each of those messages
then has its own code, derived from its id with the database's coupon key
(`engine.intake.couponcodes`), and its coupon's expiry is `expires_after` after
the later of its `send_after` and this pass (`engine.intake.couponissue`).
Nothing is written per message, so minting costs the same for one email as for
100,000 (`bench/coupons.py`): never an email without its coupon (the message
and its issue commit together, and the renderer refuses a message whose coupon
is missing), never two coupons for one message (its code is a function of its
id; `coupon_issue` is unique per campaign, step and `created_at`).

A message queued before its campaign or step was given a coupon waits (the
renderer holds it) until the next full pass, which issues the coupon of every
waiting message of the last `CATCH_UP` that has neither an issue nor a coupon
row of its own (codes minted one row per message before codes were derived).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import exists, func, select

from ..intake import code_key, covers, ladder_json, not_stored
from ..project import CouponSpec, NthOrder
from ..store import CouponIssue, Message, MessageStatus, ignoring_insert
from .campaignpass import CampaignPass

# How far back a full pass looks for waiting messages that have no coupon yet.
CATCH_UP = timedelta(days=30)

issue: Any = CouponIssue.__table__  # type: ignore[attr-defined]
message: Any = Message.__table__  # type: ignore[attr-defined]


def mint_coupons(run: CampaignPass) -> int:
    """Issue the coupon of the messages this step queued in this pass (and, on a full
    pass, of the waiting ones without one); return how many messages it covers."""
    spec = run.step.coupon
    if spec is None:
        return 0
    values = _values(run, spec)
    minted = 0
    if run.step_result.queued:
        code_key(run.conn, run.now)  # the database's key, made with its first coupon
        insert = ignoring_insert(run.conn, issue, "campaign", "step", "created_at")
        run.conn.execute(insert.values(created_at=run.now, **values))
        minted = run.step_result.queued
    if run.since is None:
        minted += _catch_up(run, values)
    return minted


def _values(run: CampaignPass, spec: CouponSpec) -> dict[str, Any]:
    """The issue's columns but `created_at`: the spec as it is now."""
    ladder = run.trigger.ladder if isinstance(run.trigger, NthOrder) else {}
    return {
        "campaign": run.campaign.name,
        "step": run.step.id or "",
        "minted_at": run.now,
        "prefix": spec.prefix,
        "percent_off": spec.percent,
        "amount_off": spec.amount,
        "min_order": spec.min_order,
        "expires_after": int(spec.expires_after.total_seconds()),
        "ladder": ladder_json(ladder),
    }


def _catch_up(run: CampaignPass, values: dict[str, Any]) -> int:
    """Issue the coupon of the step's messages of the last `CATCH_UP` (before this pass)
    still waiting to go without one; return how many messages that covers."""
    step = run.step.id
    waiting = [
        message.c.campaign == run.campaign.name,
        message.c.created_at > run.now - CATCH_UP,
        message.c.created_at < run.now,
        message.c.step.is_(None) if step is None else message.c.step == step,
        message.c.status.in_([MessageStatus.QUEUED.value, MessageStatus.RETRY.value]),
        ~exists().where(covers()),
        not_stored(),
    ]
    passes = run.conn.execute(
        select(message.c.created_at, func.count()).where(*waiting).group_by(message.c.created_at)
    ).all()
    if passes:
        code_key(run.conn, run.now)
    for created, _ in passes:
        insert = ignoring_insert(run.conn, issue, "campaign", "step", "created_at")
        run.conn.execute(insert.values(created_at=created, **values))
    return sum(count for _, count in passes)
