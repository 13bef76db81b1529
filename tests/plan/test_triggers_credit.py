"""The store-credit reminder (`credit_unused`) through time, on SQLite and PostgreSQL:
once per credit that causes it, never for credit spent, expired or below
`min_balance`, consent and suppression as for every marketing trigger."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from engine.intake import wallet
from engine.project.loader import load_partial
from engine.store.db import session_scope
from engine.store.models import Credit, MessageStatus, Suppression
from tests.plan.test_planner import NOW, Shop
from tests.plan.test_triggers_purchases import (
    NAME,
    catalogue_shop,
    customer_id,
    days,
    no_cap,
    occurrences,
    passes,
    person,
    sent,
    write_campaign,
)

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
AFTER = {"type": "credit_unused", "after": "30d"}
EXPIRING = {"type": "credit_unused", "expiring_within": "14d"}


@pytest.fixture
def shop(store: Engine, project_dir: Any) -> Shop:
    return catalogue_shop(store, project_dir)


def grant(shop: Shop, name: str, amount: str, at: datetime, expires: datetime | None = None) -> int:
    """A credit of `amount` to `name` at `at` (a reward: no order item)."""
    with session_scope(shop.engine) as s:
        row = Credit(
            dedupe_key=f"test:{name}:{amount}:{at.isoformat()}",
            customer_id=customer_id(shop, name),
            amount=Decimal(amount),
            reason="a reward",
            created_at=at,
            expires_at=expires,
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def spend(shop: Shop, name: str, amount: str, at: datetime) -> None:
    with session_scope(shop.engine) as s:
        event = f"evt-{name}-{at.isoformat()}"
        wallet.redeem(s, customer_id(shop, name), amount, f"O-{event}", event, at)


# ---------------------------------------------------------------- after


def test_credit_held_unspent_reminds_once_when_it_is_old_enough(shop: Shop) -> None:
    write_campaign(shop, AFTER)
    person(shop, "ana")
    first = grant(shop, "ana", "120.50", NOW - 30 * D)
    grant(shop, "ana", "30.00", NOW - 10 * D)  # younger: not what it is about
    moments = [NOW - 5 * D, NOW - M, NOW, NOW + M, NOW + H, *days(NOW + D, 5)]
    assert passes(shop, moments) == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    [reminder] = sent(shop)
    ana = customer_id(shop, "ana")
    assert reminder.occurrence == f"credit-{first}"
    assert reminder.dedupe_key == f"{NAME}:{ana}:credit-{first}"
    assert (reminder.status, reminder.send_after) == (MessageStatus.QUEUED, NOW)
    assert reminder.expires_at == NOW + 3 * D  # the default expires_after


def test_passes_a_minute_apart_queue_it_once(shop: Shop) -> None:
    """Between full passes a pass looks only at what became due since the last one."""
    write_campaign(shop, AFTER)
    person(shop, "ana")
    grant(shop, "ana", "50.00", NOW - 30 * D)
    queued = passes(shop, [NOW - 3 * M, NOW - 2 * M, NOW - M, NOW, NOW + M, NOW + 20 * M])
    assert queued == [0, 0, 0, 1, 0, 0]


def test_spending_restarts_the_clock_and_a_spent_balance_reminds_of_nothing(
    shop: Shop,
) -> None:
    write_campaign(shop, AFTER)
    for name in ("ana", "bob"):
        person(shop, name)
        grant(shop, name, "100.00", NOW - 40 * D)
    spend(shop, "ana", "40.00", NOW - 15 * D)  # some of it: reminded 30 days after that
    spend(shop, "bob", "100.00", NOW - 15 * D)  # all of it
    assert passes(shop, days(NOW - 12 * D, 28)) == [0] * 27 + [1]
    [reminder] = sent(shop)
    assert (shop.owner(reminder), reminder.send_after) == ("ana", NOW + 15 * D)


def test_a_new_credit_after_the_old_was_spent_reminds_again(shop: Shop) -> None:
    no_cap(shop)
    write_campaign(shop, AFTER)
    person(shop, "ana")
    old = grant(shop, "ana", "80.00", NOW - 30 * D)
    assert passes(shop, [NOW]) == [1]
    spend(shop, "ana", "80.00", NOW + D)
    new = grant(shop, "ana", "25.00", NOW + 2 * D)
    assert passes(shop, [NOW + 2 * D, NOW + 31 * D, NOW + 32 * D, NOW + 40 * D]) == [0, 0, 1, 0]
    assert occurrences(shop) == [f"credit-{old}", f"credit-{new}"]


def test_an_expired_credit_reminds_of_nothing(shop: Shop) -> None:
    write_campaign(shop, AFTER)
    person(shop, "ana")
    grant(shop, "ana", "60.00", NOW - 30 * D, NOW - H)
    assert passes(shop, days(NOW - D, 4)) == [0, 0, 0, 0]


def test_the_email_never_goes_after_its_credit_has_expired(shop: Shop) -> None:
    write_campaign(shop, AFTER)
    person(shop, "ana")
    grant(shop, "ana", "60.00", NOW - 30 * D, NOW + 2 * H)
    assert passes(shop, [NOW]) == [1]
    assert sent(shop)[0].expires_at == NOW + 2 * H


@pytest.mark.parametrize(
    ("balance", "queued"),
    [
        pytest.param("99.99", 0, id="a-paisa-below"),
        pytest.param("100.00", 1, id="exactly"),
    ],
)
def test_min_balance_to_the_paisa(shop: Shop, balance: str, queued: int) -> None:
    write_campaign(shop, {**AFTER, "min_balance": 100})
    person(shop, "ana")
    grant(shop, "ana", "150.00", NOW - 45 * D)
    spend(shop, "ana", str(Decimal("150.00") - Decimal(balance)), NOW - 30 * D)
    assert passes(shop, [NOW]) == [queued]


def test_history_is_not_news_when_first_enabled(shop: Shop) -> None:
    """Like every trigger, it looks back `expires_after` (3 days) for what fell due."""
    write_campaign(shop, AFTER)
    for name, age in (("old", 34 * D), ("edge", 33 * D), ("fresh", 32 * D)):
        person(shop, name)
        grant(shop, name, "10.00", NOW - age)
    assert passes(shop, [NOW, NOW + D]) == [1, 0]
    assert [shop.owner(m) for m in sent(shop)] == ["fresh"]


def test_consent_and_suppression_as_for_every_marketing_email(shop: Shop) -> None:
    write_campaign(shop, AFTER)
    for name in ("ok", "quiet", "bounced"):
        person(shop, name)
        grant(shop, name, "75.25", NOW - 30 * D)
    shop.customer("quiet", consent=False)
    with session_scope(shop.engine) as s:
        s.add(Suppression(email="bounced@example.com", reason="bounce", created_at=NOW - D))
    result = shop.plan(NOW)[NAME]
    assert (result["queued"], result["skipped_consent"], result["skipped_suppressed"]) == (1, 1, 1)
    assert [shop.owner(m) for m in sent(shop)] == ["ok"]


# ---------------------------------------------------------------- expiring_within

EXPIRES = NOW + 14 * D


def test_credit_about_to_expire_reminds_once_and_never_after_it_expired(shop: Shop) -> None:
    write_campaign(shop, EXPIRING)
    person(shop, "ana")
    grant(shop, "ana", "500.00", NOW - 60 * D)  # never expires: not what it is about
    first = grant(shop, "ana", "40.00", NOW - 20 * D, EXPIRES)
    grant(shop, "ana", "2.50", NOW - 19 * D, EXPIRES)  # expires at the same moment
    assert passes(shop, [NOW - H, NOW, NOW + H, *days(NOW + D, 15)]) == [0, 1] + [0] * 16
    [reminder] = sent(shop)
    assert reminder.occurrence == f"credit-{first}"
    assert reminder.expires_at == NOW + 3 * D


def test_spending_the_first_does_not_remind_of_the_next_expiring_then(shop: Shop) -> None:
    write_campaign(shop, EXPIRING)
    person(shop, "ana")
    grant(shop, "ana", "40.00", NOW - 20 * D, EXPIRES)
    grant(shop, "ana", "2.50", NOW - 19 * D, EXPIRES)
    assert passes(shop, [NOW]) == [1]
    spend(shop, "ana", "40.00", NOW + H)  # the one it was about
    assert passes(shop, [NOW + 2 * H, *days(NOW + D, 5)]) == [0] * 6


def test_a_credit_expiring_unspent_brings_the_next_one_forward(shop: Shop) -> None:
    """The first expires in 5 days, the next in 14: the next is not reminded of while
    the first has something left, and is the moment the first expires unspent."""
    no_cap(shop)
    write_campaign(shop, EXPIRING)
    person(shop, "ana")
    soon = grant(shop, "ana", "10.00", NOW - 20 * D, NOW + 5 * D)
    later = grant(shop, "ana", "20.00", NOW - 19 * D, EXPIRES)
    assert passes(shop, days(NOW - 10 * D, 15)) == [0, 1] + [0] * 13
    assert passes(shop, [NOW + 5 * D - M, NOW + 5 * D, NOW + 6 * D]) == [0, 1, 0]
    assert occurrences(shop) == [f"credit-{soon}", f"credit-{later}"]
    assert sent(shop)[1].send_after == NOW + 5 * D


def test_with_both_one_credit_reminds_once(shop: Shop) -> None:
    no_cap(shop)
    write_campaign(shop, {**AFTER, "expiring_within": "14d"})
    person(shop, "ana")
    only = grant(shop, "ana", "33.33", NOW - 30 * D, NOW + 20 * D)
    assert passes(shop, [NOW, NOW + 6 * D, NOW + 7 * D, NOW + 19 * D]) == [1, 0, 0, 0]
    assert occurrences(shop) == [f"credit-{only}"]


# ---------------------------------------------------------------- a flow of two


def test_a_second_nudge_goes_only_while_the_credit_is_unspent(shop: Shop) -> None:
    no_cap(shop)
    steps = [
        {"id": "nudge", "template": "welcome", "subject": "You have credit"},
        {"id": "again", "after": "7d", "template": "welcome", "subject": "Still there"},
    ]
    write_campaign(shop, AFTER, steps=steps)
    for name in ("ana", "bob"):
        person(shop, name)
        grant(shop, name, "90.00", NOW - 30 * D)
    assert passes(shop, [NOW]) == [2]
    spend(shop, "bob", "90.00", NOW + 2 * D)
    assert passes(shop, [NOW + 7 * D, NOW + 8 * D]) == [1, 0]
    assert [(shop.owner(m), m.step) for m in sent(shop)] == [
        ("ana", "nudge"),
        ("bob", "nudge"),
        ("ana", "again"),
    ]


# ---------------------------------------------------------------- the file


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        pytest.param(
            "{type: credit_unused}",
            "campaigns/trig.yaml:2: trigger.credit_unused: credit_unused needs after (how long the credit"
            " sat unspent, like 30d) or expiring_within (how soon a credit expires, like 14d),"
            " or both",
            id="neither",
        ),
        pytest.param(
            "{type: credit_unused, after: 12h}",
            'campaigns/trig.yaml:2: trigger.after: expected a duration from 1d to 365d, got "12h"',
            id="after-too-short",
        ),
        pytest.param(
            "{type: credit_unused, expiring_within: soon}",
            "campaigns/trig.yaml:2: trigger.expiring_within: expected a duration like 2h or 3d,"
            ' got "soon"',
            id="expiring-not-a-duration",
        ),
        pytest.param(
            "{type: credit_unused, after: 30d, min_balance: 0}",
            "campaigns/trig.yaml:2: trigger.min_balance: expected an amount of at least 0.01,"
            " got 0",
            id="min-balance-zero",
        ),
        pytest.param(
            "{type: credit_unused, after: 30d, min_balance: 10.005}",
            "campaigns/trig.yaml:2: trigger.min_balance: expected an amount with at most two"
            " decimals, got 10.005",
            id="min-balance-three-decimals",
        ),
        pytest.param(
            "{type: credit_unused, after: 30d, expires_after: 0s}",
            "campaigns/trig.yaml:2: trigger.expires_after: expected a duration from 1m to 365d,"
            ' got "0s"',
            id="no-expiry",
        ),
        pytest.param(
            "{type: credit_unused, after: 30d, within: 14d}",
            "campaigns/trig.yaml:2: trigger.within: unknown key",
            id="unknown-key",
        ),
    ],
)
def test_a_bad_trigger_is_named_with_file_line_and_key(
    project_dir: Path, trigger: str, expected: str
) -> None:
    text = f"name: trig\ntrigger: {trigger}\ntemplate: welcome\nsubject: Hi\n"
    (project_dir / "campaigns" / "trig.yaml").write_text(text)
    _, problems = load_partial(project_dir / "config.yaml")
    found = [str(p) for p in problems if str(p).startswith("campaigns/trig.yaml")]
    assert any(line.startswith(expected) for line in found), found
