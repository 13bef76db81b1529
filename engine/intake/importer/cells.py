"""Parsers for one CSV cell: each returns the value or raises ValueError saying
what was expected and what was found (`expected …, got "…"`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TypeVar
from zoneinfo import ZoneInfo

from ...store import OrderStatus
from ..shop import LINE_BREAKS
from .csvfile import Record

T = TypeVar("T")


class CellError(ValueError):
    """A cell is bad: `column` says which, the message says how."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


def shown(value: str) -> str:
    return f'"{value}"'


def parse_text(value: str, limit: int) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if not LINE_BREAKS.isdisjoint(value):
        raise ValueError("must be one line, got a line break")
    if len(value) > limit:
        raise ValueError(f"expected at most {limit} characters, got {len(value)}")
    return value


_WHOLE = re.compile(r"\+?\d{1,9}")


def parse_whole(value: str, minimum: int) -> int:
    if not _WHOLE.fullmatch(value) or int(value) < minimum:
        what = "1 or more" if minimum == 1 else "zero or more"
        raise ValueError(f"expected a whole number of {what}, got {shown(value)}")
    return int(value)


@lru_cache(maxsize=4096)  # prices repeat across lines: parse each text once
def parse_amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise ValueError(f"expected an amount like 120.50, got {shown(value)}")
    if amount < 0:
        raise ValueError(f"expected an amount of zero or more, got {shown(value)}")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"expected at most two decimal places, got {shown(value)}")
    if amount >= Decimal("1e13"):
        raise ValueError(f"expected an amount below 10,000,000,000,000, got {shown(value)}")
    return amount.quantize(Decimal("0.01"))


# A year of five digits or more: Python's dates end with 9999.
_LONG_YEAR = re.compile(r"[+-]?\d{5,}-")


def parse_when(value: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(value)  # the common case, and the cheapest
    except ValueError:
        moment = _unusual_time(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        # Year 1 ahead of UTC, or 9999-12-31 behind it, has no UTC time.
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(_out_of_range(value)) from None


def _unusual_time(value: str) -> datetime:
    """A time `fromisoformat` refuses as written: a lower-case z, or a reason why not."""
    if _LONG_YEAR.match(value):
        raise ValueError(_out_of_range(value))
    try:
        return datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f'expected an ISO-8601 time like "2026-11-20T14:30:00+06:00", got {shown(value)}'
        ) from None


def _out_of_range(value: str) -> str:
    return f"is out of range: expected a time between years 1 and 9999 in UTC, got {shown(value)}"


def parse_day(value: str) -> date:
    if _LONG_YEAR.match(value):
        raise ValueError(
            f"is out of range: expected a date between years 1 and 9999, got {shown(value)}"
        )
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f'expected a date like "1990-04-14", got {shown(value)}') from None


_YES = {"true", "yes", "1", "y"}
_NO = {"false", "no", "0", "n"}


def parse_flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in _YES | _NO:
        return lowered in _YES
    raise ValueError(f"expected true/false, yes/no or 1/0, got {shown(value)}")


def parse_tags(value: str) -> frozenset[str]:
    tags = frozenset(t.strip() for t in re.split(r"[;|]", value) if t.strip())
    for tag in tags:
        if len(tag) > 64:
            raise ValueError(f"a tag is longer than 64 characters: {shown(tag)}")
    return tags


def cell(record: Record, column: str, parse: Callable[[str], T]) -> T | None:
    """The parsed cell, or None when it is empty (or the column absent)."""
    value = record.cells.get(column, "")
    if not value:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise CellError(column, str(exc)) from None


def required(record: Record, column: str, parse: Callable[[str], T]) -> T:
    """The parsed cell of a column every row must fill."""
    value = cell(record, column, parse)
    if value is None:
        raise CellError(column, "is required, got an empty cell")
    return value


def parse_status(value: str) -> OrderStatus:
    """An order's status: `shipped`, `out_for_delivery` (or `Out for delivery`)…"""
    try:
        return OrderStatus("_".join(value.lower().replace("-", " ").split()))
    except ValueError:
        names = ", ".join(s.value for s in OrderStatus)
        raise ValueError(f"expected one of {names}, got {shown(value)}") from None
