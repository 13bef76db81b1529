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

What each result does to its message, and when the run pauses, is the
`Recorder`'s (`results`). A pause or `stop` claims nothing more and releases
the rows not yet sent. The dry run, `rehearse`, is in `dryrun`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from ..errors import StoreError
from ..project import Project, Secrets, Sending
from .composepool import (
    Composes,
    compose_ids,
    compose_in_worker,
    unsendable_reason,
    unsendable_retries,
)
from .dispatchreport import LEASE_LOST, Claim, DispatchReport, Letter, default_worker_id
from .mailer import Mailer
from .outbox import (
    FLUSH_SECONDS,
    Ledger,
    Results,
    claim,
    commit_handover,
    count_due,
    load_claimed,
    precheck,
    release,
    sweep_expired_leases,
)
from .ramp import marketing_room
from .results import Recorder

log = logging.getLogger(__name__)

LEASE_SHARE = 0.5  # a claim is what the rate limit lets go out in this share of a lease
RENEWALS_PER_LEASE = 3


Progress = Callable[[int, int], None]  # (messages handled, messages due at the start)


def within_lease(sending: Sending) -> int:
    """How many messages the rate limit lets go out in a share of a lease: the
    most a pass holds leased and unsettled (more, and the last would wait past
    their lease for their turn)."""
    return max(1, int(sending.rate_per_second * sending.lease.total_seconds() * LEASE_SHARE))


def claim_size(sending: Sending) -> int:
    """The most one claim takes: a batch, or fewer at a slow rate or a short lease."""
    return min(sending.batch_size, within_lease(sending))


# ---------------------------------------------------------------- the run


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
        self.report = DispatchReport(worker_id)
        self.ledger = Ledger(engine, worker_id, self.report, self.clock)
        self.recorder = Recorder(
            self.ledger, self.report, self.sending, mailer.concurrency, worker_id, self.clock
        )
        self.claim_size = claim_size(self.sending)
        self.hold_at_most = max(self.claim_size, within_lease(self.sending))
        self.settled = asyncio.Event()  # a claimed row got its outcome
        self.chunk = min(self.claim_size, max(50, 4 * mailer.concurrency))
        self.low_water = max(1, mailer.concurrency)
        self.handovers: list[tuple[Letter, asyncio.Future[bool]]] = []
        self.write_wanted = asyncio.Event()  # marks asked for, or results due
        self.closing = False  # the writer stops once it has written what is asked
        self.connection: Connection | None = None  # the writer's, used in its thread
        self.renewal_due = False
        self.batches: asyncio.Queue[list[Letter] | None] = asyncio.Queue(maxsize=1)
        self.queue: asyncio.Queue[Letter | None] = asyncio.Queue()  # filled by `feed` only
        self.room = asyncio.Event()  # set when the queue is down to `low_water`
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
            ramp_room = (
                marketing_room(self.engine, self.project, self.clock())
                if self.sending.ramp is not None
                else None
            )
            ids = claim(
                self.engine, self.worker_id, self.clock(), self.sending.lease, room, ramp_room
            )
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
        return self.report.claimed - sum(self.report.counts.values()) - len(self.recorder.streak)

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
                        self.recorder.release(letter)
                    else:
                        self.queue.put_nowait(letter)

    async def _prepare(self, ids: list[int]) -> list[Letter]:
        """Re-check the claimed rows, compose the rest; return what is to be sent."""
        now = self.clock()
        with Session(self.engine, expire_on_commit=False) as session:
            to_send = []
            for row in load_claimed(session, ids):
                verdict = precheck(row, now)
                if verdict is None:
                    to_send.append(row)
                else:
                    self.recorder.final(row.id, row.campaign, verdict[0], verdict[1], tried=0)
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
                self.recorder.unsendable(row, reason, retry=unsendable_retries(result))
                continue
            letters.append(
                Letter(
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
                    self.recorder.release(letter)
                    continue
                if not await self.hand_over(letter):
                    continue
                if self.halted():  # paused while the mark was written: it never left
                    self.recorder.release(letter)
                    continue
                result = await self.mailer.send(letter.sender, letter.recipient, letter.data)
                self.recorder.record(letter, result)
            except Exception as exc:  # the database failed: stop claiming, re-raise at the end
                self.crashed(exc)
            finally:
                self.settled.set()

    async def hand_over(self, letter: Letter) -> bool:
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

    def _lost(self, letter: Letter) -> None:
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
        self.recorder.end_streak()
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
