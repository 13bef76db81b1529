"""The demo's secret: `.lifecycle-secret` beside config.yaml signs the links when
LIFECYCLE_SECRET is not set, so the commands work on the demo in a second terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main
from engine.demo import MIN_CUSTOMERS
from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import load_project
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Message

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
NO_SECRET = (
    "environment: LIFECYCLE_SECRET: is not set: emails need it to sign their open, click "
    "and unsubscribe links"
)


@pytest.fixture
def shop(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One customer whose welcome is due at NOW; no secret in the environment."""
    for name in ("LIFECYCLE_SECRET", "LIFECYCLE_DATABASE_URL", "LIFECYCLE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    config = project_dir / "config.yaml"
    engine = make_engine(load_project(config).database_url())
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(s, sku="TEA-500G", name="Tea", price="14", now=NOW - timedelta(days=9))
        upsert_customer(s, external_id="c1", email="c1@example.com", name="Nadia",
                        now=NOW - timedelta(days=1), marketing_consent=True)  # fmt: skip
        record_order(s, external_id="o1", customer_id="c1", items=[Line("TEA-500G", 2)],
                     placed_at=NOW - timedelta(minutes=30))  # fmt: skip
    engine.dispose()
    return config


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    return result.exit_code, result.output


def messages(config: Path) -> int:
    engine = make_engine(load_project(config).database_url())
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Message)).scalar_one()
    engine.dispose()
    return int(count)


def test_without_any_secret_tick_stops_before_it_plans(shop: Path) -> None:
    code, out = run(shop, "tick", "--at", NOW.isoformat())
    assert code == 2, out
    assert NO_SECRET in out
    assert messages(shop) == 0  # nothing queued that could not be signed


def test_without_any_secret_preview_says_which_variable(shop: Path) -> None:
    code, out = run(shop, "preview", "welcome", "--text")
    assert code == 2 and NO_SECRET in out


def test_the_demo_makes_its_secret_and_the_other_commands_use_it(shop: Path) -> None:
    code, out = run(shop, "demo", "--customers", str(MIN_CUSTOMERS), "--at", NOW.isoformat())
    assert code == 0, out
    secret = shop.parent / ".lifecycle-secret"
    assert len(secret.read_text().strip()) >= 16
    assert secret.stat().st_mode & 0o777 == 0o600

    code, out = run(shop, "preview", "welcome", "--text")
    assert code == 0, out
    assert out.startswith("Subject: ") and "/u/" in out  # a signed unsubscribe link

    code, out = run(shop, "tick", "--at", NOW.isoformat(), "--json")
    assert NO_SECRET not in out
    assert messages(shop) > 0


def test_run_without_demo_never_reads_the_demo_secret(shop: Path) -> None:
    (shop.parent / ".lifecycle-secret").write_text("a-demo-secret-0123456789abcdef\n")
    code, out = run(shop, "run")
    assert code == 2
    assert "LIFECYCLE_SECRET is not set (or shorter than 16 characters)" in out


def test_an_unusable_demo_secret_is_named(shop: Path) -> None:
    secret = shop.parent / ".lifecycle-secret"
    secret.write_text("short\n")
    code, out = run(shop, "preview", "welcome", "--text")
    assert code == 1
    assert f"error: {secret} holds no usable secret: delete it and run again" in out


def test_the_environment_wins_over_the_demo_file(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (shop.parent / ".lifecycle-secret").write_text("short\n")  # not read at all
    monkeypatch.setenv("LIFECYCLE_SECRET", "env-secret-0123456789abcdef")
    code, out = run(shop, "preview", "welcome", "--text")
    assert code == 0, out
