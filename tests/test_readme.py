"""The README, followed from a fresh copy: the demo in the background, then every shell
command the README shows for it, as written, in processes of their own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.demo import MIN_CUSTOMERS
from engine.project.loader import load_project
from engine.render.formatting import money
from engine.store.db import make_engine
from engine.store.models import Customer
from tests.daemon_fixtures import LIFECYCLE, free_port

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
API_KEY = "pick-another"


def shell_commands() -> list[str]:
    """Every command of the README's ```sh blocks, continuation lines joined, comments and
    the two make targets dropped (the test plays `make demo` itself)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL):
        text = re.sub(r"\\\n", " ", block)
        # a quoted argument may run over several lines: split only outside quotes
        current = ""
        for line in text.splitlines(keepends=True):
            current += line
            if current.count("'") % 2 == 0:
                commands.append(current.strip())
                current = ""
    return [c for c in commands if c and not c.startswith("make ")]


def without_comment(command: str) -> str:
    return re.sub(r"\s+#[^'\"]*$", "", command)


def test_the_readme_shows_the_commands_for_the_demo() -> None:
    shown = " ".join(shell_commands())
    for command in (
        ".venv/bin/lifecycle preview welcome --text",
        ".venv/bin/lifecycle send-test welcome --to",
        ".venv/bin/lifecycle plan --dry-run",
        ".venv/bin/lifecycle tick",
        ".venv/bin/lifecycle send",
        ".venv/bin/lifecycle report",
        ".venv/bin/lifecycle check",
        ".venv/bin/lifecycle holiday list",
        "curl -fsS -X POST http://127.0.0.1:8000/api/events",
    ):
        assert command in shown


def test_the_money_example_is_what_the_filter_prints() -> None:
    found = re.search(
        r"a credit of ([\d.]+) taka, `\{\{ credit.amount \| money \}\}`, reads (\S+) ", README
    )
    assert found, "the README's money example moved"
    config = load_project(REPO / "config.yaml").config
    shown = money(Decimal(found[1]), currency=config.shop.currency, locale="bn_BD",
                  symbol_locale=config.shop.locale)  # fmt: skip
    assert found[2] == shown == "২৮.০০৳"


@pytest.fixture
def demo(tmp_path: Path):
    """A copy of the project on free ports, `lifecycle demo` then `lifecycle run --demo`."""
    shop = tmp_path / "shop"
    shop.mkdir()
    shutil.copy(REPO / "config.yaml", shop)
    shutil.copy(REPO / "tiers.yaml", shop)
    for folder in ("campaigns", "segments", "templates"):
        shutil.copytree(REPO / folder, shop / folder)
    (shop / ".venv").symlink_to(REPO / ".venv")
    smtp, http = free_port(), free_port()
    config = shop / "config.yaml"
    text = config.read_text().replace("port: 8025", f"port: {smtp}")
    config.write_text(text.replace(":8000", f":{http}").replace("port: 8000", f"port: {http}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
    env["LIFECYCLE_API_KEY"] = API_KEY
    seeded = subprocess.run([LIFECYCLE, "demo", "--customers", str(MIN_CUSTOMERS)], cwd=shop, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    log = (shop / "run.log").open("wb")
    daemon = subprocess.Popen([LIFECYCLE, "run", "--demo"], cwd=shop, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while b"Ctrl-C stops it" not in (shop / "run.log").read_bytes():
        assert daemon.poll() is None and time.monotonic() < deadline, (shop / "run.log").read_text()
        time.sleep(0.1)
    try:
        yield shop, http, env
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()


@pytest.mark.slow
def test_every_readme_command_works_on_the_demo(demo) -> None:
    shop, http, env = demo
    env = {k: v for k, v in env.items() if k != "LIFECYCLE_API_KEY"}  # the README exports it
    script = []
    for command in shell_commands():
        # the one change: the demo runs on a free port, not on 8000
        script.append(without_comment(command).replace("127.0.0.1:8000", f"127.0.0.1:{http}"))
    started = datetime.now(UTC)
    for line in script:
        prefix = "\n".join(c for c in script[: script.index(line)] if c.startswith("export "))
        result = subprocess.run(["bash", "-c", f"set -e\n{prefix}\n{line}"], cwd=shop, env=env,
                                capture_output=True, text=True, timeout=90)  # fmt: skip
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        if line.startswith(".venv/bin/lifecycle preview"):
            assert result.stdout.startswith("Subject: ")
        if line.startswith("curl"):
            assert '"applied"' in result.stdout
    assert list((shop / "outbox").glob("*.eml"))  # send-test and the daemon's sends landed
    engine = make_engine(f"sqlite:///{shop / 'lifecycle.db'}")
    with engine.connect() as conn:
        placed = conn.execute(
            select(Customer.__table__.c.first_order_at).where(
                Customer.__table__.c.external_id == "C-900"
            )
        ).scalar_one()
    engine.dispose()
    assert started - timedelta(seconds=5) <= placed.replace(tzinfo=UTC) <= datetime.now(UTC)
