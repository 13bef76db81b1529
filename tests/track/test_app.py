"""The tracking app over Starlette's test client, on a real SQLite (and PostgreSQL) store."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.tokens import Signer
from engine.intake.shop import upsert_customer
from engine.project.loader import Project, Secrets, load_project
from engine.store.db import make_engine, session_scope
from engine.store.models import (
    ConsentChange,
    Customer,
    EventKind,
    Message,
    MessageEvent,
    MessageStatus,
)
from engine.track.app import MAX_URL_BYTES, PIXEL, create_app, tracker_of
from engine.track.opens import LOOKUP_CHUNK, Hit, HitBuffer, is_machine_agent
from tests.conftest import BOTH_DIALECTS

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

SECRET = "test-secret-0123456789abcdef"
APPLE_MPP = "Mozilla/5.0"
PHONE = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Mobile Safari/537.36"


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET)


MakeMessage = Callable[..., int]


@pytest.fixture
def make_message(db: Engine, now: datetime) -> MakeMessage:
    """Create a customer (once per email) and a sent message to them; return its id."""

    def make(
        email: str = "rahim@example.com",
        locale: str = "en",
        sent_ago: timedelta = timedelta(hours=1),
        consent: bool = True,
    ) -> int:
        with session_scope(db) as session:
            customer = upsert_customer(
                session,
                external_id=email.split("@")[0],
                email=email,
                now=now - timedelta(days=2),
                name="Rahim",
                locale=locale,
                marketing_consent=consent,
            )
            count = session.execute(select(Message.id)).all()
            message = Message(
                dedupe_key=f"welcome:{customer.id}:{len(count)}",
                campaign="welcome",
                customer_id=customer.id,
                occurrence="once",
                status=MessageStatus.SENT,
                created_at=now - timedelta(days=1),
                send_after=now - timedelta(days=1),
                sent_at=now - sent_ago,
            )
            session.add(message)
            session.flush()
            return message.id

    return make


@pytest.fixture
def client(db: Engine, project: Project, now: datetime) -> Iterator[TestClient]:
    secrets = Secrets(secret=SECRET, api_key="k" * 32)
    app = create_app(db, lambda: project, secrets, clock=lambda: now)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def flush(client: TestClient) -> None:
    buffer = tracker_of(client.app).hits
    assert client.portal is not None
    assert client.portal.call(buffer.flush)


def events(db: Engine, kind: EventKind | None = None) -> list[MessageEvent]:
    with Session(db) as session:
        query = select(MessageEvent).order_by(MessageEvent.id)
        if kind is not None:
            query = query.where(MessageEvent.kind == kind)
        return list(session.execute(query).scalars())


# ---------------------------------------------------------------- pixel


@BOTH_DIALECTS
def test_pixel_records_a_human_open_with_agent_and_time(client, db, signer, make_message, now):
    message_id = make_message()
    response = client.get(f"/o/{signer.open_token(message_id)}.gif", headers={"user-agent": PHONE})
    assert response.status_code == 200
    assert response.content == PIXEL
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    flush(client)
    [event] = events(db)
    assert (event.kind, event.message_id, event.machine) == (EventKind.OPEN, message_id, False)
    assert event.user_agent == PHONE
    assert event.at == now


@pytest.mark.parametrize(
    ("agent", "sent_ago", "machine"),
    [
        pytest.param(APPLE_MPP, timedelta(hours=1), True, id="apple-mpp"),
        pytest.param(
            "Mozilla/5.0 (via ggpht.com GoogleImageProxy)",
            timedelta(hours=1),
            True,
            id="gmail-proxy",
        ),
        pytest.param("Barracuda Sentinel (EE)", timedelta(hours=1), True, id="barracuda"),
        pytest.param("Mozilla/5.0 Mimecast-Security", timedelta(hours=1), True, id="mimecast"),
        pytest.param("", timedelta(hours=1), True, id="no-agent"),
        pytest.param(PHONE, timedelta(seconds=3), True, id="within-window"),
        pytest.param(PHONE, timedelta(seconds=6), False, id="after-window"),
        pytest.param(PHONE, timedelta(hours=1), False, id="phone"),
    ],
)
def test_machine_opens_are_flagged(client, db, signer, make_message, agent, sent_ago, machine):
    message_id = make_message(sent_ago=sent_ago)
    client.get(f"/o/{signer.open_token(message_id)}.gif", headers={"user-agent": agent})
    flush(client)
    [event] = events(db)
    assert event.machine is machine


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("bz0x.AAAA", id="forged"),
    ],
)
def test_pixel_with_a_bad_token_still_answers_but_records_nothing(client, db, token):
    response = client.get(f"/o/{token}.gif")
    assert response.status_code in (200, 404) if not token else response.status_code == 200
    if token:
        assert response.content == PIXEL
    flush(client)
    assert events(db) == []


def test_pixel_with_truncated_or_foreign_tokens_records_nothing(client, db, signer, make_message):
    message_id = make_message()
    good = signer.open_token(message_id)
    for token in (good[:-3], good[:10], signer.click_token(message_id, "https://x.example/")):
        assert client.get(f"/o/{token}.gif").content == PIXEL
    other = Signer("another-secret-0123456789").open_token(message_id)
    assert client.get(f"/o/{other}.gif").content == PIXEL
    flush(client)
    assert events(db) == []


def test_pixel_is_served_while_the_database_is_down_and_the_hits_wait(
    db, project, signer, make_message, now, tmp_path
):
    message_id = make_message()
    with session_scope(db) as session:  # break the table the flush writes to
        session.execute(text("ALTER TABLE message_event RENAME TO message_event_away"))
    secrets = Secrets(secret=SECRET)
    app = create_app(db, lambda: project, secrets, clock=lambda: now)
    client = TestClient(app)
    for _ in range(3):
        response = client.get(
            f"/o/{signer.open_token(message_id)}.gif", headers={"user-agent": PHONE}
        )
        assert (response.status_code, response.content) == (200, PIXEL)
    buffer = tracker_of(app).hits
    assert asyncio.run(buffer.flush()) is False
    assert buffer.pending == 3
    with session_scope(db) as session:
        session.execute(text("ALTER TABLE message_event_away RENAME TO message_event"))
    assert asyncio.run(buffer.flush()) is True
    assert buffer.pending == 0
    assert len(events(db, EventKind.OPEN)) == 3


def test_pixel_is_served_when_the_database_is_unreachable(project, signer, now):
    dead = make_engine("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    app = create_app(dead, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
    client = TestClient(app)
    response = client.get(f"/o/{signer.open_token(7)}.gif")
    assert (response.status_code, response.content) == (200, PIXEL)
    assert asyncio.run(tracker_of(app).hits.flush()) is False
    assert client.get("/healthz").status_code == 503
    dead.dispose()


@BOTH_DIALECTS
def test_a_burst_of_opens_is_written_in_one_commit(db, project, signer, make_message, now):
    message_id = make_message()
    token = signer.open_token(message_id)
    app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
    client = TestClient(app)  # no lifespan: nothing flushes in the background
    commits = []
    sa_event.listen(db, "commit", lambda conn: commits.append(1))
    for _ in range(150):
        client.get(f"/o/{token}.gif", headers={"user-agent": PHONE})
    buffer = tracker_of(app).hits
    assert buffer.pending == 150
    assert asyncio.run(buffer.flush())
    assert len(events(db, EventKind.OPEN)) == 150
    assert (buffer.written, len(commits)) == (150, 1)


def test_the_flusher_writes_a_full_batch_without_waiting_for_the_interval(db, make_message, now):
    message_id = make_message()
    buffer = HitBuffer(db, lambda: timedelta(seconds=5), interval=60, batch_size=10)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(buffer.run(stop))
        await asyncio.sleep(0)
        for i in range(10):
            buffer.record(Hit(EventKind.OPEN, message_id, now + timedelta(seconds=i), PHONE))
        for _ in range(250):
            if buffer.written == 10:
                break
            await asyncio.sleep(0.02)
        assert buffer.written == 10
        stop.set()
        await asyncio.wait_for(task, 5)  # stop ends it at once, not after the interval

    asyncio.run(scenario())


@BOTH_DIALECTS
def test_written_times_compare_like_the_ones_the_orm_writes(db, make_message, now):
    """Hits are written below the ORM; a whole-second time must still be stored
    exactly as the ORM stores it, or SQLite's text comparisons would misorder it."""
    message_id = make_message()
    whole_second = now.replace(microsecond=0) + timedelta(hours=1)
    buffer = HitBuffer(db, lambda: timedelta(seconds=5))
    buffer.record(Hit(EventKind.OPEN, message_id, whole_second, PHONE))
    buffer.record(Hit(EventKind.OPEN, message_id, whole_second + timedelta(microseconds=1), PHONE))
    assert asyncio.run(buffer.flush())
    with Session(db) as session:
        stored = session.execute(
            select(MessageEvent.at).where(MessageEvent.at >= whole_second).order_by(MessageEvent.at)
        ).scalars()
        assert list(stored) == [whole_second, whole_second + timedelta(microseconds=1)]
        later = select(MessageEvent.id).where(MessageEvent.at > whole_second)
        assert len(session.execute(later).all()) == 1


