"""`lifecycle report` on a real SQLite file: JSON, CSV (formula-safe) and tables."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from engine.cli import main
from engine.cli.reporting import csv_cell
from engine.project.loader import Secrets, load_project
from engine.report.reports import build_report, period, to_json
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Customer, Message, MessageStatus
from tests.report.test_customers_rfm import END, expected
from tests.report.test_customers_rfm import HISTORY as RFM_HISTORY
from tests.report.test_reports import NOW, START, build_shop
from tests.report.test_retention import build
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
                           "redemption_rate": "53.84615384615384615384615385", "expired": "3", "revenue": "3450.74"}  # fmt: skip
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


def test_retention_csv_is_exact_and_marks_the_buckets_the_period_cuts(shop: Path) -> None:
    text = run(shop, "--from", "2026-10-15", "--to", "2026-11-21", "--csv")
    retention = list(csv.DictReader(io.StringIO(text.split("\n\n")[1])))
    assert [(r["bucket"], r["partial"]) for r in retention] == [
        ("2026-10", "true"),
        ("2026-11", "true"),
        ("total", ""),
    ]
    november = retention[1]
    # 10 orders by 7 customers, unrounded; 4496.24 taka / 10 orders to the last digit
    assert Decimal(november["purchase_frequency"]) == Decimal(10) / Decimal(7)
    assert november["average_order_value"] == "449.624"
    table = run(shop, "--from", "2026-10-15", "--to", "2026-11-21")
    assert " 2026-10* " in table and " 2026-11* " in table
    assert "* partial: the period starts or ends inside it; no orders in 2026-10" in table
    assert " 1.43 " in table and " 449.62 " in table  # shown half up to two places


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


@pytest.fixture
def rfm_shop(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped project (Asia/Dhaka) with the RFM history and a hostile external id."""
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL", raising=False)
    project = load_project(project_dir / "config.yaml")
    engine = make_engine(project.database_url(Secrets()))
    upgrade(engine)
    build(engine, {**RFM_HISTORY, "=SUM(1+1)": [("2026-03-02T10:00", "-12.50")]})
    engine.dispose()
    return project_dir / "config.yaml"


def rfm_expected(end: datetime, first_order_from: datetime | None = None) -> list[dict[str, str]]:
    """The expected rows as CSV text cells, in customer order."""
    rows = expected(RFM_HISTORY, end, "Asia/Dhaka", first_order_from)
    return [
        {"external_id": key, **{k: str(v) for k, v in row.items() if k != "external_id"}}
        for key, row in rows.items()
    ]


def test_customers_csv_has_a_row_per_customer(rfm_shop: Path) -> None:
    text = run(rfm_shop, "--customers", "--to", "2026-03-31", "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["customer_id", "external_id", "email", "first_order",
                             "last_order", "orders", "revenue", "frequency", "recency", "T",
                             "monetary_value"]  # fmt: skip
    ids = [int(row.pop("customer_id")) for row in rows]
    assert ids == sorted(set(ids))
    hostile = rows.pop()
    assert hostile["external_id"] == "'=SUM(1+1)"
    assert hostile["email"] == "'=SUM(1+1)@example.com"
    assert hostile["revenue"] == "-12.50"  # a number stays a number
    assert rows == rfm_expected(END)


def test_customers_from_is_a_cohort_and_default_end_is_now(rfm_shop: Path) -> None:
    text = run(rfm_shop, "--customers", "--from", "2026-02-01", "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    start = datetime(2026, 2, 1, tzinfo=ZoneInfo("Asia/Dhaka"))
    # NOW (22 November 2026) is after every order: all of them count, T runs to 22 November
    assert [row["external_id"] for row in rows] == ["same_day", "midnight", "late", "after_end",
                                                    "'=SUM(1+1)"]  # fmt: skip
    assert [{k: v for k, v in row.items() if k != "customer_id"} for row in rows[:-1]] == (
        rfm_expected(NOW, start)
    )


def test_customers_json_is_one_object(rfm_shop: Path) -> None:
    data = json.loads(run(rfm_shop, "--customers", "--to", "2026-03-31", "--json"))
    assert data["period"] == {
        "end": "2026-03-31T18:00:00+00:00",
        "last_day": "2026-03-31",
        "first_order_from": None,
        "timezone": "Asia/Dhaka",
        "now": NOW.isoformat(),
    }
    customers = data["customers"]
    assert customers[-1]["external_id"] == "=SUM(1+1)"  # JSON needs no escaping
    half = next(row for row in customers if row["external_id"] == "half")
    assert half["monetary_value"] == "10.01" and half["T"] == 87 and half["frequency"] == 2
    assert [row["external_id"] for row in customers[:-1]] == list(
        expected(RFM_HISTORY, END, "Asia/Dhaka")
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            [], "--customers prints one row per customer: add --csv or --json", id="no-format"
        ),
        pytest.param(["--csv", "--by", "year"], "--by does not apply to --customers", id="by"),
        pytest.param(
            ["--json", "--activity-days", "90"],
            "--activity-days does not apply to --customers",
            id="activity-days",
        ),
        pytest.param(["--csv", "--json"], "choose one of --json and --csv", id="both"),
    ],
)
def test_customers_bad_options_say_what_is_wrong(
    rfm_shop: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["report", "--config", str(rfm_shop), "--customers", *args])
    assert result.exit_code == 2
    assert message in result.output
