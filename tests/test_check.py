"""engine.check: what stops `lifecycle check`, and what only warns when the daemon starts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from engine.check import check_project
from engine.cli import main
from engine.project.loader import load_project
from engine.store.db import make_engine, upgrade
from tests.daemon_fixtures import Daemon, configure, free_port

# A campaign file config.yaml does not enable: checked, never sent.
DISABLED = """\
name: eid_sale
trigger: {type: holiday, holidays: [eid_ul_fitr], days_before: 1}
template: holiday_preannounce
subject: Eid sale
offers:
  - {sku: PANJABI-01, discount: 25%}
"""
MISSING = [
    ("campaigns/eid_sale.yaml", 6, "offers[0].sku", "PANJABI-01"),
    ("campaigns/holiday_preannounce.yaml", 18, "offers[0].sku", "JUTE-BAG-01"),
    ("campaigns/holiday_preannounce.yaml", 19, "offers[1].sku", "TEA-500G"),
    ("campaigns/holiday_preannounce.yaml", 20, "offers[2].sku", "SARI-JAM-01"),
]


@pytest.fixture
def new_shop(project_dir: Path) -> Path:
    """The shipped project with `lifecycle db upgrade` run: a schema, no products yet."""
    (project_dir / "campaigns" / "eid_sale.yaml").write_text(DISABLED, encoding="utf-8")
    engine = make_engine(load_project(project_dir / "config.yaml").database_url())
    upgrade(engine)
    engine.dispose()
    return project_dir


def test_check_names_every_offer_the_database_lacks(new_shop: Path) -> None:
    _, problems = check_project(new_shop / "config.yaml", strict=True)
    found = [(p.file, p.line, p.key, p.message) for p in problems]
    assert found == [
        (file, line, key, f"no product with sku {sku!r} in the database "
         "(emails leave this offer out until the product is imported)")
        for file, line, key, sku in MISSING
    ]  # fmt: skip


def test_an_empty_new_shop_may_start_with_a_warning(
    new_shop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.check"):
        project, problems = check_project(new_shop / "config.yaml")
    assert project is not None and problems == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        f"{file}:{line}: {key}: no product with sku {sku!r} in the database "
        "(emails leave this offer out until the product is imported)"
        for file, line, key, sku in MISSING
    ]


def test_lifecycle_check_exits_2_listing_them(new_shop: Path) -> None:
    result = CliRunner().invoke(
        main, ["check", "--config", str(new_shop / "config.yaml")], env={"LIFECYCLE_CONFIG": None}
    )
    assert result.exit_code == 2
    listed = [line for line in result.stderr.splitlines() if "no product with sku" in line]
    assert [line.split(": ")[0] for line in listed] == [f"{f}:{n}" for f, n, _, _ in MISSING]


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.mark.slow
def test_lifecycle_run_starts_on_an_empty_new_shop(new_shop: Path, daemons: list[Daemon]) -> None:
    http_port = free_port()
    database = load_project(new_shop / "config.yaml").database_url()
    config = configure(new_shop, smtp_port=free_port(), http_port=http_port, database=database)
    daemon = Daemon(config, ["--demo"]).start()
    daemons.append(daemon)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).is_success
        except httpx.HTTPError:
            return False

    daemon.wait_for(healthy, why="the tracking server")
    assert daemon.stop() == 0
    output = daemon.output()
    assert "not starting" not in output
    assert "campaigns/eid_sale.yaml:6: offers[0].sku: no product with sku 'PANJABI-01'" in output
