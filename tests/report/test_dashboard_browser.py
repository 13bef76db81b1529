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
from tests.report.test_reports import EVIL_NAME, build_shop

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
    project = load_project(project_dir / "config.yaml")
    engine = make_engine(project.database_url(Secrets()))
    upgrade(engine)
    build_shop(engine)
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
    rows = page.locator("#campaigns tr[data-campaign]")
    shown: dict[str, dict[str, str]] = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        cells = row.locator("td[data-figure]")
        shown[row.get_attribute("data-campaign")] = {
            cells.nth(j).get_attribute("data-figure"): cells.nth(j).inner_text().strip()
            for j in range(cells.count())
        }
    assert set(shown) == {*expected["campaigns"], "all campaigns"}
    for name, cells in shown.items():
        figures = expected["totals"] if name == "all campaigns" else expected["campaigns"][name]
        for figure, text in cells.items():
            assert text == ("no data" if figures[figure] is None else str(figures[figure])), (
                name,
                figure,
            )
    assert shown["welcome"]["human_open_rate"] == "50.00"
    assert page.locator("svg.chart").count() == 2

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
    assert small.locator("#campaigns thead").is_hidden()
    small.screenshot(path=str(tmp_path / "phone.png"), full_page=False)
    assert dialogs == []
    phone.close()
    context.close()
