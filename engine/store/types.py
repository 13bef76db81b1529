"""Column types that keep Python values honest across SQLite and PostgreSQL.

- `Money` stores a Decimal as an integer count of minor units (paisa), so
  sums are exact on every dialect and no float ever touches an amount.
- `UTCDateTime` stores naive UTC and always hands back an aware UTC datetime;
  a naive datetime passed in is a bug and is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.types import BigInteger, DateTime, TypeDecorator

MINOR_UNITS = 100
CENT = Decimal("0.01")
# The most paisa a BIGINT column holds: 92,233,720,368,547,758.07 in whole units.
MAX_MINOR = 2**63 - 1


def to_money(value: Any) -> Decimal:
    """Return `value` as a Decimal; refuse floats (TypeError) and junk (ValueError)."""
    if isinstance(value, float):
        raise TypeError(f"money must not be a float, got: {value!r}")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"money must be a number, got: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"money must be a finite number, got: {value!r}")
    return amount


class Money(TypeDecorator[Decimal]):
    """A Decimal amount stored as integer minor units."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        amount = to_money(value)
        minor = amount * MINOR_UNITS
        if abs(minor) > MAX_MINOR:
            raise ValueError(f"money out of range (a BIGINT of paisa), got: {value!r}")
        if minor != minor.to_integral_value():
            raise ValueError(f"money has more than two decimal places: {value!r}")
        return int(minor)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(int(value)) / MINOR_UNITS).quantize(CENT)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime stored as naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got: {value!r}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime refused (times are UTC and aware): {value!r}")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite aggregate results come back as text
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
