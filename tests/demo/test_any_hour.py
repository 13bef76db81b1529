"""`make demo` at any hour: within two minutes the mail sink holds every campaign's email.

The demo is seeded at a simulated hour, then ticks run at that `now` and a minute
and two minutes later (the daemon ticks every minute), sending over SMTP to the
development sink on loopback. The send window stays 09:00-20:00 in each
customer's own clock: the demo's customers abroad are what makes every hour work.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.deliver.compose import Composer
from engine.deliver.mailer import SmtpMailer
from engine.deliver.sink import MailSink
from engine.demo import MIN_CUSTOMERS, place_in_tiers, seed_demo
from engine.project.loader import Secrets
from engine.store.db import session_scope
from engine.store.models import Message
from engine.tick import tick
from tests.conftest import REPO
from tests.delivery_fixtures import project_for

SECRETS = Secrets(secret="demo-any-hour-secret-0123456789")
TICKS = (timedelta(0), timedelta(minutes=1), timedelta(minutes=2))

# Every three hours of a November day (New York on standard time, Sydney on
# summer time), and in July (the other way round) the half hours when fewest
# of the demo's clocks read 09:00-20:00.
HOURS = (
    [
        pytest.param(datetime(2026, 11, 22, hour, 0, tzinfo=UTC), id=f"nov-{hour:02d}h00Z")
        for hour in range(0, 24, 3)
    ]
    + [
        pytest.param(datetime(2026, 7, 15, hour, 30, tzinfo=UTC), id=f"jul-{hour:02d}h30Z")
        for hour in (0, 4, 16, 19)
    ]
    + [pytest.param(datetime(2026, 11, 22, 2, 0, tzinfo=UTC), id="dhaka-08h00")]
)
COMPOSERS: dict[int, Composer] = {}  # the templates compiled once, not once per hour


def make_demo(engine: Engine, outbox: Path, now: datetime) -> None:
    """`lifecycle demo` at `now` (the shop, then its club's tiers as of three days
    before), then two minutes of `lifecycle run --demo`'s ticks."""
    with session_scope(engine) as session:
        seed_demo(session, now=now, customers=MIN_CUSTOMERS)
    place_in_tiers(engine, project_for(REPO), now)

    async def run() -> None:
        async with MailSink(outbox, port=0, echo=None) as sink:
            project = project_for(REPO, sink.port)  # the shipped files, read only
            mailer = SmtpMailer.from_project(project, SECRETS)
            composer = COMPOSERS.setdefault(0, Composer(project, SECRETS))
            try:
                for after in TICKS:
                    await tick(engine, project, SECRETS, mailer, now + after, composer=composer)
            finally:
                await mailer.close()

    asyncio.run(run())


def campaigns_in(outbox: Path, engine: Engine) -> Counter[str]:
    """How many emails of each campaign the sink holds, by their Message-ID."""
    parser = BytesHeaderParser(policy=default)
    ids = {str(parser.parsebytes(eml.read_bytes())["Message-ID"]) for eml in outbox.glob("*.eml")}
    with Session(engine) as session:
        rows = session.execute(
            select(col(Message.campaign)).where(col(Message.message_id).in_(ids))
        ).all()
    return Counter(campaign for (campaign,) in rows)


@pytest.mark.parametrize("now", HOURS)
def test_the_sink_holds_every_campaign_within_two_minutes(
    db: Engine, tmp_path: Path, now: datetime
) -> None:
    outbox = tmp_path / "outbox"
    make_demo(db, outbox, now)
    enabled = set(project_for(REPO).config.campaigns)
    assert {"welcome_series", "thank_you", "holiday_preannounce", "price_drop_refund"} <= enabled
    in_sink = campaigns_in(outbox, db)
    assert set(in_sink) == enabled
    # Two customers' clocks or more, never a single one, carry each campaign.
    assert min(in_sink.values()) >= 2, in_sink
