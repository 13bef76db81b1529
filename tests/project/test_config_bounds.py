"""Values at the edges of their ranges still plan: no campaign pass fails on them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.plan.planner import plan
from engine.project.loader import load_project
from engine.store.db import session_scope
from tests.founding import founding_project


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    """The shipped project with the founding campaigns only (see tests/founding.py)."""
    return founding_project(project_dir)


# (file, text as shipped, the same key at the far end of its range)
AT_THE_EDGES = [
    ("config.yaml", "tick_seconds: 60", "tick_seconds: 3600"),
    ("config.yaml", "{max: 3, per: 7d}", "{max: 1000, per: 365d}"),
    ("config.yaml", "minimum: 0.01", "minimum: 1000000000"),
    ("campaigns/welcome.yaml", "delay: 10m", "delay: 365d"),
    ("campaigns/welcome.yaml", "expires_after: 3d", "expires_after: 365d"),
    ("campaigns/thank_you.yaml", "delay: 2h", "delay: 365d"),
    ("campaigns/thank_you.yaml", "quiet_after_welcome: 1h", "quiet_after_welcome: 30d"),
    ("campaigns/holiday_preannounce.yaml", "days_before: 3", "days_before: 365"),
    ("campaigns/holiday_preannounce.yaml", "expires_after: 2d", "expires_after: 365d"),
    ("campaigns/holiday_preannounce.yaml", "discount: 20%", "discount: 99.99%"),
    ("campaigns/price_drop_refund.yaml", "expires_after: 14d", "expires_after: 1m"),
    ("segments/regulars.yaml", "{at_least: 3, within: 180d}", "{at_least: 1000000, within: 3650d}"),
]


def test_every_campaign_plans_with_values_at_the_edges(
    project_dir: Path, store: Engine, now: datetime
) -> None:
    for file, old, new in AT_THE_EDGES:
        path = project_dir / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not once in {file}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    project = load_project(project_dir / "config.yaml")
    with session_scope(store) as s:
        long_ago = now - timedelta(days=410)
        upsert_product(s, sku="TEA-500G", name="Tea", price="420", now=long_ago)
        upsert_customer(s, external_id="c1", email="c1@example.com", now=long_ago,
                        marketing_consent=True)  # fmt: skip
        for order, days in (("o1", 400), ("o2", 366)):  # o2 past the welcome's 30 quiet days
            placed = now - timedelta(days=days)
            record_order(s, external_id=order, customer_id="c1", items=[Line("TEA-500G", 1)],
                         placed_at=placed, delivered_at=placed)  # fmt: skip
    for at in (now, now + timedelta(days=364)):
        report = plan(store, project, at)
        errors = {name: r.error for name, r in report.campaigns.items() if r.error}
        assert errors == {}
        assert set(report.campaigns) == set(project.config.campaigns)
    with session_scope(store) as s:
        queued = s.connection().exec_driver_sql("select campaign from message").scalars().all()
    assert sorted(queued) == ["thank_you", "welcome"]  # a year's delay is over for both
