"""The bounce domain's SMTP listener, over real SMTP on 127.0.0.1: reports for the
bounce address are recorded before the 250; nothing else is accepted."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.feedback import BounceListener, Processor, VerpPattern
from engine.project import Bounces
from engine.store import MessageEvent, Suppression
from tests import store_fixtures
from tests.feedback.test_apply import SIGNER, seed
from tests.feedback.test_mailbox_cli import dsn

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

BOUNCE = "bounce@bounces.nakshighor.example"


class Running:
    """A listener on its own event loop in a thread, for a blocking SMTP client."""

    def __init__(self, engine: Engine):
        processor = Processor(
            engine,
            SIGNER,
            VerpPattern(BOUNCE),
            Bounces(),
            lambda: datetime(2026, 11, 20, tzinfo=UTC),
        )
        self.listener = BounceListener(processor, BOUNCE, "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()

    def __enter__(self) -> BounceListener:
        import threading

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)
        return self.listener

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def listener(fresh_store: Engine) -> Iterator[BounceListener]:
    with Running(fresh_store) as running:
        yield running


def verp(message_id: int) -> str:
    return f"bounce+{SIGNER.bounce_token(message_id)}@bounces.nakshighor.example"


def test_a_bounce_sent_to_the_listener_is_recorded_before_its_250(
    fresh_store: Engine, listener: BounceListener
) -> None:
    [mid] = seed(fresh_store)
    # Like Postfix's bounce daemon: the null sender, the VERP address as recipient,
    # and no header naming that address (the listener adds Delivered-To).
    report = dsn(
        "undisclosed-recipients:;", "rahima@example.com", "5.1.1", "550 5.1.1 User unknown"
    )
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
        refused = client.sendmail("<>", [verp(mid)], report)
    assert refused == {}
    with Session(fresh_store) as session:
        assert [s.email for s in session.exec(select(Suppression)).all()] == ["rahima@example.com"]
        assert [e.detail for e in session.exec(select(MessageEvent)).all()] == [
            "hard 5.1.1: 550 5.1.1 User unknown"
        ]
    assert listener.tally.counts == {"hard bounce": 1}


def test_it_is_not_an_open_relay(listener: BounceListener) -> None:
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
        for address in (
            "someone@example.com",
            "bounce@other.example",
            "postmaster@bounces.nakshighor.example",
        ):
            client.ehlo()
            client.mail("<>")
            code, _ = client.rcpt(address)
            assert code == 550, address
            client.rset()
        client.mail("<>")
        assert client.rcpt("BOUNCE+1-abc@Bounces.Nakshighor.Example")[0] == 250  # any case


def test_a_report_too_big_is_refused_at_data(listener: BounceListener) -> None:
    with (
        smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client,
        pytest.raises(smtplib.SMTPException) as caught,
    ):
        client.sendmail("<>", [BOUNCE], b"Subject: big\r\n\r\n" + b"x" * 2_100_000)
    assert "552" in str(caught.value) or "too" in str(caught.value).lower()


def test_a_forged_report_is_accepted_but_records_nothing(
    fresh_store: Engine, listener: BounceListener
) -> None:
    seed(fresh_store)
    forged = "bounce+1-aaaaaaaaaaaaaaaa@bounces.nakshighor.example"
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
        client.sendmail(
            "<>", [forged], dsn(forged, "rahima@example.com", "5.1.1", "550 5.1.1 User unknown")
        )
    with Session(fresh_store) as session:
        assert session.exec(select(Suppression)).all() == []
    assert listener.tally.counts == {"unmatched": 1}
