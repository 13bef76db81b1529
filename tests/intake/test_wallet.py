"""The store-credit wallet on SQLite and PostgreSQL: first-to-expire allocation, the
balance as credits expire (to the paisa), refusals that write nothing, one redemption
per event id, the `credit.redeemed` event, and two redemptions at once."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.errors import ConfigError
from engine.intake import shop, wallet
from engine.intake.eventapply import apply_events
from engine.intake.events import EventProblem, EventsRejected, parse_events
from engine.intake.wallet import CreditRefused, Entry, Redemption
from engine.project.loader import load_project
from engine.store.db import session_scope
from engine.store.models import Credit, Customer, OrderItem, ReceivedEvent
from tests import store_fixtures
from tests.plan.test_planner import _shop

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
D = timedelta(days=1)
SOON = NOW + 5 * D  # the refund credit's expiry
LATER = NOW + 30 * D  # the reward's expiry


def customer(engine: Engine, name: str = "ana") -> int:
    with session_scope(engine) as session:
        row = shop.upsert_customer(
            session, external_id=name, email=f"{name}@example.com", now=NOW - 400 * D
        )
        assert row.id is not None
        return row.id


def credit(
    engine: Engine,
    customer_id: int,
    amount: str,
    created: datetime,
    expires: datetime | None = None,
    *,
    key: str | None = None,
    reason: str = "price drop before delivery",
    **extra: Any,
) -> int:
    with session_scope(engine) as session:
        row = Credit(
            dedupe_key=key or f"test:{customer_id}:{amount}:{created.isoformat()}",
            customer_id=customer_id,
            amount=Decimal(amount),
            reason=reason,
            created_at=created,
            expires_at=expires,
            **extra,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


@pytest.fixture
def ana(fresh_store: Engine) -> dict[str, int]:
    """ana has 150.25: 100.00 without expiry (the oldest), 30.25 expiring SOON, 20.00 LATER."""
    ana = customer(fresh_store)
    return {
        "ana": ana,
        "forever": credit(fresh_store, ana, "100.00", NOW - 10 * D),
        "soon": credit(fresh_store, ana, "30.25", NOW - 2 * D, SOON),
        "later": credit(fresh_store, ana, "20.00", NOW - 1 * D, LATER, reason="a reward"),
    }


def redeem(engine: Engine, customer_id: int, amount: Any, event: str, at: datetime = NOW) -> Any:
    with session_scope(engine) as session:
        return wallet.redeem(session, customer_id, amount, f"O-{event}", event, at)


def balance(engine: Engine, customer_id: int, at: datetime) -> Decimal:
    with Session(engine) as session:
        return wallet.balance(session, customer_id, at)


def ledger(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        query = select(Credit).order_by(col(Credit.id))
        return [
            (c.amount, c.source_id, c.expires_at, c.order_ref, c.reason)
            for c in session.execute(query).scalars()
        ]


def test_a_redemption_draws_first_from_the_credit_that_expires_first(
    fresh_store: Engine, ana: dict[str, int]
) -> None:
    done = redeem(fresh_store, ana["ana"], "40.50", "evt-1")
    assert done == Redemption(
        "evt-1",
        Decimal("40.50"),
        ((ana["soon"], Decimal("30.25")), (ana["later"], Decimal("10.25"))),
        Decimal("109.75"),
        duplicate=False,
    )
    assert ledger(fresh_store)[3:] == [
        (Decimal("-30.25"), ana["soon"], SOON, "O-evt-1", "redeemed for order O-evt-1"),
        (Decimal("-10.25"), ana["later"], LATER, "O-evt-1", "redeemed for order O-evt-1"),
    ]
    # The credit without an expiry is drawn last.
    done = redeem(fresh_store, ana["ana"], "10.00", "evt-2")
    assert done.drawn == ((ana["later"], Decimal("9.75")), (ana["forever"], Decimal("0.25")))
    assert balance(fresh_store, ana["ana"], NOW) == Decimal("99.75")
    assert balance(fresh_store, ana["ana"], LATER + D) == Decimal("99.75")


def test_the_balance_after_an_expiry_is_exact_to_the_paisa(
    fresh_store: Engine, ana: dict[str, int]
) -> None:
    redeem(fresh_store, ana["ana"], "10.01", "evt-1")  # from the credit expiring SOON
    assert balance(fresh_store, ana["ana"], NOW) == Decimal("140.24")
    assert balance(fresh_store, ana["ana"], SOON - timedelta(seconds=1)) == Decimal("140.24")
    # What was left of it (20.24) is gone at its expiry; the redemption went with it.
    assert balance(fresh_store, ana["ana"], SOON) == Decimal("120.00")
    assert balance(fresh_store, ana["ana"], LATER) == Decimal("100.00")
    # A redemption after the expiry draws from what is left, the expired credit not at all.
    done = redeem(fresh_store, ana["ana"], "20.01", "evt-2", at=SOON + D)
    assert done.drawn == ((ana["later"], Decimal("20.00")), (ana["forever"], Decimal("0.01")))
    assert done.balance == Decimal("99.99")
    assert balance(fresh_store, ana["ana"], LATER) == Decimal("99.99")


def ordered_tea(engine: Engine) -> int:
    """ana's order o1 of one tea, 20 days ago; its order item's id."""
    with session_scope(engine) as session:
        shop.upsert_product(session, sku="TEA-500G", name="Tea", price="420", now=NOW - 30 * D)
        order = shop.record_order(
            session, external_id="o1", customer_id="ana", items=[shop.Line("TEA-500G", 1)],
            placed_at=NOW - 20 * D,
        )  # fmt: skip
        session.flush()
        item = session.execute(select(OrderItem.id).where(OrderItem.order_id == order.id))
        return int(item.scalar_one())


def test_a_credit_taken_back_is_not_drawn_from(fresh_store: Engine) -> None:
    """A cancelled order's refund is reversed by a negative entry of its order item,
    without a source: a redemption draws only from what is really left."""
    ana = customer(fresh_store)
    item_id = ordered_tea(fresh_store)
    taken_back = credit(fresh_store, ana, "50.00", NOW - 3 * D, SOON, order_item_id=item_id)
    kept = credit(fresh_store, ana, "30.00", NOW - 2 * D, LATER)
    credit(fresh_store, ana, "-50.00", NOW - D, key="refund-reversal:1", order_item_id=item_id)
    assert balance(fresh_store, ana, NOW) == Decimal("30.00")
    done = redeem(fresh_store, ana, "30.00", "evt-1")
    assert done.drawn == ((kept, Decimal("30.00")),)
    assert taken_back not in {source for source, _ in done.drawn}
    assert balance(fresh_store, ana, NOW) == Decimal("0.00")
    with Session(fresh_store) as session:
        found, _ = wallet.entries(session, ana)
    assert [(e.amount, e.order_id) for e in found] == [
        (Decimal("-30.00"), "O-evt-1"),
        (Decimal("-50.00"), "o1"),
        (Decimal("30.00"), None),
        (Decimal("50.00"), "o1"),
    ]


def test_what_is_taken_back_expires_with_the_credits_it_falls_on(fresh_store: Engine) -> None:
    """Two refund credits of one order item, 30.00 expiring SOON (10.00 of it redeemed) and
    20.00 expiring LATER; the order is cancelled. What is taken back falls first on what the
    first to expire kept (20.00), then on the other (20.00); the 10.00 already redeemed is a
    debt that never expires. So the balance stays -10.00 as each credit expires: an entry
    taken back without an expiry would outlive its credit (-30.00 after SOON, -50.00 after)."""
    ana = customer(fresh_store)
    item_id = ordered_tea(fresh_store)
    soon = credit(fresh_store, ana, "30.00", NOW - 3 * D, SOON, order_item_id=item_id)
    credit(fresh_store, ana, "20.00", NOW - 2 * D, LATER, order_item_id=item_id)
    assert redeem(fresh_store, ana, "10.00", "evt-1").drawn == ((soon, Decimal("10.00")),)
    for _ in range(2):  # cancelled twice (a repeated webhook): taken back once
        with session_scope(fresh_store) as session:
            shop.cancel_order(session, "o1", now=NOW)
    taken = [(amount, expires) for amount, source, expires, _, reason in ledger(fresh_store)
             if reason == "order cancelled: credit taken back"]  # fmt: skip
    assert sorted(taken, key=str) == [
        (Decimal("-10.00"), None), (Decimal("-20.00"), SOON), (Decimal("-20.00"), LATER)]  # fmt: skip
    for moment in (NOW, SOON - timedelta(seconds=1), SOON, LATER - timedelta(seconds=1), LATER):
        assert balance(fresh_store, ana, moment) == Decimal("-10.00"), moment


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        pytest.param("150.26", "amount 150.26 is more than the credit balance of 150.25", id="one-paisa-over"),
        pytest.param("0", "amount must be more than 0, got: 0", id="zero"),
        pytest.param("-5.00", "amount must be more than 0, got: -5.00", id="negative"),
        pytest.param("10.005", "amount has more than two decimal places, got: 10.005", id="three-decimals"),
        pytest.param("ten", "amount must be an amount like 120.50, got: 'ten'", id="not-a-number"),
        pytest.param(10.5, "amount must be an amount like 120.50, got: 10.5", id="a-float"),
    ],
)  # fmt: skip
def test_a_bad_redemption_is_refused_and_nothing_is_written(
    fresh_store: Engine, ana: dict[str, int], amount: Any, message: str
) -> None:
    before = ledger(fresh_store)
    with pytest.raises(CreditRefused) as refused:
        redeem(fresh_store, ana["ana"], amount, "evt-1")
    assert str(refused.value) == message
    assert ledger(fresh_store) == before
    assert balance(fresh_store, ana["ana"], NOW) == Decimal("150.25")


def test_the_whole_balance_can_be_redeemed(fresh_store: Engine, ana: dict[str, int]) -> None:
    assert redeem(fresh_store, ana["ana"], "150.25", "evt-1").balance == Decimal("0.00")
    with pytest.raises(CreditRefused) as refused:
        redeem(fresh_store, ana["ana"], "0.01", "evt-2")
    assert str(refused.value) == "amount 0.01 is more than the credit balance of 0.00"
    assert refused.value.balance == Decimal("0.00")


def test_a_redemption_is_made_once_per_event_id(fresh_store: Engine, ana: dict[str, int]) -> None:
    first = redeem(fresh_store, ana["ana"], "40.50", "evt-1")
    again = redeem(fresh_store, ana["ana"], "40.50", "evt-1")
    assert again == Redemption("evt-1", Decimal("40.50"), first.drawn, Decimal("109.75"), True)
    assert len(ledger(fresh_store)) == 5
    assert balance(fresh_store, ana["ana"], NOW) == Decimal("109.75")


def test_a_statement_lists_the_entries_newest_first(
    fresh_store: Engine, ana: dict[str, int]
) -> None:
    redeem(fresh_store, ana["ana"], "40.50", "evt-1")
    with Session(fresh_store) as session:
        found, more = wallet.entries(session, ana["ana"], limit=3)
        _, all_shown = wallet.entries(session, ana["ana"], limit=5)
    assert found == [
        Entry(NOW, Decimal("-10.25"), "redeemed for order O-evt-1", LATER, "O-evt-1"),
        Entry(NOW, Decimal("-30.25"), "redeemed for order O-evt-1", SOON, "O-evt-1"),
        Entry(NOW - D, Decimal("20.00"), "a reward", LATER, None),
    ]
    assert (more, all_shown) == (True, False)


# ---------------------------------------------------------------- the event


def events(*items: dict[str, Any]) -> list[Any]:
    return parse_events(json.dumps(list(items)).encode())


REDEEMED = {"id": "evt-9", "type": "credit.redeemed", "customer": "ana", "amount": "40.50",
            "order_id": "O-77"}  # fmt: skip


def test_the_redeemed_event_draws_from_the_wallet_once(
    fresh_store: Engine, ana: dict[str, int]
) -> None:
    applied = apply_events(fresh_store, events(REDEEMED), now=NOW)
    assert [a.status for a in applied] == ["applied"]
    assert ledger(fresh_store)[3:] == [
        (Decimal("-30.25"), ana["soon"], SOON, "O-77", "redeemed for order O-77"),
        (Decimal("-10.25"), ana["later"], LATER, "O-77", "redeemed for order O-77"),
    ]
    again = apply_events(fresh_store, events(REDEEMED), now=NOW + D)
    assert [a.status for a in again] == ["duplicate"]
    assert balance(fresh_store, ana["ana"], NOW) == Decimal("109.75")


def test_an_event_beyond_the_balance_rejects_the_whole_batch(
    fresh_store: Engine, ana: dict[str, int]
) -> None:
    newcomer = {"id": "evt-1", "type": "customer.upserted",
                "customer": {"id": "ben", "email": "ben@example.com"}}  # fmt: skip
    too_much = {**REDEEMED, "id": "evt-10", "amount": 150.26}
    with pytest.raises(EventsRejected) as rejected:
        apply_events(fresh_store, events(newcomer, REDEEMED, too_much), now=NOW)
    assert rejected.value.problems == [
        EventProblem(2, "amount", "amount 150.26 is more than the credit balance of 109.75")
    ]
    assert len(ledger(fresh_store)) == 3
    with Session(fresh_store) as session:
        assert session.execute(select(Customer.external_id)).scalars().all() == ["ana"]
        assert session.execute(select(ReceivedEvent.id)).scalars().all() == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"customer": "zed"}, EventProblem(0, "customer", "unknown customer 'zed': send a customer.upserted event for it first (earlier in the same batch is enough)"), id="unknown-customer"),
        pytest.param({"amount": "0.00"}, EventProblem(0, "amount", "amount must be more than 0, got: 0.00"), id="zero"),
    ],
)  # fmt: skip
def test_a_bad_redeemed_event_names_its_field(
    fresh_store: Engine, ana: dict[str, int], change: dict[str, Any], problem: EventProblem
) -> None:
    with pytest.raises(EventsRejected) as rejected:
        apply_events(fresh_store, events({**REDEEMED, **change}), now=NOW)
    assert rejected.value.problems == [problem]
    assert len(ledger(fresh_store)) == 3


# ---------------------------------------------------------------- two at once


def test_two_redemptions_at_once_never_overdraw(fresh_store: Engine, ana: dict[str, int]) -> None:
    """The first holds its transaction open; the second waits for it, then sees its
    entries and is refused (on PostgreSQL: the customer's row lock; SQLite: the write lock)."""
    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            outcome["done"] = redeem(fresh_store, ana["ana"], "100.00", "evt-2")
        except CreditRefused as exc:
            outcome["refused"] = str(exc)
        outcome["at"] = time.monotonic()

    with session_scope(fresh_store) as session:
        wallet.redeem(session, ana["ana"], "100.00", "O-1", "evt-1", NOW)
        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.5)
        assert "at" not in outcome, "the second redemption did not wait for the first"
        committed = time.monotonic()
    racer.join(15)
    assert outcome == {
        "refused": "amount 100.00 is more than the credit balance of 50.25",
        "at": outcome["at"],
    }
    assert outcome["at"] >= committed
    assert balance(fresh_store, ana["ana"], NOW) == Decimal("50.25")


