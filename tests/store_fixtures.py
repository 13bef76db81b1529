"""A fast `fresh_store`: migrate once per module and dialect, empty it per test.

conftest's `store` runs the migration for every test, which is right for
tests of the migration and costs about a second a test on PostgreSQL. Tests
of what is stored take this one instead: an SQLite file copied from a
migrated template, or a PostgreSQL schema migrated once and emptied
before each test (ids restart from 1). Import both fixtures into a module:

    from . import store_fixtures
    fresh_store = store_fixtures.fresh_store
    migrated_store = store_fixtures.migrated_store
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from engine.store.db import make_engine, upgrade
from tests.conftest import empty_tables, postgres_schema


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def migrated_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a migrated, empty database (SQLite: a template file to copy)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("template") / "store.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()  # checkpoints the WAL into the file
        yield f"sqlite:///{path}"
        return
    yield from _postgres_schema()


def _postgres_schema() -> Iterator[str]:
    yield from postgres_schema(migrated=True)


@pytest.fixture
def fresh_store(migrated_store: str, tmp_path: Path) -> Iterator[Engine]:
    """An empty, migrated database of its own for this test, on SQLite and PostgreSQL."""
    if migrated_store.startswith("sqlite:///"):
        path = tmp_path / "store.db"
        shutil.copy(migrated_store.removeprefix("sqlite:///"), path)
        engine = make_engine(f"sqlite:///{path}")
    else:
        engine = make_engine(migrated_store)
        with engine.begin() as conn:
            empty_tables(conn)
    yield engine
    engine.dispose()
