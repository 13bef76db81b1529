"""The outbox in the store: leases on due messages, and the results of sending them.

A dispatcher `claim`s due rows (a lease: status `sending`, its worker id and
an expiry), keeps the lease alive while it works (`renew_leases`), re-checks
them with `precheck`, and hands each row to the SMTP server only after
`commit_handover` has marked it so, in one statement that also checks the
row is still its own (a worker that lost its lease never sends the row).
Results go through a `Ledger`, whose entries are written in the same
transaction as the next handover, or on their own after FLUSH_SECONDS.
`sweep_expired_leases` finds the rows a dead dispatcher left behind. Every
step is one statement, never a loop of ORM updates.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from ..project import EMAIL, Project
from ..store import (
    Customer,
    Message,
    MessageKind,
    MessageStatus,
    Suppression,
    UTCDateTime,
    ignoring_insert,
    is_postgres,
)
from .canary import held

log = logging.getLogger(__name__)

MESSAGE: Any = Message.__table__  # type: ignore[attr-defined]
CUSTOMER: Any = Customer.__table__  # type: ignore[attr-defined]
SUPPRESSION: Any = Suppression.__table__  # type: ignore[attr-defined]
M = MESSAGE.c
C = CUSTOMER.c
S = SUPPRESSION.c
DUE = (MessageStatus.QUEUED, MessageStatus.RETRY)
HANDED = "+smtp"  # lease_owner suffix: the row may be on the SMTP server already
FLUSH_ROWS = 50  # commit results every this many messages …
FLUSH_SECONDS = 0.1  # … or this often, whichever comes first
SENT_CHUNK = 50  # rows marked sent by one statement


class Counts(Protocol):
    """Where a `Ledger` counts what it records (engine.deliver.dispatchreport.DispatchReport)."""

    suppressed_addresses: int

    def count(self, campaign: str, outcome: str) -> None: ...


def address_problem(email: str) -> str | None:
    """Why `email` cannot go on an envelope, or None."""
    if any(ch in email for ch in "\r\n\x00"):
        return f"invalid recipient address (control character): {email!r}"
    if len(email) > 254 or not EMAIL.match(email):
        return f"invalid recipient address: {email!r}"
    return None


# ---------------------------------------------------------------- leases


def handed(worker_id: str) -> str:
    """The lease owner of rows `worker_id` has handed to the SMTP server."""
    return worker_id + HANDED


def sweep_expired_leases(engine: Engine, project: Project, now: datetime) -> tuple[int, int, int]:
    """Rows left `sending` past their lease (their dispatcher died).

    Rows already handed to the SMTP server become `in_doubt` (or `retry` for
    campaigns with `resend_in_doubt`); rows it never got are queued again.
    Return (in_doubt, resent, requeued).
    """
    resend = sorted(name for name, c in project.campaigns.items() if c.resend_in_doubt)
    expired = (M.status == MessageStatus.SENDING) & (M.lease_until < now)
    was_handed = M.lease_owner.endswith(HANDED, autoescape=True)
    with engine.begin() as conn:
        resent = conn.execute(
            update(MESSAGE)
            .where(expired & was_handed & M.campaign.in_(resend))
            .values(
                status=MessageStatus.RETRY,
                lease_owner=None,
                lease_until=None,
                next_attempt_at=now,
                last_error="lease expired while sending; resent (campaign has resend_in_doubt)",
            )
        ).rowcount
        in_doubt = conn.execute(
            update(MESSAGE)
            .where(expired & was_handed)
            .values(
                status=MessageStatus.IN_DOUBT,
                lease_until=None,
                last_error="lease expired while sending: the server may or may not have it",
            )
        ).rowcount
        # Not the handed rows: on PostgreSQL a worker can hand a row over after the
        # statement above looked (each statement has its own snapshot); the next
        # sweep finds it in doubt, where queueing it would send it twice.
        requeued = conn.execute(
            update(MESSAGE)
            .where(expired & ~was_handed)
            .values(
                status=case((M.attempts == 0, MessageStatus.QUEUED), else_=MessageStatus.RETRY),
                lease_owner=None,
                lease_until=None,
            )
        ).rowcount
    if in_doubt or resent or requeued:
        log.warning(
            "expired leases: %d in doubt, %d to resend, %d never handed over and queued again",
            in_doubt,
            resent,
            requeued,
        )
    return in_doubt, resent, requeued


def renew_leases(conn: Connection, worker_id: str, until: datetime) -> int:
    """Extend every lease `worker_id` still holds (handed over or not) to `until`;
    return how many rows it holds. Rows swept or taken by another worker are not
    its own any more and are left alone."""
    owned = (M.status == MessageStatus.SENDING) & M.lease_owner.in_([worker_id, handed(worker_id)])
    return int(conn.execute(update(MESSAGE).where(owned).values(lease_until=until)).rowcount)


def mark_handed(
    conn: Connection, worker_id: str, header_ids: dict[int, str], now: datetime
) -> set[int]:
    """Mark these rows as going to the SMTP server now, with the Message-ID each
    goes out with (to find an in-doubt one in the relay's logs); return the ids
    marked. A row is marked only if `worker_id` still holds its lease at `now`,
    checked in the same statement: a row not returned must not be sent."""
    if not header_ids:
        return set()
    params: dict[str, Any] = {"owner": worker_id, "now": now}
    params["handed"] = handed(worker_id)
    for k, (message_id, header) in enumerate(header_ids.items()):
        params[f"i{k}"], params[f"h{k}"] = message_id, header
    return set(conn.execute(_handed_statement(len(header_ids)), params).scalars())


@functools.lru_cache(maxsize=64)
def _handed_statement(size: int) -> Any:
    """The statement of `mark_handed` for `size` rows, built once per size."""
    ids: list[Any] = [bindparam(f"i{k}") for k in range(size)]
    header = case(*((M.id == i, bindparam(f"h{k}")) for k, i in enumerate(ids)))
    # A live lease implies `sending` (every other status clears lease_until); a test
    # of the status would also lead SQLite to ix_message_due instead of the ids.
    still_ours = (M.lease_owner == bindparam("owner")) & (
        M.lease_until > bindparam("now", type_=UTCDateTime)
    )
    return (
        update(MESSAGE)
        .where(M.id.in_(ids) & still_ours)
        .values(lease_owner=bindparam("handed"), message_id=header)
        .returning(M.id)
    )


def commit_handover(
    conn: Connection,
    worker_id: str,
    header_ids: dict[int, str],
    results: Results,
    now: datetime,
    renew_until: datetime | None = None,
) -> tuple[set[int], int]:
    """One transaction on `conn`: write `results`, mark `header_ids` handed over
    (`mark_handed`) and, with `renew_until`, renew the worker's leases. Return
    the ids marked and how many addresses were newly suppressed."""
    with conn.begin():
        suppressed = write_results(conn, results, worker_id, now)
        marked = mark_handed(conn, worker_id, header_ids, now)
        if renew_until is not None:
            renew_leases(conn, worker_id, renew_until)
        return marked, suppressed


def due(now: datetime) -> Any:
    """Rows waiting to go out at `now`: queued or to retry, past their send and retry
    times, and not held back by a blast's canary (`canary.held`)."""
    return (
        M.status.in_(DUE)
        & (M.send_after <= now)
        & or_(M.next_attempt_at.is_(None), M.next_attempt_at <= now)
        & ~held()
    )


def count_due(engine: Engine, now: datetime) -> int:

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(due(now))).scalar_one())


