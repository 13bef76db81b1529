"""Shared fixtures: real SQLite files, a real PostgreSQL schema, a real IMAP server, the
shipped project."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from engine.store.db import make_engine, upgrade

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("LIFECYCLE_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"

# Fixtures of real servers, for tests in any folder: `imap_server` (dovecot) and
# `postfix_server` (Postfix).
pytest_plugins = ["tests.imap_server", "tests.postfix_server"]


def skip_or_fail(reason: str) -> None:
    """Skip locally; under CI=true a missing real component is a failure."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must run, not skip)")
    pytest.skip(reason)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config, campaigns, segments and templates, free to edit."""
    target = tmp_path / "shop"
    target.mkdir()
    shutil.copy(REPO / "config.yaml", target / "config.yaml")
    shutil.copy(REPO / "tiers.yaml", target / "tiers.yaml")
    for folder in ("campaigns", "segments", "templates"):
        shutil.copytree(REPO / folder, target / folder)
    return target


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def postgres_schema(*, migrated: bool = False) -> Iterator[str]:
    """Yield the URL of a fresh schema in the test PostgreSQL; drop it afterwards."""
    if not POSTGRES_URL:
        skip_or_fail("LIFECYCLE_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the server is down: say so, never pass silently
        admin.dispose()
        skip_or_fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    if migrated:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty schema in the test PostgreSQL, dropped afterwards."""
    yield from postgres_schema()


@pytest.fixture(scope="module")
def migrated_postgres() -> Iterator[str]:
    """A migrated schema for the tests of a module that take `store`: emptied for each
    (migrating a schema per test cost ~0.2 s a test)."""
    yield from postgres_schema(migrated=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty database, once per dialect; for a test that takes `store`
    too, on PostgreSQL, the module's migrated schema with every row deleted."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    if "store" not in request.fixturenames:
        return str(request.getfixturevalue("postgres_url"))
    url = str(request.getfixturevalue("migrated_postgres"))
    engine = make_engine(url)
    with engine.begin() as conn:
        empty_tables(conn)
    engine.dispose()
    return url


def empty_tables(conn: Connection) -> None:
    """Delete every row and restart the ids, in one round trip (far cheaper than TRUNCATE
    on small tables, and than a statement at a time)."""
    statements = []
    for table in reversed(SQLModel.metadata.sorted_tables):
        statements.append(f'DELETE FROM "{table.name}"')
        if "id" in table.c and isinstance(table.c.id.type, Integer):
            statements.append(
                f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), 1, false)"
            )
    conn.exec_driver_sql(";\n".join(statements))


# Every statement `upgrade` sent PostgreSQL on an empty schema, recorded once per run:
# a schema is then migrated by sending them again (~0.2 s less a test than Alembic).
_MIGRATION: list[tuple[str, Any, bool]] = []


def migrate(engine: Engine) -> None:
    """Bring an empty test database to the newest migration, as `upgrade` does."""
    if engine.dialect.name != "postgresql":
        upgrade(engine)
        return
    if not _MIGRATION:
        _record_migration()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters, many in _MIGRATION:
            if many:
                cursor.executemany(statement, parameters)
            else:
                cursor.execute(statement, parameters)
        raw.commit()
    finally:
        raw.close()


def _record_migration() -> None:
    schema = postgres_schema()
    engine = make_engine(next(schema))
    sent: list[tuple[str, Any, bool]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:  # fmt: skip
        sent.append((statement, parameters, many))

    with engine.connect():  # the dialect's own first-connect queries are not the migration's
        sent.clear()
    upgrade(engine)
    engine.dispose()
    schema.close()  # drops it
    _MIGRATION.extend(sent)


@pytest.fixture
def store(store_url: str, migrated_sqlite: Path) -> Iterator[Engine]:
    """An upgraded database, on SQLite and on PostgreSQL."""
    if store_url.startswith("sqlite:///"):
        shutil.copy(migrated_sqlite, store_url.removeprefix("sqlite:///"))
    engine = make_engine(store_url)  # PostgreSQL: migrated already (`store_url`)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_store(sqlite_url: str, migrated_sqlite: Path) -> Iterator[Engine]:
    """An upgraded SQLite database, for tests whose SQL is not dialect-specific."""
    shutil.copy(migrated_sqlite, sqlite_url.removeprefix("sqlite:///"))
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An upgraded SQLite file, made once; tests get copies (a migration costs ~0.4 s)."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # checkpoints the WAL into the file
    return path


@pytest.fixture
def db(request: pytest.FixtureRequest, migrated_sqlite: Path, tmp_path: Path) -> Iterator[Engine]:
    """A copy of the migrated SQLite file; tests marked BOTH_DIALECTS run on PostgreSQL too."""
    if getattr(request, "param", "sqlite") == "sqlite":
        shutil.copy(migrated_sqlite, tmp_path / "store.db")
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        migrate(engine)
    yield engine
    engine.dispose()


BOTH_DIALECTS = pytest.mark.parametrize(
    "db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
