"""`lifecycle coupons export`: the active coupons as WooCommerce's coupon fields, on the
shipped project's SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.intake.shop import upsert_customer
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Coupon

HEADER = "code,discount_type,amount,minimum_amount,expiry_date,customer_email,usage_limit\n"
# 20:00 UTC on 31 December is already 1 January in Dhaka, the shop's timezone.
NEW_YEAR = datetime(2099, 12, 31, 20, 0, tzinfo=UTC)


@pytest.fixture
def project(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped project with its database: Rahim, and coupons active or not."""
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL", raising=False)
    engine = make_engine(f"sqlite:///{project_dir / 'lifecycle.db'}")
    upgrade(engine)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        rahim = upsert_customer(session, external_id="C-1", email="rahim@example.com", now=long_ago)
        coupons: list[dict[str, Any]] = [
            {"code": "SAVE-7KQ2", "customer_id": rahim.id, "percent_off": Decimal("10.00"),
             "min_order": Decimal("700.00"), "expires_at": NEW_YEAR},
            {"code": "TAKA-50", "amount_off": Decimal("50.50")},
            {"code": "USED-1", "percent_off": Decimal("5.00"), "used_at": long_ago,
             "used_order": "O-7"},
            {"code": "OLD-1", "percent_off": Decimal("5.00"), "expires_at": long_ago},
            {"code": "EARLY-1", "amount_off": Decimal("20.00"),
             "expires_at": datetime(2099, 6, 1, 6, 0, tzinfo=UTC)},
        ]  # fmt: skip
        session.add_all(Coupon(created_at=long_ago, **fields) for fields in coupons)
    engine.dispose()
    return project_dir


def lifecycle(project: Path, *args: str) -> Result:
    config = str(project / "config.yaml")
    return CliRunner().invoke(main, [*args, "--config", config], catch_exceptions=False)


ACTIVE = (
    HEADER
    + "EARLY-1,fixed_cart,20.00,,2099-06-01,,1\n"
    + "SAVE-7KQ2,percent,10.00,700.00,2100-01-01,rahim@example.com,1\n"
    + "TAKA-50,fixed_cart,50.50,,,,1\n"
)


def test_the_csv_lists_the_active_coupons_soonest_to_expire_first(project: Path) -> None:
    result = lifecycle(project, "coupons", "export", "--csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == ACTIVE


def test_output_writes_the_csv_to_a_file_and_says_how_many(project: Path) -> None:
    target = project / "coupons.csv"
    result = lifecycle(project, "coupons", "export", "--csv", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == ACTIVE
    assert result.stderr == f"{target}: 3 active coupons\n"
    assert result.stdout == ""


def test_without_csv_a_table_for_the_terminal(project: Path) -> None:
    result = lifecycle(project, "coupons", "export")
    assert result.exit_code == 0, result.output
    assert "3 active coupons" in result.stdout
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["SAVE-7KQ2", "percent", "10.00", "700.00", "2100-01-01", "rahim@example.com"] in lines
    assert not any("USED-1" in line or "OLD-1" in line for line in result.stdout.splitlines())


def test_an_expiry_in_the_past_hour_is_not_active(project: Path) -> None:
    engine = make_engine(f"sqlite:///{project / 'lifecycle.db'}")
    with session_scope(engine) as session:
        just_gone = datetime.now(UTC) - timedelta(minutes=1)
        session.add(Coupon(code="GONE-1", percent_off=Decimal("5.00"),
                           created_at=just_gone - timedelta(days=1), expires_at=just_gone))  # fmt: skip
    engine.dispose()
    assert lifecycle(project, "coupons", "export", "--csv").stdout == ACTIVE
