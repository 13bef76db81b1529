"""Applying reports to the store, on SQLite and PostgreSQL: events on the message,
suppressions by the policy, nothing for a forged or unknown token, nothing twice."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.deliver import Signer
from engine.feedback import Outcome, Report, apply_report, apply_reports
from engine.feedback import apply as apply_module
from engine.project import Bounces
from engine.store import Customer, EventKind, Message, MessageEvent, Suppression
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

SIGNER = Signer("feedback-test-secret-0123456789")
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
POLICY = Bounces()


def seed(engine: Engine, count: int = 1) -> list[int]:
    """`count` messages to one customer; their ids."""
    with Session(engine) as session:
        customer = Customer(
            external_id="c1",
            email="rahima@example.com",
            name="Rahima",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(customer)
        session.flush()
        messages = [
            Message(
                dedupe_key=f"welcome:{customer.id}:{n}",
                campaign="welcome",
                customer_id=customer.id or 0,
                occurrence=str(n),
                status="sent",
                created_at=NOW,
                send_after=NOW,
            )
            for n in range(count)
        ]
        session.add_all(messages)
        session.commit()
        return [m.id or 0 for m in messages]


def bounce(message_id: int, *, hard: bool, status: str, diagnostic: str = "550 nope") -> Report:
    return Report(
        "bounce",
        (SIGNER.bounce_token(message_id),),
        hard=hard,
        status=status,
        diagnostic=diagnostic,
    )


def apply(engine: Engine, report: Report, now: datetime = NOW, policy: Bounces = POLICY):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        applied = apply_report(session, report, SIGNER, policy, now)
        session.commit()
    return applied


def events(engine: Engine) -> list[tuple[int, str, str | None]]:
    with Session(engine) as session:
        rows = session.exec(select(MessageEvent).order_by(MessageEvent.id)).all()
        return [(e.message_id, str(e.kind), e.detail) for e in rows]


def suppressions(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {s.email: s.reason for s in session.exec(select(Suppression)).all()}


def test_a_hard_bounce_records_and_suppresses_once(fresh_store: Engine) -> None:
    [mid] = seed(fresh_store)
    report = bounce(mid, hard=True, status="5.1.1", diagnostic="550 5.1.1 user unknown")
    applied = apply(fresh_store, report)
    assert applied.outcome is Outcome.HARD and applied.suppressed == "rahima@example.com"
    assert events(fresh_store) == [(mid, "bounce", "hard 5.1.1: 550 5.1.1 user unknown")]
    assert suppressions(fresh_store) == {
        "rahima@example.com": "hard bounce 5.1.1: 550 5.1.1 user unknown"
    }
    # The same report again (the mailbox read twice): nothing new.
    again = apply(fresh_store, report)
    assert again.outcome is Outcome.DUPLICATE and again.suppressed is None
    assert len(events(fresh_store)) == 1


def test_soft_bounces_suppress_at_the_limit_within_the_window(fresh_store: Engine) -> None:
    mids = seed(fresh_store, 4)
    # One 40 days ago falls outside the 30-day window.
    assert (
        apply(
            fresh_store, bounce(mids[0], hard=False, status="4.2.2"), NOW - timedelta(days=40)
        ).suppressed
        is None
    )
    assert apply(fresh_store, bounce(mids[1], hard=False, status="5.2.2")).suppressed is None
    assert apply(fresh_store, bounce(mids[2], hard=False, status="5.7.1")).suppressed is None
    assert suppressions(fresh_store) == {}
    third = apply(fresh_store, bounce(mids[3], hard=False, status="4.2.2", diagnostic="452 full"))
    assert third.outcome is Outcome.SOFT and third.suppressed == "rahima@example.com"
    assert suppressions(fresh_store)["rahima@example.com"].startswith("3 soft bounces in 30 days")


def test_the_soft_limit_is_the_shops_to_set(fresh_store: Engine) -> None:
    [mid] = seed(fresh_store)
    strict = Bounces(soft_limit=1)
    assert apply(fresh_store, bounce(mid, hard=False, status="4.2.2"), policy=strict).suppressed


def test_a_complaint_records_and_suppresses(fresh_store: Engine) -> None:
    [mid] = seed(fresh_store)
    report = Report("complaint", (SIGNER.bounce_token(mid),), feedback_type="abuse")
    applied = apply(fresh_store, report)
    assert applied.outcome is Outcome.COMPLAINT
    assert events(fresh_store) == [(mid, "complaint", "abuse report")]
    assert suppressions(fresh_store)["rahima@example.com"].startswith("complaint")


@pytest.mark.parametrize(
    "tokens",
    [
        (),  # no VERP address at all
        ("1-aaaaaaaaaaaaaaaa",),  # forged
        (SIGNER.bounce_token(999),),  # a real token of a message that is not stored
        (Signer("another-shops-secret-0123456789").bounce_token(1),),  # another secret
    ],
    ids=["none", "forged", "unknown message", "other secret"],
)
def test_a_report_that_names_no_message_of_ours_records_nothing(
    fresh_store: Engine, tokens: tuple[str, ...]
) -> None:
    seed(fresh_store)
    applied = apply(fresh_store, Report("bounce", tokens, hard=True, status="5.1.1"))
    assert applied.outcome is Outcome.UNMATCHED and applied.why
    assert events(fresh_store) == [] and suppressions(fresh_store) == {}


def test_a_forged_token_beside_a_real_one_does_not_hide_it(fresh_store: Engine) -> None:
    [mid] = seed(fresh_store)
    report = Report(
        "bounce", ("1-aaaaaaaaaaaaaaaa", SIGNER.bounce_token(mid)), hard=True, status="5.1.1"
    )
    assert apply(fresh_store, report).message_id == mid


def test_an_address_already_suppressed_keeps_its_first_reason(fresh_store: Engine) -> None:
    [mid] = seed(fresh_store)
    with Session(fresh_store) as session:
        session.add(
            Suppression(
                email="rahima@example.com", reason="unsubscribed", source="link", created_at=NOW
            )
        )
        session.commit()
    applied = apply(fresh_store, bounce(mid, hard=True, status="5.1.1"))
    assert applied.outcome is Outcome.HARD and applied.suppressed is None
    assert suppressions(fresh_store) == {"rahima@example.com": "unsubscribed"}
    assert [e[1] for e in events(fresh_store)] == [EventKind.BOUNCE.value]


def test_ignored_and_unreadable_reports_write_nothing(fresh_store: Engine) -> None:
    [mid] = seed(fresh_store)
    token = (SIGNER.bounce_token(mid),)
    assert (
        apply(fresh_store, Report("ignore", token, reason="an auto-reply")).outcome
        is Outcome.IGNORED
    )
    assert apply(fresh_store, Report("unreadable", token, reason="x")).outcome is Outcome.UNREADABLE
    assert events(fresh_store) == [] and suppressions(fresh_store) == {}


def test_a_batch_records_a_repeated_report_once_and_suppresses_an_address_once(
    fresh_store: Engine,
) -> None:
    mids = seed(fresh_store, 2)
    first = bounce(mids[0], hard=True, status="5.1.1", diagnostic="550 5.1.1 unknown")
    other = bounce(mids[1], hard=True, status="5.1.1", diagnostic="550 5.1.1 unknown")
    with Session(fresh_store) as session:
        done = apply_reports(session, [first, first, other], SIGNER, POLICY, NOW)
        session.commit()
    assert [d.outcome for d in done] == [Outcome.HARD, Outcome.DUPLICATE, Outcome.HARD]
    assert [d.suppressed for d in done] == ["rahima@example.com", None, None]
    assert len(events(fresh_store)) == 2 and list(suppressions(fresh_store)) == [
        "rahima@example.com"
    ]


def test_the_same_report_applied_twice_at_once_records_once(
    fresh_store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sending service delivering one webhook twice at the same instant: each delivery
    reads what is recorded, then writes. Reading waits half a second here, so without a
    lock both would read nothing recorded and both write."""
    [mid] = seed(fresh_store)
    report = bounce(mid, hard=False, status="4.2.2", diagnostic="452 mailbox full")
    read = apply_module._Known.read

    def slow_read(session: Session, ids: set[int]) -> object:
        known = read(session, ids)
        time.sleep(0.5)
        return known

    monkeypatch.setattr(apply_module._Known, "read", staticmethod(slow_read))
    start = threading.Barrier(2)
    outcomes: list[Outcome] = []

    def deliver() -> None:
        start.wait()
        outcomes.append(apply(fresh_store, report).outcome)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == [Outcome.DUPLICATE, Outcome.SOFT]
    assert events(fresh_store) == [(mid, "bounce", "soft 4.2.2: 452 mailbox full")]
