"""Coupons: each message that promises one gets its own code, in the pass that queues it.

A campaign or a step with `coupon:` (or an `nth_order` trigger with a `ladder`)
mints, right after its step's insert and in the same transaction, one coupon per
message queued in this pass that has none: never an email without its coupon
(the renderer refuses one whose coupon is missing), never two coupons for one
message (`coupon.message_id` is unique, and a message that has one is skipped).
A message queued before its campaign was given a coupon waits (the renderer
holds it) until the next full pass mints its code.

Codes come from `secrets`: 12 characters from an alphabet of 32 without
look-alikes (no 0/O, no 1/I), in groups of four, after the optional prefix:
`WELCOME-7KQ2-M9XD-P4TR`. That is 60 random bits: guessing one of a million
live codes takes about 10^12 tries. The value is the step's percent or amount,
or the ladder's rung for the order number (`nth-<N>` occurrence); a coupon
expires `expires_after` after its email's earliest send time. Should a code ever
collide with one already stored (`coupon.code` is unique), the insert fails and
the campaign's whole pass rolls back, messages included; the next pass mints anew.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, insert, select

from ..project import CouponSpec, NthOrder
from ..store import Coupon, Message, MessageStatus
from .campaignpass import CampaignPass

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
# Every byte maps to one of the 32 characters with equal chance (256 = 8 × 32).
_TO_ALPHABET = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(256))
CODE_LENGTH = 12
GROUP = 4

# How far back a full pass looks for waiting messages that have no coupon yet.
CATCH_UP = timedelta(days=30)

coupon = Coupon.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]


def new_code(prefix: str = "") -> str:
    """A fresh unguessable code, like `WELCOME-7KQ2-M9XD-P4TR` (or without the prefix)."""
    body = secrets.token_bytes(CODE_LENGTH).translate(_TO_ALPHABET).decode("ascii")
    grouped = "-".join(body[i : i + GROUP] for i in range(0, CODE_LENGTH, GROUP))
    return f"{prefix}-{grouped}" if prefix else grouped


def value_of(spec: CouponSpec, ladder: dict[int, Decimal], occurrence: str) -> tuple[Any, Any]:
    """(percent off, amount off) for one message: the ladder's rung, else the spec's."""
    if ladder and occurrence.startswith("nth-"):
        rung = ladder.get(int(occurrence.removeprefix("nth-")))
        if rung is not None:
            return rung, None
    return spec.percent, spec.amount


def mint_coupons(run: CampaignPass) -> int:
    """Mint a coupon for each message this step queued in this pass; return how many."""
    spec = run.step.coupon
    if spec is None:
        return 0
    ladder = run.trigger.ladder if isinstance(run.trigger, NthOrder) else {}
    step = run.step.id
    queued = (
        select(message.c.id, message.c.customer_id, message.c.occurrence, message.c.send_after)
        .where(
            message.c.campaign == run.campaign.name,
            *_queued_in(run),
            message.c.step.is_(None) if step is None else message.c.step == step,
            ~exists().where(coupon.c.message_id == message.c.id),
        )
        .order_by(message.c.id)
    )
    rows = run.conn.execute(queued).all()
    if rows:
        run.conn.execute(insert(coupon), [_coupon_row(run, spec, ladder, row) for row in rows])
    return len(rows)


def _queued_in(run: CampaignPass) -> list[Any]:
    """This pass's new messages; on a full pass, also any still waiting without a coupon
    (queued before the campaign or step was given one) from the last `CATCH_UP`."""
    if run.since is not None:
        return [
            message.c.created_at == run.now,
            message.c.status == MessageStatus.QUEUED.value,
        ]
    return [
        message.c.created_at > run.now - CATCH_UP,
        message.c.created_at <= run.now,
        message.c.status.in_([MessageStatus.QUEUED.value, MessageStatus.RETRY.value]),
    ]


def _coupon_row(
    run: CampaignPass, spec: CouponSpec, ladder: dict[int, Decimal], row: Any
) -> dict[str, Any]:
    percent, amount = value_of(spec, ladder, row.occurrence)
    starts: datetime = max(row.send_after, run.now)
    return {
        "code": new_code(spec.prefix),
        "customer_id": row.customer_id,
        "message_id": row.id,
        "campaign": run.campaign.name,
        "percent_off": percent,
        "amount_off": amount,
        "min_order": spec.min_order,
        "created_at": run.now,
        "expires_at": starts + spec.expires_after,
    }
