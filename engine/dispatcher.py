"""The dispatcher: claim due messages, check, compose, send, record.

`dispatch` runs one pass over the outbox:

    sweep expired leases → claim a batch (lease) → re-check (expired,
    suppressed, consent, address) → compose → hand over a chunk (marked in
    the row) → send over the mailer's pool → record each result in small
    batched commits → … until nothing is due, `limit`, a pause or `stop`.

Claims are one UPDATE with the due rows chosen in a subquery (`FOR UPDATE
SKIP LOCKED` on PostgreSQL), so dispatchers in separate processes never
take the same row; on SQLite the single statement runs under the database
write lock. Batches are claimed and composed ahead while earlier ones are
sending (composing may run in its own process: `start_compose_pool`).

Rows are marked as handed to the SMTP server (`lease_owner` + "+smtp", and
the Message-ID they go out with) a chunk at a time, just before the senders
take them. So when a dispatcher dies, the rows it leased but never handed
over are simply queued again, and only a chunk's worth at most becomes
`in_doubt` (not resent, unless its campaign says `resend_in_doubt`).
The circuit breaker pauses the run on an auth failure, a refusal of the
sender, or the same permanent refusal for several messages in a row: no new
claims, leases of unsent rows released, nobody suppressed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import random
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from .config import EMAIL
from .db import ignoring_insert, is_postgres
from .errors import ConfigError, StoreError
from .loader import Project, Secrets
from .mailer import Mailer, MemoryMailer, Outcome, SendResult
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
RETRY_BASE = timedelta(minutes=2)
RETRY_CAP = timedelta(hours=6)
SAME_REFUSAL_STREAK = 5  # identical permanent refusals in a row that pause the run
MAX_ERRORS_KEPT = 100


Progress = Callable[[int, int], None]  # (messages handled, messages due at the start)


class Composes(Protocol):
    """engine.compose.Composer: one Outgoing (has .data) or Unsendable (has .reason)
    per message, in order; `now` is the Date header."""

    def prepare(
        self, session: Session, messages: Sequence[Message], *, now: datetime
    ) -> list[Any]: ...


@dataclass
class DispatchReport:
    """What one pass did: counts per outcome and per campaign, errors, pause."""

    worker_id: str
    dry_run: bool = False
    claimed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    campaigns: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    swept_in_doubt: int = 0
    swept_resend: int = 0
    swept_requeued: int = 0
    suppressed_addresses: int = 0
    paused: bool = False
    pause_reason: str | None = None
    stopped: bool = False
    seconds: float = 0.0

    def count(self, campaign: str, outcome: str) -> None:
        self.counts[outcome] += 1
        self.campaigns.setdefault(campaign, Counter())[outcome] += 1

    def error(self, message_id: int, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"message {message_id}: {text}")

    @property
    def handled(self) -> int:
        return sum(n for key, n in self.counts.items() if key != "released")

    def pause(self, reason: str) -> None:
        if not self.paused:
            self.paused, self.pause_reason = True, reason
            log.error("sending paused: %s", reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "dry_run": self.dry_run,
            "claimed": self.claimed,
            "counts": dict(self.counts),
            "campaigns": {name: dict(c) for name, c in sorted(self.campaigns.items())},
            "swept_in_doubt": self.swept_in_doubt,
            "swept_resend": self.swept_resend,
            "swept_requeued": self.swept_requeued,
            "suppressed_addresses": self.suppressed_addresses,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "stopped": self.stopped,
            "errors": list(self.errors),
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class Claim:
    """What the dispatcher keeps about one claimed message while it is in flight."""

    id: int
    campaign: str
    attempts: int
    send_after: datetime
    resend_in_doubt: bool
    batch_size: int


def default_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Delay before retry number `attempt` (1-based): doubling from 2 min, capped at
    6 h, with jitter (a random half to all of it) so retries do not arrive together."""
    ceiling = min(RETRY_BASE * 2 ** max(0, attempt - 1), RETRY_CAP)
    return ceiling * (rng or random).uniform(0.5, 1.0)


