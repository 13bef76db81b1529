"""Database access: engines, sessions, migrations and dialect differences.

The only module that talks to SQLAlchemy's engine and Alembic directly.
SQLite gets WAL, synchronous=NORMAL and a busy timeout on every connection;
PostgreSQL goes through psycopg 3. Driver errors are translated to
`StoreError` here.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session, create_engine

from ..errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 10_000


def normalise_url(url: str) -> str:
    """Return `url` with PostgreSQL pointed at psycopg 3, whatever was written."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for `url` (SQLite file or PostgreSQL); raise StoreError if unusable."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError as exc:
        raise StoreError(f"database URL is not valid: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, echo=echo, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    raise StoreError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
    )


def is_postgres(bind: Engine | Connection | Session) -> bool:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


def ignoring_insert(bind: Engine | Connection | Session, table: Any, *keys: str) -> Insert:
    """`INSERT … ON CONFLICT (keys) DO NOTHING` for the dialect of `bind`."""
    module = postgresql if is_postgres(bind) else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=list(keys) or None)


def hold_write_locks(bind: Connection | Session, name: str, ids: Iterable[int]) -> None:
    """Lock `ids` (of the kind `name`) until the transaction of `bind` ends, so that a
    check-then-write about them in it is not run twice at once: two transactions
    recording the same event both read it absent, then both write it.

    On PostgreSQL: a transaction-level advisory lock per id, keyed by `name` and the id,
    taken in id order (two holders never wait on each other in a circle); another
    transaction locking one of them waits for this one to end, then reads what it
    wrote. On SQLite: the database's write lock (one writer at a time), taken by a write
    that changes nothing; call it before the transaction's first read that matters.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return
    if is_postgres(bind):
        key = zlib.crc32(name.encode()) - 2**31  # PostgreSQL's int4
        for item in wanted:
            bind.execute(select(func.pg_advisory_xact_lock(key, item)))
    else:
        bind.execute(text("UPDATE checkpoint SET name = name WHERE 0"))


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration; a no-op when it already is."""
    try:
        if _stored_revision(engine) == newest_revision():
            return  # every command starts here: skip loading alembic and its scripts
        from alembic import command

        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:  # a migration may copy a table others refer to (SQLite's own recipe)
                _sqlite_foreign_keys(connection, on=False)
            try:
                with connection.begin():
                    command.upgrade(_alembic_config(connection), "head")
                    if sqlite:
                        _check_references(connection)
            finally:
                if sqlite:
                    _sqlite_foreign_keys(connection, on=True)
    except OperationalError as exc:
        raise StoreError(f"cannot upgrade the database: {exc.orig}") from exc


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Turn SQLite's foreign-key checks on or off; outside a transaction, where it counts."""
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()


def _check_references(connection: Connection) -> None:
    """After an upgrade with SQLite's checks off: every reference still holds (else the
    upgrade is rolled back)."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        first = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in broken[:5])
        raise StoreError(f"the upgrade would leave {len(broken)} broken reference(s): {first}")


def newest_revision() -> str:
    """The newest migration's revision. Migrations are files `NNNN_what.py` whose
    revision is `NNNN`, each after the one before (tests/store/test_db.py checks it)."""
    return max(
        path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    )


def _stored_revision(engine: Engine) -> str | None:
    """The revision the database says it is at; None before the first migration."""
    if not has_schema(engine):
        return None
    with engine.connect() as connection:
        return connection.execute(text("SELECT max(version_num) FROM alembic_version")).scalar()


def current_revision(engine: Engine) -> str | None:
    """The schema's migration revision, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def has_schema(engine: Engine) -> bool:
    return inspect(engine).has_table("alembic_version")
