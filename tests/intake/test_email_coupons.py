"""The coupons of emails: derived from their messages, found, redeemed once, listed and counted.

On SQLite and PostgreSQL, with messages and their pass's `coupon_issue` row as the
planner writes them: the code is found back from the message, a forged or
mistyped one is unknown, an order redeems it once (the coupon is stored then,
used), the export lists it until then, and the rewards report counts it.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.intake.couponcodes import ALPHABET, code_key
from engine.intake.couponissue import message_coupons
from engine.intake.coupons import (
    Outcome,
    Presentation,
    active_coupons,
    find_coupon,
    redeem_coupon,
)
from engine.intake.eventapply import apply_events
from engine.intake.events import parse_events
from engine.project.loader import load_project
from engine.report.rewards import coupons as coupon_report
from engine.store.db import session_scope
from engine.store.models import Coupon, CouponIssue, CouponUse, Customer, Message
from tests import store_fixtures
from tests.intake.test_coupon_redemption import PLACED
from tests.intake.test_coupon_redemption import shop as shop  # Rahim, Karim and a tea

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

MINTED = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


def issue(
    engine: Engine,
    *,
    customers: tuple[str, ...] = ("C-1",),
    campaign: str = "welcome_series",
    minted: datetime = MINTED,
    send_after: datetime = MINTED,
    issued: bool = True,
    **values: Any,
) -> list[str]:
    """One pass's messages to these customers and (unless not `issued`) its coupon_issue row;
    the code of each, in the order given."""
    spec: dict[str, Any] = {"prefix": "EID", "percent_off": Decimal("10.00"),
                            "expires_after": 7 * 86400, **values}  # fmt: skip
    with session_scope(engine) as session:
        ids = []
        for ref in customers:
            owner = session.execute(select(Customer.id).where(Customer.external_id == ref))
            message = Message(
                dedupe_key=f"{campaign}:{ref}:{minted.isoformat()}",
                campaign=campaign,
                customer_id=owner.scalar_one(),
                occurrence="first",
                created_at=minted,
                send_after=send_after,
            )
            session.add(message)
            session.flush()
            ids.append(message.id)
        if issued:
            session.add(CouponIssue(campaign=campaign, created_at=minted, minted_at=minted, **spec))
        key = code_key(session, minted)
        assert key is not None
        return [key.code(i, spec["prefix"]) for i in ids if i is not None]


def redeem(engine: Engine, code: str, order: str, total: str = "640.00") -> Outcome:
    with session_scope(engine) as session:
        given = Presentation(code, order, PLACED, Decimal(total), "C-1", "test")
        return redeem_coupon(session, given).outcome


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        query = select(Coupon.code, Coupon.message_id, Coupon.used_order, Coupon.expires_at)
        return [tuple(row) for row in session.execute(query)]


# ---------------------------------------------------------------- finding a code


def test_an_emails_code_is_found_with_its_issues_values(shop: Engine) -> None:
    [code] = issue(shop, send_after=MINTED + timedelta(hours=5), min_order=Decimal("500.00"))
    with Session(shop) as session:
        found = find_coupon(session, f"  {code.lower()} ")
    assert found is not None and found.code == code and found.id is None
    assert (found.percent_off, found.amount_off, found.min_order) == (
        Decimal("10.00"), None, Decimal("500.00"))  # fmt: skip
    # seven days from when the email was to go, not from when it was queued
    assert found.expires_at == MINTED + timedelta(hours=5, days=7)
    assert (found.customer_ref, found.customer_email) == ("C-1", "rahim@example.com")
    assert found.refusal(PLACED) is None


def test_codes_differ_per_message_and_per_database(shop: Engine, tmp_path: Any) -> None:
    codes = issue(shop, customers=("C-1", "C-2"))
    assert len(set(codes)) == 2
    with Session(shop) as session:
        key = code_key(session)
    assert key is not None
    # A database with another key gives message 1 another code.
    other = code_key_of_a_new_database(tmp_path)
    assert other.code(1, "EID") != key.code(1, "EID")


def code_key_of_a_new_database(tmp_path: Any) -> Any:
    from engine.store.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(engine)
    with session_scope(engine) as session:
        key = code_key(session, MINTED)
    engine.dispose()
    return key


def test_a_forged_or_mistyped_code_is_unknown(shop: Engine) -> None:
    [code] = issue(shop)
    body = code.removeprefix("EID-")
    last = body[-1]
    typo = body[:-1] + ALPHABET[(ALPHABET.index(last) + 1) % len(ALPHABET)]
    with Session(shop) as session:
        for wrong in (f"EID-{typo}", f"WELCOME-{body}", body, "EID-2222-2222-2222", "EID-12"):
            assert find_coupon(session, wrong) is None, wrong
        assert find_coupon(session, code) is not None


def test_a_message_without_its_issue_has_no_coupon(shop: Engine) -> None:
    [code] = issue(shop, issued=False)
    with Session(shop) as session:
        assert find_coupon(session, code) is None
        assert message_coupons(session, [1]) == {}


def test_a_message_with_a_stored_coupon_keeps_it_and_has_no_other(shop: Engine) -> None:
    """A coupon minted as a row of its own (before codes were derived) stays the message's."""
    [code] = issue(shop)
    with session_scope(shop) as session:
        session.add(Coupon(code="EID-OLD2-ROW3-CODE", customer_id=1, message_id=1,
                           campaign="welcome_series", percent_off=Decimal("5.00"),
                           created_at=MINTED - timedelta(days=1)))  # fmt: skip
    with Session(shop) as session:
        assert find_coupon(session, code) is None
        assert message_coupons(session, [1])[1].code == "EID-OLD2-ROW3-CODE"
        assert [c.code for c in active_coupons(session, PLACED)] == ["EID-OLD2-ROW3-CODE"]


