"""Referrals in the planner, on SQLite and PostgreSQL: codes minted, referred orders counted
once delivered and reversed once cancelled, each reward paid once, and the referrer told.

Orders carry codes through the intake's own `record_order_referral`; every pass is the
planner's `plan`, as a tick runs it.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session, col

from engine.intake.referrals import record_order_referral
from engine.intake.shop import cancel_order, mark_delivered
from engine.intake.wallet import balance
from engine.plan.referrals import CODE_LENGTH
from engine.store.db import session_scope
from engine.store.models import (
    Coupon,
    Credit,
    Customer,
    Referral,
    ReferralReward,
    ReferralStatus,
)
from tests.plan.test_planner import NOW, Shop
from tests.plan.test_triggers_purchases import D, H, M, buy, customer_id, person
from tests.plan.test_triggers_purchases import shop as shop  # the fixture

CODE = re.compile(rf"^[2-9A-HJ-NP-Z]{{{CODE_LENGTH}}}$")
PLACED = NOW - 5 * D


def codes(shop: Shop) -> dict[str, str | None]:
    with Session(shop.engine) as s:
        rows = s.execute(select(col(Customer.external_id), col(Customer.referral_code)))
        return dict(rows.all())  # type: ignore[arg-type]


def refer(
    shop: Shop,
    order: str,
    friend: str,
    referrer: str,
    *,
    placed: datetime = PLACED,
    delivered: datetime | None = None,
    new_friend: bool = True,
) -> None:
    """`friend` (new unless told) places `order` carrying `referrer`'s code."""
    if new_friend:
        person(shop, friend)
    buy(shop, order, friend, placed, delivered=delivered)
    code = codes(shop)[referrer]
    assert code is not None, f"{referrer} has no code yet: plan first"
    with session_scope(shop.engine) as s:
        record_order_referral(s, code, order, now=placed, source="test")


def deliver(shop: Shop, order: str, at: datetime) -> None:
    with session_scope(shop.engine) as s:
        mark_delivered(s, order, at)


def cancel(shop: Shop, order: str, at: datetime) -> None:
    with session_scope(shop.engine) as s:
        cancel_order(s, order, now=at)


def referrals(shop: Shop) -> dict[str, tuple[str, str]]:
    """order → (status, reason)."""
    with Session(shop.engine) as s:
        rows = s.execute(select(Referral).order_by(col(Referral.id))).scalars()
        return {r.order_ref: (str(r.status), r.reason) for r in rows}


def rewards(shop: Shop) -> list[tuple[str, int, str]]:
    """(referrer, threshold, what was paid: credit, coupon or neither) in the order written."""
    with Session(shop.engine) as s:
        query = (
            select(ReferralReward, Customer.external_id)
            .join(Customer, col(Customer.id) == col(ReferralReward.customer_id))
            .order_by(col(ReferralReward.id))
        )
        return [
            (ref, r.threshold, "credit" if r.credit_id else "coupon" if r.coupon_id else "-")
            for r, ref in s.execute(query).all()
        ]


def credits(shop: Shop) -> list[Credit]:
    with Session(shop.engine) as s:
        return list(s.execute(select(Credit).order_by(col(Credit.id))).scalars())


def wallet(shop: Shop, name: str, at: datetime) -> Decimal:
    with Session(shop.engine) as s:
        return balance(s, customer_id(shop, name), at)


def program(shop: Shop, **settings: Any) -> None:
    shop.edit("config.yaml", lambda c: c["referrals"].update(settings))


@pytest.fixture
def ref_shop(shop: Shop) -> Shop:
    """Rahim, who refers; the referral_reward campaign alone; codes minted."""
    shop.enable("referral_reward")
    person(shop, "rahim")
    shop.plan(PLACED - H)
    return shop


# ---------------------------------------------------------------- codes


