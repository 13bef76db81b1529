"""The dashboard in Debian's chromium, driven by Playwright, served by uvicorn on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.project.loader import Secrets, load_project
from engine.store.db import make_engine, upgrade
from tests.conftest import skip_or_fail
from tests.report.test_reports import EVIL_NAME, build_flow, build_shop, with_flow
from tests.report.test_rewards import build_rewards

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "browser test password"
SECRET = "b" * 32
PERIOD = ("2026-11-01", "2026-11-21")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def config(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL", raising=False)
    project = with_flow(project_dir)
    engine = make_engine(project.database_url(Secrets()))
    upgrade(engine)
    build_shop(engine)
    build_flow(engine)
    build_rewards(engine)
    engine.dispose()
    return project_dir / "config.yaml"


@pytest.fixture
def server(config: Path) -> Iterator[str]:
    """The tracking app, dashboard included, on 127.0.0.1 in a thread."""
    import uvicorn

    from engine.track.app import create_app
    from engine.track.httpserver import server_config

    project = load_project(config)
    engine = make_engine(project.database_url(Secrets()))
    secrets = Secrets(secret=SECRET, dashboard_password=PASSWORD)
    app = create_app(engine, lambda: project, secrets)
    port = free_port()
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the dashboard server did not start within 10 s")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/dashboard"
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        skip_or_fail("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        yield browser
        browser.close()


def cli_report(config: Path) -> dict[str, Any]:
    command = [str(Path(sys.executable).with_name("lifecycle")), "report", "--config", str(config)]
    command += ["--from", PERIOD[0], "--to", PERIOD[1], "--json"]
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_DATABASE_URL"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def table_figures(
    page: Any, rows: str, key: str
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """({row: {figure: data-value}}, {row: {figure: text}}) over every table `rows` selects."""
    cells = page.eval_on_selector_all(
        rows,
        f"""rows => rows.map(row => [row.getAttribute("{key}"),
            [...row.querySelectorAll("td[data-figure]")].map(
                td => [td.dataset.figure, td.dataset.value, td.innerText.trim()])])""",
    )
    values: dict[str, dict[str, str]] = {}
    texts: dict[str, dict[str, str]] = {}
    for row, row_cells in cells:
        for figure, value, text in row_cells:
            values.setdefault(row, {})[figure] = value
            texts.setdefault(row, {})[figure] = text
    return values, texts


def widths(page: Any) -> dict[str, int]:
    """The scroll width of the page and of each table on it, by the table's id."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => Object.fromEntries([
            ["page", document.documentElement.scrollWidth],
            ...[...document.querySelectorAll("table")].map(
                t => [t.id, Math.max(t.scrollWidth, Math.ceil(t.getBoundingClientRect().right))])
        ])"""
    )


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/")
    assert page.url.endswith("/dashboard/login")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_dashboard_in_chromium(browser: Any, server: str, config: Path, tmp_path: Path) -> None:
    dialogs: list[str] = []
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))

    log_in(page, server)
    page.goto(f"{server}/?from={PERIOD[0]}&to={PERIOD[1]}")
    expected = cli_report(config)
    values, shown = table_figures(page, "#campaigns tr[data-campaign]", "data-campaign")
    assert set(values) == {*expected["campaigns"], "all campaigns"}
    for name, cells in values.items():
        figures = expected["totals"] if name == "all campaigns" else expected["campaigns"][name]
        assert len(cells) == 18, name
        for figure, value in cells.items():
            assert value == ("" if figures[figure] is None else str(figures[figure])), (
                name,
                figure,
            )
    assert shown["welcome"]["human_open_rate"] == "50.00"
    assert page.locator("svg.chart").count() == 2
    # a flow's steps under its row, each figure as the report has it
    steps = page.eval_on_selector_all(
        '#campaigns tr.step[data-flow="greeting_flow"]',
        """rows => rows.map(row => [row.dataset.step,
            Object.fromEntries([...row.querySelectorAll("td[data-figure]")].map(
                td => [td.dataset.figure, td.dataset.value]))])""",
    )
    reported = expected["campaigns"]["greeting_flow"]["steps"]
    assert [step for step, _ in steps] == [*reported, *reported]  # in each of the two tables
    for step, cells in steps:
        for figure, value in cells.items():
            assert value == str(reported[step][figure]), (step, figure)

    # the rewards page: every cell as the report has it
    page.click("nav >> text=Rewards")
    page.wait_for_url(f"{server}/rewards?from={PERIOD[0]}&to={PERIOD[1]}")
    rewards = expected["rewards"]
    coupons, coupon_texts = table_figures(
        page, "#rewards-coupons tr[data-campaign]", "data-campaign"
    )
    for name, row in [
        *rewards["coupons"]["campaigns"].items(),
        ("all campaigns", rewards["coupons"]["total"]),
    ]:
        assert coupons[name] == {k: "" if v is None else str(v) for k, v in row.items()}, name
    assert coupon_texts["all campaigns"]["revenue"] == "৳3,450.74"
    credit, _ = table_figures(page, "#rewards-credit tr[data-credit]", "data-credit")
    assert credit == {"period": rewards["credit"]}
    tiers, _ = table_figures(page, "#rewards-tiers tr[data-tier]", "data-tier")
    assert tiers["gold"] == {k: str(rewards["tiers"]["tiers"]["gold"][k]) for k in tiers["gold"]}
    assert len(tiers["gold"]) == 4
    paid, _ = table_figures(page, "#rewards-paid tr[data-threshold]", "data-threshold")
    assert paid["all"]["credit"] == rewards["referrals"]["rewards"]["total"]["credit"]

    page.goto(f"{server}/preview")
    page.select_option("select[name=campaign]", "thank_you")
    page.fill("input[name=customer]", "c1")
    page.click("form.period button[type=submit]")
    subject = page.locator("#subject")
    assert subject.inner_text().strip()
    email = page.frame_locator("iframe.email")
    email.locator("body").wait_for()
    assert email.locator("body").inner_text().strip()

    page.goto(f"{server}/queue")
    assert page.get_by_text(EVIL_NAME).count() >= 1
    assert page.locator("td.customer script").count() == 0
    assert dialogs == []
    assert problems == []

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    small = phone.new_page()
    small.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(small, server)
    small.goto(f"{server}/?from={PERIOD[0]}&to={PERIOD[1]}")
    # nothing wider than the phone: the campaign table turns into cards
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    heads = small.locator("#campaigns thead")
    assert heads.count() == 2
    assert all(heads.nth(i).is_hidden() for i in range(2))
    # a step's card shows only the figures a step has
    step_card = small.locator(
        '#campaigns-delivery tr.step[data-flow="greeting_flow"][data-step="greet"]'
    )
    assert step_card.locator("td:visible").count() == 1
    small.screenshot(path=str(tmp_path / "phone.png"), full_page=False)
    assert dialogs == []
    phone.close()
    context.close()


PAGES = [
    f"/?from={PERIOD[0]}&to={PERIOD[1]}",
    "/?from=2026-01-01&to=2026-11-21",
    "/retention?from=2026-01-01&to=2026-11-21&by=month",
    "/retention?from=2024-01-01&to=2026-11-21&by=year",
    f"/rewards?from={PERIOD[0]}&to={PERIOD[1]}",
    "/queue",
    "/preview?campaign=thank_you&customer=c1",
]


def test_no_page_or_table_is_wider_than_a_1280_px_screen(browser: Any, server: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server}/login")
    assert widths(page)["page"] <= 1280
    log_in(page, server)
    for path in PAGES:
        page.goto(f"{server}{path}")
        measured = widths(page)
        assert len(measured) > 1 or path.startswith("/preview"), path  # the tables are there
        assert all(width <= 1280 for width in measured.values()), (path, measured)
    # each figure is on the screen, not behind a scroll: the last column is inside the table's box
    page.goto(f"{server}/?from={PERIOD[0]}&to={PERIOD[1]}")
    hidden = page.eval_on_selector_all(
        "td[data-figure]",
        """cells => cells.filter(td => {
            const wrap = td.closest(".table-wrap").getBoundingClientRect();
            return td.getBoundingClientRect().right > wrap.right + 1;
        }).map(td => td.dataset.figure)""",
    )
    assert hidden == []
    _, shown = table_figures(page, "#campaigns tr[data-campaign]", "data-campaign")
    for figure in ("click_rate", "unsubscribes", "store_credit", "attributed_revenue"):
        assert page.locator(f'#campaigns td[data-figure="{figure}"]').first.is_visible()
    assert shown["price_drop_refund"]["store_credit"].startswith("৳")
    assert shown["welcome"]["attributed_revenue"].startswith("৳")
    context.close()