# ---------------------------------------------------------------- redeeming


def test_an_order_redeems_an_emails_code_once_and_stores_it_used(shop: Engine) -> None:
    [code] = issue(shop)
    assert redeem(shop, code, "O-1") is Outcome.REDEEMED
    assert stored(shop) == [(code, 1, "O-1", MINTED + timedelta(days=7))]
    assert redeem(shop, code, "O-1") is Outcome.REDEEMED  # the same order again: nothing new
    assert redeem(shop, code, "O-2") is Outcome.USED
    with Session(shop) as session:
        found = find_coupon(session, code)
        assert found is not None and (found.used_order, found.used_at) == ("O-1", PLACED)
        assert message_coupons(session, [1])[1].code == code  # the email shows the same code
        uses = session.execute(select(CouponUse.order_ref, CouponUse.redeemed, CouponUse.coupon_id))
        assert sorted(tuple(u) for u in uses) == [("O-1", True, 1), ("O-2", False, 1)]


def test_an_order_event_with_an_emails_code_redeems_it(shop: Engine) -> None:
    [code] = issue(shop)
    order = {"id": "O-5", "customer_id": "C-1", "placed_at": PLACED.isoformat(),
             "items": [{"sku": "TEA-500G", "quantity": 2}], "coupon_code": code}  # fmt: skip
    event = {"id": "evt-5", "type": "order.placed", "order": order}
    apply_events(shop, parse_events(json.dumps(event).encode()), now=PLACED)
    assert [row[:3] for row in stored(shop)] == [(code, 1, "O-5")]


def test_an_expired_or_foreign_emails_code_is_refused_and_stays_unstored(shop: Engine) -> None:
    [old] = issue(shop, minted=MINTED - timedelta(days=30), send_after=MINTED - timedelta(days=30))
    [karims] = issue(shop, customers=("C-2",))
    assert redeem(shop, old, "O-1") is Outcome.EXPIRED
    assert redeem(shop, karims, "O-2") is Outcome.OTHER_CUSTOMER
    assert stored(shop) == []


def test_orders_racing_for_an_emails_code_leave_one_winner(shop: Engine) -> None:
    [code] = issue(shop)
    start = threading.Barrier(6)
    answers: dict[str, Outcome] = {}

    def order(number: int) -> None:
        start.wait()
        answers[f"O-{number}"] = redeem(shop, code, f"O-{number}")

    threads = [threading.Thread(target=order, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [ref for ref, outcome in answers.items() if outcome is Outcome.REDEEMED]
    assert len(answers) == 6 and len(winners) == 1
    assert set(answers.values()) == {Outcome.REDEEMED, Outcome.USED}
    assert [row[2] for row in stored(shop)] == winners


# ---------------------------------------------------------------- listing and counting


def test_the_export_lists_emails_codes_until_redeemed_or_expired(shop: Engine) -> None:
    rahims, karims = issue(shop, customers=("C-1", "C-2"))
    [old] = issue(shop, minted=MINTED - timedelta(days=30), send_after=MINTED - timedelta(days=30))
    with Session(shop) as session:
        listed = [(c.code, c.customer_email) for c in active_coupons(session, PLACED)]
    assert listed == [(rahims, "rahim@example.com"), (karims, "karim@example.com")]
    assert old not in dict(listed)
    redeem(shop, rahims, "O-1")
    with Session(shop) as session:
        assert [c.code for c in active_coupons(session, PLACED)] == [karims]


def test_the_report_counts_emails_coupons_issued_redeemed_and_expired(
    shop: Engine, project_dir: Any
) -> None:
    project = load_project(project_dir / "config.yaml")
    rahims, _ = issue(shop, customers=("C-1", "C-2"))  # minted 20 Nov, 7 days
    issue(shop, customers=("C-1", "C-2"), minted=MINTED + timedelta(hours=1),
          send_after=MINTED + timedelta(days=1), expires_after=2 * 86400)  # fmt: skip
    redeem(shop, rahims, "O-1")
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    with Session(shop) as session:
        # 24 Nov: the 2-day coupons (gone 23 Nov 04:00) are expired, the 7-day ones are not
        late = coupon_report(session, project, start, end, MINTED + timedelta(days=4))
        early = coupon_report(session, project, start, end, MINTED + timedelta(days=1))
        after = coupon_report(session, project, MINTED + timedelta(hours=2), end, PLACED)
    row = late["campaigns"]["welcome_series"]
    assert (row["issued"], row["redeemed"], row["expired"]) == (4, 1, 2)
    assert (early["total"]["issued"], early["total"]["expired"]) == (4, 0)
    assert after["total"]["issued"] == 0
    with Session(shop) as session:
        assert session.execute(select(func.count()).select_from(Coupon)).scalar_one() == 1


def test_a_code_without_a_prefix_is_found_and_only_without_one(shop: Engine) -> None:
    [code] = issue(shop, prefix="")
    assert code.count("-") == 2
    with Session(shop) as session:
        found = find_coupon(session, code)
        assert found is not None and found.code == code
        assert find_coupon(session, f"EID-{code}") is None
