"""Coupon redemption at the order intake (`order.placed`, the orders CSV) and directly,
on SQLite and PostgreSQL, with two orders racing for one code."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake.coupons import Outcome, Presentation, Redemption, redeem_coupon
from engine.intake.eventapply import apply_events
from engine.intake.events import parse_events
from engine.intake.importer import ImportRejected, import_csv
from engine.intake.shop import upsert_customer, upsert_product
from engine.store.db import session_scope
from engine.store.models import Coupon, CouponUse, Customer, Order
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

PLACED = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.fixture
def shop(fresh_store: Engine, now: datetime) -> Engine:
    """Two customers and a tea at 320.00."""
    with session_scope(fresh_store) as session:
        for ref, email in (("C-1", "rahim@example.com"), ("C-2", "karim@example.com")):
            upsert_customer(session, external_id=ref, email=email, now=now - timedelta(days=30))
        upsert_product(session, sku="TEA-500G", name="Tea", price="320.00", now=now)
    return fresh_store


def add_coupon(
    engine: Engine,
    code: str = "SAVE-7KQ2",
    *,
    customer: str | None = "C-1",
    percent_off: str | None = "10.00",
    amount_off: str | None = None,
    min_order: str | None = None,
    expires_at: datetime | None = PLACED + timedelta(days=7),
) -> None:
    """A coupon as the planner makes them (one per email)."""
    with session_scope(engine) as session:
        owner = None
        if customer is not None:
            query = select(Customer.id).where(Customer.external_id == customer)
            owner = session.execute(query).scalar_one()
        session.add(
            Coupon(
                code=code,
                customer_id=owner,
                campaign="welcome",
                percent_off=None if percent_off is None else Decimal(percent_off),
                amount_off=None if amount_off is None else Decimal(amount_off),
                min_order=None if min_order is None else Decimal(min_order),
                created_at=PLACED - timedelta(days=1),
                expires_at=expires_at,
            )
        )


def place_order(
    engine: Engine,
    order_id: str,
    code: str | None,
    *,
    customer: str = "C-1",
    quantity: int = 2,
    placed_at: datetime = PLACED,
    event_id: str | None = None,
) -> None:
    """An `order.placed` event through the events API's own parse and apply."""
    order: dict[str, Any] = {
        "id": order_id,
        "customer_id": customer,
        "placed_at": placed_at.isoformat(),
        "items": [{"sku": "TEA-500G", "quantity": quantity}],
    }
    if code is not None:
        order["coupon_code"] = code
    event = {"id": event_id or f"evt-{order_id}", "type": "order.placed", "order": order}
    events = parse_events(json.dumps(event).encode())
    apply_events(engine, events, now=placed_at + timedelta(minutes=1))


def coupon(engine: Engine, code: str = "SAVE-7KQ2") -> Coupon:
    with Session(engine) as session:
        return session.execute(select(Coupon).where(Coupon.code == code)).scalar_one()


def uses(engine: Engine) -> list[tuple[str, str, bool, str, str]]:
    with Session(engine) as session:
        query = select(CouponUse).order_by(CouponUse.id)
        return [
            (u.code, u.order_ref, u.redeemed, u.reason, u.source)
            for u in session.execute(query).scalars()
        ]


def orders(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.execute(select(Order.external_id).order_by(Order.id)).scalars())


def redeem(engine: Engine, order_ref: str, code: str = "SAVE-7KQ2", **given: Any) -> Redemption:
    with session_scope(engine) as session:
        presentation = Presentation(code, order_ref, given.pop("at", PLACED), **given)
        return redeem_coupon(session, presentation)


# ------------------------------------------------------------- the order intake


def test_an_order_with_the_code_redeems_the_coupon(shop: Engine) -> None:
    add_coupon(shop)
    place_order(shop, "O-1", "SAVE-7KQ2")
    used = coupon(shop)
    assert (used.used_at, used.used_order) == (PLACED, "O-1")
    assert uses(shop) == [("SAVE-7KQ2", "O-1", True, "", "events api")]


def test_the_code_is_read_without_spaces_around_it_and_in_any_case(shop: Engine) -> None:
    add_coupon(shop)
    place_order(shop, "O-1", "  save-7kq2 ")
    assert coupon(shop).used_order == "O-1"
    assert uses(shop) == [("SAVE-7KQ2", "O-1", True, "", "events api")]


def test_the_same_order_again_changes_nothing(shop: Engine) -> None:
    add_coupon(shop)
    place_order(shop, "O-1", "SAVE-7KQ2")
    place_order(shop, "O-1", "SAVE-7KQ2", event_id="evt-O-1-again")  # resent under a new id
    again = redeem(shop, "O-1", at=PLACED + timedelta(days=30))  # even after it expired
    assert (again.outcome, again.repeat, again.reason) == (Outcome.REDEEMED, True, "")
    assert coupon(shop).used_at == PLACED
    assert uses(shop) == [("SAVE-7KQ2", "O-1", True, "", "events api")]


