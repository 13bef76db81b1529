"""How long a tracking-server write may wait for another connection's lock.

The tracking server retries what it could not write (opens, clicks,
unsubscribes), so a write of its waits a little and gives up rather than the
database's default (ten seconds on SQLite, for ever on PostgreSQL): a stop
then never hangs on a lock someone else holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ..store import BUSY_TIMEOUT_MS

WRITE_WAIT_SECONDS = 2.0


@contextmanager
def short_lock_wait(connection: Connection, seconds: float = WRITE_WAIT_SECONDS) -> Iterator[None]:
    """Within the block (one transaction), wait at most `seconds` for a lock."""
    milliseconds = int(seconds * 1000)
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SET LOCAL lock_timeout = {milliseconds}"))
        yield
        return
    connection.exec_driver_sql(f"PRAGMA busy_timeout = {milliseconds}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
