"""`lifecycle plan` and `lifecycle holiday` through the real command line."""

from __future__ import annotations

import json
import re
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
# The campaigns these tests run: the one-email welcome (not the series) and the rest
# the engine was founded on, so what a command does is read from a short report.
FOUNDING = ("welcome", "thank_you", "holiday_preannounce", "price_drop_refund")


def run_only(config: Path, *names: str) -> None:
    """Rewrite config.yaml's `campaigns:` list to run just `names`."""
    text = config.read_text()
    listed = "".join(f"  - {name}\n" for name in names)
    text, found = re.subn(r"\ncampaigns:\n(?:(?:  .*)?\n)*", f"\ncampaigns:\n{listed}\n", text)
    assert found == 1, "config.yaml has no campaigns: list"
    config.write_text(text)


@pytest.fixture
def shop(project_dir: Path) -> Path:
    """The shipped project running the founding campaigns, with one customer whose first
    order was 30 minutes ago."""
    run_only(project_dir / "config.yaml", *FOUNDING)
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
        "queued": 1, "skipped_consent": 0, "skipped_suppressed": 0, "skipped_cap": 0,
        "expired": 0, "expired_messages": [],
        "exited": 0, "coupons": 0, "steps": {"email": {"queued": 1, "skipped_consent": 0, "skipped_suppressed": 0, "skipped_cap": 0, "skipped_passed": 0, "exited": {}, "coupons": 0}},
    }  # fmt: skip
    assert set(report["campaigns"]) == set(FOUNDING)
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