def test_a_second_order_is_accepted_and_its_code_refused_as_used(shop: Engine) -> None:
    add_coupon(shop)
    place_order(shop, "O-1", "SAVE-7KQ2")
    place_order(shop, "O-2", "SAVE-7KQ2", placed_at=PLACED + timedelta(hours=1))
    assert orders(shop) == ["O-1", "O-2"]
    assert coupon(shop).used_order == "O-1"
    assert uses(shop)[1] == (
        "SAVE-7KQ2",
        "O-2",
        False,
        "used: already used by order O-1",
        "events api",
    )


def test_an_unknown_code_is_recorded_with_the_reason_and_the_order_kept(shop: Engine) -> None:
    place_order(shop, "O-1", "NOPE-1234")
    assert orders(shop) == ["O-1"]
    assert uses(shop) == [
        ("NOPE-1234", "O-1", False, "unknown: no coupon has the code NOPE-1234", "events api")
    ]
    with Session(shop) as session:
        assert session.execute(select(CouponUse.coupon_id)).scalar_one() is None


@pytest.mark.parametrize(
    ("expires_after", "redeemed"),
    [
        pytest.param(timedelta(seconds=-1), False, id="a-second-before"),
        pytest.param(timedelta(0), False, id="at-the-moment"),
        pytest.param(timedelta(seconds=1), True, id="a-second-after"),
    ],
)
def test_a_coupon_expires_at_its_time_judged_at_the_orders_placing(
    shop: Engine, expires_after: timedelta, redeemed: bool
) -> None:
    add_coupon(shop, expires_at=PLACED + expires_after)
    place_order(shop, "O-1", "SAVE-7KQ2")  # recorded a minute after it was placed
    [(_, _, was_redeemed, reason, _)] = uses(shop)
    assert was_redeemed is redeemed
    expected = (
        "" if redeemed else f"expired: expired at {(PLACED + expires_after):%Y-%m-%dT%H:%M:%S}Z"
    )
    assert reason == expected
    assert (coupon(shop).used_order is not None) is redeemed


@pytest.mark.parametrize(
    ("quantity", "redeemed"),
    [pytest.param(2, False, id="640-below-700"), pytest.param(3, True, id="960-above-700")],
)
def test_the_order_total_as_stored_must_reach_the_minimum(
    shop: Engine, quantity: int, redeemed: bool
) -> None:
    add_coupon(shop, min_order="700.00")
    place_order(shop, "O-1", "SAVE-7KQ2", quantity=quantity)
    [(_, _, was_redeemed, reason, _)] = uses(shop)
    assert was_redeemed is redeemed
    if not redeemed:
        assert reason == (
            "below_minimum: the order's total 640.00 is below the coupon's minimum order of 700.00"
        )


def test_a_total_equal_to_the_minimum_is_enough(shop: Engine) -> None:
    add_coupon(shop, min_order="640.00")
    place_order(shop, "O-1", "SAVE-7KQ2", quantity=2)
    assert coupon(shop).used_order == "O-1"


def test_a_coupon_made_for_another_customer_is_refused(shop: Engine) -> None:
    add_coupon(shop, customer="C-2")
    place_order(shop, "O-1", "SAVE-7KQ2", customer="C-1")
    assert coupon(shop).used_at is None
    assert uses(shop) == [
        (
            "SAVE-7KQ2",
            "O-1",
            False,
            "other_customer: made for another customer than C-1",
            "events api",
        )
    ]


def test_a_coupon_made_for_no_one_in_particular_serves_any_customer(shop: Engine) -> None:
    add_coupon(shop, customer=None)
    place_order(shop, "O-1", "SAVE-7KQ2", customer="C-2")
    assert coupon(shop).used_order == "O-1"


def test_a_first_refusal_is_not_a_repeat(shop: Engine) -> None:
    """The refusal's row is new: on PostgreSQL the driver's count of an ON CONFLICT
    insert must be kept for the answer to say so."""
    add_coupon(shop, min_order="700.00")
    first = redeem(shop, "O-9", total=Decimal("100.00"))
    assert (first.outcome, first.repeat) == (Outcome.BELOW_MINIMUM, False)
    again = redeem(shop, "O-9", total=Decimal("100.00"))
    assert (again.outcome, again.repeat) == (Outcome.BELOW_MINIMUM, True)
    assert len(uses(shop)) == 1


