"""Late occurrences still wait for the customer's send window.

The planner may see an occurrence after its due time (the daemon was down, or a
holiday announcement fell due yesterday). `send_after` then counts from the
moment of planning, so nobody is mailed at 06:00 their time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

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
