"""The rewards report (coupons, store credit, tiers, referrals) on hand-written rows.

Every expected figure is worked out by hand in the comments of `build_rewards`, from
the rules in docs/metrics.md ("Rewards"), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from engine.intake.wallet import balances
from engine.project.loader import Project, load_project
from engine.report.reports import build_report, to_json
from engine.store.db import session_scope
from engine.store.models import (
    Coupon,
    Credit,
    Customer,
    Message,
    MessageStatus,
    Order,
    OrderStatus,
    Referral,
    ReferralReward,
    ReferralStatus,
    TierChange,
)
from tests import store_fixtures

migrated_store = store_fixtures.migrated_store
fresh_store = store_fixtures.fresh_store

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
START = datetime(2026, 11, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Rows:
    """Writes customers, orders, coupons, credits, tier moves and referrals tersely."""

    def __init__(self, session: Any):
        self.session = session
        self.keys = count(1)

    def add(self, row: Any) -> Any:
        self.session.add(row)
        self.session.flush()
        return row

    def customer(self, key: str, tier: str | None) -> int:
        row = Customer(
            external_id=key,
            email=f"{key}@example.com",
            tier=tier,
            created_at=at("2026-01-01"),
            updated_at=at("2026-01-01"),
        )
        return int(self.add(row).id)

    def order(self, key: str, customer: int, when: str, total: str, *, cancelled: bool = False):
        status = OrderStatus.CANCELLED if cancelled else OrderStatus.DELIVERED
        self.add(
            Order(
                external_id=key,
                customer_id=customer,
                placed_at=at(when),
                total=Decimal(total),
                status=status,
            )
        )

    def coupon(
        self,
        campaign: str | None,
        customer: int,
        created: str,
        expires: str,
        used: str | None = None,
        order: str | None = None,
    ) -> int:
        row = Coupon(
            code=f"CODE-{next(self.keys)}",
            customer_id=customer,
            campaign=campaign,
            percent_off=Decimal("10"),
            created_at=at(created),
            expires_at=at(expires),
            used_at=at(used) if used else None,
            used_order=order,
        )
        return int(self.add(row).id)

    def credit(
        self,
        customer: int,
        amount: str,
        created: str,
        expires: str | None = None,
        source: int | None = None,
    ) -> int:
        row = Credit(
            dedupe_key=f"entry:{next(self.keys)}",
            customer_id=customer,
            amount=Decimal(amount),
            reason="test",
            created_at=at(created),
            expires_at=at(expires) if expires else None,
            source_id=source,
        )
        return int(self.add(row).id)

    def move(self, customer: int, old: str | None, new: str | None, way: str, when: str):
        self.add(
            TierChange(customer_id=customer, from_tier=old, to_tier=new, direction=way, at=at(when))
        )

    def referral(
        self,
        referrer: int | None,
        referred: int,
        order: str,
        status: ReferralStatus,
        when: str,
        reason: str = "",
    ):
        self.add(
            Referral(
                code="REF",
                referrer_id=referrer,
                referred_id=referred,
                order_ref=order,
                status=status,
                reason=reason,
                at=at(when),
            )
        )

    def reward(
        self, customer: int, threshold: int, when: str, *, credit: int | None = None,
        coupon: int | None = None,
    ):  # fmt: skip
        self.add(
            ReferralReward(
                customer_id=customer,
                threshold=threshold,
                credit_id=credit,
                coupon_id=coupon,
                at=at(when),
            )
        )


def build_rewards(engine: Engine) -> None:
    """Rewards history for the period [1 Nov 2026, 22 Nov 2026 06:00) = [START, NOW).

    Customer keys start with "r" and there are no messages, so the campaign report
    of another history written beside this one does not change.
    """
    with session_scope(engine) as session:
        w = Rows(session)
        r1, r2, r3 = (
            w.customer("r1", "gold"),
            w.customer("r2", "silver"),
            w.customer("r3", "silver"),
        )
        r4, r5, r6 = w.customer("r4", None), w.customer("r5", "platinum"), w.customer("r6", None)
        w.order("ro1", r1, "2026-11-05 10:00", "1200.50")
        w.order("ro2", r2, "2026-11-06 10:00", "800.25")
        w.order("ro3", r3, "2026-11-07 10:00", "300.00", cancelled=True)
        w.order("ro4", r4, "2026-11-13 10:00", "999.99")
        w.order("ro5", r6, "2026-11-08 10:00", "55.00")
        w.order("ro6", r1, "2026-11-16 10:00", "450.00")
        # welcome_series: issued W1 W2 W3 W4 W5 W7 W8 = 7; redeemed W1 W2 W3 W8 = 4
        # (W3's order is cancelled: redeemed, no revenue); expired unused W4 = 1;
        # 4 / 7 = 57.14 %; revenue ro1 + ro2 + ro4 = 1200.50 + 800.25 + 999.99 = 3000.74
        ws = "welcome_series"
        w.coupon(ws, r1, "2026-11-02 09:00", "2026-12-02", "2026-11-05 10:00", "ro1")  # W1
        w.coupon(ws, r2, "2026-11-03 00:00", "2026-12-03", "2026-11-06 10:00", "ro2")  # W2
        w.coupon(ws, r3, "2026-11-03 09:00", "2026-12-03", "2026-11-07 10:00", "ro3")  # W3
        w.coupon(ws, r4, "2026-11-04 09:00", "2026-11-10")  # W4: expired unused
        w.coupon(ws, r5, "2026-11-04 09:00", "2026-12-04")  # W5: still open
        w.coupon(ws, r6, "2026-10-20 09:00", "2026-11-20", "2026-11-08 10:00", "ro5")  # W6: before
        w.coupon(ws, r6, "2026-11-20 09:00", "2026-12-20", "2026-11-23 10:00", "ro7")  # W7: later
        w.coupon(ws, r4, "2026-11-12 09:00", "2026-12-12", "2026-11-13 10:00", "ro4")  # W8
        # loyalty_ladder: L1 L2 L3 = 3; redeemed L1 (ro4 again) and L2 (an order the store
        # has not heard of: no revenue) = 2, 66.67 %; L3 expired; revenue 999.99
        ll = "loyalty_ladder"
        w.coupon(ll, r4, "2026-11-10 09:00", "2026-12-10", "2026-11-13 10:00", "ro4")  # L1
        w.coupon(ll, r2, "2026-11-11 00:00", "2026-12-11", "2026-11-14 10:00", "ro-unknown")  # L2
        w.coupon(ll, r3, "2026-11-11 09:00", "2026-11-21")  # L3: expired unused
        # no campaign: N1 redeemed by ro6 (450.00); G1, a referral reward, open: 1 / 2 = 50 %
        w.coupon(None, r1, "2026-11-15 09:00", "2026-12-15", "2026-11-16 10:00", "ro6")  # N1
        gift = w.coupon(None, r2, "2026-11-15 09:00", "2027-01-15")  # G1
        # a campaign no longer in the project: O1 issued and expired, 0 %
        w.coupon("old_offer", r5, "2026-11-16 09:00", "2026-11-18")  # O1
        # total: 13 issued, 7 redeemed (53.85 %), 3 expired; revenue ro1 + ro2 + ro4 + ro6
        # = 3450.74, ro4 once although two coupons of two campaigns redeemed it

        # Credit. At START: C1 100.00 + C2 50.25 − D1 20.10 = 130.15 (C3 expired before).
        c1 = w.credit(r1, "100.00", "2026-10-10")  # C1
        c2 = w.credit(r2, "50.25", "2026-10-15", "2026-11-10")  # C2
        w.credit(r2, "-20.10", "2026-10-20", "2026-11-10", source=c2)  # D1
        w.credit(r3, "10.00", "2026-10-01", "2026-10-25")  # C3
        # Issued: C4 75.50 + C5 100.00 + C6 40.00 + C7 60.00 = 275.50
        w.credit(r1, "75.50", "2026-11-03")  # C4
        w.credit(r1, "-30.00", "2026-11-06", source=c1)  # D2: redeemed
        c5 = w.credit(r4, "100.00", "2026-11-08")  # C5
        c6 = w.credit(r5, "40.00", "2026-11-09", "2026-11-19")  # C6
        w.credit(r5, "-15.55", "2026-11-12", "2026-11-19", source=c6)  # D3: redeemed
        w.credit(r1, "-25.50", "2026-11-14")  # R1: taken back
        w.credit(r6, "60.00", "2026-11-21", "2026-11-22 06:00")  # C7: expires at NOW
        # Redeemed D2 + D3 = 45.55; taken back R1 = 25.50; expired (C2 − D1) + (C6 − D3) + C7
        # = 30.15 + 24.45 + 60.00 = 114.60; at NOW: C1 − D2 + C4 − R1 + C5 = 220.00
        # = 130.15 + 275.50 − 45.55 − 25.50 − 114.60
        c8 = w.credit(r6, "500.00", "2026-11-23")  # after NOW
        w.credit(r2, "20.00", "2026-11-22 06:00")  # C9: at NOW, outside [START, NOW)

        # Tiers now: no tier r4 r6 = 2; silver r2 r3 = 2; gold r1; platinum r5 (gone from
        # tiers.yaml). Moves in the period: up into gold r1, silver r3, platinum r5; down
        # into silver r2, no tier r4; left silver r1 r4, gold r2 r5, no tier r3.
        w.move(r1, None, "silver", "up", "2026-10-20")  # before
        w.move(r2, None, "gold", "start", "2026-11-02")  # the first placement: not a move
        w.move(r1, "silver", "gold", "up", "2026-11-05")
        w.move(r2, "gold", "silver", "down", "2026-11-07")
        w.move(r3, None, "silver", "up", "2026-11-08")
        w.move(r4, "silver", None, "down", "2026-11-09")
        w.move(r5, "gold", "platinum", "up", "2026-11-10")
        w.move(r6, None, "silver", "up", "2026-11-23")  # after

        # Referrals of the period: F1–F7 = 7: 1 pending, 1 counted, 1 reversed, 4 refused
        # (not a first order 2, self-referral 1, unknown code 1: reasons without their detail)
        R = ReferralStatus
        w.referral(r1, r2, "ro2", R.COUNTED, "2026-11-06 10:00")
        w.referral(r1, r3, "ro3", R.REVERSED, "2026-11-07 10:00", "order cancelled")
        w.referral(r1, r4, "ro4", R.PENDING, "2026-11-13 10:00")
        self_referral = "self-referral: the same email as the referrer"
        w.referral(r2, r2, "ro-self", R.REFUSED, "2026-11-14 10:00", self_referral)
        w.referral(None, r5, "ro-code", R.REFUSED, "2026-11-15 10:00", "unknown code")
        w.referral(r1, r6, "ro-rep", R.REFUSED, "2026-11-16 10:00", "not a first order")
        w.referral(r3, r6, "ro-rep2", R.REFUSED, "2026-11-17 10:00", "not a first order")
        w.referral(r1, r5, "ro-old", R.COUNTED, "2026-10-20 10:00")  # before
        w.referral(r1, r6, "ro-late", R.PENDING, "2026-11-22 06:00")  # at NOW: outside
        # Rewards paid: at 1 (C5, 100.00), at 5 (G1), at 10 (a tier), at 3 (C6, 40.00; a
        # threshold no longer configured): 4 paid, 140.00 credit, 1 coupon
        w.reward(r1, 1, "2026-10-10", credit=c1)  # before
        w.reward(r4, 1, "2026-11-08", credit=c5)
        w.reward(r2, 5, "2026-11-15 09:00", coupon=gift)
        w.reward(r3, 10, "2026-11-16")
        w.reward(r5, 3, "2026-11-09", credit=c6)
        w.reward(r6, 1, "2026-11-23", credit=c8)  # after


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


def rewards_of(engine: Engine, project: Project, start: datetime = START) -> dict[str, Any]:
    return build_report(engine, project, start, NOW, "month", NOW, sections={"rewards"})["rewards"]


def coupon_row(
    issued: int, redeemed: int, expired: int, rate: str | None, revenue: str
) -> dict[str, Any]:
    return {
        "issued": issued,
        "redeemed": redeemed,
        "expired": expired,
        "redemption_rate": None if rate is None else Decimal(rate),
        "revenue": Decimal(revenue),
    }


def test_coupons_per_campaign(fresh_store: Engine, project: Project) -> None:
    build_rewards(fresh_store)
    coupons = rewards_of(fresh_store, project)["coupons"]
    rows = coupons["campaigns"]
    # the shipped campaigns that give coupons first (in config order), then the others
    assert list(rows) == ["welcome_series", "loyalty_ladder", "old_offer", "(no campaign)"]
    assert rows["welcome_series"] == coupon_row(7, 4, 1, "57.14285714285714285714285714", "3000.74")
    assert rows["loyalty_ladder"] == coupon_row(3, 2, 1, "66.66666666666666666666666667", "999.99")
    assert rows["old_offer"] == coupon_row(1, 0, 1, "0.00", "0.00")
    assert rows["(no campaign)"] == coupon_row(2, 1, 0, "50.00", "450.00")
    assert coupons["total"] == coupon_row(13, 7, 3, "53.84615384615384615384615385", "3450.74")


def test_coupons_of_a_quiet_period_are_no_data_not_zero_percent(
    fresh_store: Engine, project: Project
) -> None:
    coupons = rewards_of(fresh_store, project)["coupons"]
    assert list(coupons["campaigns"]) == ["welcome_series", "loyalty_ladder"]
    assert coupons["total"] == coupon_row(0, 0, 0, None, "0.00")


def test_the_period_includes_its_start_and_not_its_end(
    fresh_store: Engine, project: Project
) -> None:
    build_rewards(fresh_store)
    got = build_report(
        fresh_store, project, at("2026-11-03"), at("2026-11-11"), "month", NOW, sections={"rewards"}
    )["rewards"]
    # coupons W2 (3 Nov 00:00) to L1; not L2 (11 Nov 00:00)
    assert got["coupons"]["campaigns"]["welcome_series"]["issued"] == 4  # W2 W3 W4 W5
    assert got["coupons"]["campaigns"]["loyalty_ladder"]["issued"] == 1  # L1
    # moves of [5 Nov, 9 Nov): r1 (5 Nov 00:00) up, r2 down, r3 up; not r4 (9 Nov 00:00)
    later = build_report(
        fresh_store, project, at("2026-11-05"), at("2026-11-09"), "month", NOW, sections={"rewards"}
    )["rewards"]["tiers"]
    assert later["total"] == {"customers": 6, "up": 2, "down": 1, "left": 3}  # r1, r3 up; r2 down


def test_store_credit_adds_up_to_the_paisa(fresh_store: Engine, project: Project) -> None:
    build_rewards(fresh_store)
    credit = rewards_of(fresh_store, project)["credit"]
    assert credit == {
        "outstanding_at_start": Decimal("130.15"),
        "issued": Decimal("275.50"),
        "redeemed": Decimal("45.55"),
        "taken_back": Decimal("25.50"),
        "expired": Decimal("114.60"),
        "outstanding": Decimal("220.00"),
    }
    # the wallet's own balances add up to the same, once C8 and C9 (written at NOW or
    # later, so not yet there at the end of [START, NOW)) are left out
    with session_scope(fresh_store) as session:
        wallets = balances(session, range(1, 7), NOW)
    assert sum(wallets.values(), Decimal(0)) - Decimal("520.00") == credit["outstanding"]
    # and a period that ends later than now stops at now: nothing expires in the future
    later = build_report(
        fresh_store, project, START, at("2026-12-31"), "month", NOW, sections={"rewards"}
    )["rewards"]["credit"]
    assert later == credit


def test_tiers_now_and_the_moves_of_the_period(fresh_store: Engine, project: Project) -> None:
    build_rewards(fresh_store)
    tiers = rewards_of(fresh_store, project)["tiers"]
    rows = tiers["tiers"]
    assert list(rows) == ["(no tier)", "silver", "gold", "diamond", "platinum"]

    def row(name: str, in_file: bool, customers: int, up: int, down: int, left: int) -> Any:
        return {"name": name, "in_file": in_file, "customers": customers,
                "up": up, "down": down, "left": left}  # fmt: skip

    assert rows["(no tier)"] == row("no tier", True, 2, 0, 1, 1)
    assert rows["silver"] == row("Silver", True, 2, 1, 1, 2)
    assert rows["gold"] == row("Gold", True, 1, 1, 0, 2)
    assert rows["diamond"] == row("Diamond", True, 0, 0, 0, 0)
    assert rows["platinum"] == row("platinum", False, 1, 1, 0, 0)
    assert tiers["total"] == {"customers": 6, "up": 3, "down": 2, "left": 5}


def test_referrals_and_their_rewards(fresh_store: Engine, project: Project) -> None:
    build_rewards(fresh_store)
    referrals = rewards_of(fresh_store, project)["referrals"]
    rewards = referrals.pop("rewards")
    assert referrals == {
        "referred": 7,
        "pending": 1,
        "counted": 1,
        "reversed": 1,
        "refused": 4,
        "refused_by_reason": {"not a first order": 2, "self-referral": 1, "unknown code": 1},
    }
    assert list(rewards["thresholds"]) == [1, 5, 10, 3]  # config.yaml's, then the others
    assert rewards["thresholds"][1] == {"paid": 1, "credit": Decimal("100.00"), "coupons": 0}
    assert rewards["thresholds"][5] == {"paid": 1, "credit": Decimal("0.00"), "coupons": 1}
    assert rewards["thresholds"][10] == {"paid": 1, "credit": Decimal("0.00"), "coupons": 0}
    assert rewards["thresholds"][3] == {"paid": 1, "credit": Decimal("40.00"), "coupons": 0}
    assert rewards["total"] == {"paid": 4, "credit": Decimal("140.00"), "coupons": 1}


def test_json_has_money_as_decimal_strings(fresh_store: Engine, project: Project) -> None:
    build_rewards(fresh_store)
    data = to_json(build_report(fresh_store, project, START, NOW, "month", NOW))["rewards"]
    assert data["coupons"]["total"]["revenue"] == "3450.74"
    assert data["coupons"]["total"]["redemption_rate"] == "53.84615384615384615384615385"
    assert data["credit"]["outstanding"] == "220.00"
    assert data["referrals"]["rewards"]["thresholds"]["1"]["credit"] == "100.00"


def test_a_changed_survey_answer_counts_once_with_its_new_score(
    fresh_store: Engine, project: Project
) -> None:
    from engine.track.surveyanswers import record_answer

    with session_scope(fresh_store) as session:
        customer = Rows(session).customer("s1", None)
        survey = Message(
            dedupe_key="survey:1",
            campaign="survey_after_delivery",
            customer_id=customer,
            occurrence="1",
            status=MessageStatus.SENT,
            created_at=at("2026-11-09"),
            send_after=at("2026-11-09"),
            sent_at=at("2026-11-09"),
        )
        session.add(survey)
        session.flush()
        message = int(survey.id)  # type: ignore[arg-type]
    record_answer(fresh_store, message, 3, None, now=at("2026-11-10"))
    record_answer(fresh_store, message, 10, "changed my mind", now=at("2026-11-11"))
    nps = build_report(fresh_store, project, START, NOW, "month", NOW, sections={"retention"})[
        "retention"
    ]["total"]["nps"]
    assert nps == {"answers": 1, "promoters": 1, "passives": 0, "detractors": 0,
                   "score": Decimal("100.00")}  # fmt: skip


def test_the_worked_example_of_the_docs(fresh_store: Engine, project: Project) -> None:
    """docs/metrics.md, "Rewards", "A worked example": its rows and its figures."""
    with session_scope(fresh_store) as session:
        w = Rows(session)
        rahima, karim = w.customer("rahima", "gold"), w.customer("karim", "silver")
        mina = w.customer("mina", None)
        w.order("o1", rahima, "2026-11-05", "1200.50")
        w.order("o2", karim, "2026-11-06", "800.25", cancelled=True)
        ws = "welcome_series"
        w.coupon(ws, rahima, "2026-11-02", "2026-12-02", "2026-11-05", "o1")  # A
        w.coupon(ws, karim, "2026-11-02", "2026-12-02", "2026-11-06", "o2")  # B
        w.coupon(ws, mina, "2026-11-03", "2026-11-20")  # C
        w.coupon(ws, mina, "2026-11-04", "2026-12-04")  # D
        w.coupon(ws, mina, "2026-10-28", "2026-11-28", "2026-11-03", "o0")  # E
        held = w.credit(rahima, "100.00", "2026-10-01")
        spent = w.credit(karim, "50.25", "2026-10-02", "2026-11-10")
        w.credit(karim, "-20.10", "2026-10-20", "2026-11-10", source=spent)
        w.credit(rahima, "75.50", "2026-11-08")
        w.credit(rahima, "-30.00", "2026-11-09", source=held)
        w.credit(rahima, "-25.50", "2026-11-12")
        w.move(rahima, "silver", "gold", "up", "2026-11-10")
        w.move(karim, "gold", "silver", "down", "2026-11-11")
        for n, status in enumerate(["counted", "pending", "reversed"]):
            w.referral(rahima, mina, f"r{n}", ReferralStatus(status), "2026-11-15")
        w.referral(rahima, rahima, "r9", ReferralStatus.REFUSED, "2026-11-16", "self-referral")
        w.reward(rahima, 1, "2026-11-20", credit=w.credit(rahima, "100.00", "2026-11-20"))
    got = build_report(
        fresh_store,
        project,
        START,
        at("2026-12-01"),
        "month",
        at("2026-12-01"),
        sections={"rewards"},
    )["rewards"]
    assert got["coupons"]["campaigns"]["welcome_series"] == coupon_row(4, 2, 1, "50.00", "1200.50")
    credit = got["credit"]
    assert [str(credit[k]) for k in credit] == [
        "130.15",
        "175.50",
        "30.00",
        "25.50",
        "30.15",
        "220.00",
    ]  # fmt: skip
    tiers = got["tiers"]["tiers"]
    assert [tiers[t]["customers"] for t in ("(no tier)", "silver", "gold")] == [1, 1, 1]
    assert [tiers["silver"][k] for k in ("up", "down", "left")] == [0, 1, 1]
    assert [tiers["gold"][k] for k in ("up", "down", "left")] == [1, 0, 1]
    referrals = got["referrals"]
    assert [referrals[k] for k in ("referred", "counted", "pending", "reversed", "refused")] == [
        4, 1, 1, 1, 1
    ]  # fmt: skip
    assert referrals["refused_by_reason"] == {"self-referral": 1}
    assert referrals["rewards"]["thresholds"][1] == {
        "paid": 1, "credit": Decimal("100.00"), "coupons": 0
    }  # fmt: skip