def test_every_customer_gets_one_code_that_never_changes(shop: Shop) -> None:
    shop.enable("referral_reward")
    for name in ("ana", "bob", "cat"):
        person(shop, name)
    assert set(codes(shop).values()) == {None}
    shop.plan(NOW)
    first = codes(shop)
    assert len(set(first.values())) == 3
    assert all(CODE.match(code or "") for code in first.values()), first
    person(shop, "dan")
    shop.plan(NOW + M)
    shop.plan(NOW + 20 * M, rescan=True)
    later = codes(shop)
    assert {k: later[k] for k in first} == first
    assert CODE.match(later["dan"] or "") and later["dan"] not in first.values()


def test_many_customers_are_minted_distinct_codes_in_one_pass(shop: Shop) -> None:
    with session_scope(shop.engine) as s:
        s.add_all(
            Customer(external_id=f"c{i}", email=f"c{i}@example.com", created_at=NOW, updated_at=NOW)
            for i in range(3000)
        )
    shop.plan(NOW)
    minted = [code for code in codes(shop).values()]
    assert None not in minted and len(set(minted)) == 3000


def test_a_dry_run_mints_nothing_and_pays_nothing(ref_shop: Shop) -> None:
    refer(ref_shop, "o1", "ana", "rahim", delivered=PLACED + D)
    person(ref_shop, "bob")
    ref_shop.plan(NOW, dry_run=True)
    assert codes(ref_shop)["bob"] is None
    assert referrals(ref_shop) == {"o1": ("pending", "")}
    assert rewards(ref_shop) == []


# ---------------------------------------------------------------- counting


def test_a_referral_counts_once_its_order_is_delivered(ref_shop: Shop) -> None:
    refer(ref_shop, "o1", "ana", "rahim")
    ref_shop.plan(PLACED + H)
    assert referrals(ref_shop) == {"o1": ("pending", "")}
    assert rewards(ref_shop) == []
    deliver(ref_shop, "o1", PLACED + 2 * D)
    ref_shop.plan(PLACED + 2 * D + M)  # a pass between full ones: it sees the delivery
    assert referrals(ref_shop) == {"o1": ("counted", "")}
    with Session(ref_shop.engine) as s:
        counted = s.execute(select(Referral.counted_at)).scalar_one()
    assert counted == PLACED + 2 * D + M
    assert rewards(ref_shop) == [("rahim", 1, "credit")]


@pytest.mark.parametrize(
    ("after", "status"),
    [
        pytest.param(7 * D - M, "pending", id="within-the-return-window"),
        pytest.param(7 * D, "counted", id="the-window-over"),
    ],
)
def test_count_after_waits_for_the_return_window(
    ref_shop: Shop, after: timedelta, status: str
) -> None:
    program(ref_shop, count_after="7d")
    delivered = PLACED + D
    refer(ref_shop, "o1", "ana", "rahim", delivered=delivered)
    ref_shop.plan(delivered + H)
    ref_shop.plan(delivered + after)
    assert referrals(ref_shop)["o1"][0] == status


def test_a_delivery_reported_late_is_counted_by_the_next_full_pass(ref_shop: Shop) -> None:
    refer(ref_shop, "o1", "ana", "rahim")
    ref_shop.plan(NOW)  # a full pass
    deliver(ref_shop, "o1", PLACED + D)  # reported now, delivered days ago
    ref_shop.plan(NOW + M)  # looks only at deliveries since the last pass
    assert referrals(ref_shop)["o1"][0] == "pending"
    ref_shop.plan(NOW + 15 * M)  # the next full pass
    assert referrals(ref_shop)["o1"][0] == "counted"
    assert rewards(ref_shop) == [("rahim", 1, "credit")]


def test_a_cancelled_order_reverses_its_referral_and_keeps_the_reward_paid(
    ref_shop: Shop,
) -> None:
    refer(ref_shop, "o1", "ana", "rahim", delivered=PLACED + D)
    refer(ref_shop, "o2", "bob", "rahim")
    ref_shop.plan(NOW)
    assert referrals(ref_shop) == {"o1": ("counted", ""), "o2": ("pending", "")}
    assert wallet(ref_shop, "rahim", NOW) == Decimal("100.00")
    cancel(ref_shop, "o1", NOW + H)  # returned after it counted
    cancel(ref_shop, "o2", NOW + H)  # cancelled before delivery
    ref_shop.plan(NOW + H + M, rescan=True)
    assert referrals(ref_shop) == {"o1": ("reversed", ""), "o2": ("reversed", "")}
    with Session(ref_shop.engine) as s:
        times = s.execute(select(Referral.reversed_at)).scalars().all()
    assert set(times) == {NOW + H + M}
    # Paid once, never taken back.
    assert wallet(ref_shop, "rahim", NOW + H + M) == Decimal("100.00")
    assert rewards(ref_shop) == [("rahim", 1, "credit")]


