"""The outbox in the store: leases on due messages, and the results of sending them.

A dispatcher `claim`s due rows (a lease: status `sending`, its worker id and
an expiry), re-checks them with `precheck`, marks each chunk as handed to the
SMTP server (`mark_handed`) just before sending it, and records every result
through a `Ledger`, which commits them together. `sweep_expired_leases` finds
the rows a dead dispatcher left behind. Every step is one statement, never a
loop of ORM updates.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .config import EMAIL
from .db import ignoring_insert, is_postgres
from .loader import Project
from .models import Customer, Message, MessageKind, MessageStatus, Suppression
from .types import UTCDateTime

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


class Counts(Protocol):
    """Where a `Ledger` counts what it records (engine.dispatcher.DispatchReport)."""

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
        requeued = conn.execute(
            update(MESSAGE)
            .where(expired)
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


def mark_handed(engine: Engine, worker_id: str, header_ids: dict[int, str]) -> None:
    """Record that these leased rows are about to go to the SMTP server, with the
    Message-ID each goes out with (to find an in-doubt one in the relay's logs).
    One statement for the whole chunk."""
    params: dict[str, Any] = {"ids": list(header_ids), "owner": worker_id}
    params["handed"] = handed(worker_id)
    for k, (message_id, header) in enumerate(header_ids.items()):
        params[f"i{k}"], params[f"h{k}"] = message_id, header
    with engine.begin() as conn:
        conn.execute(_handed_statement(len(header_ids)), params)


@functools.lru_cache(maxsize=64)
def _handed_statement(size: int) -> Any:
    """The statement of `mark_handed` for `size` rows, built once per size."""
    header = case(*((M.id == bindparam(f"i{k}"), bindparam(f"h{k}")) for k in range(size)))
    return (
        update(MESSAGE)
        .where(M.id.in_(bindparam("ids", expanding=True)) & (M.lease_owner == bindparam("owner")))
        .values(lease_owner=bindparam("handed"), message_id=header)
    )


def due(now: datetime) -> Any:
    """Rows waiting to go out at `now`: queued or to retry, past their send and retry times."""
    return (
        M.status.in_(DUE)
        & (M.send_after <= now)
        & or_(M.next_attempt_at.is_(None), M.next_attempt_at <= now)
    )


def count_due(engine: Engine, now: datetime) -> int:

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(due(now))).scalar_one())


def claim(engine: Engine, worker_id: str, now: datetime, lease: timedelta, size: int) -> list[int]:
    """Lease up to `size` due messages to `worker_id`; return their ids, oldest first."""
    chosen = select(M.id).where(due(now)).order_by(M.send_after, M.id).limit(size)
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


def _sent(ids: list[int], owner: str, code: int | None, at: datetime) -> Any:
    """One UPDATE for every row of a flush that the server accepted with `code`."""
    return (
        update(MESSAGE)
        .where(M.id.in_(ids) & (M.lease_owner == owner))
        .values(
            status=MessageStatus.SENT,
            sent_at=at,
            smtp_code=code,
            attempts=M.attempts + 1,
            lease_until=None,
            last_error=None,
        )
    )


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


class Ledger:
    """Buffers status changes and commits them together: every FLUSH_ROWS rows or
    FLUSH_SECONDS, never one commit per message, never one per whole batch."""

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
        self.pending: dict[Any, list[dict[str, Any]]] = {}
        self.sent: dict[int | None, list[int]] = {}  # smtp code → ids
        self.suppress: dict[str, str] = {}
        self.size = 0
        self.since = 0.0

    def add(self, statement: Any, campaign: str, outcome: str, **values: Any) -> None:
        """Queue one change; `values` has b_id and b_owner (the lease owner it must have)."""
        self.pending.setdefault(statement, []).append(values)
        self.add_count(campaign, outcome)

    def sent_one(self, campaign: str, message_id: int, code: int | None) -> None:
        """A 250: recorded at the next flush (within FLUSH_SECONDS; sent_at is then)."""
        self.sent.setdefault(code, []).append(message_id)
        self.add_count(campaign, MessageStatus.SENT)

    def add_count(self, campaign: str, outcome: str) -> None:
        self.report.count(campaign, outcome)
        if self.size == 0:
            self.since = time.monotonic()
        self.size += 1
        if self.size >= FLUSH_ROWS:
            self.flush()

    def due(self) -> bool:
        return self.size > 0 and time.monotonic() - self.since >= FLUSH_SECONDS

    def flush(self) -> None:
        if not self.size and not self.suppress:
            return
        now = self.clock()
        with self.engine.begin() as conn:
            for code, ids in self.sent.items():
                conn.execute(_sent(ids, handed(self.worker_id), code, now))
            for statement in (RETRY_ROW, FINAL_ROW, RELEASE_ROW):
                if self.pending.get(statement):
                    conn.execute(statement, self.pending[statement])
            if self.suppress:
                known = set(conn.scalars(select(S.email).where(S.email.in_(self.suppress))))
                rows = [
                    {"email": email, "reason": reason, "source": "smtp", "created_at": now}
                    for email, reason in self.suppress.items()
                ]
                conn.execute(ignoring_insert(conn, SUPPRESSION, "email"), rows)
                self.report.suppressed_addresses += len(self.suppress.keys() - known)
        self.pending.clear()
        self.sent.clear()
        self.suppress.clear()
        self.size = 0