def claim(
    engine: Engine,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    size: int,
    marketing_room: int | None = None,
) -> list[int]:
    """Lease up to `size` due messages to `worker_id`; return their ids, oldest first.

    `marketing_room` (a sending ramp's room left today): at 0 only transactional
    messages are claimed; above it, no more rows than that."""
    if marketing_room is not None and marketing_room <= 0:
        wanted = due(now) & (M.kind == MessageKind.TRANSACTIONAL.value)
    else:
        wanted = due(now)
        size = size if marketing_room is None else min(size, marketing_room)
    chosen = select(M.id).where(wanted).order_by(M.send_after, M.id).limit(size)
    if is_postgres(engine):
        chosen = chosen.with_for_update(skip_locked=True)
    statement = (
        update(MESSAGE)
        .where(M.id.in_(chosen.scalar_subquery()) & M.status.in_(DUE))
        .values(status=MessageStatus.SENDING, lease_owner=worker_id, lease_until=now + lease)
        .returning(M.id)
    )
    with engine.begin() as conn:
        return sorted(conn.execute(statement).scalars())


def load_claimed(session: Session, ids: Sequence[int]) -> list[Any]:
    """What the send-time checks need about claimed rows: campaign, kind, expiry,
    the address, its consent and any suppression."""
    query = (
        select(
            M.id,
            M.campaign,
            M.kind,
            M.attempts,
            M.send_after,
            M.expires_at,
            C.email,
            C.marketing_consent,
            S.reason.label("suppressed_because"),
        )
        .join(CUSTOMER, C.id == M.customer_id)
        .outerjoin(SUPPRESSION, S.email == C.email)
        .where(M.id.in_(ids))
        .order_by(M.id)
    )
    return list(session.execute(query))


