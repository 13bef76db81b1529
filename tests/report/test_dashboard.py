"""The dashboard over Starlette's test client: login, figures, escaping, preview."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.routing import Mount

from engine.errors import EngineError
from engine.project.loader import Project, Secrets, load_project
from engine.report.dashboard import _local, dashboard_app
from engine.report.reports import build_report, period, to_json
from engine.store.db import make_engine, upgrade
from tests.conftest import REPO
from tests.report.test_reports import (
    EVIL_AGENT,
    EVIL_NAME,
    NOW,
    build_flow,
    build_shop,
    with_flow,
)

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

PASSWORD = "correct horse battery staple"
SECRETS = Secrets(secret="s" * 32, dashboard_password=PASSWORD)
ORIGIN = {"origin": "http://testserver"}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def project() -> Project:
    """The shipped project, read only."""
    return load_project(REPO / "config.yaml")


@pytest.fixture(scope="module")
def shop_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One database with the report history for every test here (they only read it)."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'store.db'}")
    upgrade(engine)
    build_shop(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def make_client(engine: Engine, project: Project, clock: Clock, **options: Any) -> TestClient:
    board = dashboard_app(engine, lambda: project, SECRETS, clock=clock, failure_delay=0, **options)
    return TestClient(Starlette(routes=[Mount("/dashboard", app=board)]))


@pytest.fixture
def client(shop_store: Engine, project: Project, clock: Clock) -> Iterator[TestClient]:
    with make_client(shop_store, project, clock) as client:
        yield client


def log_in(client: TestClient, password: str = PASSWORD) -> Any:
    return client.post(
        "/dashboard/login", data={"password": password}, headers=ORIGIN, follow_redirects=False
    )


def cells(page: str, row: str) -> dict[str, dict[str, tuple[str, str]]]:
    """{row key: {figure: (data-value, text)}} over every table whose rows carry `data-<row>`."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for key, body in re.findall(rf'<tr data-{row}="([^"]+)">(.*?)</tr>', page, re.S):
        found = re.findall(r'data-figure="(\w+)" data-value="([^"]*)"[^>]*>([^<]*)</td>', body)
        out.setdefault(html.unescape(key), {}).update(
            (name, (html.unescape(value), html.unescape(text))) for name, value, text in found
        )
    return out


def figures(page: str, row: str) -> dict[str, dict[str, str]]:
    """{row key: {figure: value as the JSON report writes it, '' for null}}."""
    return {k: {f: v for f, (v, _) in row_.items()} for k, row_ in cells(page, row).items()}


def texts(page: str, row: str) -> dict[str, dict[str, str]]:
    """{row key: {figure: the text a reader sees}}."""
    return {k: {f: t for f, (_, t) in row_.items()} for k, row_ in cells(page, row).items()}


def shown(value: Any) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize(
    "path", ["/", "/retention", "/rewards", "/queue", "/preview", "/preview/email"]
)
def test_every_page_needs_a_login(client: TestClient, path: str) -> None:
    response = client.get(f"/dashboard{path}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    assert "Human opens" not in response.text


def test_wrong_password_is_refused_and_right_one_sets_a_strict_cookie(client: TestClient) -> None:
    wrong = log_in(client, "guess")
    assert wrong.status_code == 401 and "Wrong password." in wrong.text
    assert "set-cookie" not in wrong.headers
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303
    right = log_in(client)
    assert right.status_code == 303 and right.headers["location"] == "/dashboard/"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard/" in cookie
    assert client.get("/dashboard/").status_code == 200


def test_a_login_from_another_site_is_refused(client: TestClient) -> None:
    response = client.post(
        "/dashboard/login", data={"password": PASSWORD}, headers={"origin": "https://evil.example"}
    )
    assert response.status_code == 403
    no_origin = client.post("/dashboard/login", data={"password": PASSWORD})
    assert no_origin.status_code == 403


def test_repeated_wrong_passwords_lock_the_address_out(
    shop_store: Engine, project: Project, clock: Clock
) -> None:
    with make_client(shop_store, project, clock, max_failures=3) as client:
        assert [log_in(client, "nope").status_code for _ in range(3)] == [401, 401, 401]
        locked = log_in(client)  # even the right password, until the window passes
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "set-cookie" not in locked.headers


def test_a_forged_or_expired_session_is_not_a_login(client: TestClient, clock: Clock) -> None:
    client.cookies.set("lifecycle_dashboard", "9999999999.forged", path="/dashboard/")
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303
    log_in(client)
    assert client.get("/dashboard/", follow_redirects=False).status_code == 200
    clock.now = NOW + timedelta(hours=13)
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_campaign_table_shows_build_report(
    client: TestClient, shop_store: Engine, project: Project
) -> None:
    log_in(client)
    page = client.get("/dashboard/?from=2026-11-01&to=2026-11-21")
    assert page.status_code == 200
    start, end = period(
        datetime(2026, 11, 1).date(), datetime(2026, 11, 21).date(), NOW, "Asia/Dhaka"
    )
    report = to_json(build_report(shop_store, project, start, end, "month", NOW))
    table = figures(page.text, "campaign")
    assert set(table) == {*report["campaigns"], "all campaigns"}
    for name, cells in table.items():
        expected = report["totals"] if name == "all campaigns" else report["campaigns"][name]
        assert len(cells) == 18
        for figure, text in cells.items():
            assert text == shown(expected[figure]), (name, figure)
    assert table["welcome"]["human_open_rate"] == "50.00"
    assert table["holiday_preannounce"]["human_open_rate"] == ""
    assert "<svg" in page.text and "Emails sent" in page.text


def test_retention_table_shows_build_report(
    client: TestClient, shop_store: Engine, project: Project
) -> None:
    log_in(client)
    page = client.get("/dashboard/retention?from=2026-01-01&to=2026-11-21&by=month")
    start, end = period(
        datetime(2026, 1, 1).date(), datetime(2026, 11, 21).date(), NOW, "Asia/Dhaka"
    )
    report = to_json(build_report(shop_store, project, start, end, "month", NOW))["retention"]
    table = figures(page.text, "bucket")
    assert len(table) == 12  # eleven months and the whole period
    for bucket in [*report["buckets"], {**report["total"], "label": "total"}]:
        cells = table[bucket["label"]]
        assert cells.pop("nps_score") == shown(bucket["nps"]["score"])
        assert cells.pop("nps_answers") == str(bucket["nps"]["answers"])  # beside its score
        for figure, text in cells.items():
            assert text == shown(bucket[figure]), (bucket["label"], figure)
    assert table["total"]["new_customers"] == "3"
    # the period ends on 21 November: that month is cut; nobody ordered in October
    assert re.search(
        r'data-bucket="2026-11">\s*<th scope="row">2026-11 \(partial\)</th>', page.text
    )
    assert '<th scope="row">2026-10 (no orders)</th>' in page.text


def test_the_default_thirty_days_mark_both_cut_months(client: TestClient) -> None:
    """30 days up to 22 November start on 23 October: a cut October (with no orders),
    not a month whose 100 % reads like a whole one."""
    log_in(client)
    page = client.get("/dashboard/retention").text
    assert '<th scope="row">2026-10 (partial, no orders)</th>' in page
    assert '<th scope="row">2026-11 (partial)</th>' in page


def test_a_bad_period_is_explained(client: TestClient) -> None:
    log_in(client)
    page = client.get("/dashboard/?from=yesterday")
    assert page.status_code == 400
    assert "from must be a date like 2026-11-01, got: &#39;yesterday&#39;" in page.text


def test_customer_text_is_escaped_and_no_script_may_run(client: TestClient) -> None:
    log_in(client)
    page = client.get("/dashboard/queue")
    assert page.status_code == 200
    assert str(escape(EVIL_NAME)) in page.text
    assert EVIL_NAME not in page.text
    assert str(escape(EVIL_AGENT)) in page.text
    assert "<img src=x" not in page.text
    assert "550 5.1.1 &lt;b&gt;no such user&lt;/b&gt;" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "<script" not in page.text.lower()


def test_logout_needs_the_forms_token(client: TestClient) -> None:
    log_in(client)
    forged = client.post("/dashboard/logout", data={"csrf": "x"}, headers=ORIGIN)
    assert forged.status_code == 403
    page = client.get("/dashboard/").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    out = client.post(
        "/dashboard/logout", data={"csrf": token}, headers=ORIGIN, follow_redirects=False
    )
    assert out.status_code == 303
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_preview_renders_in_a_sandboxed_frame(client: TestClient) -> None:
    log_in(client)
    page = client.get("/dashboard/preview?campaign=thank_you&customer=c1")
    assert page.status_code == 200, page.text
    assert 'id="subject"' in page.text
    assert re.search(r"<iframe[^>]* sandbox", page.text)
    frame = client.get("/dashboard/preview/email?campaign=thank_you&customer=c1@example.com")
    assert frame.status_code == 200
    assert "<html" in frame.text.lower()
    policy = frame.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src" not in policy and "default-src 'none'" in policy


def test_preview_of_an_unknown_customer_says_so(client: TestClient) -> None:
    log_in(client)
    page = client.get("/dashboard/preview?campaign=welcome&customer=%3Cb%3Enobody")
    assert page.status_code == 400
    assert "no customer with id or email &#39;&lt;b&gt;nobody&#39;" in page.text


def test_the_stylesheet_is_served_and_pages_fit_a_phone(client: TestClient) -> None:
    css = client.get("/dashboard/dashboard.css")
    assert css.status_code == 200 and "@media (max-width: 700px)" in css.text
    page = client.get("/dashboard/login")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text


def test_no_password_no_dashboard(shop_store: Engine, project: Project) -> None:
    with pytest.raises(EngineError, match="LIFECYCLE_DASHBOARD_PASSWORD"):
        dashboard_app(shop_store, lambda: project, Secrets(secret="s" * 32))


def test_charts_escape_labels_and_leave_gaps_for_no_data() -> None:
    from decimal import Decimal

    from engine.report import charts

    svg = str(
        charts.line_chart(
            "Open rate",
            ["<b>day 1</b>", "day 2", "day 3", "day 4"],
            {"rate": [Decimal("10.00"), None, Decimal("30.00"), Decimal("40.00")]},
            unit="%",
            references={"all email": Decimal("22.33")},
        )
    )
    assert "&lt;b&gt;day 1&lt;/b&gt;" in svg and "<b>" not in svg
    # the gap splits the line: a lone point, then a line through days 3 and 4
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 3
    assert "all email 22.33%" in svg
    assert ">50%</text>" in svg  # the axis tops out at a round number above 40
    bars = str(charts.bar_chart("Sent", ["a", "b"], [0, 5]))
    assert bars.count("<rect") == 2 and "<title>b: 5</title>" in bars


def test_a_database_that_does_not_answer_is_a_503_saying_so(
    tmp_path: Path, project: Project, clock: Clock
) -> None:
    missing = make_engine(f"sqlite:///{tmp_path / 'no such folder' / 'store.db'}")
    with make_client(missing, project, clock) as client:
        log_in(client)
        page = client.get("/dashboard/")
        assert page.status_code == 503
        assert "cannot read the report from the database: unable to open database file" in page.text
    missing.dispose()


def test_amounts_carry_the_shops_currency_sign(client: TestClient) -> None:
    log_in(client)
    campaigns = texts(client.get("/dashboard/?from=2026-11-01&to=2026-11-21").text, "campaign")
    assert campaigns["welcome"]["attributed_revenue"] == "৳750.50"
    assert campaigns["price_drop_refund"]["store_credit"] == "৳0.16"
    assert campaigns["all campaigns"]["store_credit"] == "৳0.16"
    page = client.get("/dashboard/retention?from=2026-01-01&to=2026-11-21&by=month").text
    total = texts(page, "bucket")["total"]
    assert (total["revenue"], total["average_order_value"]) == ("৳990.50", "৳198.10")
    assert total["orders"] == "5"  # a count stays a plain number


def test_no_data_only_where_there_is_none_and_a_real_zero_shows_zero(client: TestClient) -> None:
    log_in(client)
    page = client.get("/dashboard/?from=2026-11-01&to=2026-11-21").text
    campaigns = texts(page, "campaign")
    holiday = campaigns["holiday_preannounce"]  # nothing sent: a rate has no denominator
    assert (holiday["human_open_rate"], holiday["click_rate"]) == ("no data", "no data")
    assert (holiday["sent"], holiday["attributed_revenue"]) == ("0", "৳0.00")
    thank_you = campaigns["thank_you"]  # sent, never clicked: a real 0 %
    assert (thank_you["click_rate"], thank_you["unsubscribes"]) == ("0.00", "0")
    # a campaign that gives no store credit is not missing data
    assert campaigns["welcome"]["store_credit"] == "—"
    assert (
        '<td data-label="Store credit" data-figure="store_credit" data-value="" '
        'title="this campaign gives no store credit">—</td>'
    ) in page
    assert "no data" not in re.findall(r'data-figure="store_credit"[^>]*>([^<]*)<', page)
    page = client.get("/dashboard/retention?from=2026-01-01&to=2026-11-21&by=month").text
    january = texts(page, "bucket")["2026-01"]
    assert (january["customers_at_start"], january["revenue"]) == ("0", "৳0.00")
    assert january["retention_rate"] == "no data"


def test_queue_times_carry_the_timezone(client: TestClient) -> None:
    log_in(client)
    page = client.get("/dashboard/queue").text
    assert '<td data-label="Planned" class="text">2026-11-20 17:00 +06</td>' in page
    assert not re.search(r"\d\d:\d\d</td>", page)  # no time without its offset


@pytest.mark.parametrize(
    ("zone", "moment", "shown_as"),
    [
        pytest.param("Asia/Dhaka", datetime(2026, 11, 22, 3, tzinfo=UTC), "2026-11-22 09:00 +06"),
        pytest.param(
            "Asia/Kolkata", datetime(2026, 11, 22, 3, tzinfo=UTC), "2026-11-22 08:30 +05:30"
        ),
        pytest.param(
            "America/Sao_Paulo", datetime(2026, 11, 22, 3, tzinfo=UTC), "2026-11-22 00:00 -03"
        ),
        pytest.param("UTC", datetime(2026, 11, 22, 3, tzinfo=UTC), "2026-11-22 03:00 +00"),
    ],
)
def test_a_local_time_names_its_offset(
    project: Project, zone: str, moment: datetime, shown_as: str
) -> None:
    shop = project.config.shop.model_copy(update={"timezone": zone})
    there = replace(project, config=project.config.model_copy(update={"shop": shop}))
    assert _local(there)(moment) == shown_as


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([Decimal("95.00"), Decimal("40.00")], id="near 100"),
        pytest.param([Decimal("100.00")], id="at 100"),
    ],
)
def test_rate_charts_stop_at_100_percent(values: list[Decimal]) -> None:
    from engine.report import charts

    svg = str(charts.line_chart("Retention", ["a", "b"][: len(values)], {"rate": values}, unit="%"))
    assert ">100%</text>" in svg
    assert not re.search(r">(1[1-9]\d|[2-9]\d\d)%</text>", svg)
    counts = str(charts.line_chart("Orders", ["a"], {"orders": [Decimal(95)]}))
    assert ">120</text>" in counts  # a count's axis still goes past 100


def step_cells(page: str) -> dict[tuple[str, str], dict[str, tuple[str, str]]]:
    """{(campaign, step): {figure: (data-value, text)}} over the rows under each campaign."""
    out: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    pattern = r'<tr class="step[^"]*" data-flow="([^"]+)" data-step="([^"]+)">(.*?)</tr>'
    for flow, step, body in re.findall(pattern, page, re.S):
        found = re.findall(r'data-figure="(\w+)" data-value="([^"]*)"[^>]*>([^<]*)</td>', body)
        out.setdefault((flow, step), {}).update((f, (v, t)) for f, v, t in found)
    return out


def test_a_flows_steps_are_listed_under_it(store: Engine, project_dir: Path, clock: Clock) -> None:
    build_flow(store)
    project = with_flow(project_dir)
    with make_client(store, project, clock) as client:
        assert "greet" not in client.get("/dashboard/").text  # the login page, nothing more
        log_in(client)
        page = client.get("/dashboard/?from=2026-11-01&to=2026-11-21").text
    steps = step_cells(page)
    assert [step for flow, step in steps if flow == "greeting_flow"] == ["greet", "nudge", "story"]
    assert steps["greeting_flow", "greet"] == {
        "sent": ("3", "3"),
        "unique_human_opens": ("2", "2"),
        "human_open_rate": ("66.66666666666666666666666667", "66.67"),  # exact, shown rounded
        "unique_clicks": ("1", "1"),
        "click_rate": ("33.33333333333333333333333333", "33.33"),
    }
    assert steps["greeting_flow", "nudge"]["human_open_rate"] == ("0.00", "0.00")
    assert steps["greeting_flow", "story"]["unique_clicks"] == ("1", "1")
    # each table: the campaign's row, then its steps in order, the removed one said so
    for table in re.findall(
        r'<table class="figures cards" id="campaigns-\w+">.*?</table>', page, re.S
    ):
        order = re.findall(r'<tr (?:data-campaign="greeting_flow"|class="step[^"]*" data-flow="greeting_flow" data-step="(\w+)")', table)  # fmt: skip
        assert order == ["", "greet", "nudge", "story"]
        assert ">1. greet</th>" in table and ">2. nudge</th>" in table
        assert '>story <span class="muted">(no longer in the file)</span></th>' in table
        # a figure a step does not have is an empty cell, never a made-up zero
        assert '<td data-label="Queued"></td>' in table or "Queued" not in table
    # the campaign rows are as before: a campaign without steps has nothing under it
    campaigns = figures(page, "campaign")
    assert campaigns["greeting_flow"]["sent"] == "5"
    assert all(len(cells) == 18 for cells in campaigns.values())
    assert campaigns["thank_you"]["sent"] == "1"
    assert not [key for key in steps if key[0] == "thank_you"]