# ---------------------------------------------------------------- refund credits expire


def test_refund_credits_expire_after_the_configured_time(
    fresh_store: Engine, project_dir: Path
) -> None:
    refunds = _shop(fresh_store, project_dir)
    refunds.enable("price_drop_refund")
    refunds.edit(
        "config.yaml", lambda c: c.setdefault("refunds", {}).update(credit_expires_after="365d")
    )
    refunds.customer("ana")
    refunds.order("o1", "ana", NOW - 10 * D, quantity=2)
    refunds.price("JUTE-BAG-01", "336", NOW - 9 * D)
    refunds.plan(NOW - 9 * D + timedelta(hours=1))
    [refund] = refunds.credits()
    assert (refund.amount, refund.expires_at) == (
        Decimal("28.00"),
        NOW - 9 * D + timedelta(hours=1) + 365 * D,
    )
    with Session(fresh_store) as session:
        assert wallet.balance(session, refund.customer_id, refund.expires_at) == Decimal("0.00")


def test_a_credit_expiry_out_of_range_names_the_key(project_dir: Path) -> None:
    path = project_dir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["refunds"]["credit_expires_after"] = "12h"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.key, problem.message) == (
        "config.yaml",
        "refunds.credit_expires_after",
        'expected a duration from 1d to 3650d, got "12h"',
    )
