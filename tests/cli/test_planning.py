"""`lifecycle plan` and `lifecycle holiday` through the real command line."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from engine.cli import main
from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import load_project
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Message

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


@pytest.fixture
def shop(project_dir: Path) -> Path:
    """The shipped project with one customer whose first order was 30 minutes ago."""
    engine = make_engine(load_project(project_dir / "config.yaml").database_url())
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(
            s, sku="JUTE-BAG-01", name="Jute bag", price="350", now=NOW - timedelta(days=9)
        )
        upsert_customer(
            s, external_id="ana", email="ana@example.com", now=NOW, marketing_consent=True
        )
        record_order(s, external_id="o1", customer_id="ana", items=[Line("JUTE-BAG-01", 1)],
                     placed_at=NOW - timedelta(minutes=30))  # fmt: skip
    engine.dispose()
    return project_dir / "config.yaml"


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    return result.exit_code, result.output


def test_plan_json_then_nothing_left(shop: Path) -> None:
    code, out = run(shop, "plan", "--at", "2026-11-22T06:00:00Z", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["at"] == "2026-11-22T06:00:00+00:00"
    assert report["campaigns"]["welcome"] == {
        "queued": 1, "skipped_consent": 0, "skipped_suppressed": 0, "skipped_cap": 0
    }  # fmt: skip
    assert set(report["campaigns"]) == {
        "welcome",
        "thank_you",
        "holiday_preannounce",
        "price_drop_refund",
    }
    code, out = run(shop, "plan", "--at", "2026-11-22T12:05:00+06:00", "--json")
    assert json.loads(out)["campaigns"]["welcome"]["queued"] == 0


def test_full_pass_picks_up_a_customer_who_consented_since(shop: Path) -> None:
    engine = make_engine(load_project(shop).database_url())
    with session_scope(engine) as s:
        upsert_customer(
            s, external_id="ana", email="ana@example.com", now=NOW, marketing_consent=False
        )
    engine.dispose()
    _, out = run(shop, "plan", "--at", "2026-11-22T06:00:00Z", "--json")
    assert json.loads(out)["campaigns"]["welcome"]["skipped_consent"] == 1
    engine = make_engine(load_project(shop).database_url())
    with session_scope(engine) as s:
        upsert_customer(
            s, external_id="ana", email="ana@example.com", now=NOW, marketing_consent=True
        )
    engine.dispose()
    _, out = run(shop, "plan", "--at", "2026-11-22T06:01:00Z", "--json")
    assert json.loads(out)["campaigns"]["welcome"]["queued"] == 0  # only what is new
    _, out = run(shop, "plan", "--at", "2026-11-22T06:01:00Z", "--json", "--full")
    assert json.loads(out)["campaigns"]["welcome"]["queued"] == 1


def test_dry_run_writes_nothing(shop: Path) -> None:
    code, out = run(shop, "plan", "--at", "2026-11-22T06:00:00Z", "--dry-run")
    assert code == 0, out
    assert "dry run" in out and "welcome" in out
    code, out = run(shop, "plan", "--at", "2026-11-22T06:00:00Z", "--json")
    assert json.loads(out)["campaigns"]["welcome"]["queued"] == 1


def test_plan_reads_the_clock_once_when_no_at(shop: Path) -> None:
    with freeze_time("2026-11-22 06:00:00"):
        code, out = run(shop, "plan", "--json")
    assert code == 0, out
    assert json.loads(out)["at"] == "2026-11-22T06:00:00+00:00"
    assert json.loads(out)["campaigns"]["welcome"]["queued"] == 1


@pytest.mark.parametrize("at", ["yesterday", "2026-11-22T06:00:00"])
def test_plan_refuses_unclear_times(shop: Path, at: str) -> None:
    code, out = run(shop, "plan", "--at", at)
    assert code == 2
    assert "--at" in out


def test_failing_campaign_exits_1_and_says_which(shop: Path) -> None:
    (shop.parent / "segments" / "everyone.yaml").write_text(
        "name: everyone\nrules: {colour: blue}\n"
    )
    code, out = run(shop, "plan", "--at", "2026-11-22T06:00:00Z")
    assert code == 1
    assert "campaign welcome" in out and "unknown rule 'colour'" in out


def test_holiday_set_and_list(shop: Path) -> None:
    code, out = run(shop, "holiday", "set", "flash_sale", "2026-12-05")
    assert code == 0, out
    code, out = run(shop, "holiday", "list", "--year", "2026", "--json")
    assert code == 0, out
    listed = {h["id"]: h for h in json.loads(out)}
    assert listed["flash_sale"] == {
        "id": "flash_sale", "date": "2026-12-05", "source": "shop", "estimated": False,
        "name": {"en": "Nakshi Ghor flash sale", "bn": "নকশি ঘরের ফ্ল্যাশ সেল"},
    }  # fmt: skip
    assert listed["black_friday"]["source"] == "config"
    assert listed["eid_ul_fitr"]["date"] == "2026-03-21"
    code, out = run(shop, "holiday", "list", "--year", "2027")
    assert code == 0 and "eid_ul_fitr" in out and "estimate" in out


def test_holiday_set_refuses_undeclared_ids(shop: Path) -> None:
    code, out = run(shop, "holiday", "set", "eid_ul_fitr", "2027-03-11")
    assert code == 2
    assert "holidays.extra" in out
    code, out = run(shop, "holiday", "set", "flash_sale", "5 December")
    assert code == 2


def test_holiday_date_moves_queued_messages_via_cli(shop: Path) -> None:
    engine = make_engine(load_project(shop).database_url())
    with session_scope(engine) as s:
        for i in range(3):
            record_order(s, external_id=f"r{i}", customer_id="ana", items=[Line("JUTE-BAG-01", 1)],
                         placed_at=NOW - timedelta(days=20 + i))  # fmt: skip
    engine.dispose()
    run(shop, "holiday", "set", "flash_sale", "2026-12-05")
    _, out = run(shop, "plan", "--at", "2026-12-02T04:00:00Z", "--json")
    assert json.loads(out)["campaigns"]["holiday_preannounce"]["queued"] == 1, out
    run(shop, "holiday", "set", "flash_sale", "2026-12-06")
    run(shop, "plan", "--at", "2026-12-02T04:05:00Z", "--json")
    engine = make_engine(load_project(shop).database_url())
    with engine.connect() as conn:
        table = Message.__table__  # type: ignore[attr-defined]
        [day] = conn.execute(
            select(table.c.holiday_date).where(table.c.holiday.is_not(None))
        ).scalars()
    engine.dispose()
    assert day == date(2026, 12, 6)