@BOTH_DIALECTS
def test_a_buffer_kept_through_an_outage_is_written_whole(db, now):
    """Hits for many distinct messages (looked up in chunks of LOOKUP_CHUNK ids,
    since a statement has a parameter limit): all written, nothing lost."""
    count = 2 * LOOKUP_CHUNK + 234
    with session_scope(db) as session:
        customer = upsert_customer(
            session, external_id="many", email="many@example.com", now=now - timedelta(days=2)
        )
        customer_id = customer.id
    sent = {"campaign": "welcome", "customer_id": customer_id, "status": MessageStatus.SENT}
    with db.begin() as connection:
        connection.execute(
            Message.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    **sent,
                    "dedupe_key": f"welcome:many:{i}",
                    "occurrence": str(i),
                    "created_at": now - timedelta(days=1),
                    "send_after": now - timedelta(days=1),
                    "sent_at": now - timedelta(hours=1),
                }
                for i in range(count)
            ],
        )
    with Session(db) as session:
        ids = list(session.execute(select(Message.id)).scalars())
    buffer = HitBuffer(db, lambda: timedelta(seconds=5))
    for message_id in ids:
        buffer.record(Hit(EventKind.OPEN, message_id, now, PHONE))
    for message_id in ids[:50]:
        buffer.record(Hit(EventKind.CLICK, message_id, now, PHONE, url="https://shop.example/"))
    buffer.record(Hit(EventKind.OPEN, 10_000_000, now, PHONE))  # no such message
    assert asyncio.run(buffer.flush())
    assert (buffer.pending, buffer.written) == (0, count + 50)
    assert len(events(db, EventKind.CLICK)) == 50
    assert len(events(db, EventKind.OPEN)) == count  # the clicks add no second human open


