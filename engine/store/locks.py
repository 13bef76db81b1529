"""One planner at a time: the instance lock of `lifecycle run`.

- SQLite allows one daemon per database: `FileLock` takes an exclusive
  `fcntl` lock on a file beside the database (`lifecycle.db.lock`) and a
  second daemon refuses to start with `LockHeld`, naming the holder's pid.
- PostgreSQL allows several daemons: every one sends (the dispatcher claims
  with `FOR UPDATE SKIP LOCKED`), and the one holding a session-level
  advisory lock plans. `AdvisoryLock.try_acquire()` is called before each
  tick, so a daemon that does not hold it takes over when the holder dies
  (its session ends and PostgreSQL frees the lock).

`planner_lock(engine)` picks the right one for the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import LockHeld, StoreError
from .db import is_postgres

log = logging.getLogger(__name__)


class PlannerLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if free (or keep it); True while this process holds it."""
        ...

    def release(self) -> None: ...


class FileLock:
    """An exclusive `fcntl` lock on `path`, held until `release` or the process ends."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock; raise LockHeld naming the holder if another process has it."""
        if self._file is not None:
            return
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LockHeld(
                f"another lifecycle daemon (pid {holder}) is using this database: "
                f"{self.path} is locked. On SQLite only one daemon may run; stop the other, "
                "or move to PostgreSQL to run several."
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def try_acquire(self) -> bool:
        self.acquire()
        return True

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock on its own connection.

    The key is derived from the database and schema, so daemons of different
    shops on one server do not block each other.
    """

    def __init__(self, engine: Engine, name: str = "lifecycle planner"):
        self.engine = engine
        self.name = name
        self._connection: Connection | None = None
        self._key: int | None = None
        self.held = False

    def try_acquire(self) -> bool:
        try:
            if self._connection is not None and not self._alive():
                self._drop()
            if self.held:
                return True
            connection = self._connect()
            self.held = bool(
                connection.execute(select(func.pg_try_advisory_lock(self._key))).scalar()
            )
            connection.commit()
        except SQLAlchemyError as exc:
            log.warning("planner lock: cannot reach the database: %s", exc)
            self._drop()
        return self.held

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = self.engine.connect()
            if self._key is None:
                where = self._connection.execute(
                    select(func.current_database(), func.current_schema())
                ).one()
                self._key = lock_key(f"{self.name}:{where[0]}:{where[1]}")
        return self._connection

    def _alive(self) -> bool:
        try:
            assert self._connection is not None
            self._connection.execute(select(1))
            self._connection.commit()
            return True
        except SQLAlchemyError:
            if self.held:
                log.warning("planner lock: the connection holding it was lost")
            return False

    def _drop(self) -> None:
        self.held = False
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.invalidate()  # ends the session, which frees the lock
                self._connection.close()
            self._connection = None

    def release(self) -> None:
        if self._connection is not None and self.held:
            try:
                self._connection.execute(select(func.pg_advisory_unlock(self._key)))
                self._connection.commit()
            except SQLAlchemyError as exc:
                log.warning("planner lock: release failed (the session end frees it): %s", exc)
        self._drop()


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name`."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def sqlite_lock_path(engine: Engine) -> Path:
    """`<database file>.lock`, beside the database."""
    database = engine.url.database
    if not database or database == ":memory:":
        raise StoreError("the daemon needs a database file, not an in-memory SQLite database")
    return Path(database + ".lock")


def planner_lock(engine: Engine) -> PlannerLock:
    """The lock that decides who plans, for the dialect of `engine`.

    On SQLite it is taken here, raising LockHeld if another daemon has it.
    """
    if is_postgres(engine):
        return AdvisoryLock(engine)
    lock = FileLock(sqlite_lock_path(engine))
    lock.acquire()
    return lock
