"""Money, dates and percentages as a customer reads them (Babel).

A Bengali customer (`bn_BD`) reads ৳ after the amount, lakh grouping and
Bengali digits (`১,২৫,০০০.০০৳`); an English customer reads `৳125,000.00`.
The currency symbol is the one the shop's own
locale writes (৳ for BDT), because Babel's English symbol for the taka is the
bare code "BDT". Amounts are rounded half-up to the currency's minor unit
before Babel sees them (Babel itself would round half-even).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.numbers import format_currency, format_decimal, get_currency_symbol

from ..errors import EngineError

# Digits of the numbering systems a customer of this engine may read.
_DIGITS = {
    "beng": "০১২৩৪৫৬৭৮৯",
    "deva": "०१२३४५६७८९",
    "arab": "٠١٢٣٤٥٦٧٨٩",
    "arabext": "۰۱۲۳۴۵۶۷۸۹",
}
PAISA = Decimal("0.01")


class FormatError(EngineError, ValueError):
    """A value handed to a filter cannot be formatted (not a number, not a date)."""


@lru_cache(maxsize=64)
def _locale(name: str) -> Locale:
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:
        raise FormatError(f"unknown locale {name!r}") from exc


@lru_cache(maxsize=64)
def _digit_table(locale: str) -> dict[int, int] | None:
    digits = _DIGITS.get(_locale(locale).default_numbering_system)
    return str.maketrans("0123456789", digits) if digits else None


def native_digits(text: str, locale: str) -> str:
    """`text` with ASCII digits written in the locale's own digits (০-৯ for bn)."""
    table = _digit_table(locale)
    return text.translate(table) if table else text


def to_decimal(value: Any, what: str = "amount") -> Decimal:
    """`value` as a Decimal; floats are refused (money is never binary)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (bool, float)):
        raise FormatError(f"{what} must be a Decimal, int or numeric string, got: {value!r}")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise FormatError(f"{what} is not a number: {value!r}") from exc
    if not number.is_finite():
        raise FormatError(f"{what} is not a finite number: {value!r}")
    return number


def round_money(amount: Any, places: Decimal = PAISA) -> Decimal:
    """Round half-up to the minor unit: 1.005 → 1.01 (never banker's rounding)."""
    return to_decimal(amount).quantize(places, rounding=ROUND_HALF_UP)


@lru_cache(maxsize=64)
def _symbols(currency: str, locale: str, symbol_locale: str) -> tuple[str, str]:
    """(what Babel writes for `currency` in `locale`, what we want written instead)."""
    return (
        get_currency_symbol(currency, locale=_locale(locale)),
        get_currency_symbol(currency, locale=_locale(symbol_locale)),
    )


def money(amount: Any, *, currency: str, locale: str, symbol_locale: str | None = None) -> str:
    """`amount` in `currency` for a reader in `locale`, rounded half-up to the paisa.

    `symbol_locale` (the shop's locale) decides the symbol: ৳, not "BDT".
    """
    return _money(round_money(amount), currency, locale, symbol_locale)


@lru_cache(maxsize=8192)
def _money(rounded: Decimal, currency: str, locale: str, symbol_locale: str | None) -> str:
    # Emails of a batch repeat the same prices: Babel's ~40 µs per call is paid once.
    text = format_currency(rounded, currency, locale=_locale(locale))
    if symbol_locale:
        babel_symbol, wanted = _symbols(currency, locale, symbol_locale)
        if babel_symbol != wanted:
            text = text.replace(babel_symbol, wanted)
    return native_digits(text, locale)


def number(value: Any, *, locale: str) -> str:
    """A plain number (a quantity, a stock count) in the locale's grouping and digits."""
    return _number(to_decimal(value, "number"), locale)


@lru_cache(maxsize=4096)
def _number(value: Decimal, locale: str) -> str:
    return native_digits(format_decimal(value, locale=_locale(locale)), locale)


def percent(value: Any, *, locale: str) -> str:
    """A percentage given in points: 20 → "20%" (bn: "২০%"), 12.5 → "12.5%"."""
    return _percent(to_decimal(value, "percentage"), locale)


@lru_cache(maxsize=1024)
def _percent(points: Decimal, locale: str) -> str:
    text = format_decimal(points.normalize(), locale=_locale(locale), format="#,##0.##")
    return native_digits(f"{text}%", locale)


def format_day(value: date | datetime, *, locale: str, timezone: str, format: str = "long") -> str:
    """The calendar day of `value` (an aware datetime is first moved to `timezone`)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise FormatError(f"naive datetime cannot be shown in a timezone: {value!r}")
        value = value.astimezone(ZoneInfo(timezone)).date()
    elif not isinstance(value, date):
        raise FormatError(f"expected a date, got: {value!r}")
    return _day(value, locale, format)


@lru_cache(maxsize=1024)
def _day(value: date, locale: str, format: str) -> str:
    return native_digits(babel_format_date(value, format=format, locale=_locale(locale)), locale)