# ---------------------------------------------------------------- expired unsent


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_order_posted_too_late_is_listed_as_expired_in_plan_json(
    shop: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example, and the same order dated before its welcome's expiry."""
    import warnings

    from engine.project.loader import Secrets
    from engine.track.app import create_app

    with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient

    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", store_url)
    project = load_project(shop)
    engine = make_engine(project.database_url())
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(s, sku="TEA-500G", name="Tea", price="420", now=NOW - timedelta(days=9))
    assert run(shop, "plan", "--at", "2026-11-22T05:00:00Z")[0] == 0  # the daemon was running
    app = create_app(engine, lambda: project, Secrets(secret="s" * 32, api_key="k" * 32),
                     clock=lambda: NOW)  # fmt: skip
    events: list[dict[str, object]] = []
    for number, placed in (("9001", None), ("9002", "2026-11-14T09:00:00Z")):
        customer = {"id": f"C-{number}", "email": f"c{number}@example.com", "name": "Nadia",
                    "locale": "bn_BD", "marketing_consent": True}  # fmt: skip
        order = {"id": f"O-{number}", "customer_id": f"C-{number}",
                 "items": [{"sku": "TEA-500G", "quantity": 2}]}  # fmt: skip
        if placed:
            order["placed_at"] = placed
        events += [
            {"id": f"evt-c{number}", "type": "customer.upserted", "customer": customer},
            {"id": f"evt-o{number}", "type": "order.placed", "order": order},
        ]
    response = TestClient(app).post(
        "/api/events", json=events, headers={"authorization": f"Bearer {'k' * 32}"}
    )
    assert response.status_code == 200, response.text
    engine.dispose()
    code, out = run(shop, "plan", "--at", "2026-11-22T06:11:00Z", "--json")
    assert code == 0, out
    welcome = json.loads(out)["campaigns"]["welcome"]
    assert (welcome["queued"], welcome["expired"]) == (1, 1)  # C-9001's; C-9002's
    why = (
        "expired unsent: due 2026-11-14T09:10:00+00:00, expired 2026-11-17T09:10:00+00:00 "
        "(expires_after 3d); the order was recorded at 2026-11-22T06:00:00+00:00, "
        "after the email had expired"
    )
    assert welcome["expired_messages"] == [
        {
            "customer": "C-9002",
            "occurrence": "first",
            "order": "O-9002",
            "due": "2026-11-14T09:10:00+00:00",
            "expires_at": "2026-11-17T09:10:00+00:00",
            "why": why,
        }
    ]
    engine = make_engine(project.database_url())
    with engine.connect() as conn:
        rows = conn.execute(select(Message.status, Message.last_error)
                            .where(Message.campaign == "welcome")).all()  # type: ignore[arg-type]  # fmt: skip
    engine.dispose()
    assert sorted((str(status), error) for status, error in rows) == [
        ("expired", why), ("queued", None)
    ]  # fmt: skip


# ---------------------------------------------------------------- flows

FLOW = """\
name: greeting_flow
description: A greeting, then a nudge two days later unless the customer ordered again
trigger: {type: first_order, expires_after: 3d}
segment: everyone
exit: [ordered]
steps:
  - id: greet
    template: welcome
    subject: "Welcome, {{ customer.first_name }}"
  - id: nudge
    after: 2d
    template: thank_you
    subject: "Still thinking about it?"
"""


@pytest.fixture
def flow_shop(shop: Path) -> Path:
    """The shop with a two-step flow enabled beside the shipped campaigns."""
    (shop.parent / "campaigns" / "greeting_flow.yaml").write_text(FLOW)
    text = shop.read_text().replace("\ncampaigns:\n", "\ncampaigns:\n  - greeting_flow\n", 1)
    shop.write_text(text)
    return shop


def plan_rows(out: str) -> dict[str, list[str]]:
    """The plan table's rows from rich's box drawing: {campaign: cells} and, for each step
    row under a campaign, {campaign/step: cells}."""
    rows: dict[str, list[str]] = {}
    campaign = ""
    for line in out.splitlines():
        cells = line.split("\u2502")[1:-1]
        if len(cells) != 4 or not cells[0].strip():
            continue
        name, figures = cells[0], [c.strip() for c in cells[1:]]
        if name.startswith("   "):  # a step, indented under its campaign
            rows[f"{campaign}/{name.strip()}"] = figures
        else:
            campaign = name.strip()
            rows[campaign] = figures
    return rows


def test_plan_lists_each_step_under_its_campaign(flow_shop: Path) -> None:
    code, out = run(flow_shop, "plan", "--at", "2026-11-22T06:00:00Z")
    assert code == 0, out
    rows = plan_rows(out)
    #                                    queued, held back, exited
    assert rows["greeting_flow"] == ["1", "0", "0"]
    assert rows["greeting_flow/1. greet"] == ["1", "0", "0"]
    assert rows["greeting_flow/2. nudge"] == ["0", "0", "0"]
    assert rows["thank_you"] == ["0", "0", "0"]
    assert not [row for row in rows if row.startswith("thank_you/")]  # no steps, no rows under
    engine = make_engine(load_project(flow_shop).database_url())
    with session_scope(engine) as s:
        record_order(s, external_id="o2", customer_id="ana", items=[Line("JUTE-BAG-01", 2)],
                     placed_at=NOW + timedelta(days=1))  # fmt: skip
        upsert_customer(s, external_id="ben", email="ben@example.com", now=NOW,
                        marketing_consent=False)  # fmt: skip
        record_order(s, external_id="o3", customer_id="ben", items=[Line("JUTE-BAG-01", 1)],
                     placed_at=NOW + timedelta(days=2))  # fmt: skip
    engine.dispose()
    code, out = run(flow_shop, "plan", "--at", "2026-11-24T07:00:00Z", "--dry-run", "--full")
    assert code == 0, out
    assert "dry run: nothing written" in out
    rows = plan_rows(out)
    assert rows["greeting_flow/2. nudge"] == ["0", "0", "ordered 1"], out
    assert rows["greeting_flow/1. greet"] == ["0", "no consent 1", "0"], out
    assert rows["greeting_flow"] == ["0", "no consent 1", "ordered 1"], out
    code, out = run(flow_shop, "plan", "--at", "2026-11-24T07:00:00Z", "--dry-run", "--json")
    nudge = json.loads(out)["campaigns"]["greeting_flow"]["steps"]["nudge"]
    assert nudge["exited"] == {"ordered": 1}
