"""Leases and results in the store, on SQLite and PostgreSQL, without any SMTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.outbox import (
    FINAL_ROW,
    RELEASE_ROW,
    Ledger,
    claim,
    count_due,
    handed,
    load_claimed,
    mark_handed,
    precheck,
    release,
    renew_leases,
    sweep_expired_leases,
)
from engine.store.models import Message, MessageKind, MessageStatus, Suppression
from tests.delivery_fixtures import Outbox, with_campaign

LEASE = timedelta(minutes=5)


class Counts:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []
        self.suppressed_addresses = 0

    def count(self, campaign: str, outcome: str) -> None:
        self.counted.append((campaign, outcome))


def test_claims_take_due_rows_oldest_first_and_never_twice(store: Engine, now: datetime) -> None:
    box = Outbox(store, now)
    customer = box.customer()
    older = box.message(customer, send_after=now - timedelta(hours=2))
    newer = box.message(customer, send_after=now - timedelta(minutes=1))
    box.message(customer, send_after=now + timedelta(minutes=1))  # not yet
    box.message(customer, status=MessageStatus.RETRY, next_attempt_at=now + timedelta(minutes=1))
    retry_due = box.message(
        customer, status=MessageStatus.RETRY, next_attempt_at=now - timedelta(seconds=1)
    )
    box.message(customer, status=MessageStatus.SENT)
    assert count_due(store, now) == 3
    assert claim(store, "w1", now, LEASE, 2) == [older, newer]  # by send_after, then id
    assert claim(store, "w2", now, LEASE, 10) == [retry_due]
    assert claim(store, "w3", now, LEASE, 10) == []
    rows = box.rows()
    assert (rows[older].status, rows[older].lease_owner) == (MessageStatus.SENDING, "w1")
    assert rows[older].lease_until == now + LEASE


def test_expired_leases_are_swept_by_whether_the_server_may_have_them(
    store: Engine, project_dir, now: datetime
) -> None:
    from engine.project.loader import load_project

    project = with_campaign(
        load_project(project_dir / "config.yaml"), "price_drop_refund", resend_in_doubt=True
    )
    box = Outbox(store, now)
    stale = {
        "status": MessageStatus.SENDING,
        "lease_owner": handed("dead"),
        "lease_until": now - timedelta(seconds=1),
    }
    doubtful = box.message(box.customer(), **stale)
    resend = box.message(
        box.customer(), "price_drop_refund", kind=MessageKind.TRANSACTIONAL, **stale
    )
    never_handed = box.message(box.customer(), **(stale | {"lease_owner": "dead"}))
    tried_before = box.message(box.customer(), **(stale | {"lease_owner": "dead", "attempts": 1}))
    live = box.message(box.customer(), **(stale | {"lease_until": now + timedelta(minutes=1)}))
    assert sweep_expired_leases(store, project, now) == (1, 1, 2)
    rows = box.rows()
    assert rows[doubtful].status == MessageStatus.IN_DOUBT
    assert rows[resend].status == MessageStatus.RETRY and rows[resend].next_attempt_at == now
    assert rows[never_handed].status == MessageStatus.QUEUED
    assert rows[tried_before].status == MessageStatus.RETRY
    assert rows[live].status == MessageStatus.SENDING
    assert sweep_expired_leases(store, project, now) == (0, 0, 0)


def test_the_ledger_records_only_rows_its_worker_still_holds(store: Engine, now: datetime) -> None:
    box = Outbox(store, now)
    ids = box.queue(4)
    assert claim(store, "w1", now, LEASE, 4) == ids
    with store.begin() as conn:
        mark_handed(conn, "w1", {i: f"<{i}@shop.test>" for i in ids}, now)
    sent, refused, lost, released = ids
    with Session(store) as session, session.begin():  # another worker swept and took `lost`
        session.get_one(Message, lost).lease_owner = "w2"
    counts = Counts()
    ledger = Ledger(store, "w1", counts, lambda: now)
    ledger.sent_one("welcome", sent, 250)
    ledger.sent_one("welcome", lost, 250)
    owner = handed("w1")
    ledger.add(FINAL_ROW, "welcome", "failed", b_id=refused, b_owner=owner,
               b_status=MessageStatus.FAILED, b_code=550, b_error="no such user", b_tried=1)  # fmt: skip
    ledger.add(RELEASE_ROW, "welcome", "released", b_id=released, b_owner=owner)
    ledger.suppress["customer3@example.com"] = "550 5.1.1 no such user"
    ledger.flush()
    rows = box.rows()
    assert (rows[sent].status, rows[sent].sent_at, rows[sent].smtp_code) == ("sent", now, 250)
    assert rows[sent].message_id == f"<{sent}@shop.test>" and rows[sent].attempts == 1
    assert (rows[refused].status, rows[refused].last_error) == ("failed", "no such user")
    assert rows[lost].status == MessageStatus.SENDING  # not ours any more: left alone
    assert (rows[released].status, rows[released].message_id) == ("queued", None)
    assert counts.suppressed_addresses == 1
    with Session(store) as session:
        assert list(session.scalars(select(Suppression.email))) == ["customer3@example.com"]
    assert len(counts.counted) == 4


def test_a_row_is_handed_over_only_by_the_worker_holding_its_lease(
    store: Engine, now: datetime
) -> None:
    box = Outbox(store, now)
    ids = box.queue(4)
    assert claim(store, "w1", now, LEASE, 4) == ids
    mine, taken, lapsed, swept = ids
    with Session(store) as session, session.begin():
        session.get_one(Message, taken).lease_owner = "w2"  # swept and claimed by w2
        session.get_one(Message, lapsed).lease_until = now - timedelta(seconds=1)
        row = session.get_one(Message, swept)
        row.status, row.lease_owner, row.lease_until = MessageStatus.QUEUED, None, None
    with store.begin() as conn:
        marked = mark_handed(conn, "w1", {i: f"<{i}@shop.test>" for i in ids}, now)
    assert marked == {mine}
    rows = box.rows()
    assert (rows[mine].lease_owner, rows[mine].message_id) == (handed("w1"), f"<{mine}@shop.test>")
    assert (rows[taken].lease_owner, rows[taken].message_id) == ("w2", None)
    assert (rows[lapsed].lease_owner, rows[lapsed].message_id) == ("w1", None)
    assert (rows[swept].status, rows[swept].lease_owner) == ("queued", None)


def test_leases_are_renewed_only_for_rows_the_worker_still_holds(
    store: Engine, now: datetime
) -> None:
    box = Outbox(store, now)
    ids = box.queue(4)
    assert claim(store, "w1", now, LEASE, 3) == ids[:3]
    assert claim(store, "w2", now, LEASE, 1) == ids[3:]
    with store.begin() as conn:
        assert mark_handed(conn, "w1", {ids[0]: "<a@shop.test>"}, now) == {ids[0]}
    later = now + 2 * LEASE
    with store.begin() as conn:  # ids[2] was swept meanwhile
        conn.execute(
            Message.__table__.update()
            .where(Message.__table__.c.id == ids[2])
            .values(status=MessageStatus.QUEUED, lease_owner=None, lease_until=None)
        )
    with store.begin() as conn:
        assert renew_leases(conn, "w1", later) == 2
    rows = box.rows()
    assert [rows[i].lease_until for i in ids] == [later, later, None, now + LEASE]


def test_release_gives_leases_back(store: Engine, now: datetime) -> None:
    box = Outbox(store, now)
    ids = box.queue(2)
    claim(store, "w1", now, LEASE, 2)
    release(store, "w1", ids)
    assert set(box.statuses().values()) == {"queued"}
    assert claim(store, "w2", now, LEASE, 2) == ids


def test_precheck_says_what_is_not_sent_and_why(store: Engine, now: datetime) -> None:
    box = Outbox(store, now)
    ok = box.message(box.customer())
    expired = box.message(box.customer(), expires_at=now)
    no_consent = box.message(box.customer(consent=False))
    transactional = box.message(box.customer(consent=False), kind=MessageKind.TRANSACTIONAL)
    bad = box.message(box.customer("not an address"))
    suppressed_customer = box.customer("gone@example.com")
    suppressed = box.message(suppressed_customer)
    with Session(store) as session, session.begin():
        session.add(Suppression(email="gone@example.com", reason="hard bounce", created_at=now))
    with Session(store) as session:
        verdicts = {row.id: precheck(row, now) for row in load_claimed(session, [
            ok, expired, no_consent, transactional, bad, suppressed])}  # fmt: skip
    assert verdicts[ok] is None and verdicts[transactional] is None
    assert verdicts[expired] is not None and verdicts[expired][0] == MessageStatus.EXPIRED
    assert verdicts[no_consent] == (MessageStatus.SUPPRESSED, "customer has no marketing consent")
    assert verdicts[suppressed] == (MessageStatus.SUPPRESSED, "address is suppressed: hard bounce")
    assert verdicts[bad] is not None and verdicts[bad][0] == MessageStatus.FAILED


def test_precheck_refuses_a_line_break_in_the_address(now: datetime) -> None:
    row = SimpleNamespace(
        expires_at=None, suppressed_because=None, kind=MessageKind.MARKETING,
        marketing_consent=True, email="a@b\r\nRCPT TO:<x@evil.test>",
    )  # fmt: skip
    verdict = precheck(row, now)
    assert verdict is not None and "control character" in verdict[1]


@pytest.mark.parametrize(
    "db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_row_handed_over_while_the_sweep_runs_is_never_queued_again(
    db: Engine, project_dir, now: datetime
) -> None:
    """On PostgreSQL each statement of the sweep sees the rows as they are when it
    starts: a worker whose lease the sweep finds expired (by its own clock) can
    still mark a row handed over between the statement that makes handed rows
    in doubt and the one that queues the rest again. That row is on its way to
    the server, so it must not be queued for a second sender. (SQLite runs one
    writer at a time: the sweep's transaction shuts the worker out.)"""
    from sqlalchemy import event

    from engine.project.loader import load_project

    project = load_project(project_dir / "config.yaml")
    box = Outbox(db, now)
    [row] = box.queue(1)
    assert claim(db, "w1", now, LEASE, 1) == [row]
    ends = now + LEASE
    statements: list[str] = []

    def worker_hands_it_over_before_the_last_statement(conn, cursor, statement, *args) -> None:
        statements.append(statement)
        if len(statements) == 3:  # resend, in doubt, then: queue the rest again
            with db.begin() as other:  # the worker, a second before its lease ends
                assert mark_handed(other, "w1", {row: "<a@shop.test>"}, ends - timedelta(seconds=1))

    event.listen(db, "before_cursor_execute", worker_hands_it_over_before_the_last_statement)
    try:
        sweep_expired_leases(db, project, ends + timedelta(seconds=1))
    finally:
        event.remove(db, "before_cursor_execute", worker_hands_it_over_before_the_last_statement)
    assert len(statements) >= 3
    swept = box.rows()[row]
    assert (swept.status, swept.lease_owner) == (MessageStatus.SENDING, handed("w1"))
    assert claim(db, "w2", ends + timedelta(seconds=1), LEASE, 1) == []
    assert sweep_expired_leases(db, project, ends + timedelta(seconds=2)) == (1, 0, 0)
    assert box.rows()[row].status == MessageStatus.IN_DOUBT
