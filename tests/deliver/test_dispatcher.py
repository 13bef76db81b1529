"""The dispatcher against real stores and a real, scripted SMTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.dispatcher import dispatch
from engine.deliver.dryrun import rehearse
from engine.deliver.mailer import MemoryMailer, Outcome, SendResult, SmtpMailer, Stage
from engine.deliver.results import backoff
from engine.project.loader import Project, Secrets
from engine.store.db import make_engine
from engine.store.models import Message, MessageKind, MessageStatus, Suppression
from tests.delivery_fixtures import (
    BrokenComposer,
    Outbox,
    PlainComposer,
    project_for,
    with_campaign,
)
from tests.founding import founding_project
from tests.smtp_servers import Script, ServerThread, serving


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    """The shipped project with the founding campaigns only (see tests/founding.py)."""
    return founding_project(project_dir)


SECRETS = Secrets(smtp_password="right-password")


def run_dispatch(
    engine: Engine, project: Project, now: datetime, mailer: Any = None, **kw: Any
) -> Any:
    async def go() -> Any:
        smtp = mailer or SmtpMailer.from_project(project, SECRETS)
        try:
            return await dispatch(
                engine, project, SECRETS, smtp, now, composer=PlainComposer(), **kw
            )
        finally:
            await smtp.close()

    return asyncio.run(go())


def with_server(
    script: Script, project_dir: Path, engine: Engine, now: datetime, **sending: Any
) -> Any:
    async def go() -> Any:
        async with serving(script) as port:
            project = project_for(project_dir, port, **sending)
            mailer = SmtpMailer.from_project(project, SECRETS)
            try:
                return await dispatch(
                    engine, project, SECRETS, mailer, now, composer=PlainComposer()
                )
            finally:
                await mailer.close()

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_due_message_is_sent_once_and_recorded(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(store, now)
    due = box.queue(23)
    later = box.message(box.customer(), send_after=now + timedelta(hours=1))
    waiting = box.message(
        box.customer(),
        status=MessageStatus.RETRY,
        next_attempt_at=now + timedelta(minutes=5),
        attempts=1,
    )
    script = Script()
    report = with_server(script, project_dir, store, now, batch_size=7, connections=3)
    rows = box.rows()
    assert sorted(script.recipients()) == sorted(
        f"customer{i}@example.com" for i in range(1, 46, 2)
    )
    assert report.counts == {"sent": 23} and report.claimed == 23 and not report.paused
    for message_id in due:
        row = rows[message_id]
        assert row.status == MessageStatus.SENT and row.smtp_code == 250 and row.attempts == 1
        assert row.sent_at is not None and now <= row.sent_at < now + timedelta(minutes=1)
        assert row.message_id and row.message_id.startswith(f"<{message_id}.")
    headers = {r.message["Message-ID"] for r in script.received}
    assert headers == {rows[i].message_id for i in due}
    assert (
        rows[later].status == MessageStatus.QUEUED and rows[waiting].status == MessageStatus.RETRY
    )
    assert report.campaigns == {"welcome": Counter(sent=23)}


def test_a_line_break_in_a_name_fails_that_message_only(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    good = box.queue(3)
    bad = box.message(box.customer(name="Evil\r\nBcc: all@example.com"))
    script = Script()
    report = with_server(script, project_dir, sqlite_store, now)
    rows = box.rows()
    assert rows[bad].status == MessageStatus.FAILED
    assert "line break" in (rows[bad].last_error or "")
    assert all(rows[i].status == MessageStatus.SENT for i in good)
    assert len(script.received) == 3 and report.counts == {"sent": 3, "failed": 1}
    assert b"Bcc" not in b"".join(r.data for r in script.received)


def test_an_invalid_address_fails_before_smtp(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    good = box.queue(2)
    bad = box.message(box.customer("not an address@example..com"))
    script = Script()
    report = with_server(script, project_dir, sqlite_store, now)
    rows = box.rows()
    assert rows[bad].status == MessageStatus.FAILED and rows[bad].attempts == 0
    assert "invalid recipient address" in (rows[bad].last_error or "")
    assert script.mails == 2 and [rows[i].status for i in good] == ["sent", "sent"]
    assert any(f"message {bad}:" in e for e in report.errors)


def test_smtp_down_at_connect_keeps_every_message(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    ids = box.queue(10)
    project = project_for(project_dir, free_port(), connections=2)
    report = run_dispatch(sqlite_store, project, now)
    statuses = Counter(box.statuses().values())
    # Both connections failed to connect (a third send may have been under way): paused.
    assert statuses["retry"] in (2, 3) and statuses["retry"] + statuses["queued"] == 10
    assert report.paused and "unreachable" in (report.pause_reason or "")
    retried = [m for m in box.rows().values() if m.status == MessageStatus.RETRY]
    assert all(m.next_attempt_at and m.next_attempt_at > now and m.attempts == 1 for m in retried)
    # The server comes back: a later pass sends all of them, once.
    script = Script()
    later = now + timedelta(hours=1)
    report = with_server(script, project_dir, sqlite_store, later)
    assert report.counts == {"sent": 10}
    assert sorted(script.recipients()) == sorted(
        box.rows()[i].id and f"customer{2 * n + 1}@example.com" for n, i in enumerate(ids)
    )


def test_a_dropped_connection_loses_and_duplicates_nothing(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(store, now)
    ids = box.queue(12)
    cut = "customer9@example.com"  # the fifth message: its DATA is cut off
    script = Script(drop_at_mail={3}, drop_after_data={cut})
    report = with_server(script, project_dir, store, now, connections=1, batch_size=12)
    rows = box.rows()
    by_address = {f"customer{2 * n + 1}@example.com": i for n, i in enumerate(ids)}
    received = script.recipients()
    assert len(received) == len(set(received)) == 10
    for address, message_id in by_address.items():
        status = rows[message_id].status
        if address in received:
            assert status == MessageStatus.SENT
        elif address == cut:
            assert status == MessageStatus.IN_DOUBT and "after DATA" in (
                rows[message_id].last_error or ""
            )
        else:
            assert status == MessageStatus.RETRY  # cut at MAIL FROM: not handed over
    assert report.counts == {"sent": 10, "retry": 1, "in_doubt": 1}
    # The retry goes on a later pass; the one in doubt is not sent again.
    later = with_server(script, project_dir, store, now + timedelta(hours=7))
    assert later.counts == {"sent": 1}
    assert len(script.recipients()) == len(set(script.recipients())) == 11
    assert cut not in script.recipients()


def test_421_and_451_retry_with_backoff_then_send(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    ids = box.queue(4)
    script = Script(mail_replies=["451 4.3.0 try again later", "421 4.7.0 too busy, closing"])
    report = with_server(script, project_dir, sqlite_store, now, connections=1)
    rows = box.rows()
    assert report.counts == {"retry": 2, "sent": 2}
    retried = [rows[i] for i in ids if rows[i].status == MessageStatus.RETRY]
    assert {m.smtp_code for m in retried} == {451, 421}
    for m in retried:
        assert m.next_attempt_at and now + timedelta(
            minutes=1
        ) <= m.next_attempt_at <= now + timedelta(minutes=3)
    assert script.connections == 2  # the 421 recycled the connection
    assert with_server(script, project_dir, sqlite_store, now + timedelta(minutes=1)).counts == {}
    again = with_server(script, project_dir, sqlite_store, now + timedelta(minutes=5))
    assert again.counts == {"sent": 2}
    assert all(m.status == MessageStatus.SENT for m in box.rows().values())
    assert {box.rows()[m.id].attempts for m in retried} == {2}


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(7)
    for attempt, ceiling in [(1, 120), (2, 240), (3, 480), (9, 6 * 3600), (30, 6 * 3600)]:
        delays = [backoff(attempt, rng).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_retries_give_up_after_max_attempts(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    last_try = box.message(box.customer(), status=MessageStatus.RETRY, attempts=2)
    too_old = box.message(box.customer(), send_after=now - timedelta(days=4))
    script = Script(mail_replies=["451 4.3.0 later", "451 4.3.0 later"])
    with_server(script, project_dir, sqlite_store, now, connections=1, max_attempts=3)
    rows = box.rows()
    for message_id in (last_try, too_old):
        assert rows[message_id].status == MessageStatus.FAILED
        assert "gave up after" in (rows[message_id].last_error or "")


def test_bad_mailbox_fails_and_is_suppressed(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(store, now)
    good = box.queue(3)
    bad = box.message(box.customer("gone@example.com"))
    script = Script(
        rcpt_replies={"gone@example.com": "550 5.1.1 <gone@example.com>: mailbox unknown"}
    )
    report = with_server(script, project_dir, store, now)
    rows = box.rows()
    assert rows[bad].status == MessageStatus.FAILED and rows[bad].smtp_code == 550
    assert "5.1.1" in (rows[bad].last_error or "")
    assert [rows[i].status for i in good] == ["sent"] * 3 and not report.paused
    with Session(store) as session:
        entry = session.scalars(select(Suppression)).one()
    assert entry.email == "gone@example.com" and entry.source == "smtp" and "5.1.1" in entry.reason
    assert report.suppressed_addresses == 1
    # The next email to that address is stopped before SMTP.
    again = box.message(rows[bad].customer_id, "thank_you")
    mails = script.mails
    with_server(script, project_dir, store, now)
    assert box.rows()[again].status == MessageStatus.SUPPRESSED and script.mails == mails


def test_other_permanent_refusals_fail_without_suppressing(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    box.queue(3)
    full = box.message(box.customer("full@example.com"))
    script = Script(rcpt_replies={"full@example.com": "552 5.2.2 mailbox full"})
    with_server(script, project_dir, sqlite_store, now)
    assert box.rows()[full].status == MessageStatus.FAILED
    with Session(sqlite_store) as session:
        assert session.scalars(select(Suppression)).all() == []


def test_rejected_login_pauses_and_suppresses_nobody(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(store, now)
    box.queue(60)
    script = Script(reject_logins=True)
    report = with_server(script, project_dir, store, now, smtp={"username": "shop"}, batch_size=5)
    assert report.paused and "535" in (report.pause_reason or "")
    assert report.claimed <= 30  # the few batches claimed ahead of the first reply; no more
    assert Counter(box.statuses().values()) == {"queued": 60}
    assert all(m.lease_owner is None and m.attempts == 0 for m in box.rows().values())
    assert script.received == []
    with Session(store) as session:
        assert session.scalars(select(Suppression)).all() == []


def test_right_password_logs_in(sqlite_store: Engine, project_dir: Path, now: datetime) -> None:
    box = Outbox(sqlite_store, now)
    box.queue(3)
    script = Script()
    report = with_server(
        script, project_dir, sqlite_store, now, smtp={"username": "shop"}, connections=1
    )
    assert report.counts == {"sent": 3} and script.logins == 1


def test_the_same_refusal_for_everyone_pauses(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    addresses = [f"shopper{n}@{'abc'[n % 3]}.example" for n in range(12)]
    for address in addresses:
        box.message(box.customer(address))
    refusal = {a: f"550 <{a}>: message refused, sender is on a block list" for a in addresses}
    script = Script(rcpt_replies=refusal)
    report = with_server(script, project_dir, sqlite_store, now, connections=1)
    assert report.paused and "5 messages in a row" in (report.pause_reason or "")
    assert Counter(box.statuses().values()) == {"queued": 12}
    with Session(sqlite_store) as session:
        assert session.scalars(select(Suppression)).all() == []


def test_the_same_refusal_from_one_domain_fails_its_messages_only(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    refused = [box.message(box.customer(f"staff{n}@corp.example")) for n in range(7)]
    good = box.queue(3)
    script = Script(
        rcpt_replies={f"staff{n}@corp.example": "554 5.3.0 relaying refused" for n in range(7)}
    )
    report = with_server(script, project_dir, sqlite_store, now, connections=1)
    rows = box.rows()
    assert not report.paused and report.counts == {"failed": 7, "sent": 3}
    assert [rows[i].status for i in refused] == ["failed"] * 7
    assert [rows[i].status for i in good] == ["sent"] * 3
    with Session(sqlite_store) as session:
        assert session.scalars(select(Suppression)).all() == []


def test_a_block_of_unknown_recipients_fails_them_and_the_rest_go(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(store, now)
    unknown = [box.message(box.customer(f"gone{n}@example.com")) for n in range(6)]
    good = box.queue(24)
    script = Script(
        rcpt_replies={
            f"gone{n}@example.com": f"550 5.1.1 <gone{n}@example.com>: Recipient address "
            "rejected: User unknown in virtual mailbox table"
            for n in range(6)
        }
    )
    report = with_server(script, project_dir, store, now, connections=2, batch_size=10)
    rows = box.rows()
    assert not report.paused, report.pause_reason
    assert report.counts == {"failed": 6, "sent": 24}
    assert all(rows[i].status == MessageStatus.FAILED and rows[i].attempts == 1 for i in unknown)
    assert [rows[i].status for i in good] == ["sent"] * 24
    assert len(script.received) == 24
    with Session(store) as session:
        suppressed = set(session.scalars(select(Suppression.email)))
    assert suppressed == {f"gone{n}@example.com" for n in range(6)}


def test_expired_lease_is_in_doubt_unless_never_handed_or_the_campaign_resends(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(store, now)
    stale = {  # handed to the SMTP server by a dispatcher that then died
        "status": MessageStatus.SENDING,
        "lease_owner": "dead-worker+smtp",
        "lease_until": now - timedelta(seconds=1),
    }
    doubtful = box.message(box.customer(), **stale)
    never_handed = box.message(box.customer(), **(stale | {"lease_owner": "dead-worker"}))
    critical = box.message(
        box.customer(), "price_drop_refund", kind=MessageKind.TRANSACTIONAL, **stale
    )
    live = box.message(box.customer(), **(stale | {"lease_until": now + timedelta(minutes=1)}))
    script = Script()

    async def go() -> Any:
        async with serving(script) as port:
            project = with_campaign(
                project_for(project_dir, port), "price_drop_refund", resend_in_doubt=True
            )
            mailer = SmtpMailer.from_project(project, SECRETS)
            try:
                return await dispatch(
                    store, project, SECRETS, mailer, now, composer=PlainComposer()
                )
            finally:
                await mailer.close()

    report = asyncio.run(go())
    rows = box.rows()
    assert rows[doubtful].status == MessageStatus.IN_DOUBT
    assert rows[critical].status == MessageStatus.SENT
    assert rows[live].status == MessageStatus.SENDING  # another dispatcher still holds it
    assert rows[never_handed].status == MessageStatus.SENT  # queued again: it never left
    assert (report.swept_in_doubt, report.swept_resend, report.swept_requeued) == (1, 1, 1)
    assert sorted(r.message["Message-ID"] for r in script.received) == sorted(
        [rows[critical].message_id, rows[never_handed].message_id]
    )


def test_expired_and_unsubscribed_messages_are_not_sent(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    expired = box.message(box.customer(), expires_at=now - timedelta(minutes=1))
    unsubscribed = box.message(box.customer(consent=False))
    refund = box.message(
        box.customer(consent=False), "price_drop_refund", kind=MessageKind.TRANSACTIONAL
    )
    listed = box.message(box.customer("listed@example.com"))
    with sqlite_store.begin() as conn:
        conn.execute(
            Suppression.__table__.insert(),
            {
                "email": "listed@example.com",
                "reason": "complaint",
                "source": "fbl",
                "created_at": now,
            },
        )
    script = Script()
    report = with_server(script, project_dir, sqlite_store, now)
    rows = box.rows()
    assert rows[expired].status == MessageStatus.EXPIRED
    assert rows[unsubscribed].status == MessageStatus.SUPPRESSED
    assert "consent" in (rows[unsubscribed].last_error or "")
    assert rows[listed].status == MessageStatus.SUPPRESSED and "complaint" in (
        rows[listed].last_error or ""
    )
    assert rows[refund].status == MessageStatus.SENT  # transactional: goes without consent
    assert report.counts == {"expired": 1, "suppressed": 2, "sent": 1}
    assert len(script.received) == 1


def test_timeout_after_data_is_in_doubt(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    ids = box.queue(3)
    script = Script(hang_after_data={"customer3@example.com"})
    report = with_server(script, project_dir, sqlite_store, now, connections=1)
    rows = box.rows()
    assert rows[ids[1]].status == MessageStatus.IN_DOUBT
    assert "timed out" in (rows[ids[1]].last_error or "").lower()
    assert rows[ids[0]].status == rows[ids[2]].status == MessageStatus.SENT
    assert report.counts == {"sent": 2, "in_doubt": 1}


def test_limit_and_stop(sqlite_store: Engine, project_dir: Path, now: datetime) -> None:
    box = Outbox(sqlite_store, now)
    box.queue(12)
    project = project_for(project_dir, batch_size=4)
    report = run_dispatch(sqlite_store, project, now, MemoryMailer(), limit=5)
    assert report.counts == {"sent": 5} and Counter(box.statuses().values()) == {
        "sent": 5,
        "queued": 7,
    }

    stop = asyncio.Event()

    def respond(sender: str, recipient: str, data: bytes) -> SendResult:
        if len(mailer.sent) == 2:
            stop.set()
        return SendResult(Outcome.SENT, Stage.DATA, 250, "ok")

    mailer = MemoryMailer(respond)
    report = run_dispatch(sqlite_store, project, now, mailer, stop=stop)
    assert report.stopped and report.counts["sent"] == 3
    assert Counter(box.statuses().values()) == {"sent": 8, "queued": 4}
    assert all(m.lease_owner is None for m in box.rows().values() if m.status == "queued")


class SlowMailer:
    """Takes 20 ms per message and looks at what is committed meanwhile."""

    concurrency = 1

    def __init__(self, engine: Engine):
        self.engine = engine
        self.committed_when_sending: list[int] = []

    async def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        with Session(self.engine) as session:
            sent = session.scalars(
                select(Message.id).where(Message.status == MessageStatus.SENT)
            ).all()
        self.committed_when_sending.append(len(sent))
        await asyncio.sleep(0.02)
        return SendResult(Outcome.SENT, Stage.DATA, 250, "ok")

    async def close(self) -> None:
        pass


def test_each_result_is_committed_with_the_next_handover(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    box.queue(30)
    commits = []
    event.listen(sqlite_store, "commit", lambda conn: commits.append(1))
    mailer = SlowMailer(sqlite_store)
    run_dispatch(sqlite_store, project_for(project_dir, batch_size=30), now, mailer)
    # When a message goes out, every one before it on the connection is recorded …
    assert mailer.committed_when_sending == list(range(30))
    # … in the commit that marks it handed over: no commits of results besides.
    assert len(commits) <= 30 + 4  # handovers, sweep, claim, the last result, a renewal


def test_handovers_of_several_connections_share_a_commit(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    box.queue(200)
    commits = []
    event.listen(sqlite_store, "commit", lambda conn: commits.append(1))
    report = run_dispatch(
        sqlite_store, project_for(project_dir, batch_size=200), now, MemoryMailer(concurrency=8)
    )
    assert report.counts == {"sent": 200}
    assert Counter(box.statuses().values()) == {"sent": 200}
    # 200 handovers eight at a time, with the results so far; sweep, claim, the last results
    assert len(commits) <= 200 // 8 + 6


def test_a_composer_crash_fails_one_message_not_the_batch(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    ids = box.queue(4)
    mailer = MemoryMailer()

    async def go() -> Any:
        return await dispatch(
            sqlite_store, project_for(project_dir), SECRETS, mailer, now, composer=BrokenComposer()
        )

    report = asyncio.run(go())
    rows = box.rows()
    broken = [i for i in ids if rows[i].occurrence == "4"]
    assert [rows[i].status for i in broken] == ["failed"]
    assert "cannot render" in (rows[broken[0]].last_error or "")
    assert report.counts == {"sent": 3, "failed": 1}


def test_rehearse_writes_nothing(sqlite_store: Engine, project_dir: Path, now: datetime) -> None:
    box = Outbox(sqlite_store, now)
    box.queue(3)
    box.message(box.customer(consent=False))
    before = box.statuses()
    report = asyncio.run(
        rehearse(sqlite_store, project_for(project_dir), SECRETS, now, composer=PlainComposer())
    )
    assert report.dry_run and report.counts == {"sent": 3, "suppressed": 1}
    assert box.statuses() == before


@pytest.mark.postgres
def test_two_dispatchers_on_postgres_deliver_each_message_once(
    postgres_url: str, project_dir: Path, now: datetime
) -> None:
    setup = make_engine(postgres_url)
    from engine.store.db import upgrade

    upgrade(setup)
    box = Outbox(setup, now)
    box.queue(120)
    script = Script()
    with ServerThread(script).running() as port:
        project = project_for(project_dir, port, batch_size=10, connections=2)

        def one_dispatcher(name: str) -> Any:
            engine = make_engine(postgres_url)
            try:
                return run_dispatch(engine, project, now, worker_id=name)
            finally:
                engine.dispose()

        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(one_dispatcher, ["first", "second"]))
    received = script.recipients()
    assert len(received) == len(set(received)) == 120
    assert Counter(box.statuses().values()) == {"sent": 120}
    assert sum(r.counts["sent"] for r in reports) == 120
    assert all(r.counts["sent"] > 0 for r in reports)  # both really took part
    owners = Counter(m.lease_owner for m in box.rows().values())
    assert set(owners) == {"first+smtp", "second+smtp"}
    setup.dispose()


def _send_until_done(url: str, project: Project, name: str, first_pass_after: float) -> list[Any]:
    """Dispatch passes as `name`, each with the wall clock as `now` (as the daemon
    and `lifecycle send` do), until no message is due or leased."""
    import time

    from sqlalchemy import func

    engine = make_engine(url)
    reports = []
    waiting = select(func.count()).where(
        Message.status.in_([MessageStatus.QUEUED, MessageStatus.RETRY, MessageStatus.SENDING])
    )
    deadline = time.monotonic() + 30
    time.sleep(first_pass_after)
    try:
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            reports.append(run_dispatch(engine, project, now, worker_id=name))
            with engine.connect() as conn:
                if conn.execute(waiting).scalar_one() == 0:
                    break
            time.sleep(0.2)
    finally:
        engine.dispose()
    return reports


def test_two_senders_with_a_slow_relay_and_short_leases_send_each_message_once(
    store: Engine, store_url: str, project_dir: Path
) -> None:
    """A pass's batch outlives a lease of 1 s (a 50 ms relay, 20 messages/s):
    the second sender, starting later, never takes and sends rows the first still
    holds, and the first never sends a row it no longer holds."""
    box = Outbox(store, datetime.now(UTC))
    ids = box.queue(60)
    script = Script(data_delay=0.05)
    with ServerThread(script).running() as port:
        project = project_for(
            project_dir, port, connections=1, rate_per_second=20.0, lease=timedelta(seconds=1)
        )
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(_send_until_done, store_url, project, "first", 0.0)
            second = pool.submit(_send_until_done, store_url, project, "second", 1.3)
            reports = first.result() + second.result()
    received = script.recipients()
    assert sorted(received) == sorted(f"customer{2 * n + 1}@example.com" for n in range(60))
    assert Counter(box.statuses().values()) == {"sent": 60}
    assert sum(r.counts["sent"] for r in reports) == 60
    assert {m.lease_owner for m in box.rows().values()} == {"first+smtp", "second+smtp"}
    assert len(ids) == 60


def test_leases_are_renewed_while_a_relay_slower_than_the_lease_holds_the_batch(
    store: Engine, store_url: str, project_dir: Path
) -> None:
    """Eight messages claimed at once take 2 s on a relay that thinks 250 ms about
    each; the lease is 1 s. A second sender's sweep finds every lease still live."""
    box = Outbox(store, datetime.now(UTC))
    box.queue(8)
    script = Script(data_delay=0.25)
    with ServerThread(script).running() as port:
        project = project_for(
            project_dir, port, connections=1, rate_per_second=20.0, lease=timedelta(seconds=1.0)
        )
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(_send_until_done, store_url, project, "first", 0.0)
            second = pool.submit(_send_until_done, store_url, project, "second", 1.0)
            reports = first.result() + second.result()
    received = script.recipients()
    assert sorted(received) == sorted(f"customer{2 * n + 1}@example.com" for n in range(8))
    assert Counter(box.statuses().values()) == {"sent": 8}
    assert [(r.swept_in_doubt, r.swept_requeued) for r in reports] == [(0, 0)] * len(reports)
    assert all(r.counts["lease_lost"] == 0 for r in reports)


