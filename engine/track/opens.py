"""Opens and clicks: telling machines from people, and writing them in batches.

A pixel hit or a click is `record`ed into an in-memory `HitBuffer`; a background
task `flush`es the buffer every `interval` seconds or as soon as `batch_size`
hits wait, in one transaction per flush, so a burst of pixel hits costs one
commit, not one each. A flush that fails (database locked or down) keeps its
hits for the next try; the buffer holds at most `max_pending` hits and drops
the oldest beyond that, with a log line.

Machine opens (`machine = true` on the open event):

- the user agent is exactly `Mozilla/5.0` (Apple Mail Privacy Protection's
  proxy), empty, or names Google's image proxy (`GoogleImageProxy`) or Yahoo's;
- the user agent names a known mail scanner or link checker: Barracuda,
  Mimecast, Proofpoint, Symantec MessageLabs, Trend Micro, Cisco IronPort,
  Microsoft's link scanners (BingPreview, Microsoft Defender / Safe Links),
  or is a generic bot, crawler, headless browser or HTTP library;
- the open came within `tracking.machine_open_window` of the message's
  `sent_at` (nobody reads that fast: proxies fetch on delivery);
- the pixel was fetched with HEAD (a checker, not a mail client).

Machine clicks: a HEAD request, a scanner user agent, or a click less than a
second after the message was sent. A human click also counts as a human open:
if the message has no human open yet, one is recorded with the click.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..store import EventKind, Message, MessageEvent, UTCDateTime
from .lockwait import short_lock_wait

_MESSAGES: Any = Message.__table__  # type: ignore[attr-defined]
_EVENTS: Any = MessageEvent.__table__  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

CLICK_MACHINE_WINDOW = timedelta(seconds=1)
USER_AGENT_LIMIT = 500
URL_LIMIT = 2000
LOOKUP_CHUNK = 500  # message ids per lookup statement

# Mozilla/5.0 alone is Apple's MPP proxy; the others name themselves.
_PROXY = re.compile(r"^\s*(?:mozilla/5\.0)?\s*$|googleimageproxy|yahoomailproxy", re.IGNORECASE)
_SCANNER = re.compile(
    r"barracuda|mimecast|proofpoint|messagelabs|symantec|trend ?micro|ironport|"
    r"bingpreview|safelinks|microsoft defender|microsoft-safe|"
    r"bot\b|crawler|spider|headlesschrome|python-requests|python-urllib|curl/|wget/|"
    r"go-http-client|java/|okhttp|libwww",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def is_machine_agent(user_agent: str | None) -> bool:
    """True when the user agent belongs to a mail proxy, scanner or bot.

    Cached: a burst of opens comes from a few dozen distinct agents.
    """
    agent = user_agent or ""
    return bool(_PROXY.search(agent) or _SCANNER.search(agent))


@functools.lru_cache(maxsize=4096)
def _is_scanner(user_agent: str | None) -> bool:
    return bool(_SCANNER.search(user_agent or ""))


def is_machine_open(
    user_agent: str | None, at: datetime, sent_at: datetime | None, window: timedelta
) -> bool:
    """True for an open by a proxy or scanner, or within `window` of the send."""
    if is_machine_agent(user_agent):
        return True
    return sent_at is not None and at - sent_at <= window


def is_machine_click(
    user_agent: str | None, at: datetime, sent_at: datetime | None, *, head: bool
) -> bool:
    """True for a HEAD request, a scanner, or a click under a second after sending."""
    if head or _is_scanner(user_agent):
        return True
    return sent_at is not None and at - sent_at < CLICK_MACHINE_WINDOW


@dataclass(frozen=True)
class Hit:
    """One pixel fetch or link click, as it arrived."""

    kind: EventKind  # OPEN or CLICK
    message_id: int
    at: datetime
    user_agent: str | None = None
    url: str | None = None
    head: bool = False


_EVENT_COLUMNS = ("message_id", "customer_id", "kind", "at", "machine", "user_agent", "url")
_UTC_TYPE = UTCDateTime()


def write_hits(
    connection: Connection, hits: Sequence[Hit], open_window: timedelta
) -> dict[str, int]:
    """Insert `hits` as message events, classified; return counts by what was written.

    Hits for messages that no longer exist are skipped (and counted). This runs
    in a worker thread beside a busy event loop, so it keeps its own Python work
    small (plain tuples, the driver's executemany, no ORM or per-value SQLAlchemy
    processing): every stretch it holds the interpreter lock delays the pixels.
    """
    messages = _sent_messages(connection, {hit.message_id for hit in hits})
    clicked = {h.message_id for h in hits if h.kind is EventKind.CLICK}
    opened = _human_opened(connection, clicked)
    dialect = connection.dialect
    stored_time = _EVENTS.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    rows: list[tuple[object, ...]] = []
    skipped = opens = clicks = 0
    for hit in hits:
        message = messages.get(hit.message_id)
        if message is None:
            skipped += 1
            continue
        agent = hit.user_agent[:USER_AGENT_LIMIT] if hit.user_agent else None
        at = stored_time(hit.at) if stored_time else hit.at
        for kind, machine, url in _classify(hit, agent, message[1], open_window, opened):
            opens += kind is EventKind.OPEN
            clicks += kind is EventKind.CLICK
            rows.append((hit.message_id, message[0], kind.value, at, machine, agent, url))
    if rows:
        connection.exec_driver_sql(
            f"INSERT INTO {_EVENTS.name} ({', '.join(_EVENT_COLUMNS)}) "
            f"VALUES ({_marks(connection, len(_EVENT_COLUMNS))})",
            rows,
        )
    return {"opens": opens, "clicks": clicks, "skipped": skipped}


def _sent_messages(
    connection: Connection, message_ids: set[int]
) -> dict[int, tuple[int, datetime | None]]:
    """Customer id and `sent_at` by message id, for the messages that exist."""
    found: dict[int, tuple[int, datetime | None]] = {}
    dialect = connection.dialect
    for chunk in _chunks(message_ids):
        rows = connection.exec_driver_sql(
            f"SELECT id, customer_id, sent_at FROM {_MESSAGES.name} "
            f"WHERE id IN ({_marks(connection, len(chunk))})",
            chunk,
        )
        for row in rows:
            found[row[0]] = (row[1], _UTC_TYPE.process_result_value(row[2], dialect))
    return found


def _chunks(message_ids: set[int]) -> Iterator[tuple[int, ...]]:
    """Sorted ids in chunks: a buffer kept through an outage may hold more ids
    than one statement may have parameters."""
    ids = sorted(message_ids)
    for start in range(0, len(ids), LOOKUP_CHUNK):
        yield tuple(ids[start : start + LOOKUP_CHUNK])


def _marks(connection: Connection, count: int) -> str:
    """`count` positional placeholders in the driver's own style (sqlite3 or psycopg)."""
    return ", ".join(["?" if connection.dialect.paramstyle == "qmark" else "%s"] * count)