def test_the_buffer_keeps_at_most_max_pending_hits(db, now):
    buffer = HitBuffer(db, lambda: timedelta(seconds=5), max_pending=5)
    for i in range(8):
        buffer.record(Hit(EventKind.OPEN, 1, now + timedelta(seconds=i)))
    assert (buffer.pending, buffer.dropped) == (5, 3)


# ---------------------------------------------------------------- clicks


@BOTH_DIALECTS
def test_click_redirects_to_the_signed_url_and_counts_as_a_human_open(
    client, db, signer, make_message
):
    message_id = make_message()
    url = "https://nakshighor.example/p/JUTE-BAG-01?utm_source=email"
    response = client.get(
        f"/c/{signer.click_token(message_id, url)}",
        headers={"user-agent": PHONE},
        follow_redirects=False,
    )
    assert response.status_code == 302
    assert response.headers["location"] == url
    flush(client)
    click, opened = events(db)
    assert (click.kind, click.url, click.machine) == (EventKind.CLICK, url, False)
    assert (opened.kind, opened.machine) == (EventKind.OPEN, False)


def test_a_click_adds_no_open_when_a_human_open_exists(client, db, signer, make_message):
    message_id = make_message()
    client.get(f"/o/{signer.open_token(message_id)}.gif", headers={"user-agent": PHONE})
    flush(client)
    url = "https://nakshighor.example/"
    for _ in range(2):
        client.get(f"/c/{signer.click_token(message_id, url)}", follow_redirects=False)
    flush(client)
    assert len(events(db, EventKind.OPEN)) == 1
    assert len(events(db, EventKind.CLICK)) == 2


