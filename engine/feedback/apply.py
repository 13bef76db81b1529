"""What a report does: an event on its message and, when it must, a suppression.

A report names its message by a VERP token whose signature is checked here; a report
whose token is missing or forged, or whose message is gone, is *unmatched*: counted,
nothing written. Otherwise:

- a **hard bounce** records a `bounce` event (`hard <status>: <diagnostic>`) and
  suppresses the address with that reason;
- a **soft bounce** records a `bounce` event (`soft …`) and suppresses the address
  once `bounces.soft_limit` soft bounces (default 3) fall within `bounces.soft_window`
  (default 30 days);
- a **complaint** records a `complaint` event (its feedback type) and suppresses the
  address: someone who marked the shop's email as spam gets no more of it.

The same report read twice (a mailbox that was not cleared, a crash between the
commit and the move, a sending service delivering its webhook twice at once)
writes nothing the second time: a message never gets two events of the same kind
with the same detail. The reports' messages are locked (`hold_write_locks`)
before the events already recorded are read, so two transactions applying
reports on one message run one after the other. The suppressed address is the
customer's as stored, the one the planner and the sender compare with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select
from sqlmodel import Session, col

from ..deliver import InvalidToken, Signer
from ..project import Bounces
from ..store import (
    Customer,
    EventKind,
    Message,
    MessageEvent,
    Suppression,
    hold_write_locks,
    ignoring_insert,
)
from .reports import Report

SUPPRESSION: Any = Suppression.__table__  # type: ignore[attr-defined]
EVENT: Any = MessageEvent.__table__  # type: ignore[attr-defined]
MESSAGE: Any = Message.__table__  # type: ignore[attr-defined]
CUSTOMER: Any = Customer.__table__  # type: ignore[attr-defined]


class Outcome(StrEnum):
    HARD = "hard bounce"
    SOFT = "soft bounce"
    COMPLAINT = "complaint"
    DUPLICATE = "already recorded"
    IGNORED = "ignored"
    UNMATCHED = "unmatched"
    UNREADABLE = "unreadable"


@dataclass
class Applied:
    outcome: Outcome
    message_id: int | None = None
    suppressed: str | None = None  # the address suppressed by this report
    why: str = ""  # for ignored, unmatched and unreadable reports


@dataclass
class Tally:
    """What a run of reports did, for the log and `lifecycle bounces`."""

    counts: dict[str, int] = field(default_factory=dict)
    suppressed: list[str] = field(default_factory=list)

    def add(self, applied: Applied) -> None:
        self.counts[applied.outcome.value] = self.counts.get(applied.outcome.value, 0) + 1
        if applied.suppressed:
            self.suppressed.append(applied.suppressed)

    @property
    def read(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        parts = [f"{n} {name}" for name, n in sorted(self.counts.items()) if n]
        done = f"; {len(self.suppressed)} addresses suppressed" if self.suppressed else ""
        return f"{self.read} reports read" + (f": {', '.join(parts)}" if parts else "") + done


def apply_report(
    session: Session, report: Report, signer: Signer, policy: Bounces, now: datetime
) -> Applied:
    """Record what `report` says on `session` (the caller commits)."""
    return apply_reports(session, [report], signer, policy, now)[0]


def apply_reports(
    session: Session, reports: list[Report], signer: Signer, policy: Bounces, now: datetime
) -> list[Applied]:
    """Record what each report says on `session`, in order (the caller commits). What
    the reports need from the store (their messages' addresses, the events already
    recorded, the addresses already suppressed) is read once for them all."""
    named = [
        _verified(r.tokens, signer) if r.kind in ("bounce", "complaint") else None for r in reports
    ]
    ids = {m for m in named if m is not None}
    hold_write_locks(session, "lifecycle.message-events", ids)
    known = _Known.read(session, ids)
    return [
        _apply(session, report, message_id, known, policy, now)
        for report, message_id in zip(reports, named, strict=True)
    ]


@dataclass
class _Known:
    recipients: dict[int, tuple[int, str]]  # message id: (customer id, address)
    recorded: set[tuple[int, str, str]]  # (message id, kind, detail) of events
    suppressed: set[str]

    @classmethod
    def read(cls, session: Session, message_ids: set[int]) -> _Known:
        known = cls({}, set(), set())
        ids = sorted(message_ids)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for mid, customer_id, email in session.execute(
                select(MESSAGE.c.id, CUSTOMER.c.id, CUSTOMER.c.email)
                .join(CUSTOMER, CUSTOMER.c.id == MESSAGE.c.customer_id)
                .where(MESSAGE.c.id.in_(chunk))
            ):
                known.recipients[int(mid)] = (int(customer_id), str(email))
            known.recorded.update(
                (int(mid), str(kind), str(detail))
                for mid, kind, detail in session.execute(
                    select(EVENT.c.message_id, EVENT.c.kind, EVENT.c.detail).where(
                        EVENT.c.message_id.in_(chunk),
                        EVENT.c.kind.in_([EventKind.BOUNCE.value, EventKind.COMPLAINT.value]),
                    )
                )
            )
        emails = sorted({email for _, email in known.recipients.values()})
        for start in range(0, len(emails), CHUNK):
            known.suppressed.update(
                session.scalars(
                    select(SUPPRESSION.c.email).where(
                        SUPPRESSION.c.email.in_(emails[start : start + CHUNK])
                    )
                )
            )
        return known


CHUNK = 500  # ids in one IN list


def _apply(
    session: Session,
    report: Report,
    message_id: int | None,
    known: _Known,
    policy: Bounces,
    now: datetime,
) -> Applied:
    if report.kind == "ignore":
        return Applied(Outcome.IGNORED, why=report.reason)
    if report.kind == "unreadable":
        return Applied(Outcome.UNREADABLE, why=report.reason)
    if message_id is None:
        why = "a token that does not verify" if report.tokens else "no VERP address of ours"
        return Applied(Outcome.UNMATCHED, why=why)
    found = known.recipients.get(message_id)
    if found is None:
        return Applied(Outcome.UNMATCHED, message_id, why=f"message {message_id} is not stored")
    customer_id, email = found
    if report.kind == "complaint":
        kind, outcome = EventKind.COMPLAINT, Outcome.COMPLAINT
        detail = f"{report.feedback_type or 'abuse'} report"
    else:
        kind, outcome = EventKind.BOUNCE, Outcome.HARD if report.hard else Outcome.SOFT
        detail = f"{'hard' if report.hard else 'soft'} {report.status or '-'}: {report.diagnostic}"
    detail = detail[:1000]
    if (message_id, kind.value, detail) in known.recorded:
        return Applied(Outcome.DUPLICATE, message_id)
    session.execute(
        insert(EVENT),
        [
            {
                "message_id": message_id,
                "customer_id": customer_id,
                "kind": kind.value,
                "at": now,
                "machine": False,
                "detail": detail,
            }
        ],
    )
    known.recorded.add((message_id, kind.value, detail))
    reason = _suppression_reason(session, report, outcome, customer_id, policy, now)
    if reason is None or email in known.suppressed:
        return Applied(outcome, message_id)
    session.execute(
        ignoring_insert(session, SUPPRESSION, "email"),
        {"email": email, "reason": reason, "source": kind.value, "created_at": now},
    )
    known.suppressed.add(email)
    return Applied(outcome, message_id, suppressed=email)


def _verified(tokens: tuple[str, ...], signer: Signer) -> int | None:
    for token in tokens:
        try:
            return signer.verify_bounce(token)
        except InvalidToken:
            continue
    return None


def _suppression_reason(
    session: Session,
    report: Report,
    outcome: Outcome,
    customer_id: int,
    policy: Bounces,
    now: datetime,
) -> str | None:
    if outcome is Outcome.COMPLAINT:
        return f"complaint: marked as spam ({report.feedback_type or 'abuse'} report)"
    if outcome is Outcome.HARD:
        return f"hard bounce {report.status or ''}: {report.diagnostic}".strip()[:200]
    soft = session.scalar(
        select(func.count())
        .select_from(MessageEvent)
        .where(
            col(MessageEvent.customer_id) == customer_id,
            col(MessageEvent.kind) == EventKind.BOUNCE,
            col(MessageEvent.detail).startswith("soft "),
            col(MessageEvent.at) > now - policy.soft_window,
        )
    )
    if (soft or 0) < policy.soft_limit:
        return None
    days = policy.soft_window.days
    return f"{soft} soft bounces in {days} days, the latest {report.status or ''}: {report.diagnostic}"[
        :200
    ]
