"""Reading a shop's CSV file: UTF-8 (a BOM is fine), a header on line 1, rows
numbered by their physical line so a message points where the user looks."""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError


class CsvFormatError(DataError):
    """The file cannot be read as this kind of CSV at all (encoding, header, quoting)."""


@dataclass(frozen=True)
class Record:
    """One data row of the file: its first physical line and its cells by column."""

    line: int
    cells: dict[str, str]
    problem: str | None = None  # set when the row cannot even be split into its columns


def read_csv(
    path: Path, shown: str, columns: Sequence[str], required: Sequence[str]
) -> list[Record]:
    """The file's data rows; a row of the wrong width comes with its `problem` set.

    Raises CsvFormatError if the file is not UTF-8 (a BOM is fine), is empty,
    has a missing, unknown or repeated column, or breaks CSV quoting.
    """
    text = _decode(path, shown)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise CsvFormatError(
                f"{shown}:1: the file is empty: expected a header line with the columns "
                f"{', '.join(columns)}"
            )
        names = _check_header(shown, [h.strip().lower() for h in header], columns, required)
        rows: list[Record] = []
        previous = reader.line_num
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            problem = None
            if len(cells) != len(names):
                problem = f"expected {len(names)} fields like the header, got {len(cells)}"
            rows.append(
                Record(line, {n: c.strip() for n, c in zip(names, cells, strict=False)}, problem)
            )
    except csv.Error as exc:
        raise CsvFormatError(f"{shown}:{reader.line_num}: not valid CSV: {exc}") from exc
    return rows


def _decode(path: Path, shown: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvFormatError(f"{shown}: cannot read the file: {exc.strerror}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CsvFormatError(
            f"{shown}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file "
            "as CSV UTF-8"
        ) from exc


def _check_header(
    shown: str, names: list[str], columns: Sequence[str], required: Sequence[str]
) -> list[str]:
    found = ", ".join(n or '""' for n in names)
    missing = [c for c in required if c not in names]
    if missing:
        which = ", ".join(f'"{c}"' for c in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise CsvFormatError(f"{shown}:1: missing required {noun} {which}; found: {found}")
    for number, name in enumerate(names, 1):
        if not name:
            raise CsvFormatError(
                f"{shown}:1: column {number} of the header has no name; found: {found}"
            )
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise CsvFormatError(
                f'{shown}:1: unknown column "{name}"{hint}; the columns are: {", ".join(columns)}'
            )
        if names.count(name) > 1:
            raise CsvFormatError(f'{shown}:1: column "{name}" appears twice; found: {found}')
    return names
