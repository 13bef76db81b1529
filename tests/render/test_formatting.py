"""Money, numbers, percentages and dates as Bengali and English customers read them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from engine.render.formatting import FormatError, format_day, money, native_digits, number, percent


def taka(amount: object, locale: str) -> str:
    return money(amount, currency="BDT", locale=locale, symbol_locale="bn_BD")


@pytest.mark.parametrize(
    ("amount", "locale", "shown"),
    [
        pytest.param(Decimal("1250"), "bn_BD", "১,২৫০.০০৳", id="bn-thousand"),
        pytest.param(Decimal("125000.5"), "bn_BD", "১,২৫,০০০.৫০৳", id="bn-lakh-grouping"),
        pytest.param(Decimal("10000000"), "bn_BD", "১,০০,০০,০০০.০০৳", id="bn-crore-grouping"),
        pytest.param(Decimal("1250"), "en", "৳1,250.00", id="en-taka-sign"),
        pytest.param(Decimal("125000.5"), "en", "৳125,000.50", id="en-western-grouping"),
        pytest.param("0.16", "en", "৳0.16", id="en-string-amount"),
        pytest.param(14, "bn_BD", "১৪.০০৳", id="bn-int"),
    ],
)
def test_money_per_locale(amount: object, locale: str, shown: str) -> None:
    assert taka(amount, locale) == shown


@pytest.mark.parametrize(
    ("amount", "en", "bn"),
    [
        pytest.param("0.125", "৳0.13", "০.১৩৳", id="half-up-not-half-even"),
        pytest.param("1.005", "৳1.01", "১.০১৳", id="one-taka-half-paisa"),
        pytest.param("2.675", "৳2.68", "২.৬৮৳", id="odd-digit"),
        pytest.param("0.004", "৳0.00", "০.০০৳", id="below-half-rounds-down"),
    ],
)
def test_money_rounds_half_up_to_the_paisa(amount: str, en: str, bn: str) -> None:
    assert taka(Decimal(amount), "en") == en
    assert taka(Decimal(amount), "bn_BD") == bn


def test_money_without_a_symbol_locale_uses_babels_own_symbol() -> None:
    assert money(Decimal("5"), currency="BDT", locale="en") == "BDT5.00"


@pytest.mark.parametrize("bad", [1.5, "abc", "NaN", None, True])
def test_money_refuses_floats_and_junk(bad: object) -> None:
    with pytest.raises(FormatError, match="amount"):
        taka(bad, "en")


def test_unknown_locale_is_a_clear_error() -> None:
    with pytest.raises(FormatError, match="unknown locale 'xx_QQ'"):
        taka(Decimal("1"), "xx_QQ")


def test_numbers_and_percentages() -> None:
    assert number(150000, locale="bn_BD") == "১,৫০,০০০"
    assert number(150000, locale="en") == "150,000"
    assert percent(Decimal("20"), locale="bn_BD") == "২০%"
    assert percent(Decimal("12.50"), locale="en") == "12.5%"
    assert percent("10", locale="en") == "10%"


def test_dates_in_the_customers_timezone_and_language() -> None:
    # 20:00 UTC on the 26th is already the 27th in Dhaka (UTC+6).
    evening = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)
    assert format_day(evening, locale="bn_BD", timezone="Asia/Dhaka") == "২৭ নভেম্বর, ২০২৬"
    assert format_day(evening, locale="en", timezone="Asia/Dhaka") == "November 27, 2026"
    assert format_day(evening, locale="en", timezone="UTC") == "November 26, 2026"
    assert format_day(date(2027, 4, 14), locale="en", timezone="Asia/Dhaka") == "April 14, 2027"


def test_dates_refuse_naive_datetimes_and_non_dates() -> None:
    with pytest.raises(FormatError, match="naive"):
        format_day(datetime(2026, 1, 1), locale="en", timezone="Asia/Dhaka")
    with pytest.raises(FormatError, match="expected a date"):
        format_day("2026-01-01", locale="en", timezone="Asia/Dhaka")  # type: ignore[arg-type]


def test_native_digits_only_for_locales_that_use_them() -> None:
    assert native_digits("2026", "bn_BD") == "২০২৬"
    assert native_digits("2026", "en") == "2026"