def test_a_refused_presentation_again_answers_the_same_and_writes_nothing(
    shop: Engine,
) -> None:
    add_coupon(shop, min_order="700.00")
    place_order(shop, "O-1", "SAVE-7KQ2")
    again = redeem(shop, "O-1", total=Decimal("900.00"))  # the order's stored total decides
    assert (again.outcome, again.repeat) == (Outcome.BELOW_MINIMUM, True)
    assert again.reason == "the order's total 640.00 is below the coupon's minimum order of 700.00"
    assert len(uses(shop)) == 1
    assert coupon(shop).used_at is None


def test_an_order_without_a_code_records_no_use(shop: Engine) -> None:
    add_coupon(shop)
    place_order(shop, "O-1", None)
    assert uses(shop) == []
    assert coupon(shop).used_at is None


# ------------------------------------------------------------------ the orders CSV

ORDERS = """\
order_id,customer_id,placed_at,sku,quantity,coupon_code
O-1,C-1,2026-11-21T16:00:00,TEA-500G,1,save-7kq2
O-1,C-1,2026-11-21T16:00:00,TEA-500G,2,SAVE-7KQ2
O-2,C-2,2026-11-21T17:00:00,TEA-500G,1,SAVE-7KQ2
O-3,C-2,2026-11-21T18:00:00,TEA-500G,1,
"""


def test_the_orders_csv_presents_each_orders_code_once(
    shop: Engine, tmp_path: Path, now: datetime
) -> None:
    add_coupon(shop, customer=None, min_order="900.00")
    (tmp_path / "orders.csv").write_text(ORDERS, encoding="utf-8")
    for _ in range(2):  # importing the file again changes nothing
        import_csv(shop, "orders", tmp_path / "orders.csv", now=now, shop_timezone="Asia/Dhaka")
        assert uses(shop) == [
            ("SAVE-7KQ2", "O-1", True, "", "orders csv"),
            ("SAVE-7KQ2", "O-2", False, "used: already used by order O-1", "orders csv"),
        ]
    used = coupon(shop)
    assert (used.used_order, used.used_at) == ("O-1", datetime(2026, 11, 21, 10, 0, tzinfo=UTC))
    assert orders(shop) == ["O-1", "O-2", "O-3"]


