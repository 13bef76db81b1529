"""The planner lock: one daemon per SQLite database, one planner among PostgreSQL daemons."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.errors import LockHeld, StoreError
from engine.store.db import make_engine
from engine.store.locks import AdvisoryLock, FileLock, lock_key, planner_lock, sqlite_lock_path


def test_a_second_file_lock_is_refused_naming_the_holder(tmp_path: Path):
    first = FileLock(tmp_path / "lifecycle.db.lock")
    first.acquire()
    with pytest.raises(LockHeld, match=rf"pid {os.getpid()}.*lifecycle.db.lock is locked"):
        FileLock(tmp_path / "lifecycle.db.lock").acquire()
    first.release()
    second = FileLock(tmp_path / "lifecycle.db.lock")
    second.acquire()  # free again once released
    second.release()


def test_the_file_lock_holds_against_another_process(tmp_path: Path):
    path = tmp_path / "lifecycle.db.lock"
    lock = FileLock(path)
    lock.acquire()
    probe = (
        "import sys; from engine.store.locks import FileLock; from engine.errors import LockHeld\n"
        "try:\n    FileLock(sys.argv[1]).acquire()\nexcept LockHeld as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3, result.stderr
    assert "only one daemon" in result.stdout
    lock.release()
    result = subprocess.run([sys.executable, "-c", probe, str(path)], timeout=30)
    assert result.returncode == 0


def test_planner_lock_on_sqlite_sits_beside_the_database(sqlite_url: str, tmp_path: Path):
    engine = make_engine(sqlite_url)
    lock = planner_lock(engine)
    assert sqlite_lock_path(engine) == tmp_path / "store.db.lock"
    assert lock.try_acquire()
    with pytest.raises(LockHeld):
        planner_lock(engine)
    lock.release()
    planner_lock(engine).release()


def test_an_in_memory_database_has_no_lock_file():
    with pytest.raises(StoreError, match="database file"):
        sqlite_lock_path(make_engine("sqlite:///:memory:"))


def test_lock_keys_are_signed_64_bit_and_stable():
    key = lock_key("lifecycle planner:test:public")
    assert key == lock_key("lifecycle planner:test:public")
    assert -(2**63) <= key < 2**63
    assert key != lock_key("lifecycle planner:test:other")


@pytest.mark.postgres
def test_one_advisory_lock_holder_and_a_takeover(postgres_url: str):
    engines = [make_engine(postgres_url) for _ in range(2)]
    first, second = (AdvisoryLock(e) for e in engines)
    assert first.try_acquire()
    assert first.try_acquire()  # keeps it
    assert not second.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    assert not first.try_acquire()
    # The holder's session dies: PostgreSQL frees the lock and the other takes over.
    assert second._connection is not None
    pid = second._connection.execute(text("SELECT pg_backend_pid()")).scalar()
    second._connection.commit()
    with engines[0].connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    # The server frees it as the terminated session ends: retried each tick, taken soon.
    deadline = time.monotonic() + 10
    while not first.try_acquire() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.held
    assert not second.try_acquire()
    first.release()
    second.release()
    for engine in engines:
        engine.dispose()


@pytest.mark.postgres
def test_advisory_locks_of_two_schemas_do_not_collide(postgres_url: str):
    other_schema = postgres_url.replace("search_path%3D", "search_path%3Dother_")
    a = AdvisoryLock(make_engine(postgres_url))
    b = AdvisoryLock(make_engine(other_schema))
    assert a.try_acquire()
    assert b._connect() is not None and b._key != a._key
    a.release()
    b.release()


def test_an_unreachable_database_means_not_the_planner():
    lock = AdvisoryLock(make_engine("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"))
    assert lock.try_acquire() is False
    lock.release()
