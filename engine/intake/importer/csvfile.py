"""Reading a shop's CSV file: UTF-8 (a BOM is fine), a header on line 1, rows
numbered by their physical line so a message points where the user looks.
Rows are read one at a time, so a file of any size can be checked."""

from __future__ import annotations

import codecs
import csv
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ...errors import DataError

_BLOCK = 1 << 20  # bytes read at a time when checking the encoding


class CsvFormatError(DataError):
    """The file cannot be read as this kind of CSV at all (encoding, header, quoting)."""


@dataclass(frozen=True)
class Record:
    """One data row of the file: its first physical line and its cells by column."""

    line: int
    cells: dict[str, str]
    problem: str | None = None  # set when the row cannot even be split into its columns


@dataclass(frozen=True)
class CsvRows:
    """The data rows of a file, read as they are iterated (once), and how many line
    breaks the file has (an upper bound of the rows, for progress)."""

    rows: Iterator[Record]
    line_breaks: int

    def __iter__(self) -> Iterator[Record]:
        return self.rows


def read_csv(path: Path, shown: str, columns: Sequence[str], required: Sequence[str]) -> CsvRows:
    """The file's data rows, read as they are asked for; a row of the wrong width comes
    with its `problem` set.

    The encoding and the header are checked before this returns: it raises
    CsvFormatError if the file is not UTF-8 (a BOM is fine), is empty, or has a
    missing, unknown or repeated column. Broken CSV quoting raises CsvFormatError
    while the rows are read.
    """
    line_breaks = check_utf8(path, shown)
    stream = _open(path, shown)
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise CsvFormatError(
                f"{shown}:1: the file is empty: expected a header line with the columns "
                f"{', '.join(columns)}"
            )
        names = _check_header(shown, [h.strip().lower() for h in header], columns, required)
    except csv.Error as exc:
        stream.close()
        raise CsvFormatError(f"{shown}:{reader.line_num}: not valid CSV: {exc}") from exc
    except BaseException:
        stream.close()
        raise
    return CsvRows(_rows(stream, reader, shown, names), line_breaks)


def _rows(stream: TextIO, reader: Any, shown: str, names: list[str]) -> Iterator[Record]:
    width = len(names)
    previous = reader.line_num
    with stream:
        try:
            for cells in reader:
                line, previous = previous + 1, reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                problem = None
                if len(cells) != width:
                    problem = f"expected {width} fields like the header, got {len(cells)}"
                values = {n: c.strip() for n, c in zip(names, cells, strict=False)}
                yield Record(line, values, problem)
        except csv.Error as exc:
            raise CsvFormatError(f"{shown}:{reader.line_num}: not valid CSV: {exc}") from exc


def _open(path: Path, shown: str) -> TextIO:
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise CsvFormatError(f"{shown}: cannot read the file: {exc.strerror}") from exc


def check_utf8(path: Path, shown: str) -> int:
    """The number of line breaks in the file, once it is known to be UTF-8 throughout.

    Reads the file in blocks, so a file of any size costs one block of memory.
    Raises CsvFormatError naming the line of the first byte that is not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    breaks = 0
    try:
        with path.open("rb") as data:
            while block := data.read(_BLOCK):
                decoder.decode(block)
                breaks += block.count(b"\n")
            decoder.decode(b"", final=True)
    except OSError as exc:
        raise CsvFormatError(f"{shown}: cannot read the file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        # exc.object is the undecoded tail of the block before (never a line break)
        # followed by the block being decoded, whose breaks are not counted yet.
        line = breaks + exc.object.count(b"\n", 0, exc.start) + 1
        raise CsvFormatError(
            f"{shown}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}): save the "
            "file as CSV UTF-8"
        ) from exc
    return breaks


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