def _human_opened(connection: Connection, message_ids: set[int]) -> set[int]:
    events = _EVENTS
    opened: set[int] = set()
    for chunk in _chunks(message_ids):
        query = select(events.c.message_id).where(
            events.c.message_id.in_(chunk),
            events.c.kind == EventKind.OPEN,
            events.c.machine.is_(False),
        )
        opened.update(connection.execute(query).scalars())
    return opened


def _classify(
    hit: Hit,
    agent: str | None,
    sent_at: datetime | None,
    open_window: timedelta,
    human_opened: set[int],
) -> list[tuple[EventKind, bool, str | None]]:
    """The events one hit makes: (kind, machine, url); a human click adds a human open."""
    if hit.kind is EventKind.OPEN:
        machine = hit.head or is_machine_open(agent, hit.at, sent_at, open_window)
        if not machine:
            human_opened.add(hit.message_id)
        return [(EventKind.OPEN, machine, None)]
    machine = is_machine_click(agent, hit.at, sent_at, head=hit.head)
    url = hit.url[:URL_LIMIT] if hit.url else None
    events = [(EventKind.CLICK, machine, url)]
    if not machine and hit.message_id not in human_opened:
        human_opened.add(hit.message_id)
        events.append((EventKind.OPEN, False, None))
    return events


class HitBuffer:
    """Hits waiting to be written; `run()` flushes them in the background.

    `record` never touches the database and never raises: the pixel answers
    whatever happens to the store.
    """

    def __init__(
        self,
        engine: Engine,
        open_window: Callable[[], timedelta],
        *,
        interval: float = 0.1,
        batch_size: int = 100,
        max_pending: int = 100_000,
    ):
        self.engine = engine
        self.open_window = open_window
        self.interval = interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.dropped = 0
        self.written = 0
        self._pending: list[Hit] = []
        self._wake: asyncio.Event | None = None
        self._failing = False
        self._flushing: asyncio.Lock | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, hit: Hit) -> None:
        """Queue one hit; wake the flusher when a batch is ready."""
        self._pending.append(hit)
        if len(self._pending) > self.max_pending:
            excess = len(self._pending) - self.max_pending
            del self._pending[:excess]
            self.dropped += excess
            log.warning("tracking buffer full: dropped %d oldest hits", excess)
        if self._wake is not None and len(self._pending) >= self.batch_size:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `interval` seconds (sooner when a batch is full) until `stop`."""
        self._wake = asyncio.Event()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {waking, stopping}, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED
                )
                waking.cancel()
                self._wake.clear()
                await self.flush()
        finally:
            stopping.cancel()

    async def flush(self) -> bool:
        """Write everything pending in a worker thread; on failure keep it. True if all written.

        Waits for a flush already under way, so after it returns every hit
        recorded before the call is written (or still pending, on failure).
        """
        if self._flushing is None:
            self._flushing = asyncio.Lock()
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        if not self._pending:
            return True
        hits, self._pending = self._pending, []
        try:
            counts = await asyncio.to_thread(self._write, hits)
        except SQLAlchemyError as exc:
            self._pending[:0] = hits
            if not self._failing:
                log.error("tracking: could not write %d hits, keeping them: %s", len(hits), exc)
            self._failing = True
            return False
        if self._failing:
            log.info("tracking: writing hits again")
        self._failing = False
        self.written += counts["opens"] + counts["clicks"]
        if counts["skipped"]:
            log.warning("tracking: %d hits for unknown messages skipped", counts["skipped"])
        return True

    def _write(self, hits: list[Hit]) -> dict[str, int]:
        with self.engine.begin() as connection, short_lock_wait(connection):
            return write_hits(connection, hits, self.open_window())
