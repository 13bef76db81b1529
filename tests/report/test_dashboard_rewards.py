"""The dashboard's rewards page shows `build_report`'s rewards, cell for cell."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from engine.project.loader import load_project
from engine.report.reports import build_report, period, to_json
from tests import store_fixtures
from tests.report.test_dashboard import Clock, figures, log_in, make_client, texts
from tests.report.test_rewards import NOW, build_rewards

migrated_store = store_fixtures.migrated_store
fresh_store = store_fixtures.fresh_store

PAGE = "/dashboard/rewards?from=2026-11-01&to=2026-11-21"


def shown(value: Any) -> str:
    return "" if value is None else str(value)


@pytest.fixture
def page(fresh_store: Engine, project_dir: Path) -> tuple[str, dict[str, Any]]:
    """The rewards page of 1–21 Nov 2026 and `lifecycle report --json`'s rewards for it."""
    build_rewards(fresh_store)
    project = load_project(project_dir / "config.yaml")
    with make_client(fresh_store, project, Clock(NOW)) as client:
        assert client.get(PAGE, follow_redirects=False).status_code == 303  # a login first
        log_in(client)
        response = client.get(PAGE)
    assert response.status_code == 200
    start, end = period(date(2026, 11, 1), date(2026, 11, 21), NOW, "Asia/Dhaka")
    report = to_json(build_report(fresh_store, project, start, end, "month", NOW))
    return response.text, report["rewards"]


def test_every_rewards_figure_is_the_reports(page: tuple[str, dict[str, Any]]) -> None:
    html, rewards = page
    coupons = figures(html, "campaign")
    expected = {**rewards["coupons"]["campaigns"], "all campaigns": rewards["coupons"]["total"]}
    assert list(coupons) == list(expected)
    for name, cells in coupons.items():
        assert cells == {k: shown(v) for k, v in expected[name].items()}, name
    assert figures(html, "credit") == {"period": rewards["credit"]}
    tiers = figures(html, "tier")
    expected = {**rewards["tiers"]["tiers"], "all customers": rewards["tiers"]["total"]}
    assert list(tiers) == list(expected)
    for name, cells in tiers.items():
        assert cells == {k: shown(v) for k, v in expected[name].items() if k in cells}, name
        assert len(cells) == 4
    referrals = rewards["referrals"]
    counts = ("referred", "pending", "counted", "reversed", "refused")
    assert figures(html, "referrals") == {"period": {k: str(referrals[k]) for k in counts}}
    reasons = figures(html, "reason")
    assert reasons == {
        **{k: {"referrals": str(n)} for k, n in referrals["refused_by_reason"].items()},
        "all refused": {"referrals": str(referrals["refused"])},
    }
    paid = referrals["rewards"]
    expected = {**paid["thresholds"], "all": paid["total"]}
    assert figures(html, "threshold") == {k: {f: str(v) for f, v in row.items()}
                                          for k, row in expected.items()}  # fmt: skip


def test_rewards_read_as_a_marketer_expects(page: tuple[str, dict[str, Any]]) -> None:
    html, rewards = page
    # the figures worked out in test_rewards hold for this period too (1 Nov 00:00 in
    # Dhaka is 31 Oct 18:00 UTC; nothing of the history falls between)
    coupons = texts(html, "campaign")
    assert coupons["all campaigns"]["revenue"] == "৳3,450.74"
    assert coupons["all campaigns"]["redemption_rate"] == "53.85"  # shown rounded
    assert coupons["welcome_series"]["issued"] == "7"
    # C7 expires at 22 Nov 06:00, after this period's end (21 Nov 18:00 UTC): still held
    assert texts(html, "credit")["period"]["outstanding"] == "৳280.00"
    assert rewards["credit"]["expired"] == "54.60"
    tiers = texts(html, "tier")
    assert tiers["gold"]["up"] == "1" and tiers["(no tier)"]["customers"] == "2"
    assert '>platinum <span class="muted">(not in the tiers file)</span></th>' in html
    assert texts(html, "threshold")["all"]["credit"] == "৳140.00"
    assert re.search(r'<a href="[^"]*/rewards[^"]*">Rewards</a>', html)


def test_a_shop_without_rewards_shows_zeros_and_no_data(
    fresh_store: Engine, project_dir: Path
) -> None:
    project = load_project(project_dir / "config.yaml")
    with make_client(fresh_store, project, Clock(NOW)) as client:
        log_in(client)
        html = client.get(PAGE).text
    total = texts(html, "campaign")["all campaigns"]
    assert (total["issued"], total["redemption_rate"], total["revenue"]) == (
        "0",
        "no data",
        "৳0.00",
    )
    assert texts(html, "credit")["period"]["outstanding"] == "৳0.00"
    assert 'id="rewards-refused"' not in html  # no refusals: no table of reasons
