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

A claim takes no more than the rate limit lets the pass send in half a
lease, and the leases of everything the pass holds are renewed every third
of a lease while it runs, so another dispatcher never sweeps a live batch.

Each row is marked as handed to the SMTP server (`lease_owner` + "+smtp",
and the Message-ID it goes out with) just before its SMTP transaction, in a
statement that checks the lease is still this worker's: a row another
worker has taken is never sent. Marks asked for by the connections at the
same moment share one commit, with the results recorded since. So when a
dispatcher dies, each connection leaves at most one row `in_doubt` (not
resent, unless its campaign says `resend_in_doubt`); the rest it leased are
queued again.

A refusal of one recipient (5.1.x, 5.2.x, "no such user") fails that message
(and suppresses a bad mailbox) and nothing else. The circuit breaker pauses
the run on an auth failure, a refusal of the sender, or the same permanent
refusal for several messages in a row to more than one domain: no new
claims, leases of unsent rows released, nobody suppressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from ..errors import StoreError
from ..project import Project, Secrets, Sending
from ..store import Message, MessageStatus
from .composepool import (
    Composes,
    compose,
    compose_ids,
    compose_in_worker,
    unsendable_reason,
)
from .mailer import Mailer, MemoryMailer, Outcome, SendResult
from .outbox import (
    FINAL_ROW,
    FLUSH_SECONDS,
    RELEASE_ROW,
    RETRY_ROW,
    Ledger,
    M,
    Results,
    claim,
    commit_handover,
    count_due,
    due,
    handed,
    load_claimed,
    precheck,
    release,
    sweep_expired_leases,
)

log = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=2)
RETRY_CAP = timedelta(hours=6)
SAME_REFUSAL_STREAK = 5  # identical permanent refusals in a row that pause the run …
STREAK_DOMAINS = 2  # … when they are for at least this many recipients' domains
LEASE_SHARE = 0.5  # a claim is what the rate limit lets go out in this share of a lease
RENEWALS_PER_LEASE = 3
MAX_ERRORS_KEPT = 100
LEASE_LOST = "lease_lost"  # the count of rows another dispatcher took before they were sent


Progress = Callable[[int, int], None]  # (messages handled, messages due at the start)


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
        return sum(n for key, n in self.counts.items() if key not in ("released", LEASE_LOST))

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


def within_lease(sending: Sending) -> int:
    """How many messages the rate limit lets go out in a share of a lease: the
    most a pass holds leased and unsettled (more, and the last would wait past
    their lease for their turn)."""
    return max(1, int(sending.rate_per_second * sending.lease.total_seconds() * LEASE_SHARE))