def test_lines_of_one_order_with_different_codes_are_a_bad_row(
    shop: Engine, tmp_path: Path, now: datetime
) -> None:
    text = ORDERS.replace("TEA-500G,2,SAVE-7KQ2", "TEA-500G,2,OTHER-CODE")
    (tmp_path / "orders.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ImportRejected) as rejected:
        import_csv(shop, "orders", tmp_path / "orders.csv", now=now, shop_timezone="Asia/Dhaka")
    file = tmp_path / "orders.csv"
    assert [str(bad) for bad in rejected.value.bad] == [
        f"{file}:2: order_id: order O-1 is not imported: its line 3 is bad",
        f'{file}:3: coupon_code: order O-1 has coupon_code "SAVE-7KQ2" on an earlier line, '
        'got "OTHER-CODE"',
    ]
    assert uses(shop) == [] and orders(shop) == []


# ------------------------------------------------------------ two orders, one code


def test_two_orders_racing_for_one_code_leave_exactly_one_winner(shop: Engine) -> None:
    """The second order read the coupon as unused; its UPDATE waits for the first
    order's transaction and, once that commits, changes no row: it is refused."""
    add_coupon(shop)
    first = Session(shop)
    won = redeem_coupon(first, Presentation("SAVE-7KQ2", "O-1", PLACED, source="test"))
    assert won.redeemed  # not committed yet
    answers: list[Redemption] = []
    second = threading.Thread(target=lambda: answers.append(redeem(shop, "O-2")))
    second.start()
    time.sleep(0.5)
    assert second.is_alive(), "the second redemption did not wait for the first"
    first.commit()
    first.close()
    second.join(15)
    [lost] = answers
    assert (lost.outcome, lost.reason) == (Outcome.USED, "already used by order O-1")
    assert coupon(shop).used_order == "O-1"
    assert [(order, redeemed) for _, order, redeemed, _, _ in uses(shop)] == [
        ("O-1", True),
        ("O-2", False),
    ]


def test_eight_orders_at_once_one_redeems(shop: Engine) -> None:
    add_coupon(shop)
    start = threading.Barrier(8)
    answers: dict[str, Outcome] = {}

    def order(number: int) -> None:
        start.wait()
        answers[f"O-{number}"] = redeem(shop, f"O-{number}").outcome

    threads = [threading.Thread(target=order, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [ref for ref, outcome in answers.items() if outcome is Outcome.REDEEMED]
    assert len(answers) == 8 and len(winners) == 1
    assert sorted(set(answers.values())) == [Outcome.REDEEMED, Outcome.USED]
    assert coupon(shop).used_order == winners[0]
    with Session(shop) as session:
        redeemed = select(func.count()).select_from(CouponUse).where(col(CouponUse.redeemed))
        assert session.execute(redeemed).scalar_one() == 1
        assert session.execute(select(func.count()).select_from(CouponUse)).scalar_one() == 8


def test_the_same_order_twice_at_once_redeems_once(shop: Engine) -> None:
    add_coupon(shop)
    start = threading.Barrier(2)
    answers: list[Redemption] = []

    def order() -> None:
        start.wait()
        answers.append(redeem(shop, "O-1"))

    threads = [threading.Thread(target=order) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [a.outcome for a in answers] == [Outcome.REDEEMED, Outcome.REDEEMED]
    assert sorted(a.repeat for a in answers) == [False, True]
    assert uses(shop) == [("SAVE-7KQ2", "O-1", True, "", "")]


# ------------------------------------------------- an order that never became a purchase


def order_event(engine: Engine, event: dict[str, Any], at: datetime = PLACED) -> None:
    events = parse_events(json.dumps({"id": f"evt-{event['type']}-{at}", **event}).encode())
    apply_events(engine, events, now=at + timedelta(hours=1))


def test_a_cancelled_order_gives_its_coupon_back(shop: Engine) -> None:
    add_coupon(shop)
    place_order(shop, "O-1", "SAVE-7KQ2")
    assert coupon(shop).used_order == "O-1"
    order_event(shop, {"type": "order.cancelled", "order_id": "O-1"})
    given_back = coupon(shop)
    assert (given_back.used_at, given_back.used_order) == (None, None)
    assert uses(shop) == [("SAVE-7KQ2", "O-1", False, "released: order O-1 was cancelled",
                           "events api")]  # fmt: skip
    # The same order presenting it again is told so; another order can redeem it.
    again = redeem(shop, "O-1")
    assert (again.outcome, again.reason, again.repeat) == (
        Outcome.RELEASED, "order O-1 was cancelled", True)  # fmt: skip
    assert redeem(shop, "O-2", total=Decimal("640.00")).outcome is Outcome.REDEEMED
    assert coupon(shop).used_order == "O-2"
    # Cancelling O-1 again (a repeated webhook) takes nothing from O-2.
    order_event(shop, {"type": "order.cancelled", "order_id": "O-1"}, PLACED + timedelta(days=1))
    assert coupon(shop).used_order == "O-2"


def test_a_parcel_refused_at_the_door_gives_it_back_and_a_returned_one_does_not(
    shop: Engine,
) -> None:
    add_coupon(shop)
    add_coupon(shop, "KEEP-7KQ2")
    place_order(shop, "O-1", "SAVE-7KQ2")
    place_order(shop, "O-2", "KEEP-7KQ2")
    order_event(shop, {"type": "order.returned", "order_id": "O-1", "refused": True})
    order_event(shop, {"type": "order.delivered", "order_id": "O-2",
                       "delivered_at": (PLACED + timedelta(days=1)).isoformat()})  # fmt: skip
    order_event(shop, {"type": "order.returned", "order_id": "O-2"}, PLACED + timedelta(days=3))
    assert coupon(shop).used_order is None
    assert coupon(shop, "KEEP-7KQ2").used_order == "O-2"
    assert [(u[1], u[2], u[3]) for u in uses(shop)] == [
        ("O-1", False, "released: order O-1 was refused at the door"),
        ("O-2", True, ""),
    ]


def test_an_order_recorded_already_cancelled_does_not_use_its_coupon(shop: Engine) -> None:
    add_coupon(shop)
    order = {"id": "O-1", "customer_id": "C-1", "placed_at": PLACED.isoformat(),
             "items": [{"sku": "TEA-500G", "quantity": 2}], "coupon_code": "SAVE-7KQ2",
             "cancelled": True}  # fmt: skip
    order_event(shop, {"type": "order.placed", "order": order})
    assert coupon(shop).used_order is None
    assert uses(shop) == [("SAVE-7KQ2", "O-1", False, "released: order O-1 was cancelled",
                           "events api")]  # fmt: skip


def test_the_orders_csv_ending_an_order_gives_its_coupon_back(
    shop: Engine, tmp_path: Path, now: datetime
) -> None:
    add_coupon(shop)
    place_order(shop, "O-1", "SAVE-7KQ2")
    rows = ("order_id,customer_id,placed_at,sku,quantity,status\n"
            "O-1,C-1,2026-11-21T16:00:00,TEA-500G,2,refused\n")  # fmt: skip
    (tmp_path / "orders.csv").write_text(rows, encoding="utf-8")
    import_csv(shop, "orders", tmp_path / "orders.csv", now=now, shop_timezone="Asia/Dhaka")
    assert coupon(shop).used_order is None
    assert uses(shop)[0][2:4] == (False, "released: order O-1 was refused at the door")
