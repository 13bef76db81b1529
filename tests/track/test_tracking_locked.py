"""The tracking server while another connection holds the database: pixels and clicks answer
at once, a one-click unsubscribe is accepted, journaled and applied once the lock goes."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.tokens import Signer
from engine.intake.shop import upsert_customer, upsert_product
from engine.project.loader import Project, Secrets, load_project
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Customer, EventKind, Message, MessageEvent, MessageStatus
from engine.track.app import PIXEL, create_app
from engine.track.unsubscribe import JOURNAL
from tests.conftest import BOTH_DIALECTS
from tests.daemon_fixtures import SECRET, Daemon, SlowSink, configure, free_port
from tests.tracking_server import serving

LANDING = "https://shop.example/offers"


def sent_message(engine: Engine, now: datetime, email: str = "rahim@example.com") -> int:
    with session_scope(engine) as session:
        customer = upsert_customer(
            session, external_id="c1", email=email, now=now, marketing_consent=True
        )
        message = Message(
            dedupe_key=f"welcome:{customer.id}:once",
            campaign="welcome",
            customer_id=customer.id,
            occurrence="once",
            status=MessageStatus.SENT,
            created_at=now - timedelta(hours=2),
            send_after=now - timedelta(hours=2),
            sent_at=now - timedelta(hours=1),
        )
        session.add(message)
        session.flush()
        return int(message.id)


def consent(engine: Engine) -> bool:
    with Session(engine) as session:
        return bool(session.execute(select(Customer.marketing_consent)).scalar_one())


def kinds(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(str(k) for k in session.execute(select(MessageEvent.kind)).scalars())


def until(condition, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def hit_while_locked(base: str, signer: Signer, message_id: int, seconds: float) -> dict:
    """Pixels and clicks for `seconds`, then a one-click unsubscribe; what each took."""
    slowest = {"pixel": 0.0, "click": 0.0}
    with httpx.Client(base_url=base, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert client.get(f"/o/{signer.open_token(message_id)}.gif").content == PIXEL
            slowest["pixel"] = max(slowest["pixel"], time.perf_counter() - started)
            started = time.perf_counter()
            click = client.get(f"/c/{signer.click_token(message_id, LANDING)}")
            assert (click.status_code, click.headers["location"]) == (302, LANDING)
            slowest["click"] = max(slowest["click"], time.perf_counter() - started)
            time.sleep(0.05)
        started = time.perf_counter()
        answer = client.post(f"/u/{signer.unsubscribe_token(message_id)}")
        slowest["unsubscribe"] = time.perf_counter() - started
        slowest["status"] = answer.status_code
    return slowest


def test_a_running_daemon_answers_while_sqlite_is_locked(project_dir: Path):
    """`lifecycle run` ticks every second (its dispatcher reads the database); another
    process holds the write lock for four seconds: nothing of the server waits for it."""
    sink = SlowSink()
    database = project_dir / "shop.db"
    config = configure(
        project_dir, smtp_port=sink.port, http_port=free_port(), database=f"sqlite:///{database}"
    )
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    message_id = sent_message(engine, datetime.now(UTC))
    with session_scope(engine) as session:
        for sku in ("TEA-500G", "JUTE-BAG-01", "SARI-JAM-01"):  # the holiday offers' products
            upsert_product(session, sku=sku, name=sku, price="450.00", now=datetime.now(UTC))
    daemon = Daemon(config).start()
    try:
        base = f"http://127.0.0.1:{load_project(config).config.tracking.port}"
        daemon.wait_for(lambda: _answers(f"{base}/healthz"), why="the tracking server")
        locker = sqlite3.connect(database, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            time.sleep(1.5)  # a tick is now waiting for the lock
            seen = hit_while_locked(base, Signer(SECRET), message_id, seconds=2.5)
        finally:
            locker.execute("COMMIT")
            locker.close()
        assert seen["pixel"] < 0.5, seen
        assert seen["click"] < 0.5, seen
        assert seen["status"] == 202 and seen["unsubscribe"] < 3, seen
        assert until(lambda: not consent(engine)), "the unsubscribe was never applied"
        assert until(lambda: "open" in kinds(engine) and "click" in kinds(engine))
        assert daemon.stop(signal.SIGTERM) == 0
        assert kinds(engine).count("unsubscribe") == 1
        assert not (project_dir / JOURNAL).exists()
    finally:
        daemon.kill()
        sink.close()
        engine.dispose()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET)


class Lock:
    """Another connection holding the store: SQLite's write lock, or on PostgreSQL the
    customer's row (an unsubscribe locks it) and the events table (opens are inserted)."""

    def __init__(self, db: Engine, tmp_path: Path):
        self.db = db
        self.tmp_path = tmp_path
        self._release = threading.Event()
        self._held = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        if self.db.dialect.name == "sqlite":
            locker = sqlite3.connect(self.tmp_path / "store.db", isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            self._held.set()
            self._release.wait(30)
            locker.execute("COMMIT")
            locker.close()
            return
        with self.db.connect() as connection:
            connection.execute(text("SELECT id FROM customer FOR UPDATE"))
            connection.execute(text("LOCK TABLE message_event IN EXCLUSIVE MODE"))
            self._held.set()
            self._release.wait(30)
            connection.commit()

    def __enter__(self) -> Lock:
        self._thread.start()
        assert self._held.wait(10)
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.release()


@BOTH_DIALECTS
def test_the_app_answers_while_the_store_is_locked(db, project, signer, now, tmp_path):
    message_id = sent_message(db, now)
    app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
    with serving(app) as base, Lock(db, tmp_path) as lock:
        seen = hit_while_locked(base, signer, message_id, seconds=1.0)
        assert seen["pixel"] < 0.5 and seen["click"] < 0.5, seen
        assert seen["status"] == 202 and seen["unsubscribe"] < 3, seen
        assert (project.root / JOURNAL).exists()
        lock.release()
        assert until(lambda: not consent(db)), "the unsubscribe was never applied"
    assert not (project.root / JOURNAL).exists()
    assert kinds(db).count("unsubscribe") == 1
    assert {"open", "click"} <= set(kinds(db))


@BOTH_DIALECTS
def test_an_unsubscribe_accepted_before_a_stop_is_applied_after_the_restart(
    db, project, signer, now, tmp_path
):
    """The server stops while the store is still locked: the journal keeps the request,
    and the next start applies it."""
    message_id = sent_message(db, now)
    with Lock(db, tmp_path):
        app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
        with serving(app) as base:
            answer = httpx.post(f"{base}/u/{signer.unsubscribe_token(message_id)}", timeout=30)
            assert answer.status_code == 202
            assert "received" in answer.text
        # The shutdown's last try could not write it either.
        assert (project.root / JOURNAL).exists()
    assert consent(db) is True
    restarted = create_app(db, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
    with serving(restarted):
        assert until(lambda: not consent(db)), "the journaled unsubscribe was not applied"
    assert kinds(db) == [EventKind.UNSUBSCRIBE.value]
    assert not (project.root / JOURNAL).exists()
