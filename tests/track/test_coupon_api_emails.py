"""The checkout's coupon API, over real HTTP, for the coupon an email carries: derived from
its message, described, redeemed once (then stored, used), and a forged one unknown."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine

from engine.intake.couponcodes import ALPHABET, code_key
from engine.store.db import session_scope
from engine.store.models import CouponIssue, Message
from tests.track.test_coupon_api import NOW, RAHIM, stored
from tests.track.test_coupon_api import api as api  # the fixtures
from tests.track.test_coupon_api import fresh_store as fresh_store
from tests.track.test_coupon_api import migrated_store as migrated_store
from tests.track.test_coupon_api import shop as shop

QUEUED = NOW - timedelta(days=2)


def emails_coupon(engine: Engine, **values: Any) -> str:
    """A holiday email queued two days ago for Rahim, its pass's coupon, and its code."""
    with session_scope(engine) as session:
        message = Message(dedupe_key="eid:1", campaign="holiday_preannounce", customer_id=1,
                          occurrence="eid-2026", created_at=QUEUED, send_after=QUEUED)  # fmt: skip
        session.add(message)
        spec: dict[str, Any] = {"prefix": "EID", "amount_off": Decimal("150.00"),
                                "min_order": Decimal("600.00"), "expires_after": 5 * 86400,
                                **values}  # fmt: skip
        session.add(CouponIssue(campaign="holiday_preannounce", created_at=QUEUED,
                                minted_at=QUEUED, **spec))  # fmt: skip
        session.flush()
        key = code_key(session, NOW)
        assert key is not None and message.id is not None
        return key.code(message.id, spec["prefix"])


def test_an_emails_coupon_is_described_then_redeemed_once(api: httpx.Client, shop: Engine) -> None:
    code = emails_coupon(shop)
    described = {"code": code, "percent_off": None, "amount_off": "150.00",
                 "min_order": "600.00", "expires_at": "2026-11-25T06:00:00Z",
                 "customer": RAHIM}  # fmt: skip
    answer = api.get(f"/api/coupons/{code.lower()}")
    assert (answer.status_code, answer.json()) == (200, {**described, "status": "valid"})
    assert stored(shop)[0] == [
        ("MIN-700", None, None),
        ("OLD-1", None, None),
        ("SAVE-7KQ2", None, None),
        ("USED-1", NOW - timedelta(days=1), "O-7"),
    ]  # fmt: skip  (a GET stores nothing)
    body = {"order_id": "O-9"}  # Rahim's stored order of 640.00 reaches the minimum
    first = api.post(f"/api/coupons/{code}/redeem", json=body)
    expected = {**described, "status": "redeemed", "order_id": "O-9",
                "redeemed_at": "2026-11-22T06:00:00Z"}  # fmt: skip
    assert (first.status_code, first.json()) == (200, expected)
    again = api.post(f"/api/coupons/{code}/redeem", json=body)
    assert (again.status_code, again.json()) == (200, expected)
    assert (code, NOW, "O-9") in stored(shop)[0]
    other = api.post(f"/api/coupons/{code}/redeem", json={"order_id": "O-10", "total": "900"})
    assert (other.status_code, other.json()["status"]) == (409, "used")
    after = api.get(f"/api/coupons/{code}")
    assert (after.status_code, after.json()["used_order"]) == (409, "O-9")


def test_a_forged_emails_code_is_unknown_and_changes_nothing(
    api: httpx.Client, shop: Engine
) -> None:
    code = emails_coupon(shop)
    before = stored(shop)
    last = code[-1]
    typo = code[:-1] + ALPHABET[(ALPHABET.index(last) + 7) % len(ALPHABET)]
    other_prefix = "WELCOME" + code.removeprefix("EID")
    for forged in (typo, other_prefix, "EID-2345-6789-ABCD"):
        got = api.get(f"/api/coupons/{forged}")
        assert (got.status_code, got.json()["status"]) == (404, "unknown"), forged
        tried = api.post(f"/api/coupons/{forged}/redeem", json={"order_id": "O-9"})
        assert (tried.status_code, tried.json()["status"]) == (404, "unknown"), forged
    assert stored(shop) == before


def test_an_expired_emails_coupon_is_gone(api: httpx.Client, shop: Engine) -> None:
    code = emails_coupon(shop, expires_after=86400)  # went on 20 Nov, for a day
    got = api.get(f"/api/coupons/{code}")
    assert (got.status_code, got.json()["status"]) == (410, "expired")
    assert got.json()["expires_at"] == "2026-11-21T06:00:00Z"
    tried = api.post(f"/api/coupons/{code}/redeem", json={"order_id": "O-9"})
    assert tried.status_code == 410
    with session_scope(shop) as session:
        assert session.execute(select(Message.id)).scalars().all() == [1]
    assert code not in {row[0] for row in stored(shop)[0]}
