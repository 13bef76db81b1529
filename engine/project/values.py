"""The values a marketer types, validated: durations, times of day, locales, timezones,
money, percentages, slugs and localized text.

Each parser's error says what was expected and what was found. `Frozen` is the base
of every model of the files: frozen, and unknown keys are refused.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
)
from pydantic_core import PydanticCustomError

from ..store import CENT

SLUG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EMAIL = re.compile(
    r"^[^@\s<>\"',;\x00-\x1f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$"
)
_DURATION = re.compile(r"^\s*(\d{1,12})\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# No duration a marketer writes needs more than ten years; beyond it dates overflow.
MAX_DURATION = timedelta(days=3650)
# The largest amount of money anywhere in the files (a threshold, a minimum), in whole units.
MAX_AMOUNT = Decimal(1_000_000_000)
# Languages the engine has its own words for (footer, unsubscribe page, "friend").
LANGUAGES = ("en", "bn")


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


class _TooLong(ValueError):
    """A duration longer than MAX_DURATION."""


def parse_duration(value: Any) -> timedelta:
    """'90s', '30m', '2h', '3d', '1w' (or a timedelta) → timedelta, at most MAX_DURATION."""
    if isinstance(value, timedelta):
        duration = value
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"expected a duration like 2h or 3d, got {_shown(value)}")
        count, unit = int(match.group(1)), match.group(2)
        if count * _SECONDS[unit] > MAX_DURATION.total_seconds():
            duration = MAX_DURATION + timedelta(seconds=1)  # and no OverflowError on the way
        else:
            duration = timedelta(**{_UNITS[unit]: count})
    if duration > MAX_DURATION:
        raise _TooLong(
            f"expected a duration of at most {show_duration(MAX_DURATION)} (ten years), "
            f"got {_shown(value)}"
        )
    return duration


def show_duration(duration: timedelta) -> str:
    """A duration as a marketer writes it, in its largest whole unit: 3d, 90m, 10s."""
    seconds = int(duration.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _SECONDS[unit] == 0:
            return f"{seconds // _SECONDS[unit]}{unit}"
    return f"{seconds}s"


def duration_from(low: str, high: str) -> Any:
    """A validator of a duration from `low` to `high` (both included), written like 10s."""
    least, most = parse_duration(low), parse_duration(high)

    def parse(value: Any) -> timedelta:
        try:
            found: timedelta | None = parse_duration(value)
        except _TooLong:
            found = None
        if found is None or not least <= found <= most:
            raise ValueError(f"expected a duration from {low} to {high}, got {_shown(value)}")
        return found

    return BeforeValidator(parse)


def whole(low: int, high: int) -> Any:
    """A validator of a whole number from `low` to `high` (both included); not true/false."""

    def parse(value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", value):
            number = int(value)
        if number is None or not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {_shown(value)}")
        return number

    return BeforeValidator(parse)


def number(low: float, high: float) -> Any:
    """A validator of a finite number from `low` to `high` (both included), such as a rate."""

    def parse(value: Any) -> float:
        found: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                found = float(value.strip())
        if found is None or not math.isfinite(found) or not low <= found <= high:
            raise ValueError(f"expected a number from {low:g} to {high:g}, got {_shown(value)}")
        return found

    return BeforeValidator(parse)


def parse_time_of_day(value: Any) -> time:
    """'10:00' or '9:30' (24-hour clock) → time."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(p) for p in value.strip().split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f'expected a time of day like "10:00", got {_shown(value)}')


def parse_locale(value: Any) -> str:
    """A Babel locale name such as 'bn_BD' or 'en', normalised."""
    if not isinstance(value, str):
        raise ValueError(f'expected a locale like "bn_BD" or "en", got {_shown(value)}')
    try:
        return str(Locale.parse(value.replace("-", "_")))
    except (UnknownLocaleError, ValueError) as exc:
        raise ValueError(f'expected a locale like "bn_BD" or "en", got {_shown(value)}') from exc