def address_problem(email: str) -> str | None:
    """Why `email` cannot go on an envelope, or None."""
    if any(ch in email for ch in "\r\n\x00"):
        return f"invalid recipient address (control character): {email!r}"
    if len(email) > 254 or not EMAIL.match(email):
        return f"invalid recipient address: {email!r}"
    return None


# ---------------------------------------------------------------- SQL steps


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


def _due(now: datetime) -> Any:
    return (
        M.status.in_(DUE)
        & (M.send_after <= now)
        & or_(M.next_attempt_at.is_(None), M.next_attempt_at <= now)
    )


def count_due(engine: Engine, now: datetime) -> int:
    from sqlalchemy import func

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(_due(now))).scalar_one())


def claim(engine: Engine, worker_id: str, now: datetime, lease: timedelta, size: int) -> list[int]:
    """Lease up to `size` due messages to `worker_id`; return their ids, oldest first."""
    chosen = select(M.id).where(_due(now)).order_by(M.send_after, M.id).limit(size)
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


def _rows(session: Session, ids: Sequence[int]) -> list[Any]:
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


def compose(
    composer: Composes, session: Session, messages: Sequence[Message], now: datetime
) -> list[Any]:
    """Compose a batch; if the composer fails on the batch, compose one by one so one
    bad message cannot stop the others (it gets a `_ComposeFailure`)."""
    try:
        results = composer.prepare(session, messages, now=now)
        if len(results) != len(messages):
            raise RuntimeError(f"composer returned {len(results)} results for {len(messages)}")
        return results
    except ConfigError:
        raise
    except Exception:
        log.exception("composing a batch of %d failed; composing one by one", len(messages))
    results = []
    for message in messages:
        try:
            results.extend(composer.prepare(session, [message], now=now))
        except ConfigError:
            raise
        except Exception as exc:  # a bug for one message must not hold the batch in `sending`
            log.exception("composing message %s failed", message.id)
            results.append(_ComposeFailure(message.id or 0, f"{type(exc).__name__}: {exc}"))
    return results


def compose_ids(
    composer: Composes, session: Session, ids: Sequence[int], now: datetime
) -> list[Any]:
    """Load the messages `ids` (in that order) and compose them."""
    query = select(Message).where(M.id.in_(ids)).order_by(M.id)
    messages = {m.id: m for m in session.scalars(query)}
    return compose(composer, session, [messages[i] for i in ids], now)


# A composer process (see `compose_processes`): its own database engine and Composer.
_IN_WORKER: dict[str, Any] = {}


def _start_worker(url: str, project: Project, secrets: Secrets) -> None:
    from .compose import Composer
    from .db import make_engine

    _IN_WORKER["engine"] = make_engine(url)
    _IN_WORKER["composer"] = Composer(project, secrets)


def _compose_in_worker(ids: list[int], now: datetime) -> list[Any]:
    with Session(_IN_WORKER["engine"]) as session:
        return compose_ids(_IN_WORKER["composer"], session, ids, now)


def start_compose_pool(
    engine: Engine, project: Project, secrets: Secrets, processes: int = 1
) -> Executor:
    """Processes that compose batches beside the sending loop (templates compiled once
    in each), so composing and sending use separate cores."""
    url = engine.url.render_as_string(hide_password=False)
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(url, project, secrets),
    )


@dataclass(frozen=True)
class _ComposeFailure:
    message_id: int
    reason: str


def _unsendable_reason(result: Any) -> str | None:
    return None if hasattr(result, "data") else str(getattr(result, "reason", result))


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


