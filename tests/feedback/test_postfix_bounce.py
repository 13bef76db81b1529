"""End to end through a real Postfix on 127.0.0.1: the engine sends a welcome email over
STARTTLS (checked against the relay's own authority, sending.smtp.ca_file) to an
address that does not exist; Postfix accepts it, bounces it to the email's VERP
address, and delivers that bounce to the bounce Maildir; `lifecycle bounces` reads it
and suppresses the address."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import load_project
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Message, MessageEvent, Suppression
from tests.cli.test_delivery import run
from tests.cli.test_planning import FOUNDING, run_only
from tests.postfix_server import PostfixServer

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)  # noon in Dhaka: inside the send window


def test_a_bounce_from_a_real_postfix_suppresses_the_address(
    project_dir: Path, postfix_server: PostfixServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_SECRET", "postfix-bounce-secret-0123456789")
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL", raising=False)
    assert postfix_server.bounces is not None
    config = project_dir / "config.yaml"
    run_only(config, *FOUNDING)
    text = config.read_text()
    text = re.sub(
        r"port: 8025\n    security: none[^\n]*",
        f"port: {postfix_server.port}\n    security: starttls\n    ca_file: {postfix_server.cafile}\n"
        "    timeout: 5s",
        text,
    )
    text = text.replace(
        "  from:", f"  bounce_address: bounce@{postfix_server.bounce_domain}\n  from:", 1
    )
    config.write_text(text + f"\nbounces:\n  maildir: {postfix_server.bounces}\n")
    absent = f"nosuchuser@{postfix_server.domain}"
    engine = make_engine(load_project(config).database_url())
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(
            s, sku="JUTE-BAG-01", name="Jute bag", price="350", now=NOW - timedelta(days=9)
        )
        upsert_customer(
            s, external_id="c1", email=absent, name="Nadia", now=NOW, marketing_consent=True
        )
        record_order(
            s,
            external_id="o1",
            customer_id="c1",
            items=[Line("JUTE-BAG-01", 1)],
            placed_at=NOW - timedelta(minutes=30),
        )
    at = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")

    code, out = run(config, "tick", "--at", at)
    assert code == 0, out
    code, out = run(config, "send", "--at", at)
    assert code == 0, out
    with Session(engine) as session:
        [sent] = session.scalars(select(Message)).all()
    assert sent.status == "sent", sent.last_error  # Postfix took it: the bounce comes later

    [dsn] = postfix_server.wait_for_maildir(1)
    assert dsn.get_content_type() == "multipart/report"
    code, out = run(config, "bounces", "--json")
    assert code == 0, out
    counts = json.loads(out)
    assert counts["hard bounce"] == 1 and counts["suppressed"] == [absent]
    with Session(engine) as session:
        [suppressed] = session.scalars(select(Suppression)).all()
        [event] = session.scalars(select(MessageEvent)).all()
    engine.dispose()
    assert suppressed.email == absent and suppressed.reason.startswith("hard bounce 5.1.1")
    assert (
        event.message_id == sent.id
        and event.detail is not None
        and event.detail.startswith("hard 5.1.1")
    )