def _dispatch_in_child(url: str, project_dir: str, port: int, now: datetime) -> None:
    """A dispatcher in its own process, to be killed mid-send."""
    engine = make_engine(url)
    project = project_for(Path(project_dir), port, connections=2, batch_size=100)
    run_dispatch(engine, project, now, worker_id="doomed")


def test_a_killed_dispatcher_sends_nothing_twice_and_leaves_one_in_doubt_per_connection(
    sqlite_url: str, project_dir: Path, now: datetime
) -> None:
    import multiprocessing
    import time

    from engine.store.db import upgrade

    engine = make_engine(sqlite_url)
    upgrade(engine)
    box = Outbox(engine, now)
    box.queue(300)
    script = Script(data_delay=0.01)
    with ServerThread(script).running() as port:
        child = multiprocessing.get_context("spawn").Process(
            target=_dispatch_in_child, args=(sqlite_url, str(project_dir), port, now)
        )
        child.start()
        deadline = time.monotonic() + 60
        while len(script.received) < 40 and time.monotonic() < deadline and child.is_alive():
            time.sleep(0.01)
        child.kill()  # SIGKILL: no finally, no release
        child.join(10)
        assert len(script.received) >= 40
        got_before_the_kill = set(script.recipients())
        script.data_delay = 0
        later = now + timedelta(minutes=10)  # past the 5-minute lease
        report = run_dispatch(engine, project_for(project_dir, port), later)
    statuses = Counter(box.statuses().values())
    received = script.recipients()
    assert len(received) == len(set(received))  # nothing sent twice
    assert statuses["sent"] + statuses["in_doubt"] == 300
    # In doubt: on each of the two connections, the one message handed over and
    # not yet recorded when the process died (sent or not). Every other row it
    # had claimed, composed and queued for sending went out on the next pass.
    assert statuses["in_doubt"] == report.swept_in_doubt <= 2
    assert len(received) >= 300 - statuses["in_doubt"]  # the rest all reached the server
    recorded_by_the_dead = statuses["sent"] - report.counts["sent"]
    assert len(got_before_the_kill) - recorded_by_the_dead <= statuses["in_doubt"]
    assert report.swept_requeued > 0  # claimed but never handed over: sent now
    engine.dispose()


