"""The shop's sending rate and SMTP connections, shared by every daemon that sends for it.

`sending.rate_per_second` is a limit for the whole shop. Each dispatcher takes
sending slots from one row of the store (`send_rate`), a few at a time, by the
generic cell rate algorithm: the row holds the earliest moment the next slot is
free (`free_at`, microseconds since the epoch); taking n slots moves it to
`max(free_at, now) + n / rate` in one statement, and the taker may send its i-th
email at the old value plus i / rate. So however many daemons send, together they
never go faster than the rate; slots taken and not used are only lost time.

A dispatcher takes a quarter second of slots at a time (at least one), so the row
is written about four times a second per sending daemon, not once per email.

`sending.connections` is the whole shop's too: before a mailer opens an SMTP
connection it holds one of the `smtp_slot` rows (numbered 0 … connections − 1) under
a lease (`SLOT_LEASE`), renewed while it sends and given back when it closes; a
connection finds no free slot waits for one. A daemon that dies loses its slots when
their leases run out.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine

from ..store import SendRate, SmtpSlot, ignoring_insert, is_postgres

RATE: Any = SendRate.__table__  # type: ignore[attr-defined]
SLOT: Any = SmtpSlot.__table__  # type: ignore[attr-defined]
SLOT_LEASE = timedelta(seconds=60)
SLOT_WAIT = 0.2  # seconds between two looks for a free slot
CHUNK_SECONDS = 0.25
MAX_CHUNK = 1000  # slots taken at once, whatever the rate
MICRO = 1_000_000


class SharedRate:
    """Slots at `rate` per second for the whole shop, from the store."""

    def __init__(self, engine: Engine, rate: float, clock: Any = time.time):
        self.engine = engine
        self.rate = rate
        self.clock = clock
        self.step = MICRO / rate  # microseconds between two slots
        self.chunk = max(1, min(int(rate * CHUNK_SECONDS), MAX_CHUNK))
        self.slots: deque[float] = deque()  # our slots' moments, seconds since the epoch
        self.lock = asyncio.Lock()
        self._later = func.greatest if is_postgres(engine) else func.max

    async def take(self) -> None:
        """Wait for this daemon's next slot."""
        async with self.lock:  # waiters queue in order
            # A slot already past by more than a step went unused (the sender was held
            # up): spending it now would crowd this send onto the next one's, so it is let go.
            stale = self.clock() - self.step / MICRO
            while self.slots and self.slots[0] < stale:
                self.slots.popleft()
            if not self.slots:
                self.slots.extend(await asyncio.to_thread(self._grab, self.chunk))
            slot = self.slots.popleft()
        delay = slot - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def _grab(self, count: int) -> list[float]:
        """Take `count` slots from the store; their moments."""
        now = int(self.clock() * MICRO)
        statement = (
            update(RATE)
            .where(RATE.c.id == 1)
            .values(free_at=self._later(RATE.c.free_at, now) + int(count * self.step))
            .returning(RATE.c.free_at)
        )
        with self.engine.begin() as conn:
            end = conn.execute(statement).scalar()
            if end is None:  # the row is missing (a store emptied by hand): make it
                conn.execute(ignoring_insert(conn, RATE, "id"), [{"id": 1, "free_at": 0}])
                end = conn.execute(statement).scalar_one()
        start = end - count * self.step
        return [(start + k * self.step) / MICRO for k in range(count)]


HOST = socket.gethostname()[:30]


def slot_owner() -> str:
    """A connection's name as a slot owner: this machine, this process, and its own part."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class SharedSlots:
    """The shop's `limit` SMTP connection slots, held under leases in the store."""

    def __init__(self, engine: Engine, limit: int, clock: Any = lambda: datetime.now(UTC)):
        self.engine = engine
        self.limit = limit
        self.clock = clock
        self.postgres = is_postgres(engine)

    def acquire(self, owner: str) -> int | None:
        """A free slot for `owner` (its number), or None when all are held. A slot held
        by a process of this machine that is gone (killed mid-send) is free."""
        now = self.clock()
        with self.engine.begin() as conn:
            self._free_the_dead(conn, now)
            for _ in range(2):
                free = (
                    select(SLOT.c.slot)
                    .where(
                        SLOT.c.slot < self.limit, or_(SLOT.c.owner.is_(None), SLOT.c.until < now)
                    )
                    .order_by(SLOT.c.slot)
                    .limit(1)
                )
                if self.postgres:
                    free = free.with_for_update(skip_locked=True)
                taken = conn.execute(
                    update(SLOT)
                    .where(SLOT.c.slot == free.scalar_subquery())
                    .values(owner=owner, until=now + SLOT_LEASE)
                    .returning(SLOT.c.slot)
                ).scalar()
                if taken is not None:
                    return int(taken)
                known = conn.execute(
                    select(func.count()).where(SLOT.c.slot < self.limit)
                ).scalar_one()
                if known >= self.limit:
                    return None
                conn.execute(  # the slots not made yet (a new shop, or more connections)
                    ignoring_insert(conn, SLOT, "slot"),
                    [{"slot": n, "owner": None, "until": None} for n in range(self.limit)],
                )
        return None

    def _free_the_dead(self, conn: Any, now: datetime) -> None:
        here = f"{HOST}:"
        held = conn.execute(
            select(SLOT.c.slot, SLOT.c.owner).where(
                SLOT.c.slot < self.limit, SLOT.c.until >= now, SLOT.c.owner.startswith(here)
            )
        ).all()
        for slot, owner in held:
            pid = owner.removeprefix(here).partition(":")[0]
            if pid.isdigit() and not _alive(int(pid)):
                conn.execute(
                    update(SLOT)
                    .where(SLOT.c.slot == slot, SLOT.c.owner == owner)
                    .values(owner=None, until=None)
                )

    def renew(self, slot: int, owner: str) -> bool:
        """Extend `owner`'s lease on `slot`; False if it is not `owner`'s any more."""
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(SLOT)
                .where(SLOT.c.slot == slot, SLOT.c.owner == owner)
                .values(until=self.clock() + SLOT_LEASE)
                .returning(SLOT.c.slot)
            ).scalar()
        return renewed is not None

    def release(self, slot: int, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(SLOT)
                .where(SLOT.c.slot == slot, SLOT.c.owner == owner)
                .values(owner=None, until=None)
            )