def test_head_and_sub_second_clicks_are_machine_clicks(client, db, signer, make_message):
    url = "https://nakshighor.example/"
    head_id = make_message("a@example.com")
    fast_id = make_message("b@example.com", sent_ago=timedelta(milliseconds=300))
    response = client.head(f"/c/{signer.click_token(head_id, url)}", follow_redirects=False)
    assert response.status_code == 302
    client.get(f"/c/{signer.click_token(fast_id, url)}", follow_redirects=False)
    flush(client)
    clicks = events(db, EventKind.CLICK)
    assert [c.machine for c in clicks] == [True, True]
    assert events(db, EventKind.OPEN) == []  # a machine click is no proof of a human open


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda s, m: "garbage", id="garbage"),
        pytest.param(lambda s, m: s.click_token(m, "https://a.example/")[:-4], id="truncated"),
        pytest.param(lambda s, m: s.open_token(m), id="open-token"),
        pytest.param(
            lambda s, m: Signer("another-secret-0123456789").click_token(
                m, "https://evil.example/"
            ),
            id="forged",
        ),
        pytest.param(lambda s, m: s.click_token(m, "javascript:alert(1)"), id="not-http"),
    ],
)
def test_bad_click_tokens_get_404_and_record_nothing(client, db, signer, make_message, make_token):
    message_id = make_message()
    response = client.get(f"/c/{make_token(signer, message_id)}", follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    flush(client)
    assert events(db) == []


def test_no_open_redirect_through_the_query_string(client, signer, make_message):
    message_id = make_message()
    token = signer.click_token(message_id, "https://nakshighor.example/")
    response = client.get(f"/c/{token}?url=https://evil.example/", follow_redirects=False)
    assert response.headers["location"] == "https://nakshighor.example/"


def test_huge_urls_get_414(client, db):
    response = client.get("/c/" + "A" * (MAX_URL_BYTES + 10))
    assert response.status_code == 414
    assert client.get("/o/" + "A" * (MAX_URL_BYTES + 10) + ".gif").status_code == 414
    flush(client)
    assert events(db) == []


# ---------------------------------------------------------------- unsubscribe


def consent_of(db: Engine, message_id: int) -> tuple[bool, int]:
    with Session(db) as session:
        customer = session.execute(
            select(Customer)
            .join(Message, Message.customer_id == Customer.id)
            .where(Message.id == message_id)
        ).scalar_one()
        log = session.execute(
            select(ConsentChange).where(ConsentChange.customer_id == customer.id)
        ).all()
        return customer.marketing_consent, len(log)


@BOTH_DIALECTS
def test_get_shows_the_page_and_changes_nothing(client, db, signer, make_message):
    message_id = make_message()
    before = consent_of(db, message_id)
    response = client.get(f"/u/{signer.unsubscribe_token(message_id)}")
    assert response.status_code == 200
    assert '<form method="post">' in response.text
    assert 'lang="en"' in response.text and "Unsubscribe" in response.text
    assert "Nakshi Ghor" in response.text
    assert consent_of(db, message_id) == before == (True, 1)
    assert events(db) == []


def test_the_page_is_in_bengali_for_bn_customers(client, signer, make_message):
    message_id = make_message("karim@example.com", locale="bn_BD")
    response = client.get(f"/u/{signer.unsubscribe_token(message_id)}")
    assert 'lang="bn"' in response.text
    assert "আনসাবস্ক্রাইব" in response.text


def test_the_page_escapes_what_it_shows(db, project_dir, signer, make_message, now):
    config = project_dir / "config.yaml"
    config.write_text(
        config.read_text().replace("name: Nakshi Ghor\n", 'name: "<script>x</script>"\n', 1)
    )
    project = load_project(config)
    message_id = make_message()
    app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
    response = TestClient(app).get(f"/u/{signer.unsubscribe_token(message_id)}")
    assert "<script>x" not in response.text
    assert "&lt;script&gt;x" in response.text


@BOTH_DIALECTS
def test_one_click_post_unsubscribes_once(client, db, signer, make_message):
    message_id = make_message()
    url = f"/u/{signer.unsubscribe_token(message_id)}"
    for _ in range(2):
        response = client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.status_code == 200
        assert "unsubscribed" in response.text
    assert consent_of(db, message_id) == (False, 2)  # the grant, then one withdrawal
    [event] = events(db, EventKind.UNSUBSCRIBE)
    assert event.message_id == message_id
    with Session(db) as session:
        change = (
            session.execute(select(ConsentChange).order_by(ConsentChange.id.desc()))
            .scalars()
            .first()
        )
    assert change.source == "unsubscribe link" and change.consent is False


@pytest.mark.parametrize("method", ["get", "post"])
def test_unsubscribe_with_a_bad_token_is_404(client, db, signer, make_message, method):
    message_id = make_message()
    token = Signer("another-secret-0123456789").unsubscribe_token(message_id)
    assert getattr(client, method)(f"/u/{token}").status_code == 404
    assert getattr(client, method)(f"/u/{signer.open_token(message_id)}").status_code == 404
    assert consent_of(db, message_id) == (True, 1)


def test_a_valid_token_for_a_missing_message_is_404(client, signer):
    assert client.post(f"/u/{signer.unsubscribe_token(999_999)}").status_code == 404


# ---------------------------------------------------------------- health, dashboard


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


def test_dashboard_is_404_with_a_reason_without_a_password(client):
    response = client.get("/dashboard")
    assert response.status_code == 404
    assert "LIFECYCLE_DASHBOARD_PASSWORD" in response.text


def test_machine_agents_list():
    assert is_machine_agent("Mozilla/5.0")
    assert is_machine_agent("Proofpoint URL Defense")
    assert is_machine_agent("Mozilla/5.0 (compatible; BingPreview/1.0b)")
    assert not is_machine_agent(PHONE)
    assert not is_machine_agent("Mozilla/5.0 (Windows NT 10.0) Microsoft Outlook 16.0")


def test_the_dashboard_is_mounted_when_a_password_is_set(db, project, now):
    secrets = Secrets(secret=SECRET, dashboard_password="a-long-dashboard-password")
    client = TestClient(create_app(db, lambda: project, secrets, clock=lambda: now))
    response = client.get("/dashboard/", follow_redirects=True)
    assert response.status_code in (200, 401)
    assert "disabled" not in response.text
    assert "password" in response.text.lower()


def test_a_head_on_the_pixel_answers_headers_only_and_is_a_machine_open(
    client, db, signer, make_message
):
    message_id = make_message()
    response = client.head(f"/o/{signer.open_token(message_id)}.gif", headers={"user-agent": PHONE})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(PIXEL))
    assert response.content == b""
    flush(client)
    [event] = events(db)
    assert event.machine is True


def test_pixel_is_served_while_sqlite_is_locked_and_written_after(
    db, project, signer, make_message, now, tmp_path
):
    message_id = make_message()
    app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=lambda: now)
    client = TestClient(app)
    locker = sqlite3.connect(tmp_path / "store.db", isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    started = time.monotonic()
    response = client.get(f"/o/{signer.open_token(message_id)}.gif", headers={"user-agent": PHONE})
    assert (response.status_code, response.content) == (200, PIXEL)
    assert time.monotonic() - started < 2
    threading.Timer(0.5, lambda: locker.execute("COMMIT")).start()
    assert asyncio.run(tracker_of(app).hits.flush()) is True  # waited for the lock, then wrote
    locker.close()
    assert len(events(db, EventKind.OPEN)) == 1
