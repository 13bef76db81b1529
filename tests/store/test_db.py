"""The store's plumbing: the migration, SQLite's pragmas, URLs and errors."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy import inspect as sqlalchemy_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from engine.errors import StoreError
from engine.store import models
from engine.store.db import (
    current_revision,
    has_schema,
    ignoring_insert,
    make_engine,
    normalise_url,
    session_scope,
    upgrade,
)
from tests import store_fixtures

HEAD = "0010"  # the newest migration

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def at_revision(url: str, revision: str) -> Engine:
    """The database at `url` migrated up to `revision` only."""
    from alembic import command

    from engine.store.db import _alembic_config

    engine = make_engine(url)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)
    return engine


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


def test_the_migration_creates_exactly_the_models_schema(store: Engine) -> None:
    assert schema_differences(store) == []
    assert current_revision(store) == HEAD


def test_upgrading_again_changes_nothing_and_keeps_the_data(store: Engine) -> None:
    with session_scope(store) as session:
        session.add(models.Checkpoint(name="planner", value="42", updated_at=NOW))
    upgrade(store)
    upgrade(store)
    assert current_revision(store) == HEAD
    assert schema_differences(store) == []
    with store.connect() as conn:
        assert conn.execute(select(models.Checkpoint.value)).scalars().all() == ["42"]


def test_an_empty_database_has_no_schema_until_upgraded(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    assert (has_schema(engine), current_revision(engine)) == (False, None)
    upgrade(engine)
    assert (has_schema(engine), current_revision(engine)) == (True, HEAD)
    engine.dispose()


def test_upgrading_from_0001_keeps_orders_and_leaves_their_recorded_at_unknown(
    sqlite_url: str,
) -> None:
    engine = at_revision(sqlite_url, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO customer (id, external_id, email, name, locale, "
                          "marketing_consent, created_at, updated_at, orders_count, total_spent) "
                          "VALUES (1, 'C1', 'a@example.com', 'A', 'en', 1, :t, :t, 1, 0)"),
                     {"t": "2026-11-01 00:00:00.000000"})  # fmt: skip
        conn.execute(text("INSERT INTO orders (id, external_id, customer_id, placed_at, status, "
                          "total) VALUES (1, 'O1', 1, :t, 'placed', 0)"),
                     {"t": "2026-11-01 00:00:00.000000"})  # fmt: skip
    upgrade(engine)
    assert current_revision(engine) == HEAD and schema_differences(engine) == []
    with engine.connect() as conn:
        stored = conn.execute(select(models.Order.external_id, models.Order.recorded_at)).all()  # type: ignore[call-overload]
        indexes = {i["name"] for i in sqlalchemy_inspect(conn).get_indexes("orders")}
    engine.dispose()
    assert [tuple(row) for row in stored] == [("O1", None)]
    assert "ix_orders_recorded_at" in indexes


def test_upgrading_from_0008_keeps_the_send_log_and_drops_only_its_foreign_keys(
    store_url: str,
) -> None:
    engine = at_revision(store_url, "0008")
    t = {"t": datetime(2026, 11, 1)}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO customer (id, external_id, email, name, locale, "
                          "marketing_consent, created_at, updated_at, orders_count, total_spent) "
                          "VALUES (1, 'C1', 'a@example.com', 'A', 'en', true, :t, :t, 1, 0)"), t)  # fmt: skip
        conn.execute(text("INSERT INTO orders (id, external_id, customer_id, placed_at, status, "
                          "total) VALUES (1, 'O1', 1, :t, 'placed', 0)"), t)  # fmt: skip
        conn.execute(text("INSERT INTO message (id, dedupe_key, campaign, kind, customer_id, "
                          "occurrence, order_id, status, created_at, send_after, attempts) VALUES "
                          "(1, 'thank_you:1:order-1', 'thank_you', 'transactional', 1, 'order-1', "
                          "1, 'sent', :t, :t, 1)"), t)  # fmt: skip
        conn.execute(text("INSERT INTO message_event (id, message_id, customer_id, kind, at, "
                          "machine) VALUES (1, 1, 1, 'open', :t, false)"), t)  # fmt: skip
    upgrade(engine)
    assert current_revision(engine) == HEAD and schema_differences(engine) == []
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT dedupe_key, order_id FROM message")).all()
        opened = conn.execute(text("SELECT message_id FROM message_event")).all()
        inspector = sqlalchemy_inspect(conn)
        message_fks = inspector.get_foreign_keys("message")
        event_fks = {fk["referred_table"] for fk in inspector.get_foreign_keys("message_event")}
    assert [tuple(r) for r in kept] == [("thank_you:1:order-1", 1)]
    assert [tuple(r) for r in opened] == [(1,)]
    assert message_fks == [] and event_fks == {"message", "customer"}
    # The references of the other tables are still checked, on SQLite too.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO message_event (message_id, customer_id, kind, at, "
                          "machine) VALUES (99, 1, 'open', :t, false)"), t)  # fmt: skip
    engine.dispose()


def test_an_upgrade_that_would_break_a_reference_on_sqlite_is_rolled_back(sqlite_url: str) -> None:
    engine = at_revision(sqlite_url, "0008")
    with engine.connect() as conn:  # a broken reference left by earlier software
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        conn.execute(text("INSERT INTO message_event (message_id, customer_id, kind, at, "
                          "machine) VALUES (99, 1, 'open', '2026-11-01', 0)"))  # fmt: skip
        conn.commit()
    engine.dispose()
    engine = make_engine(sqlite_url)
    with pytest.raises(StoreError, match=r"2 broken reference.*message_event row 1 -> message"):
        upgrade(engine)
    assert current_revision(engine) == "0008"
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_sqlite_connections_use_wal_normal_sync_a_busy_timeout_and_foreign_keys(
    sqlite_store: Engine,
) -> None:
    with sqlite_store.connect() as first, sqlite_store.connect() as second:
        for conn in (first, second):
            pragmas = [
                conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            ]
            assert pragmas == ["wal", 1, 10_000, 1]


def test_a_second_sqlite_writer_waits_for_the_first_instead_of_failing(
    sqlite_store: Engine,
) -> None:
    holding = threading.Event()

    def hold_the_write_lock() -> None:
        with sqlite_store.begin() as conn:
            conn.execute(text("INSERT INTO checkpoint VALUES ('a', '1', '2026-11-22 06:00:00')"))
            holding.set()
            time.sleep(0.3)

    writer = threading.Thread(target=hold_the_write_lock)
    writer.start()
    assert holding.wait(5)
    with sqlite_store.begin() as conn:  # "database is locked" without the busy timeout
        conn.execute(text("INSERT INTO checkpoint VALUES ('b', '2', '2026-11-22 06:00:00')"))
    writer.join()
    with sqlite_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(models.Checkpoint)).scalar() == 2


def test_ignoring_insert_skips_a_row_whose_key_exists(fresh_store: Engine) -> None:
    row = {"name": "watermark", "value": "1", "updated_at": NOW}
    with fresh_store.begin() as conn:
        for value in ("1", "2"):
            conn.execute(
                ignoring_insert(conn, models.Checkpoint.__table__, "name"), {**row, "value": value}
            )
        assert conn.execute(select(models.Checkpoint.value)).scalars().all() == ["1"]


def test_session_scope_rolls_back_on_error(sqlite_store: Engine) -> None:
    with pytest.raises(RuntimeError), session_scope(sqlite_store) as session:
        session.add(models.Checkpoint(name="x", value="1", updated_at=NOW))
        session.flush()
        raise RuntimeError("boom")
    with sqlite_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(models.Checkpoint)).scalar() == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///lifecycle.db", "sqlite:///lifecycle.db"),
    ],
)
def test_postgresql_urls_go_through_psycopg3(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "database URL is not valid: 'not a url'"),
        ("mysql://u@h/db", "unsupported database 'mysql': use sqlite or postgresql"),
    ],
)
def test_an_unusable_url_is_a_store_error(url: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        make_engine(url)
    assert str(caught.value) == message


def test_a_database_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'folder' / 'x.db'}")
    with pytest.raises(StoreError, match="cannot upgrade the database: unable to open"):
        upgrade(engine)


def test_the_newest_revision_is_read_from_the_file_names_as_alembic_reads_it() -> None:
    """`upgrade` skips alembic when the database is at `newest_revision()`, which reads
    the revision from the migration's file name: each file's revision must be its
    number, after the one before, or a new migration would never run."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from engine.store.db import MIGRATIONS, newest_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    chain = [(s.revision, s.down_revision) for s in reversed(list(scripts.walk_revisions()))]
    names = sorted(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))
    assert [revision for revision, _ in chain] == names
    assert [down for _, down in chain] == [None, *names[:-1]]
    assert newest_revision() == scripts.get_current_head() == names[-1]