def test_a_cancelled_order_never_counts_towards_a_reward_even_before_it_is_reversed(
    ref_shop: Shop,
) -> None:
    program(ref_shop, rewards=[{"at": 2, "credit": 50}])
    refer(ref_shop, "o1", "ana", "rahim", delivered=PLACED + D)
    ref_shop.plan(NOW)
    assert referrals(ref_shop)["o1"][0] == "counted"
    cancel(ref_shop, "o1", NOW + M)
    refer(ref_shop, "o2", "bob", "rahim", placed=NOW)
    deliver(ref_shop, "o2", NOW + 2 * M)
    ref_shop.plan(NOW + 3 * M)  # between full passes: o1 is not reversed yet
    assert referrals(ref_shop) == {"o1": ("counted", ""), "o2": ("counted", "")}
    assert rewards(ref_shop) == []


# ---------------------------------------------------------------- rewards


def test_two_referrals_in_one_pass_cross_two_thresholds_each_paid_once(ref_shop: Shop) -> None:
    program(
        ref_shop,
        rewards=[
            {"at": 1, "credit": "100.55"},
            {
                "at": 2,
                "coupon": {
                    "amount": 500,
                    "min_order": 1000,
                    "expires_after": "60d",
                    "prefix": "GIFT",
                },
            },
            {"at": 3, "tier": "diamond"},
        ],
    )
    refer(ref_shop, "o1", "ana", "rahim", delivered=PLACED + D)
    refer(ref_shop, "o2", "bob", "rahim", delivered=PLACED + D)
    ref_shop.plan(NOW)
    assert rewards(ref_shop) == [("rahim", 1, "credit"), ("rahim", 2, "coupon")]
    rahim = customer_id(ref_shop, "rahim")
    [credit] = credits(ref_shop)
    assert (credit.customer_id, credit.amount, credit.dedupe_key) == (
        rahim,
        Decimal("100.55"),
        f"referral-reward:{rahim}:1",
    )
    assert credit.reason == "referral reward: 1 referred friend"
    assert wallet(ref_shop, "rahim", NOW) == Decimal("100.55")
    with Session(ref_shop.engine) as s:
        [gift] = s.execute(select(Coupon)).scalars().all()
    assert (gift.customer_id, gift.campaign, gift.message_id) == (rahim, "referral", None)
    assert (gift.amount_off, gift.percent_off, gift.min_order) == (
        Decimal("500.00"),
        None,
        Decimal("1000.00"),
    )
    assert gift.expires_at == NOW + 60 * D
    assert re.match(r"^GIFT-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$", gift.code)
    # Again, and again after a rescan: nothing more.
    ref_shop.plan(NOW + M)
    ref_shop.plan(NOW + 20 * M, rescan=True)
    assert len(rewards(ref_shop)) == 2 and len(credits(ref_shop)) == 1
    # A third friend: the tier, recorded with neither credit nor coupon.
    refer(ref_shop, "o3", "cat", "rahim", placed=NOW, delivered=NOW + H)
    ref_shop.plan(NOW + H + M)
    assert rewards(ref_shop)[-1] == ("rahim", 3, "-")
    assert wallet(ref_shop, "rahim", NOW + H + M) == Decimal("100.55")


def test_a_reward_credit_expires_as_refund_credits_do(ref_shop: Shop) -> None:
    ref_shop.edit("config.yaml", lambda c: c["refunds"].update(credit_expires_after="90d"))
    refer(ref_shop, "o1", "ana", "rahim", delivered=PLACED + D)
    ref_shop.plan(NOW)
    [credit] = credits(ref_shop)
    assert credit.expires_at == NOW + 90 * D
    assert wallet(ref_shop, "rahim", NOW + 90 * D - M) == Decimal("100.00")
    assert wallet(ref_shop, "rahim", NOW + 90 * D) == Decimal("0.00")


