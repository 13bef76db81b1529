"""`lifecycle send`, `tick`, `send-test` and `sink` through the real command line,
against a scripted aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine.cli import main
from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import load_project
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Message
from tests.cli.test_planning import FOUNDING, run_only
from tests.daemon_fixtures import free_port
from tests.smtp_servers import Script, ServerThread

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
AT = "2026-11-22T06:00:00Z"


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def shop(project_dir: Path, script: Script, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Three new customers (first order 30 minutes ago) and an SMTP server that
    wants a login; config.yaml points at it."""
    monkeypatch.setenv("LIFECYCLE_SECRET", "cli-send-test-secret-0123456789")
    monkeypatch.setenv("LIFECYCLE_SMTP_PASSWORD", "right-password")
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL", raising=False)
    config = project_dir / "config.yaml"
    run_only(config, *FOUNDING)  # the one-email welcome
    engine = make_engine(load_project(config).database_url())
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(
            s, sku="JUTE-BAG-01", name="Jute bag", price="350", now=NOW - timedelta(days=9)
        )
        for n in range(3):
            upsert_customer(s, external_id=f"c{n}", email=f"c{n}@example.com", name=f"Nadia {n}",
                            now=NOW, marketing_consent=True)  # fmt: skip
            record_order(s, external_id=f"o{n}", customer_id=f"c{n}", items=[Line("JUTE-BAG-01", 1)],
                         placed_at=NOW - timedelta(minutes=30))  # fmt: skip
    engine.dispose()
    with ServerThread(script).running() as port:
        text = config.read_text()
        text = re.sub(r"port: 8025", f"port: {port}\n    username: shop\n    timeout: 2s", text)
        config.write_text(text.replace("rate_per_second: 50", "rate_per_second: 1000"))
        yield config


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    return result.exit_code, result.output


def statuses(config: Path) -> list[str]:
    engine = make_engine(load_project(config).database_url())
    with engine.connect() as conn:
        found = sorted(conn.execute(select(Message.__table__.c.status)).scalars())
    engine.dispose()
    return found


@pytest.mark.slow
def test_tick_then_send_with_dry_run_limit_and_pause(shop: Path, script: Script) -> None:
    code, out = run(shop, "send", "--dry-run", "--json", "--at", AT)
    assert code == 0, out
    assert json.loads(out)["counts"] == {}

    script.reject_logins = True
    code, out = run(shop, "tick", "--at", AT, "--json")
    report = json.loads(out)
    assert code == 1, out
    assert report["plan"]["campaigns"]["welcome"]["queued"] == 3
    assert report["dispatch"]["paused"] and "535" in report["dispatch"]["pause_reason"]
    assert statuses(shop) == ["queued"] * 3 and script.received == []

    code, out = run(shop, "send", "--dry-run", "--json", "--at", AT)
    assert code == 0 and json.loads(out)["counts"] == {"sent": 3}
    assert statuses(shop) == ["queued"] * 3

    script.reject_logins = False
    code, out = run(shop, "send", "--limit", "2", "--json", "--at", AT, "--compose-processes", "1")
    assert code == 0, out
    assert json.loads(out)["counts"] == {"sent": 2}  # composed in a separate process
    code, out = run(shop, "send", "--at", AT)
    assert code == 0 and "1 sent" in out and "welcome: 1 sent" in out
    assert statuses(shop) == ["sent"] * 3
    assert sorted(script.recipients()) == ["c0@example.com", "c1@example.com", "c2@example.com"]
    subjects = {r.message["Subject"] for r in script.received}
    assert subjects == {"Welcome to Nakshi Ghor, Nadia"} or all("Nadia" in s for s in subjects)


def test_send_test_renders_for_a_customer_and_records_nothing(shop: Path, script: Script) -> None:
    code, out = run(shop, "send-test", "welcome", "--to", "marketer@shop.test", "--customer", "c1")
    assert code == 0, out
    assert "sent welcome" in out and "marketer@shop.test" in out
    [received] = script.received
    assert received.recipients == ["marketer@shop.test"]
    assert received.message["To"] == "<marketer@shop.test>"
    assert "Nadia" in received.message["Subject"]
    assert statuses(shop) == []


def test_send_test_refuses_a_bad_address(shop: Path, script: Script) -> None:
    code, out = run(shop, "send-test", "welcome", "--to", "not-an-address")
    assert code == 1 and "--to must be an email address" in out
    assert script.received == []


def test_send_test_with_no_mail_server_names_it_and_the_sink(shop: Path) -> None:
    closed = free_port()
    text = shop.read_text()
    shop.write_text(re.sub(r"(smtp:\n\s+host: 127.0.0.1\n\s+port: )\d+", rf"\g<1>{closed}", text))
    code, out = run(shop, "send-test", "welcome", "--to", "marketer@shop.test", "--customer", "c1")
    assert code == 1
    assert out.splitlines() == [
        f"not sent (transient): cannot connect to the mail server at 127.0.0.1:{closed}: "
        "connection refused (no mail server is listening there) (at connect)",
        "to try emails without a real mail server, run `lifecycle sink` in another terminal: "
        "a local one on 127.0.0.1:8025 that keeps each message as a file "
        "(sending.smtp in config.yaml says which server is used)",
    ]


def test_bad_config_exits_2(shop: Path) -> None:
    shop.write_text(shop.read_text().replace("connections: 4", "connections: 0"))
    code, out = run(shop, "send", "--json")
    assert code == 2 and "connections" in out


def test_each_test_send_has_a_message_id_of_its_own(shop: Path, script: Script) -> None:
    """A mailbox that got an earlier test hides a new one with the same Message-ID."""
    for _ in range(2):
        code, out = run(shop, "send-test", "welcome", "--to", "m@shop.test", "--customer", "c1")
        assert code == 0, out
    first, second = (r.message["Message-ID"] for r in script.received)
    assert first != second
    assert all(r.message["To"] == "<m@shop.test>" for r in script.received)


def test_sink_command_reports_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            main, ["sink", "--port", str(port), "--dir", str(tmp_path / "out")]
        )
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output