_RETRY = (
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
_FINAL = (
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
_RELEASE = (
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
        conn.execute(_RELEASE, [{"b_id": i, "b_owner": worker_id} for i in ids])


class Ledger:
    """Buffers status changes and commits them together: every FLUSH_ROWS rows or
    FLUSH_SECONDS, never one commit per message, never one per whole batch."""

    def __init__(
        self,
        engine: Engine,
        worker_id: str,
        report: DispatchReport,
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
            for statement in (_RETRY, _FINAL, _RELEASE):
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


# ---------------------------------------------------------------- the run


@dataclass
class _Letter:
    claim: Claim
    sender: str
    recipient: str
    data: bytes
    header_message_id: str
    handed: bool = False


class _Run:
    """State of one dispatch pass; the producer, workers and ledger share it."""

    def __init__(
        self,
        engine: Engine,
        project: Project,
        mailer: Mailer,
        composer: Composes,
        now: datetime,
        worker_id: str,
        limit: int | None,
        stop: asyncio.Event | None,
        progress: Progress | None,
    ):
        self.engine, self.project, self.mailer, self.composer = engine, project, mailer, composer
        self.sending = project.config.sending
        self.started_at = now
        self.started = time.monotonic()
        self.worker_id, self.limit, self.stop, self.progress = worker_id, limit, stop, progress
        self.handed = handed(worker_id)
        self.report = DispatchReport(worker_id)
        self.ledger = Ledger(engine, worker_id, self.report, self.clock)
        # Letters are handed over (and marked so) a chunk at a time, so a crash leaves
        # at most about a chunk plus the connections' worth of rows in doubt.
        self.chunk = min(self.sending.batch_size, max(50, 4 * mailer.concurrency))
        self.low_water = max(1, mailer.concurrency)
        self.batches: asyncio.Queue[list[_Letter] | None] = asyncio.Queue(maxsize=1)
        self.queue: asyncio.Queue[_Letter | None] = asyncio.Queue()  # filled by `feed` only
        self.room = asyncio.Event()  # set when the queue is down to `low_water`
        self.streak: list[tuple[_Letter, SendResult]] = []
        self.connect_failures = 0
        self.due_total = 0
        self.failure: Exception | None = None
        self.pool: Executor | None = None
        self.resend_in_doubt = {n for n, c in project.campaigns.items() if c.resend_in_doubt}

    def clock(self) -> datetime:
        """`now` as passed in, advanced by the time this pass has run (for leases
        and sent_at in long passes); never read from the wall clock."""
        return self.started_at + timedelta(seconds=time.monotonic() - self.started)

    def halted(self) -> bool:
        return self.report.paused or bool(self.stop and self.stop.is_set())

    # -- producing

    async def produce(self) -> None:
        while not self.halted():
            room = self.sending.batch_size
            if self.limit is not None:
                room = min(room, self.limit - self.report.claimed)
            if room <= 0:
                break
            ids = claim(self.engine, self.worker_id, self.clock(), self.sending.lease, room)
            if not ids:
                break
            self.report.claimed += len(ids)
            try:
                letters = await self._prepare(ids)
            except BaseException:  # e.g. templates broken: give the rows back, then raise
                release(self.engine, self.worker_id, ids)
                raise
            if letters:
                await self.batches.put(letters)
            self._tick_ledger()

    async def feed(self) -> None:
        """Hand composed batches to the senders a chunk at a time, marking each chunk
        as handed over first; after a pause or stop, give the rest back."""
        while (letters := await self.batches.get()) is not None:
            for start in range(0, len(letters), self.chunk):
                chunk = letters[start : start + self.chunk]
                while self.queue.qsize() > self.low_water:
                    self.room.clear()
                    await self.room.wait()
                if self.halted() or self.failure is not None:
                    for letter in chunk:
                        self._release(letter)
                    continue
                headers = {letter.claim.id: letter.header_message_id for letter in chunk}
                mark_handed(self.engine, self.worker_id, headers)
                for letter in chunk:
                    letter.handed = True
                    self.queue.put_nowait(letter)

    async def _prepare(self, ids: list[int]) -> list[_Letter]:
        """Re-check the claimed rows, compose the rest; return what is to be sent."""
        now = self.clock()
        with Session(self.engine, expire_on_commit=False) as session:
            to_send = []
            for row in _rows(session, ids):
                verdict = precheck(row, now)
                if verdict is None:
                    to_send.append(row)
                else:
                    self._final(row.id, row.campaign, verdict[0], verdict[1], tried=0)
            if not to_send:
                return []
            if self.pool is None:
                results = compose_ids(self.composer, session, [r.id for r in to_send], now)
        if self.pool is not None:  # the sending goes on meanwhile
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(
                self.pool, _compose_in_worker, [r.id for r in to_send], now
            )
        letters = []
        for row, result in zip(to_send, results, strict=True):
            reason = _unsendable_reason(result)
            if reason is not None:
                self._final(row.id, row.campaign, MessageStatus.FAILED, reason, tried=0)
                continue
            letters.append(
                _Letter(
                    self._claim_of(row, len(to_send)),
                    result.sender,
                    result.recipient,
                    result.data,
                    result.header_message_id,
                )
            )
        return letters

    def _claim_of(self, row: Any, batch_size: int) -> Claim:
        resend = row.campaign in self.resend_in_doubt
        return Claim(row.id, row.campaign, row.attempts, row.send_after, resend, batch_size)

    # -- sending

    async def work(self) -> None:
        """Send letters from the queue until the sentinel; never dies, so the queue
        always drains (after a pause or stop, letters are released, not sent)."""
        while (letter := await self.queue.get()) is not None:
            if self.queue.qsize() <= self.low_water:
                self.room.set()
            try:
                if self.halted():
                    self._release(letter)
                    continue
                result = await self.mailer.send(letter.sender, letter.recipient, letter.data)
                self.record(letter, result)
                self._tick_ledger()
            except Exception as exc:  # the database failed: stop claiming, re-raise at the end
                self.crashed(exc)

    def crashed(self, exc: Exception) -> None:
        log.exception("dispatching stopped by an error")
        self.failure = self.failure or exc
        self.report.pause(f"stopped by an error: {type(exc).__name__}: {exc}")

    def record(self, letter: _Letter, result: SendResult) -> None:
        """Turn one send result into a status change (and maybe a pause)."""
        if result.outcome is Outcome.PERMANENT:
            self._permanent(letter, result)
            return
        self._end_streak()
        if result.outcome is Outcome.SENT:
            self.connect_failures = 0
            self.ledger.sent_one(letter.claim.campaign, letter.claim.id, result.code)
        elif result.outcome is Outcome.SYSTEMIC:
            self.report.pause(f"the SMTP server refuses all mail: {result.describe()}")
            self._release(letter)
        elif result.outcome is Outcome.IN_DOUBT:
            self._in_doubt(letter, result)
        else:
            self._transient(letter, result)

    def _transient(self, letter: _Letter, result: SendResult) -> None:
        self._retry_or_fail(letter.claim, result.describe(), result.code, tried=1)
        if result.stage == "connect":
            self.connect_failures += 1
            if self.connect_failures >= self.mailer.concurrency:
                smtp = self.sending.smtp
                self.report.pause(
                    f"SMTP server {smtp.host}:{smtp.port} unreachable: {result.describe()}"
                )

    def _in_doubt(self, letter: _Letter, result: SendResult) -> None:
        claim = letter.claim
        reason = f"cut off after DATA, may have been delivered: {result.describe()}"
        if claim.resend_in_doubt:
            self._retry_or_fail(claim, reason, result.code, tried=1)
        else:
            self._final(claim.id, claim.campaign, MessageStatus.IN_DOUBT, reason, tried=1)

    def _permanent(self, letter: _Letter, result: SendResult) -> None:
        """Hold identical refusals in a row: five of them (or a whole small batch)
        mean the server refuses everyone, so nobody is blamed and the run pauses."""
        if self.report.paused:
            self._release(letter)
            return
        if self.streak and _signature(self.streak[0][1]) != _signature(result):
            self._end_streak()
        self.streak.append((letter, result))
        threshold = max(3, min(SAME_REFUSAL_STREAK, letter.claim.batch_size))
        if len(self.streak) >= threshold:
            self.report.pause(
                f"the SMTP server refused {len(self.streak)} messages in a row "
                f"with the same reply: {result.describe()}"
            )
            for held, _ in self.streak:
                self._release(held)
            self.streak.clear()

    def _end_streak(self) -> None:
        for letter, result in self.streak:
            claim = letter.claim
            self._final(
                claim.id, claim.campaign, MessageStatus.FAILED, result.describe(), 1, result
            )
            if result.bad_mailbox:
                reason = f"smtp {result.code} {result.enhanced}: {result.reply.strip()}"
                self.ledger.suppress[letter.recipient.lower()] = reason[:200]
        self.streak.clear()

    def _retry_or_fail(self, claim: Claim, reason: str, code: int | None, tried: int) -> None:
        now = self.clock()
        attempts = claim.attempts + tried
        if attempts >= self.sending.max_attempts or now - claim.send_after >= self.sending.max_age:
            reason = f"gave up after {attempts} attempts: {reason}"
            self._final(claim.id, claim.campaign, MessageStatus.FAILED, reason, tried)
            return
        self.ledger.add(
            _RETRY,
            claim.campaign,
            MessageStatus.RETRY,
            b_id=claim.id,
            b_owner=self.handed,
            b_next=now + backoff(attempts),
            b_code=code,
            b_error=reason[:1000],
            b_tried=tried,
        )

    def _final(
        self,
        message_id: int,
        campaign: str,
        status: MessageStatus,
        reason: str,
        tried: int,
        result: SendResult | None = None,
    ) -> None:
        if status in (MessageStatus.FAILED, MessageStatus.IN_DOUBT):
            self.report.error(message_id, f"{status}: {reason}")
            log.warning("message %s %s: %s", message_id, status, reason)
        self.ledger.add(
            _FINAL,
            campaign,
            status,
            b_id=message_id,
            b_owner=self.handed if tried else self.worker_id,
            b_status=status.value,
            b_code=result.code if result else None,
            b_error=reason[:1000],
            b_tried=tried,
        )

    def _release(self, letter: _Letter) -> None:
        owner = self.handed if letter.handed else self.worker_id
        self.ledger.add(
            _RELEASE, letter.claim.campaign, "released", b_id=letter.claim.id, b_owner=owner
        )

    def _tick_ledger(self) -> None:
        if self.ledger.due():
            self.ledger.flush()
            if self.progress:
                self.progress(self.report.handled, self.due_total)

    async def keep_flushing(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self._tick_ledger()
            except Exception as exc:
                self.crashed(exc)

    def finish(self) -> None:
        self._end_streak()
        self.ledger.flush()
        self.report.stopped = bool(self.stop and self.stop.is_set())
        self.report.seconds = time.monotonic() - self.started
        if self.progress:
            self.progress(self.report.handled, self.due_total)


async def _guarded(run: _Run, step: Any) -> None:
    """Run `step`; on an error, record it and keep draining the batches (the rows
    stay leased and not handed over, so the next pass queues them again)."""
    try:
        await step
    except Exception as exc:
        run.crashed(exc)
        while await run.batches.get() is not None:
            pass


def _signature(result: SendResult) -> tuple[Any, ...]:
    text = re.sub(r"<[^>]*>|\S+@\S+", "", result.reply).strip().lower()
    return result.code, result.enhanced, text


async def dispatch(
    engine: Engine,
    project: Project,
    secrets: Secrets,
    mailer: Mailer,
    now: datetime,
    *,
    limit: int | None = None,
    worker_id: str | None = None,
    composer: Composes | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    compose_pool: Executor | None = None,
) -> DispatchReport:
    """Send every due message (at most `limit`) and return what happened.

    With `compose_pool` (from `start_compose_pool`), batches are composed in
    those processes while this loop sends; otherwise by `composer` (default:
    engine.compose.Composer) in this process. Leaves the mailer and the pool
    open (their owner closes them). Raises ConfigError if the templates cannot
    be compiled; a failure of one message never raises.
    """
    if composer is None and compose_pool is None:
        from .compose import Composer

        composer = Composer(project, secrets)
    run = _Run(
        engine,
        project,
        mailer,
        composer,  # type: ignore[arg-type]  # unused when a pool composes
        now,
        worker_id or default_worker_id(),
        limit,
        stop,
        progress,
    )
    run.pool = compose_pool
    swept = sweep_expired_leases(engine, project, now)
    run.report.swept_in_doubt, run.report.swept_resend, run.report.swept_requeued = swept
    if progress is not None:
        run.due_total = (
            count_due(engine, now) if limit is None else min(limit, count_due(engine, now))
        )
        progress(0, run.due_total)
    workers = [asyncio.create_task(run.work()) for _ in range(max(1, mailer.concurrency))]
    flusher = asyncio.create_task(run.keep_flushing())
    feeder = asyncio.create_task(_guarded(run, run.feed()))
    try:
        await run.produce()
    except Exception as exc:
        run.crashed(exc)
    finally:
        await run.batches.put(None)
        await feeder
        for _ in workers:  # in-flight sends finish; queued letters are released
            await run.queue.put(None)
        await asyncio.gather(*workers)
        flusher.cancel()
    try:
        run.finish()
    except SQLAlchemyError as exc:
        run.failure = run.failure or exc
    if run.failure is not None:
        if isinstance(run.failure, SQLAlchemyError):
            raise StoreError(f"the database failed while sending: {run.failure}") from run.failure
        raise run.failure
    return run.report


async def rehearse(
    engine: Engine,
    project: Project,
    secrets: Secrets,
    now: datetime,
    *,
    limit: int | None = None,
    composer: Composes | None = None,
) -> DispatchReport:
    """What `dispatch` would do now, writing nothing: the due messages are checked,
    composed and 'sent' to a MemoryMailer. Counts use the statuses they would get."""
    if composer is None:
        from .compose import Composer

        composer = Composer(project, secrets)
    report = DispatchReport("dry-run", dry_run=True)
    mailer = MemoryMailer()
    query = select(M.id).where(_due(now)).order_by(M.send_after, M.id).limit(limit)
    with Session(engine) as session:
        ids = list(session.scalars(query))
        report.claimed = len(ids)
        for start in range(0, len(ids), project.config.sending.batch_size):
            chunk = _rows(session, ids[start : start + project.config.sending.batch_size])
            await _rehearse_chunk(session, chunk, composer, mailer, report, now)
        session.rollback()
    return report


async def _rehearse_chunk(
    session: Session,
    chunk: list[Any],
    composer: Composes,
    mailer: MemoryMailer,
    report: DispatchReport,
    now: datetime,
) -> None:
    to_send = []
    for row in chunk:
        verdict = precheck(row, now)
        if verdict is None:
            to_send.append(row)
        else:
            report.count(row.campaign, verdict[0])
    messages = list(
        session.scalars(select(Message).where(M.id.in_([r.id for r in to_send])).order_by(M.id))
    )
    for row, result in zip(to_send, compose(composer, session, messages, now), strict=True):
        reason = _unsendable_reason(result)
        if reason is not None:
            report.count(row.campaign, MessageStatus.FAILED)
            report.error(row.id, f"failed: {reason}")
            continue
        sent = await mailer.send(result.sender, result.recipient, result.data)
        report.count(row.campaign, MessageStatus.SENT if sent.outcome is Outcome.SENT else "other")