def test_a_reward_added_to_the_config_later_is_paid_at_the_next_full_pass(
    ref_shop: Shop,
) -> None:
    program(ref_shop, rewards=[{"at": 1, "credit": 100}])
    refer(ref_shop, "o1", "ana", "rahim", delivered=PLACED + D)
    refer(ref_shop, "o2", "bob", "rahim", delivered=PLACED + D)
    ref_shop.plan(NOW)
    assert rewards(ref_shop) == [("rahim", 1, "credit")]
    program(ref_shop, rewards=[{"at": 1, "credit": 100}, {"at": 2, "credit": 20}])
    ref_shop.plan(NOW + 15 * M)
    assert rewards(ref_shop) == [("rahim", 1, "credit"), ("rahim", 2, "credit")]
    assert wallet(ref_shop, "rahim", NOW + 15 * M) == Decimal("120.00")


def test_two_planners_at_once_pay_each_reward_once(ref_shop: Shop) -> None:
    program(ref_shop, rewards=[{"at": 1, "coupon": {"percent": 10}}, {"at": 2, "credit": 30}])
    for i in range(6):
        person(ref_shop, f"r{i}")
    ref_shop.plan(PLACED)
    for i in range(6):
        refer(ref_shop, f"a{i}", f"fa{i}", f"r{i}", delivered=PLACED + D)
        refer(ref_shop, f"b{i}", f"fb{i}", f"r{i}", delivered=PLACED + D)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            ref_shop.plan(NOW)
        except BaseException as exc:  # the test says so below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(rewards(ref_shop)) == 12
    assert len(credits(ref_shop)) == 6
    with Session(ref_shop.engine) as s:
        assert len(s.execute(select(Coupon.id)).all()) == 6


# ---------------------------------------------------------------- the trigger


def test_the_referrer_is_told_once_per_reward(ref_shop: Shop) -> None:
    program(ref_shop, rewards=[{"at": 1, "credit": 100}, {"at": 2, "tier": "diamond"}])
    refer(ref_shop, "o1", "ana", "rahim", delivered=PLACED + D)
    refer(ref_shop, "o2", "bob", "rahim", delivered=PLACED + D)
    report = ref_shop.plan(NOW)["referral_reward"]
    assert report["queued"] == 2
    rahim = customer_id(ref_shop, "rahim")
    messages = ref_shop.messages("referral_reward")
    assert [(m.dedupe_key, m.occurrence) for m in messages] == [
        (f"referral_reward:{rahim}:reward-1", "reward-1"),
        (f"referral_reward:{rahim}:reward-2", "reward-2"),
    ]
    with Session(ref_shop.engine) as s:
        ids = dict(s.execute(select(ReferralReward.threshold, ReferralReward.id)).all())
    assert [m.context for m in messages] == [
        {"reward_id": ids[1], "threshold": 1},
        {"reward_id": ids[2], "threshold": 2},
    ]
    assert all(m.expires_at == NOW + 7 * D for m in messages)
    assert ref_shop.plan(NOW + M)["referral_reward"]["queued"] == 0
    assert ref_shop.plan(NOW + H, rescan=True)["referral_reward"]["queued"] == 0
    assert len(ref_shop.messages("referral_reward")) == 2


def test_a_reward_older_than_the_expiry_is_not_told_when_the_campaign_is_enabled_later(
    shop: Shop,
) -> None:
    shop.enable("welcome")
    person(shop, "rahim")
    shop.plan(PLACED - H)
    refer(shop, "o1", "ana", "rahim", delivered=PLACED + D)
    shop.plan(PLACED + D + H)  # paid, with no campaign to tell it
    assert rewards(shop) == [("rahim", 1, "credit")]
    shop.enable("referral_reward")
    assert shop.plan(PLACED + 9 * D)["referral_reward"]["queued"] == 0
    assert ReferralStatus.COUNTED.value == referrals(shop)["o1"][0]
