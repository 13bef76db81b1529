"""`lifecycle report` on a real SQLite file: JSON, CSV (formula-safe) and tables."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from engine.cli import main
from engine.cli.reporting import csv_cell
from engine.project.loader import Secrets, load_project
from engine.report.reports import build_report, period, to_json
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Customer, Message, MessageStatus
from tests.report.test_reports import NOW, START, build_shop
from tests.report.test_rewards import build_rewards

FORMULA_NAME = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def shop(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped project with the report history in its own SQLite file."""
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL", raising=False)
    project = load_project(project_dir / "config.yaml")
    engine = make_engine(project.database_url(Secrets()))
    upgrade(engine)
    build_shop(engine)
    build_rewards(engine)
    with session_scope(engine) as session:
        customer = Customer(
            external_id="f",
            email="f@example.com",
            name=FORMULA_NAME,
            created_at=START,
            updated_at=START,
        )
        session.add(customer)
        session.flush()
        session.add(
            Message(
                dedupe_key="thank_you:f:1",
                campaign="thank_you",
                customer_id=customer.id,
                occurrence="1",
                status=MessageStatus.FAILED,
                created_at=NOW,
                send_after=NOW,
                last_error="@SUM(1+1) refused",
            )
        )
    engine.dispose()
    return project_dir / "config.yaml"


def run(config: Path, *args: str) -> str:
    with freeze_time(NOW):
        result = CliRunner().invoke(main, ["report", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_json_holds_every_figure_of_build_report(shop: Path) -> None:
    data = json.loads(run(shop, "--from", "2026-11-01", "--to", "2026-11-21", "--json"))
    project = load_project(shop)
    engine = make_engine(project.database_url(Secrets()))
    start, end = period(date(2026, 11, 1), date(2026, 11, 21), NOW, "Asia/Dhaka")
    expected = to_json(build_report(engine, project, start, end, "month", NOW))
    engine.dispose()
    assert data == expected
    assert set(data) >= {"campaigns", "retention"}
    assert data["campaigns"]["welcome"]["human_open_rate"] == "50.00"
    assert data["campaigns"]["welcome"]["attributed_revenue"] == "750.50"
    assert data["retention"]["by"] == "month"
    assert [b["label"] for b in data["retention"]["buckets"]] == ["2026-11"]


def test_default_period_is_the_last_30_days(shop: Path) -> None:
    data = json.loads(run(shop, "--json", "--by", "year"))
    assert data["period"]["start"] == "2026-10-23T06:00:00+00:00"
    assert data["period"]["end"] == "2026-11-22T06:00:00+00:00"
    # m11 was sent on 2 Nov; m10 (20 Oct) is outside
    assert data["campaigns"]["welcome"]["sent"] == 4


def test_csv_escapes_formulas(shop: Path) -> None:
    text = run(shop, "--from", "2026-11-01", "--csv")
    sections = text.strip("\n").split("\n\n")
    assert len(sections) == 9
    campaigns = list(csv.DictReader(io.StringIO(sections[0])))
    welcome = next(r for r in campaigns if r["campaign"] == "welcome")
    assert welcome["human_open_rate"] == "50.00"
    assert welcome["store_credit"] == ""
    errors = list(csv.DictReader(io.StringIO(sections[2])))
    hostile = next(r for r in errors if r["customer_email"] == "f@example.com")
    assert hostile["customer_name"] == "'" + FORMULA_NAME
    assert hostile["last_error"] == "'@SUM(1+1) refused"


def test_csv_has_the_rewards_tables_after_the_others(shop: Path) -> None:
    text = run(shop, "--from", "2026-11-01", "--csv")
    coupons, credit, tiers, referred, refused, paid = (
        list(csv.DictReader(io.StringIO(section))) for section in text.strip("\n").split("\n\n")[3:]
    )
    assert coupons[-1] == {"campaign": "all campaigns", "issued": "13", "redeemed": "7",
                           "redemption_rate": "53.85", "expired": "3", "revenue": "3450.74"}  # fmt: skip
    # test_rewards' wallet, and the report history's two refund credits (0.16 + 3.00)
    assert credit == [{"outstanding_at_start": "130.15", "issued": "278.66", "redeemed": "45.55",
                       "taken_back": "25.50", "expired": "114.60", "outstanding": "223.16"}]  # fmt: skip
    assert [row["tier"] for row in tiers] == [
        "(no tier)", "silver", "gold", "diamond", "platinum", "all customers"
    ]  # fmt: skip
    assert tiers[-1]["customers"] == "12"  # c1–c5 of the report history, f, and r1–r6
    assert referred == [
        {"referred": "7", "pending": "1", "counted": "1", "reversed": "1", "refused": "4"}
    ]
    assert refused[0] == {"reason": "not a first order", "referrals": "2"}
    assert paid[-1] == {"threshold": "all", "paid": "4", "credit": "140.00", "coupons": "1"}


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        pytest.param("=1+1", "'=1+1", id="equals"),
        pytest.param("+1", "'+1", id="plus"),
        pytest.param("-1+cmd", "'-1+cmd", id="minus"),
        pytest.param("@SUM(A1)", "'@SUM(A1)", id="at"),
        pytest.param("\t=1", "'\t=1", id="tab"),
        pytest.param("\r=1", "'\r=1", id="carriage-return"),
        pytest.param("-5.25", "-5.25", id="negative-number-stays"),
        pytest.param("Rahima", "Rahima", id="plain"),
        pytest.param(None, "", id="none"),
    ],
)
def test_csv_cell(value: str | None, cell: str) -> None:
    assert csv_cell(value) == cell


def test_terminal_tables(shop: Path) -> None:
    out = run(shop, "--from", "2026-11-01")
    assert "welcome" in out and " 50.00 " in out and " 42.00 " in out
    assert "Retention" in out
    assert "Coupons issued in the period" in out and " 3450.74" in out
    assert "Store credit" in out and " 223.16" in out
    assert "platinum (not in tiers file)" in out and "not a first order" in out
    nps = next(line for line in out.splitlines() if "NPS" in line)
    assert "answers" in nps  # the score never without its answer count


def test_bad_options_say_what_is_wrong(shop: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(main, ["report", "--config", str(shop), "--json", "--csv"])
    assert both.exit_code == 2 and "choose one of --json and --csv" in both.output
    backwards = runner.invoke(
        main, ["report", "--config", str(shop), "--from", "2026-12-01", "--to", "2026-11-01"]
    )
    assert backwards.exit_code == 1
    assert "--from 2026-12-01 must be on or before --to 2026-11-01" in backwards.output