def claim_size(sending: Sending) -> int:
    """The most one claim takes: a batch, or fewer at a slow rate or a short lease."""
    return min(sending.batch_size, within_lease(sending))


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Delay before retry number `attempt` (1-based): doubling from 2 min, capped at
    6 h, with jitter (a random half to all of it) so retries do not arrive together."""
    ceiling = min(RETRY_BASE * 2 ** max(0, attempt - 1), RETRY_CAP)
    return ceiling * (rng or random).uniform(0.5, 1.0)


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
        self.claim_size = claim_size(self.sending)
        self.hold_at_most = max(self.claim_size, within_lease(self.sending))
        self.settled = asyncio.Event()  # a claimed row got its outcome
        self.chunk = min(self.claim_size, max(50, 4 * mailer.concurrency))
        self.low_water = max(1, mailer.concurrency)
        self.handovers: list[tuple[_Letter, asyncio.Future[bool]]] = []
        self.write_wanted = asyncio.Event()  # marks asked for, or results due
        self.closing = False  # the writer stops once it has written what is asked
        self.connection: Connection | None = None  # the writer's, used in its thread
        self.renewal_due = False
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
            room = min(self.claim_size, self.hold_at_most - self.unsettled())
            if self.limit is not None:
                room = min(room, self.limit - self.report.claimed)
                if room <= 0 and self.report.claimed >= self.limit:
                    break
            if room <= 0:
                self.settled.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.settled.wait(), FLUSH_SECONDS)
                continue
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
            self._want_write()

    def unsettled(self) -> int:
        """Rows this pass claimed that have no outcome yet (held refusals aside)."""
        return self.report.claimed - sum(self.report.counts.values()) - len(self.streak)

    async def feed(self) -> None:
        """Hand composed batches to the senders a chunk at a time, keeping the
        queue short; after a pause or stop, give the rest back."""
        while (letters := await self.batches.get()) is not None:
            for start in range(0, len(letters), self.chunk):
                chunk = letters[start : start + self.chunk]
                while self.queue.qsize() > self.low_water:
                    self.room.clear()
                    await self.room.wait()
                for letter in chunk:
                    if self.halted() or self.failure is not None:
                        self._release(letter)
                    else:
                        self.queue.put_nowait(letter)

    async def _prepare(self, ids: list[int]) -> list[_Letter]:
        """Re-check the claimed rows, compose the rest; return what is to be sent."""
        now = self.clock()
        with Session(self.engine, expire_on_commit=False) as session:
            to_send = []
            for row in load_claimed(session, ids):
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
                self.pool, compose_in_worker, [r.id for r in to_send], now
            )
        letters = []
        for row, result in zip(to_send, results, strict=True):
            reason = unsendable_reason(result)
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
                if not await self.hand_over(letter):
                    continue
                if self.halted():  # paused while the mark was written: it never left
                    self._release(letter)
                    continue
                result = await self.mailer.send(letter.sender, letter.recipient, letter.data)
                self.record(letter, result)
            except Exception as exc:  # the database failed: stop claiming, re-raise at the end
                self.crashed(exc)
            finally:
                self.settled.set()

    async def hand_over(self, letter: _Letter) -> bool:
        """Mark `letter`'s row handed over, with the results recorded so far; True
        if it was still this worker's to send."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.handovers.append((letter, future))
        self.write_wanted.set()
        if not await future:
            return False
        letter.handed = True
        return True

    async def write(self) -> None:
        """The run's only writer of marks and results while letters are sending:
        every wake-up writes what the connections asked for meanwhile, in one
        transaction in a thread (the loop goes on sending)."""
        while True:
            await self.write_wanted.wait()
            self.write_wanted.clear()
            if self.closing and not self.handovers:
                return  # what results are left, `finish` writes
            asking, self.handovers = self.handovers, []
            results = self.ledger.take()
            headers = {letter.claim.id: letter.header_message_id for letter, _ in asking}
            now = self.clock()
            renew_until = now + self.sending.lease if self.renewal_due else None
            self.renewal_due = False
            try:
                marked, suppressed = await asyncio.to_thread(
                    self._commit_handover, headers, results, now, renew_until
                )
            except Exception as exc:  # rows stay leased; the next pass sweeps them
                marked, suppressed = set(), 0
                self.crashed(exc)
            self.report.suppressed_addresses += suppressed
            for letter, future in asking:
                if letter.claim.id not in marked and self.failure is None:
                    self._lost(letter)
                future.set_result(letter.claim.id in marked)

    def _commit_handover(
        self,
        headers: dict[int, str],
        results: Results,
        now: datetime,
        renew_until: datetime | None,
    ) -> tuple[set[int], int]:
        """`commit_handover` on the writer's own connection, kept for the pass."""
        if self.connection is None:
            self.connection = self.engine.connect()
        try:
            return commit_handover(
                self.connection, self.worker_id, headers, results, now, renew_until
            )
        except BaseException:
            self.close_connection()
            raise

    def close_connection(self) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            connection.close()

    def _lost(self, letter: _Letter) -> None:
        self.report.count(letter.claim.campaign, LEASE_LOST)
        log.warning(
            "message %s not sent: its lease was lost (another dispatcher has it)",
            letter.claim.id,
        )

    async def keep_leases(self) -> None:
        """Have the writer renew the leases this pass holds, every third of a lease
        (in its transaction: a second connection on the same rows could deadlock)."""
        while True:
            await asyncio.sleep(self.sending.lease.total_seconds() / RENEWALS_PER_LEASE)
            self.renewal_due = True
            self.write_wanted.set()

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
        """A refusal of this recipient fails this message alone. Other refusals are
        held while they repeat: the same one five times in a row (or a whole small
        batch) for more than one domain means the server refuses everyone, so
        nobody is blamed and the run pauses."""
        if result.per_recipient:
            self._refused(letter, result)
            return
        if self.report.paused:
            self._release(letter)
            return
        if self.streak and _signature(self.streak[0][1]) != _signature(result):
            self._end_streak()
        self.streak.append((letter, result))
        threshold = max(3, min(SAME_REFUSAL_STREAK, letter.claim.batch_size))
        if len(self.streak) < threshold:
            return
        if len({_domain(held.recipient) for held, _ in self.streak}) < STREAK_DOMAINS:
            self._refused(*self.streak.pop(0))  # one domain's verdict, not everyone's
            return
        self.report.pause(
            f"the SMTP server refused {len(self.streak)} messages in a row "
            f"with the same reply: {result.describe()}"
        )
        for held, _ in self.streak:
            self._release(held)
        self.streak.clear()

    def _end_streak(self) -> None:
        for letter, result in self.streak:
            self._refused(letter, result)
        self.streak.clear()

    def _refused(self, letter: _Letter, result: SendResult) -> None:
        """Fail a permanently refused message; suppress its address if the mailbox is bad."""
        claim = letter.claim
        self._final(claim.id, claim.campaign, MessageStatus.FAILED, result.describe(), 1, result)
        if result.bad_mailbox:
            reason = f"smtp {result.code} {result.enhanced or ''}: {result.reply.strip()}"
            self.ledger.suppress[letter.recipient.lower()] = reason[:200]

    def _retry_or_fail(self, claim: Claim, reason: str, code: int | None, tried: int) -> None:
        now = self.clock()
        attempts = claim.attempts + tried
        if attempts >= self.sending.max_attempts or now - claim.send_after >= self.sending.max_age:
            reason = f"gave up after {attempts} attempts: {reason}"
            self._final(claim.id, claim.campaign, MessageStatus.FAILED, reason, tried)
            return
        self.ledger.add(
            RETRY_ROW,
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
            FINAL_ROW,
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
            RELEASE_ROW, letter.claim.campaign, "released", b_id=letter.claim.id, b_owner=owner
        )

    def _want_write(self) -> None:
        if self.ledger.due():
            self.write_wanted.set()

    async def keep_flushing(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self._want_write()
            if self.progress:
                self.progress(self.report.handled, self.due_total)

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


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


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
    engine.deliver.compose.Composer) in this process. Leaves the mailer and the pool
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
    writer = asyncio.create_task(run.write())
    helpers = [asyncio.create_task(run.keep_flushing()), asyncio.create_task(run.keep_leases())]
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
        run.closing = True  # every worker has had its answer: the writer is idle or busy
        run.write_wanted.set()  # writing results, and stops after that
        await writer
        await asyncio.to_thread(run.close_connection)
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
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
    query = select(M.id).where(due(now)).order_by(M.send_after, M.id).limit(limit)
    with Session(engine) as session:
        ids = list(session.scalars(query))
        report.claimed = len(ids)
        for start in range(0, len(ids), project.config.sending.batch_size):
            chunk = load_claimed(session, ids[start : start + project.config.sending.batch_size])
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
        reason = unsendable_reason(result)
        if reason is not None:
            report.count(row.campaign, MessageStatus.FAILED)
            report.error(row.id, f"failed: {reason}")
            continue
        sent = await mailer.send(result.sender, result.recipient, result.data)
        report.count(row.campaign, MessageStatus.SENT if sent.outcome is Outcome.SENT else "other")