def precheck(row: Any, now: datetime) -> tuple[MessageStatus, str] | None:
    """The status a message takes without being sent, with the reason; None to send."""
    if row.expires_at is not None and row.expires_at <= now:
        return MessageStatus.EXPIRED, f"expired at {row.expires_at.isoformat()}"
    if row.suppressed_because is not None:
        return MessageStatus.SUPPRESSED, f"address is suppressed: {row.suppressed_because}"
    if row.kind == MessageKind.MARKETING and not row.marketing_consent:
        return MessageStatus.SUPPRESSED, "customer has no marketing consent"
    problem = address_problem(row.email)
    if problem is not None:
        return MessageStatus.FAILED, problem
    return None


# ---------------------------------------------------------------- recording results


@functools.lru_cache(maxsize=64)
def _sent_statement(size: int) -> Any:
    """One UPDATE for `size` rows the server accepted with the same code, built
    once per size (ids as plain parameters: no per-row parameter sets to process)."""
    ids: list[Any] = [bindparam(f"i{k}") for k in range(size)]
    return (
        update(MESSAGE)
        .where(M.id.in_(ids) & (M.lease_owner == bindparam("owner")))
        .values(
            status=MessageStatus.SENT,
            sent_at=bindparam("at", type_=UTCDateTime),
            smtp_code=bindparam("code"),
            attempts=M.attempts + 1,
            lease_until=None,
            last_error=None,
        )
    )


def _record_sent(
    conn: Connection, sent: list[tuple[int, int | None]], owner: str, at: datetime
) -> None:
    by_code: dict[int | None, list[int]] = {}
    for message_id, code in sent:
        by_code.setdefault(code, []).append(message_id)
    for code, ids in by_code.items():
        for start in range(0, len(ids), SENT_CHUNK):
            chunk = ids[start : start + SENT_CHUNK]
            params: dict[str, Any] = {"owner": owner, "at": at, "code": code}
            params.update((f"i{k}", message_id) for k, message_id in enumerate(chunk))
            conn.execute(_sent_statement(len(chunk)), params)


RETRY_ROW = (
    update(MESSAGE)
    .where((M.id == bindparam("b_id")) & (M.lease_owner == bindparam("b_owner")))
    .values(
        status=MessageStatus.RETRY,
        next_attempt_at=bindparam("b_next", type_=UTCDateTime),
        smtp_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
        attempts=M.attempts + bindparam("b_tried"),
        lease_owner=None,
        lease_until=None,
    )
)
FINAL_ROW = (
    update(MESSAGE)
    .where((M.id == bindparam("b_id")) & (M.lease_owner == bindparam("b_owner")))
    .values(
        status=bindparam("b_status"),
        smtp_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
        attempts=M.attempts + bindparam("b_tried"),
        lease_until=None,
    )
)
RELEASE_ROW = (
    update(MESSAGE)
    .where((M.id == bindparam("b_id")) & (M.lease_owner == bindparam("b_owner")))
    .values(
        status=case((M.attempts == 0, MessageStatus.QUEUED), else_=MessageStatus.RETRY),
        lease_owner=None,
        lease_until=None,
        message_id=None,  # handed over perhaps, but never sent
    )
)


