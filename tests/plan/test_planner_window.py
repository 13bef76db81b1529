"""Late occurrences still wait for the customer's send window.

The planner may see an occurrence after its due time (the daemon was down, or a
holiday announcement fell due yesterday). `send_after` then counts from the
moment of planning, so nobody is mailed at 06:00 their time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from engine.intake.shop import add_holiday
from engine.store.db import session_scope
from tests.plan.test_planner import Shop, _shop

DHAKA_0600 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 06:00 in Dhaka
DHAKA_0900 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # the window opens


def _dhaka_shop(store: Engine, project_dir: Path) -> Shop:
    shop = _shop(store, project_dir)
    shop.customer("rahim", tz="Asia/Dhaka")
    return shop


def test_a_thank_you_due_last_evening_waits_for_the_morning(
    store: Engine, project_dir: Path
) -> None:
    shop = _dhaka_shop(store, project_dir)
    shop.enable("thank_you")
    shop.order("O-1", "rahim", DHAKA_0600 - timedelta(days=3))
    shop.order("O-2", "rahim", DHAKA_0600 - timedelta(days=2))
    # Delivered 16:00 Dhaka yesterday; due two hours later, at 18:00, inside the window.
    with session_scope(shop.engine) as s:
        from engine.intake.shop import mark_delivered

        mark_delivered(s, "O-2", datetime(2026, 11, 22, 10, 0, tzinfo=UTC))

    assert shop.plan(DHAKA_0600)["thank_you"]["queued"] == 1
    (message,) = shop.messages("thank_you")
    assert message.send_after == DHAKA_0900


def test_a_holiday_announcement_due_yesterday_waits_for_the_morning(
    store: Engine, project_dir: Path
) -> None:
    shop = _dhaka_shop(store, project_dir)
    shop.enable("holiday_preannounce")
    shop.edit("segments/regulars.yaml", lambda s: s.update(rules=None))
    with session_scope(shop.engine) as s:
        # 3 days before 25 November at 10:00 Dhaka: due 22 November 04:00 UTC.
        add_holiday(
            s, holiday_id="flash_sale", day=date(2026, 11, 25), name="Flash sale", now=DHAKA_0600
        )

    assert shop.plan(DHAKA_0600)["holiday_preannounce"]["queued"] == 1
    (message,) = shop.messages("holiday_preannounce")
    assert message.send_after == DHAKA_0900


def test_an_occurrence_due_inside_the_window_goes_at_once(store: Engine, project_dir: Path) -> None:
    shop = _dhaka_shop(store, project_dir)
    shop.enable("holiday_preannounce")
    shop.edit("segments/regulars.yaml", lambda s: s.update(rules=None))
    noon = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka
    with session_scope(shop.engine) as s:
        add_holiday(s, holiday_id="flash_sale", day=date(2026, 11, 25), name="Flash sale", now=noon)

    shop.plan(noon)
    (message,) = shop.messages("holiday_preannounce")
    assert message.send_after == noon


ZONES = ["Asia/Dhaka", "Asia/Kolkata", "Asia/Tokyo", "Europe/London", "Europe/Paris",
         "America/New_York", "America/Chicago", "America/Los_Angeles", "Australia/Sydney",
         "Africa/Nairobi"]  # fmt: skip


def test_a_shop_in_many_zones_gets_the_same_windows_as_one_in_a_few(
    store: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to `FEW_ZONES` zones, a pass makes send windows for every zone of the shop;
    with more, only for the candidates' own zones. Each customer's email waits for
    the window of their own zone either way."""
    from zoneinfo import ZoneInfo

    from engine.intake.shop import mark_delivered
    from engine.plan import campaignpass

    assert len(ZONES) > campaignpass.FEW_ZONES
    shop = _shop(store, project_dir)
    shop.enable("thank_you")
    delivered = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    for i, zone in enumerate(ZONES):
        shop.customer(f"c{i}", tz=zone)
        shop.order(f"O-{i}a", f"c{i}", DHAKA_0600 - timedelta(days=3))
        shop.order(f"O-{i}b", f"c{i}", DHAKA_0600 - timedelta(days=2))
        with session_scope(shop.engine) as s:
            mark_delivered(s, f"O-{i}b", delivered)

    def send_times() -> dict[int, datetime]:
        return {m.customer_id: m.send_after for m in shop.messages("thank_you")}

    assert shop.plan(DHAKA_0600)["thank_you"]["queued"] == len(ZONES)
    many = send_times()
    for customer_id, at in many.items():
        local = at.astimezone(ZoneInfo(ZONES[customer_id - 1]))
        assert 9 <= local.hour < 20, (ZONES[customer_id - 1], local)
    with store.begin() as conn:
        conn.exec_driver_sql("DELETE FROM message")
        conn.exec_driver_sql("DELETE FROM checkpoint")
    monkeypatch.setattr(campaignpass, "FEW_ZONES", len(ZONES))
    assert shop.plan(DHAKA_0600)["thank_you"]["queued"] == len(ZONES)
    assert send_times() == many
