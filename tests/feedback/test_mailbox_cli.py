"""End to end through the command line: emails sent over SMTP with VERP senders, their
bounces delivered to a real Maildir, `lifecycle bounces` reading it once."""

from __future__ import annotations

import asyncio
import json
import mailbox
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from engine.feedback import MailboxPoller
from engine.project.loader import Secrets, load_project
from engine.store.db import make_engine
from engine.store.models import MessageEvent, Suppression
from tests.cli.test_delivery import AT, run, script, shop  # noqa: F401 - fixtures
from tests.smtp_servers import Script

BOUNCE_ADDRESS = "bounce@bounces.nakshighor.example"


@pytest.fixture
def sent(shop: Path, script: Script) -> Iterator[tuple[Path, dict[str, str]]]:  # noqa: F811
    """The three welcome emails sent; config.yaml with a bounce address and a Maildir.
    Yields the config and each recipient's envelope sender."""
    text = shop.read_text()
    text = text.replace("  from:", f"  bounce_address: {BOUNCE_ADDRESS}\n  from:", 1)
    shop.write_text(text + "\nbounces:\n  maildir: bounces\n")
    code, out = run(shop, "tick", "--at", AT)
    assert code == 0, out
    code, out = run(shop, "send", "--at", AT)
    assert code == 0, out
    envelope = {r.recipients[0]: r.sender for r in script.received}
    assert len(envelope) == 3
    yield shop, envelope


def dsn(verp: str, recipient: str, status: str, diagnostic: str) -> bytes:
    """A Postfix-style RFC 3464 report for `recipient`, delivered to `verp`."""
    return (
        f"Delivered-To: {verp}\r\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <20261122060500.ABC@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "--B--\r\n"
    ).encode()


def test_a_bounce_in_the_maildir_suppresses_its_address_once(
    sent: tuple[Path, dict[str, str]],
) -> None:
    config, envelope = sent
    assert all(
        re.fullmatch(r"bounce\+\d+-[a-z2-7]{16}@bounces\.nakshighor\.example", s)
        for s in envelope.values()
    )
    box = mailbox.Maildir(config.parent / "bounces", create=True)
    box.add(dsn(envelope["c0@example.com"], "c0@example.com", "5.1.1", "550 5.1.1 User unknown"))
    box.add(dsn(envelope["c1@example.com"], "c1@example.com", "4.2.2", "452 4.2.2 Mailbox full"))
    forged = re.sub(r"-[a-z2-7]{16}@", "-aaaaaaaaaaaaaaaa@", envelope["c2@example.com"])
    box.add(dsn(forged, "c2@example.com", "5.1.1", "550 5.1.1 User unknown"))
    box.add(
        b"From: c2@example.com\r\nTo: " + envelope["c2@example.com"].encode()
        + b"\r\nSubject: Automatic reply: Welcome\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n"
    )  # fmt: skip

    code, out = run(config, "bounces", "--json")
    assert code == 0, out
    counts = json.loads(out)
    assert counts["read"] == 4
    assert (
        counts["hard bounce"],
        counts["soft bounce"],
        counts["unmatched"],
        counts["ignored"],
    ) == (1, 1, 1, 1)
    assert counts["suppressed"] == ["c0@example.com"]

    engine = make_engine(load_project(config).database_url())
    with Session(engine) as session:
        suppressed = {s.email: s.reason for s in session.scalars(select(Suppression))}
        bounces = sorted(e.detail or "" for e in session.scalars(select(MessageEvent)))
    engine.dispose()
    assert suppressed == {"c0@example.com": "hard bounce 5.1.1: 550 5.1.1 User unknown"}
    assert bounces == ["hard 5.1.1: 550 5.1.1 User unknown", "soft 4.2.2: 452 4.2.2 Mailbox full"]
    # Each report moved aside: INBOX empty, the forged one for a person to look at.
    assert len(box) == 0
    assert len(box.get_folder("Processed")) == 3 and len(box.get_folder("Unmatched")) == 1

    code, out = run(config, "bounces", "--json")
    assert code == 0 and json.loads(out)["read"] == 0


def test_without_a_bounce_address_the_command_says_what_is_missing(shop: Path) -> None:  # noqa: F811
    code, out = run(shop, "bounces")
    assert code == 2 and "sending.bounce_address" in out


def test_a_missing_maildir_is_an_error_that_names_it(sent: tuple[Path, dict[str, str]]) -> None:
    config, _ = sent
    code, out = run(config, "bounces")
    assert code == 1 and "is not a Maildir" in out and "bounces" in out


def test_the_daemon_says_an_unreadable_mailbox_once_and_backs_off(
    sent: tuple[Path, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    config, _ = sent
    project = load_project(config)
    engine = make_engine(project.database_url())
    secrets = Secrets.from_env()
    poller = MailboxPoller()
    now = datetime.fromisoformat(AT.replace("Z", "+00:00"))
    every = project.config.bounces.every
    for minutes in range(0, 60, 1):
        asyncio.run(poller(engine, project, secrets, now + timedelta(minutes=minutes)))
    warnings = [r for r in caplog.records if "bounce mailbox not read" in r.getMessage()]
    assert len(warnings) == 1 and "is not a Maildir" in warnings[0].getMessage()
    # Tried at 0, 10 and 30 minutes: 2, 4, then 8 times `every` (5 minutes) apart.
    assert every == timedelta(minutes=5)
    assert poller.failures == 3 and poller.due == now + timedelta(minutes=70)
    mailbox.Maildir(config.parent / "bounces", create=True)
    assert asyncio.run(poller(engine, project, secrets, poller.due)) is not None
    assert poller.failures == 0 and poller.due == now + timedelta(minutes=70) + every
    engine.dispose()