def test_progress_counts_up_to_what_was_due(
    sqlite_store: Engine, project_dir: Path, now: datetime
) -> None:
    box = Outbox(sqlite_store, now)
    box.queue(120)
    box.message(box.customer(consent=False))
    seen: list[tuple[int, int]] = []
    project = project_for(project_dir, batch_size=50)
    run_dispatch(sqlite_store, project, now, MemoryMailer(), progress=lambda *p: seen.append(p))
    assert seen[0] == (0, 121) and seen[-1] == (121, 121)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_message_whose_template_fails_waits_and_goes_out_after_the_fix(
    store: Engine, project_dir: Path, now: datetime
) -> None:
    """A template error is the engine's, not the customer's: the message is retried with
    backoff (an attempt, with the error), and sent once a good template is loaded."""
    from engine.deliver.compose import Composer
    from engine.plan import plan
    from engine.project.loader import load_project
    from tests.daemon_fixtures import seed_first_orders

    page = project_dir / "templates" / "emails" / "welcome.html"
    good = page.read_text()
    page.write_text(good.replace("{% block content %}", "{% block content %}{{ nope.x }}", 1))
    seed_first_orders(store, now, 1)
    broken = load_project(project_dir / "config.yaml")
    now += timedelta(minutes=15)  # past the welcome's delay
    assert plan(store, broken, now).campaigns["welcome"].queued == 1
    secrets = Secrets(secret="s" * 32)

    def send(project: Project, at: datetime) -> tuple[Any, MemoryMailer]:
        mailer = MemoryMailer()
        composer = Composer(project, secrets)
        report = asyncio.run(dispatch(store, project, secrets, mailer, at, composer=composer))
        return report, mailer

    report, mailer = send(broken, now)
    [row] = Outbox(store, now).rows().values()
    assert row.status == MessageStatus.RETRY and row.attempts == 1, row.last_error
    assert "welcome.html:2" in (row.last_error or "") and "nope" in (row.last_error or "")
    assert row.next_attempt_at is not None and row.next_attempt_at > now
    assert mailer.sent == [] and report.counts == {"retry": 1}

    page.write_text(good)
    report, mailer = send(load_project(project_dir / "config.yaml"), now + timedelta(hours=7))
    [row] = Outbox(store, now).rows().values()
    assert row.status == MessageStatus.SENT and row.attempts == 2
    assert len(mailer.sent) == 1 and report.counts == {"sent": 1}