def parse_timezone(value: Any) -> str:
    """An IANA timezone name such as 'Asia/Dhaka'."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f'expected a timezone like "Asia/Dhaka", got {_shown(value)}') from exc
    return str(value)


def parse_email(value: Any) -> str:
    if not isinstance(value, str) or not EMAIL.match(value.strip()):
        raise ValueError(f"expected an email address, got {_shown(value)}")
    return value.strip()


def parse_slug(value: Any) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise ValueError(
            f"expected a name of lowercase letters, digits and _ (like thank_you), got {_shown(value)}"
        )
    return value


def parse_amount(value: Any) -> Decimal:
    """A money amount from 0 to MAX_AMOUNT with at most two decimals.

    YAML floats are read by their text, never as binary.
    """
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"expected an amount like 0.01 or 250, got {_shown(value)}") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"expected an amount of zero or more, got {_shown(value)}")
    if amount > MAX_AMOUNT:
        raise ValueError(f"expected an amount of at most {MAX_AMOUNT:,}, got {_shown(value)}")
    if amount != amount.quantize(CENT):
        raise ValueError(f"expected an amount with at most two decimals, got {_shown(value)}")
    return amount


def amount_from(low: str) -> Any:
    """A check that an Amount is at least `low`."""
    least = Decimal(low)

    def check(value: Decimal) -> Decimal:
        if value < least:
            raise ValueError(f"expected an amount of at least {least}, got {value}")
        return value

    return AfterValidator(check)


def parse_percent(value: Any) -> Decimal:
    """'20%' or 20 → Decimal('20'); must lie in (0, 100), with at most two decimals."""
    text = str(value).strip().removesuffix("%").strip()
    try:
        percent = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f'expected a discount like "20%", got {_shown(value)}') from exc
    if not percent.is_finite() or not 0 < percent < 100:
        raise ValueError(f"expected a discount between 0% and 100%, got {_shown(value)}")
    if percent != percent.quantize(CENT):
        raise ValueError(f"expected a discount with at most two decimals, got {_shown(value)}")
    return percent


def parse_language(value: Any) -> str:
    """A language key of a localized text: a locale such as en, bn or bn_BD, normalised."""
    if isinstance(value, str):
        with contextlib.suppress(UnknownLocaleError, ValueError):
            return str(Locale.parse(value.replace("-", "_")))
    close = difflib.get_close_matches(str(value), LANGUAGES, n=2, cutoff=0.5)
    hint = (
        f"did you mean {' or '.join(map(repr, close))}?"
        if close
        else "expected a locale like en, bn or bn_BD"
    )
    raise PydanticCustomError(
        "unknown_language",
        "unknown language {language} ({hint})",
        {"language": repr(value), "hint": hint, "key": str(value)},
    )


def parse_local_text(value: Any) -> Any:
    """Text for everyone, or a non-empty mapping of language to text (keys normalised)."""
    if not isinstance(value, dict):
        return value
    if not value:
        raise ValueError("expected text or a mapping of language to text, got an empty mapping")
    return {parse_language(key): text for key, text in value.items()}


def _matching(pattern: str, expected: str) -> Any:
    """A validator for text that must match `pattern`, saying `expected` when it does not."""
    rx = re.compile(pattern)

    def parse(value: Any) -> str:
        if not isinstance(value, str) or not rx.match(value):
            raise ValueError(f"expected {expected}, got {_shown(value)}")
        return value

    return BeforeValidator(parse)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
TimeOfDay = Annotated[time, BeforeValidator(parse_time_of_day)]
LocaleName = Annotated[str, BeforeValidator(parse_locale)]
TimeZoneName = Annotated[str, BeforeValidator(parse_timezone)]
Email = Annotated[str, BeforeValidator(parse_email)]
Slug = Annotated[str, BeforeValidator(parse_slug)]
Amount = Annotated[Decimal, BeforeValidator(parse_amount)]
Percent = Annotated[Decimal, BeforeValidator(parse_percent)]
Port = Annotated[int, whole(1, 65535)]
# Time after the welcome in which no thank-you goes out.
QuietAfter = Annotated[timedelta, duration_from("0s", "30d")]
CountryCode = Annotated[str, _matching(r"^[A-Z]{2}$", "a two-letter country code like BD")]
CurrencyCode = Annotated[str, _matching(r"^[A-Z]{3}$", "a three-letter currency code like BDT")]
WebAddress = Annotated[str, _matching(r"^https?://\S+$", "a web address like https://shop.example")]
# Text in one language for everyone, or per language: {en: "...", bn: "..."}.
LocalText = Annotated[str | dict[str, str], BeforeValidator(parse_local_text)]


def pick_text(text: LocalText, locale: str) -> str:
    """The variant of `text` for `locale` ('bn_BD' → 'bn_BD', then 'bn', then 'en', then any)."""
    if isinstance(text, str):
        return text
    language = locale.split("_")[0]
    for key in (locale, language, "en"):
        if key in text:
            return text[key]
    return next(iter(text.values()))


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