def release(engine: Engine, worker_id: str, ids: Sequence[int]) -> None:
    """Give leased rows back (queued, or retry if tried before) at once."""
    with engine.begin() as conn:
        conn.execute(RELEASE_ROW, [{"b_id": i, "b_owner": worker_id} for i in ids])


@dataclass
class Results:
    """Status changes taken from a `Ledger`, to be written in one transaction."""

    pending: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)
    sent: list[tuple[int, int | None]] = field(default_factory=list)  # (id, smtp code)
    suppress: dict[str, str] = field(default_factory=dict)  # address → reason

    def __bool__(self) -> bool:
        return bool(self.pending or self.sent or self.suppress)


def write_results(conn: Connection, results: Results, worker_id: str, now: datetime) -> int:
    """Write `results` (sent at `now`) on `conn`; return how many addresses were
    newly suppressed. Updates come first, so SQLite takes its write lock at once."""
    _record_sent(conn, results.sent, handed(worker_id), now)
    for statement in (RETRY_ROW, FINAL_ROW, RELEASE_ROW):
        if results.pending.get(statement):
            conn.execute(statement, results.pending[statement])
    if not results.suppress:
        return 0
    known = set(conn.scalars(select(S.email).where(S.email.in_(results.suppress))))
    rows = [
        {"email": email, "reason": reason, "source": "smtp", "created_at": now}
        for email, reason in results.suppress.items()
    ]
    conn.execute(ignoring_insert(conn, SUPPRESSION, "email"), rows)
    return len(results.suppress.keys() - known)


class Ledger:
    """Buffers status changes until they are taken (`take`) and written with a
    handover, or `flush`ed: due every FLUSH_ROWS rows or FLUSH_SECONDS, never one
    commit per result, never one per whole batch."""

    def __init__(
        self,
        engine: Engine,
        worker_id: str,
        report: Counts,
        clock: Callable[[], datetime],
    ):
        self.engine = engine
        self.clock = clock
        self.worker_id = worker_id
        self.report = report
        self.results = Results()
        self.size = 0
        self.since = 0.0

    @property
    def suppress(self) -> dict[str, str]:
        """Addresses to suppress at the next write, with the reason."""
        return self.results.suppress

    def add(self, statement: Any, campaign: str, outcome: str, **values: Any) -> None:
        """Queue one change; `values` has b_id and b_owner (the lease owner it must have)."""
        self.results.pending.setdefault(statement, []).append(values)
        self.add_count(campaign, outcome)

    def sent_one(self, campaign: str, message_id: int, code: int | None) -> None:
        """A 250: recorded at the next write (sent_at is then)."""
        self.results.sent.append((message_id, code))
        self.add_count(campaign, MessageStatus.SENT)

    def add_count(self, campaign: str, outcome: str) -> None:
        self.report.count(campaign, outcome)
        if self.size == 0:
            self.since = time.monotonic()
        self.size += 1

    def due(self) -> bool:
        if self.size >= FLUSH_ROWS:
            return True
        return self.size > 0 and time.monotonic() - self.since >= FLUSH_SECONDS

    def take(self) -> Results:
        """Everything recorded since the last take, to be written by the caller."""
        results, self.results = self.results, Results()
        self.size = 0
        return results

    def flush(self) -> None:
        """Write what is pending now, in a transaction of its own."""
        results = self.take()
        if not results:
            return
        with self.engine.begin() as conn:
            suppressed = write_results(conn, results, self.worker_id, self.clock())
        self.report.suppressed_addresses += suppressed
