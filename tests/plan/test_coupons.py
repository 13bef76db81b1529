"""Coupons minted by the planner: one per message, in the pass that queues it.

On SQLite and PostgreSQL: each queued message of a step with `coupon:` has its
own code from the same transaction (a dry run leaves neither), a second pass or a
second planner mints nothing more, the ladder sizes the coupon by the order
number, a message queued before its campaign had a coupon gets one at the next
full pass, and a coupon keeps the values it was issued with.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from engine.intake import MessageCoupon, message_coupons
from engine.intake.couponcodes import ALPHABET, new_code, new_codes
from engine.project import Campaign
from engine.store.models import Coupon, CouponIssue, Message
from tests.plan.test_planner import NOW
from tests.plan.test_triggers_purchases import (
    NAME,
    D,
    H,
    buy,
    days,
    no_cap,
    passes,
    person,
    sent,
    write_campaign,
)
from tests.plan.test_triggers_purchases import shop as shop  # the fixture

CODE = re.compile(r"^WELCOME-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$")


def coupons(shop: Any) -> list[MessageCoupon]:
    """The coupon of every message that has one, by message."""
    with Session(shop.engine) as s:
        ids = s.execute(select(col(Message.id))).scalars().all()
        found = message_coupons(s, ids)
    return [found[i] for i in sorted(found)]


def issues(shop: Any) -> list[CouponIssue]:
    with Session(shop.engine) as s:
        return list(s.exec(select(CouponIssue).order_by(col(CouponIssue.id))).scalars())  # type: ignore[call-overload]


def welcome_with_coupon(shop: Any, **coupon: Any) -> None:
    spec = {"percent": "10%", "min_order": 500, "expires_after": "30d", "prefix": "welcome"}
    write_campaign(shop, {"type": "first_order"}, coupon={**spec, **coupon})


# ---------------------------------------------------------------- codes


def test_a_code_uses_no_look_alike_characters_and_is_fresh_each_time() -> None:
    assert set(ALPHABET).isdisjoint("01OI") and len(ALPHABET) == len(set(ALPHABET)) == 32
    codes = {new_code("WELCOME") for _ in range(2000)}
    assert len(codes) == 2000
    assert all(CODE.match(code) for code in codes)
    assert re.match(r"^[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$", new_code())
    # Every character of the alphabet turns up, none more than chance allows.
    counts = {c: 0 for c in ALPHABET}
    for code in codes:
        for c in code.removeprefix("WELCOME-").replace("-", ""):
            counts[c] += 1
    expected = 2000 * 12 / 32
    assert all(0.8 * expected < n < 1.2 * expected for n in counts.values()), counts


def test_codes_minted_together_are_distinct_and_shaped_alike() -> None:
    batch = new_codes(5000, "WELCOME")
    assert len(batch) == len(set(batch)) == 5000
    assert all(CODE.match(code) for code in batch)
    assert new_codes(0) == [] and len(new_codes(3)[0]) == 14


# ---------------------------------------------------------------- minting


def test_each_queued_message_gets_its_own_coupon_once(shop: Any) -> None:
    welcome_with_coupon(shop)
    for name in ("ana", "bob", "cat"):
        person(shop, name)
        buy(shop, f"{name}1", name, NOW - H)
    report = shop.plan(NOW)[NAME]
    assert (report["queued"], report["coupons"], report["steps"]["email"]["coupons"]) == (3, 3, 3)
    messages = sent(shop)
    minted = coupons(shop)
    assert sorted(c.message_id for c in minted) == sorted(m.id for m in messages)
    for c in minted:
        message = next(m for m in messages if m.id == c.message_id)
        assert CODE.match(c.code)
        assert (c.customer_id, c.campaign) == (message.customer_id, NAME)
        assert (c.percent_off, c.amount_off, c.min_order) == (
            Decimal("10.00"),
            None,
            Decimal("500.00"),
        )
        assert c.expires_at == max(message.send_after, NOW) + 30 * D
        assert (c.used_at, c.used_order) == (None, None)
    assert len({c.code for c in minted}) == 3
    # One row for the pass, none per message.
    [issued] = issues(shop)
    assert (issued.campaign, issued.step, issued.created_at, issued.prefix) == (
        NAME, "", NOW, "WELCOME")  # fmt: skip
    with Session(shop.engine) as s:
        assert s.execute(select(func.count()).select_from(Coupon)).scalar() == 0
    # The next passes (and a full re-scan) mint nothing more.
    assert [shop.plan(NOW + i * H)[NAME]["coupons"] for i in (1, 2)] == [0, 0]
    assert shop.plan(NOW + 3 * H, rescan=True)[NAME]["coupons"] == 0
    assert coupons(shop) == minted and len(issues(shop)) == 1


def test_a_coupon_keeps_the_values_it_was_issued_with(shop: Any) -> None:
    welcome_with_coupon(shop)
    person(shop, "ana")
    buy(shop, "ana1", "ana", NOW - H)
    shop.plan(NOW)
    [before] = coupons(shop)
    welcome_with_coupon(shop, percent=None, amount=200, prefix="OTHER", expires_after="3d")
    person(shop, "bob")
    buy(shop, "bob1", "bob", NOW + H / 2)
    assert shop.plan(NOW + H)[NAME]["coupons"] == 1
    again, bobs = coupons(shop)
    assert again == before and before.percent_off == Decimal("10.00")
    assert bobs.code.startswith("OTHER-") and bobs.amount_off == Decimal("200.00")
    assert bobs.expires_at == max(sent(shop)[1].send_after, NOW + H) + 3 * D


def test_a_dry_run_mints_nothing_and_queues_nothing(shop: Any) -> None:
    welcome_with_coupon(shop)
    person(shop, "ana")
    buy(shop, "ana1", "ana", NOW - H)
    report = shop.plan(NOW, dry_run=True)[NAME]
    assert (report["queued"], report["coupons"]) == (1, 1)
    assert (sent(shop), coupons(shop)) == ([], [])


def test_a_failed_pass_leaves_neither_messages_nor_coupons(shop: Any, monkeypatch: Any) -> None:
    """Minting that fails after the messages' insert rolls the whole pass back."""
    welcome_with_coupon(shop)
    person(shop, "ana")
    buy(shop, "ana1", "ana", NOW - 2 * H)
    assert shop.plan(NOW - H)[NAME]["coupons"] == 1
    person(shop, "bob")
    buy(shop, "bob1", "bob", NOW - H / 2)

    def broken(*args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("engine.plan.coupons.code_key", broken)
    report = shop.plan(NOW)[NAME]
    assert report["error"].startswith("RuntimeError")
    assert [shop.owner(m) for m in sent(shop)] == ["ana"] and len(issues(shop)) == 1
    monkeypatch.undo()
    assert (shop.plan(NOW + H)[NAME]["queued"], len(coupons(shop))) == (1, 2)


def test_an_amount_off_coupon_and_no_minimum(shop: Any) -> None:
    welcome_with_coupon(shop, percent=None, amount="100.50", min_order=None, prefix=None,
                        expires_after="7d")  # fmt: skip
    person(shop, "ana")
    buy(shop, "ana1", "ana", NOW - H)
    shop.plan(NOW)
    [c] = coupons(shop)
    assert (c.percent_off, c.amount_off, c.min_order) == (None, Decimal("100.50"), None)
    assert re.match(r"^[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){2}$", c.code)
    assert c.expires_at == sent(shop)[0].send_after + 7 * D


def test_only_the_step_with_a_coupon_mints(shop: Any) -> None:
    no_cap(shop)
    steps = [
        {"id": "hello", "template": "welcome", "subject": "Hi",
         "coupon": {"amount": 50, "prefix": "HELLO"}},
        {"id": "later", "after": "2d", "template": "welcome", "subject": "Later"},
    ]  # fmt: skip
    write_campaign(shop, {"type": "first_order"}, steps=steps)
    person(shop, "ana")
    buy(shop, "ana1", "ana", NOW - H)
    assert passes(shop, days(NOW, 4)) == [1, 0, 1, 0]
    hello, later = sent(shop)
    [c] = coupons(shop)
    assert (hello.step, later.step, c.message_id) == ("hello", "later", hello.id)
    assert c.code.startswith("HELLO-") and c.amount_off == Decimal("50.00")


def test_the_ladder_sizes_the_coupon_by_the_order_number(shop: Any) -> None:
    no_cap(shop)
    write_campaign(shop, {"type": "nth_order", "ladder": {2: "5%", 3: "10%", 4: "15%"}},
                   coupon={"min_order": 300, "prefix": "THANKS"})  # fmt: skip
    person(shop, "ana")
    start = NOW - 10 * D
    for i in range(1, 6):
        buy(shop, f"o{i}", "ana", start + (i - 1) * D + H)
    assert passes(shop, days(start, 8)) == [0, 0, 1, 1, 1, 0, 0, 0]
    by_message = {c.message_id: c for c in coupons(shop)}
    ladder = [(m.occurrence, str(by_message[m.id].percent_off)) for m in sent(shop)]
    assert ladder == [("nth-2", "5.00"), ("nth-3", "10.00"), ("nth-4", "15.00")]
    assert {c.min_order for c in by_message.values()} == {Decimal("300.00")}


def test_a_waiting_message_gets_its_coupon_at_the_next_full_pass(shop: Any) -> None:
    write_campaign(shop, {"type": "first_order"})
    person(shop, "ana")
    buy(shop, "ana1", "ana", NOW - H)
    assert shop.plan(NOW)[NAME]["queued"] == 1
    welcome_with_coupon(shop)  # the marketer adds a coupon while the email waits
    assert shop.plan(NOW + timedelta(minutes=1))[NAME]["coupons"] == 0  # not a full pass
    assert shop.plan(NOW + timedelta(minutes=2), rescan=True)[NAME]["coupons"] == 1
    [c] = coupons(shop)
    assert c.message_id == sent(shop)[0].id


def test_a_message_whose_coupon_was_minted_as_a_row_gets_no_second(shop: Any) -> None:
    """Emails queued before codes were derived have a coupon row each: a full pass leaves
    them be, and the email keeps that row's code."""
    welcome_with_coupon(shop)
    person(shop, "ana")
    buy(shop, "ana1", "ana", NOW - H)
    shop.plan(NOW)
    [message] = sent(shop)
    with Session(shop.engine) as s:
        s.execute(delete(CouponIssue))
        s.add(Coupon(code="WELCOME-7KQ2-M9XD-P4TR", customer_id=message.customer_id,
                     message_id=message.id, campaign=NAME, percent_off=Decimal("10.00"),
                     created_at=NOW, expires_at=NOW + 30 * D))  # fmt: skip
        s.commit()
    assert shop.plan(NOW + H, rescan=True)[NAME]["coupons"] == 0
    assert issues(shop) == [] and [c.code for c in coupons(shop)] == ["WELCOME-7KQ2-M9XD-P4TR"]


# ---------------------------------------------------------------- the campaign file


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"coupon": {"min_order": 500}}, "coupon: give percent or amount (or a ladder on nth_order)"),
        ({"coupon": {"percent": "10%", "amount": 100}}, "a coupon is either percent or amount, not both"),
        ({"coupon": {"percent": "150%"}}, 'expected a discount between 0% and 100%, got "150%"'),
        ({"coupon": {"amount": 0}}, "at least 0.01"),
        ({"coupon": {"percent": 5, "prefix": "WEL COME"}}, 'expected 1 to 12 letters or digits like WELCOME, got "WEL COME"'),
        ({"coupon": {"percent": 5, "expires_after": "2h"}}, 'expected a duration from 1d to 365d, got "2h"'),
        ({"coupon": {"percent": 5}, "kind": "transactional"}, "a transactional email carries no coupon"),
        ({"trigger": {"type": "nth_order", "n": [2, 3], "ladder": {2: "5%", 4: "10%"}}}, "ladder: order 4 is not in n [2, 3]"),
        ({"trigger": {"type": "nth_order", "ladder": {"two": "5%"}}}, 'ladder: "two" is not an order number (2, 3, …)'),
        ({"trigger": {"type": "nth_order", "ladder": {1: "5%"}}}, "ladder: order number 1 is out of range (2 to 1000)"),
        ({"trigger": {"type": "nth_order", "ladder": {2: "five"}}}, 'ladder: order 2: expected a discount like "20%", got "five"'),
        ({"trigger": {"type": "nth_order", "n": [2, 3], "ladder": {2: "5%"}}, "coupon": {"prefix": "X"}}, "coupon: order 3 has no rung in the ladder and the coupon has no percent or amount"),
    ],
)  # fmt: skip
def test_a_bad_coupon_says_what(body: dict[str, Any], error: str) -> None:
    data = {
        "name": "c",
        "trigger": {"type": "first_order"},
        "template": "t",
        "subject": "s",
        **body,
    }
    with pytest.raises(ValueError, match=re.escape(error)):
        Campaign.model_validate(data)


def test_a_ladder_without_n_triggers_on_its_rungs() -> None:
    data = {"name": "c", "trigger": {"type": "nth_order", "ladder": {4: "15%", 2: "5%"}},
            "template": "t", "subject": "s"}  # fmt: skip
    campaign = Campaign.model_validate(data)
    assert campaign.trigger.n == [2, 4]  # type: ignore[union-attr]
    assert campaign.coupon is not None and campaign.flow[0].coupon == campaign.coupon
