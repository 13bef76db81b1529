"""What every import shares: its result, its bad rows, and bulk reads and writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import Connection

from ...errors import DataError
from .cells import CellError
from .csvfile import Record

CHUNK = 500  # ids per IN (...) lookup: far below every SQLite variable limit
WRITE_CHUNK = 5_000  # rows per executemany
LISTED_BAD = 1_000  # bad rows kept and reported one by one; the others are only counted

# A callback told how far a step has got: (step, rows done, rows in all).
Progress = Callable[[str, int, int], None]
T = TypeVar("T")


@dataclass(frozen=True)
class BadRow:
    """One row that cannot be imported: where (file, physical line, column) and why."""

    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        column = f" {self.column}:" if self.column else ""
        return f"{self.file}:{self.line}:{column} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportRejected(DataError):
    """The file has bad rows and skipping them was not asked for: nothing was written.

    `bad` lists the first `LISTED_BAD` bad rows in line order; `count` is all of them.
    """

    def __init__(self, file: str, bad: list[BadRow], rows: int, count: int | None = None):
        self.file = file
        self.bad = bad
        self.rows = rows
        self.count = len(bad) if count is None else count
        noun = "row" if self.count == 1 else "rows"
        listed = f" (the first {len(bad)} are listed)" if self.count > len(bad) else ""
        super().__init__(f"{file}: {self.count} bad {noun} of {rows}, nothing imported{listed}")


@dataclass
class ImportResult:
    """What an import did. For orders, `updated` counts orders newly marked delivered
    and `cancelled` stored orders newly cancelled. `skipped` lists the first
    `LISTED_BAD` bad rows skipped, `skipped_count` counts them all."""

    kind: str
    file: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cancelled: int = 0
    skipped: list[BadRow] = field(default_factory=list)
    skipped_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = [bad.as_dict() for bad in self.skipped]
        return data


@dataclass
class Job:
    """One import under way: checks rows, collects the bad ones, writes in chunks."""

    kind: str
    shown: str
    now: datetime
    zone: ZoneInfo
    skip_bad: bool
    progress: Progress | None
    result: ImportResult = field(init=False)
    expected: int = 0  # rows the file may have at most, for progress while it is read
    bad: list[BadRow] = field(default_factory=list)
    cells_by_line: dict[int, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.result = ImportResult(self.kind, self.shown)

    def well_formed(self, rows: Iterable[Record]) -> list[Record]:
        """The rows that split into the header's columns, all read; the others are bad rows."""
        records: list[Record] = []
        for row in rows:
            self.result.rows += 1
            if row.problem:
                self.reject(row, "", row.problem)
            else:
                records.append(row)
        return records

    def report(self, step: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(step, done, total)

    def parse(self, records: list[Record], parse: Callable[[Record], T]) -> list[tuple[Record, T]]:
        """Each record parsed, reporting progress; a record that fails becomes a bad row."""
        parsed: list[tuple[Record, T]] = []
        for number, record in enumerate(records, 1):
            try:
                parsed.append((record, parse(record)))
            except CellError as exc:
                self.reject(record, exc.column, str(exc))
            if number % 5000 == 0:
                self.report("checking", number, len(records))
        self.report("checking", len(records), len(records))
        return parsed

    def reject(self, record: Record, column: str, message: str) -> None:
        self.bad.append(BadRow(self.shown, record.line, column, message))
        self.cells_by_line[record.line] = record.cells

    def settle(self) -> None:
        """Stop here, before any write, if there are bad rows and skipping was not asked for."""
        self.bad.sort(key=lambda b: b.line)
        self.conclude(self.bad[:LISTED_BAD], len(self.bad))

    def conclude(self, listed: list[BadRow], count: int) -> None:
        """Raise ImportRejected for `count` bad rows (`listed`: the first, in line order)
        unless there are none or skipping them was asked for."""
        if count and not self.skip_bad:
            raise ImportRejected(self.shown, listed, self.result.rows, count)
        self.result.skipped, self.result.skipped_count = listed, count

    def write(self, conn: Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
        for chunk in chunks(rows, WRITE_CHUNK):
            conn.execute(statement, list(chunk))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lookup(
    conn: Connection, table: Table, key: str, values: Iterable[Any], *columns: str
) -> dict[Any, Any]:
    """{key value: row} for the rows of `table` whose `key` is among `values`."""
    wanted = sorted(set(values))
    found: dict[Any, Any] = {}
    cols = [table.c[key], *(table.c[c] for c in columns)]
    for chunk in chunks(wanted, CHUNK):
        for row in conn.execute(select(*cols).where(table.c[key].in_(chunk))):
            found[row[0]] = row
    return found


def table_of(model: Any) -> Table:
    table: Table = model.__table__
    return table


def update_many(job: Job, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """UPDATE each row by its `b_id`, grouping rows that set the same columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        columns = tuple(sorted(k for k in row if k != "b_id"))
        groups.setdefault(columns, []).append(
            {f"v_{k}" if k != "b_id" else k: v for k, v in row.items()}
        )
    for columns, group in groups.items():
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({c: bindparam(f"v_{c}") for c in columns})
        )
        job.write(conn, statement, group)


def unique(job: Job, parsed: list[tuple[Record, T]], *columns: str) -> list[tuple[Record, T]]:
    """Drop (as bad) a row whose key column repeats an earlier row's value."""
    first: dict[tuple[str, Any], int] = {}
    kept = []
    attrs = {"id": "external_id", "email": "email", "sku": "sku"}
    for record, row in parsed:
        clash = None
        for column in columns:
            value = getattr(row, attrs[column])
            if (column, value) in first:
                clash = (column, value, first[(column, value)])
                break
        if clash:
            column, value, line = clash
            job.reject(record, column, f"{value} is already on line {line} of this file")
            continue
        for column in columns:
            first[(column, getattr(row, attrs[column]))] = record.line
        kept.append((record, row))
    return kept
