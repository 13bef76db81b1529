"""The holiday calendar: the country's holidays, the shop's own occasions, confirmed dates.

Three sources, merged per year:

- **package**: the `holidays` package for `config.holidays.country` (BD by
  default, whose Eids are estimates for future years). A holiday that lasts
  several days (Eid al-Fitr: three) counts from its first day.
- **config**: `holidays.extra` entries with a fixed `date`, and
  `holidays.confirmed` (id → dates): a confirmed date replaces every other date
  of that id in its year (the moon was sighted a day later than estimated).
- **shop**: the `shop_holiday` table (`lifecycle holiday set`), for occasions
  declared in `holidays.extra` without a date; a row replaces that id's other
  dates in its year.

Holiday ids are stable slugs. For Bangladesh:

    eid_ul_fitr        Eid al-Fitr (ঈদুল ফিতর)
    eid_ul_adha        Eid al-Adha (ঈদুল আজহা)
    pohela_boishakh    Bengali New Year, 14 April (পহেলা বৈশাখ)
    shab_e_barat       Mid-Sha'ban (শবে বরাত)
    shab_e_qadr        Laylat al-Qadr (শবে কদর)
    jumatul_wida       Jumu'atul-Wida (জুমাতুল বিদা)
    ashura             Ashura (আশুরা)
    eid_e_milad_un_nabi  the Prophet's birthday (ঈদে মিলাদুন্নবী)
    language_martyrs_day 21 February (শহীদ দিবস ও আন্তর্জাতিক মাতৃভাষা দিবস)
    independence_day   26 March (স্বাধীনতা দিবস)
    may_day            1 May (মে দিবস)
    july_uprising_day  5 August (জুলাই গণ-অভ্যুত্থান দিবস)
    victory_day        16 December (বিজয় দিবস)
    christmas          25 December (বড়দিন)

Any other country's holiday gets its English name as a slug ("Labor Day" →
labor_day). The shop's own ids are those of `holidays.extra`.

Each dated occurrence has an occurrence key `<id>-<year>` (a second one in
the same year, which Islamic holidays reach every 33 years, is
`<id>-<year>-2`); moving a date within its year keeps the key.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import holidays
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError, Problem, StoreError
from ..project import HolidayTrigger, LocalText, Project
from ..store import Product, ShopHoliday

# The package's English (en_US) names → our ids.
PACKAGE_IDS = {
    "Eid al-Fitr": "eid_ul_fitr",
    "Eid al-Adha": "eid_ul_adha",
    "Bengali New Year's Day": "pohela_boishakh",
    "Mid-Sha'ban": "shab_e_barat",
    "Laylat al-Qadr": "shab_e_qadr",
    "Jumu'atul-Wida": "jumatul_wida",
    "Ashura": "ashura",
    "Prophet's Birthday": "eid_e_milad_un_nabi",
    "Martyrs' Day and International Mother Language Day": "language_martyrs_day",
    "Independence Day": "independence_day",
    "May Day": "may_day",
    "July Mass Uprising Day": "july_uprising_day",
    "Victory Day": "victory_day",
    "Christmas Day": "christmas",
}
# Years whose package holidays make up the known ids (the package estimates ahead).
KNOWN_YEARS = range(2024, 2041)
_ESTIMATED = " (estimated)"


@dataclass(frozen=True)
class HolidayDate:
    """One dated occurrence of a holiday."""

    id: str
    name: LocalText
    date: date
    source: str  # "package", "config" or "shop"
    occurrence: str = ""  # `<id>-<year>`, set by `holiday_dates`
    estimated: bool = False


def slug(name: str) -> str:
    return PACKAGE_IDS.get(name) or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@lru_cache(maxsize=32)
def package_holidays(country: str, years: tuple[int, ...]) -> tuple[HolidayDate, ...]:
    """The country's holidays in `years`, one entry per holiday and run of days."""
    try:
        english = _country(country, years, "en_US")
        bengali = _country(country, years, "bn")
    except NotImplementedError as exc:
        raise ConfigError(
            [Problem("config.yaml", None, "holidays.country", f"no holidays known for {country!r}")]
        ) from exc
    found: list[HolidayDate] = []
    for day in sorted(english):
        en_names, bn_names = english.get_list(day), bengali.get_list(day)
        for i, en in enumerate(en_names):
            estimated = en.endswith(_ESTIMATED)
            en = en.removesuffix(_ESTIMATED)
            bn = bn_names[i] if len(bn_names) == len(en_names) else en
            if estimated:
                bn = re.sub(r"\s*\([^)]*\)$", "", bn)
            name: LocalText = {"en": en, "bn": bn} if bn != en else en
            found.append(HolidayDate(slug(en), name, day, "package", estimated=estimated))
    return tuple(_first_days(found))


def _country(country: str, years: tuple[int, ...], language: str) -> holidays.HolidayBase:
    cls = holidays.country_holidays(country, years=[]).__class__
    supported = getattr(cls, "supported_languages", ())
    chosen = language if language in supported else None
    return holidays.country_holidays(country, years=list(years), language=chosen, observed=False)


def _first_days(found: list[HolidayDate]) -> list[HolidayDate]:
    """Keep the first day of each run of consecutive days of the same holiday."""
    last: dict[str, date] = {}
    kept = []
    for holiday in sorted(found, key=lambda h: (h.id, h.date)):
        previous = last.get(holiday.id)
        last[holiday.id] = holiday.date
        if previous is None or holiday.date - previous > timedelta(days=1):
            kept.append(holiday)
    return kept


def holiday_dates(
    project: Project, years: Iterable[int], bind: Engine | Connection | None = None
) -> list[HolidayDate]:
    """Every holiday occurrence in `years`, sorted by date, with its occurrence key.

    `bind` reads the shop's own dates from `shop_holiday`; without it they are left out.
    """
    wanted = tuple(sorted(set(years)))
    config = project.config.holidays
    names = {extra.id: extra.name for extra in config.extra}
    dates = list(package_holidays(config.country, wanted))
    for holiday in dates:
        names.setdefault(holiday.id, holiday.name)
    dates += [
        HolidayDate(extra.id, extra.name, extra.date, "config")
        for extra in config.extra
        if extra.date is not None and extra.date.year in wanted
    ]
    for row in shop_holidays(bind) if bind is not None else []:
        name = names.get(row.id) or (
            {"en": row.name, "bn": row.name_bn} if row.name_bn else row.name
        )
        dates = _replace_year(dates, HolidayDate(row.id, name, row.date, "shop"), wanted)
    for holiday_id, confirmed in config.confirmed.items():
        for day in confirmed:
            name = names.get(holiday_id, holiday_id.replace("_", " ").title())
            dates = _replace_year(dates, HolidayDate(holiday_id, name, day, "config"), wanted)
    return _with_occurrences(dates)


def _replace_year(
    dates: list[HolidayDate], new: HolidayDate, wanted: tuple[int, ...]
) -> list[HolidayDate]:
    if new.date.year not in wanted:
        return dates
    kept = [
        h
        for h in dates
        if not (h.id == new.id and h.date.year == new.date.year and h.source != new.source)
    ]
    return [*kept, new]


def _with_occurrences(dates: list[HolidayDate]) -> list[HolidayDate]:
    seen: dict[tuple[str, int], int] = defaultdict(int)
    out = []
    for holiday in sorted(dates, key=lambda h: (h.date, h.id)):
        seen[holiday.id, holiday.date.year] += 1
        n = seen[holiday.id, holiday.date.year]
        key = f"{holiday.id}-{holiday.date.year}" + (f"-{n}" if n > 1 else "")
        out.append(replace(holiday, occurrence=key))
    return out


def shop_holidays(bind: Engine | Connection) -> list[ShopHoliday]:
    """The rows of `shop_holiday` (the shop's announced occasions)."""
    table = ShopHoliday.__table__  # type: ignore[attr-defined]
    try:
        if isinstance(bind, Engine):
            with bind.connect() as conn:
                rows = conn.execute(select(table)).all()
        else:
            rows = bind.execute(select(table)).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the shop's holidays: {exc}") from exc
    return [ShopHoliday(**row._mapping) for row in rows]


def known_holiday_ids(project: Project, engine: Engine | None = None) -> set[str]:
    """Every id a holiday trigger may name: the package's, `extra`, `confirmed`, and shop rows."""
    config = project.config.holidays
    ids = {h.id for h in package_holidays(config.country, tuple(KNOWN_YEARS))}
    ids |= {extra.id for extra in config.extra} | set(config.confirmed)
    if engine is not None:
        ids |= {row.id for row in shop_holidays(engine)}
    return ids


# ---------------------------------------------------------------- lifecycle check


def check_holidays(project: Project) -> list[Problem]:
    """Unknown holiday ids in triggers and `confirmed`."""
    try:
        engine = _existing_database(project)
    except _Unreadable:
        engine = None  # the shop's own holidays are not known: only the package's are
    try:
        known = known_holiday_ids(project, engine)
    except ConfigError as exc:
        return exc.problems
    except StoreError:
        known = known_holiday_ids(project)
    problems = []
    for name, campaign in project.campaigns.items():
        trigger = campaign.trigger
        if not isinstance(trigger, HolidayTrigger):
            continue
        file = project.campaign_files[name]
        for i, holiday_id in enumerate(trigger.holidays):
            if holiday_id not in known:
                path = ("trigger", "holidays", i)
                problems.append(
                    Problem(
                        file,
                        project.where(file, path),
                        f"trigger.holidays[{i}]",
                        f"unknown holiday {holiday_id!r}{_hint(holiday_id, known)}",
                    )
                )
    problems += _check_confirmed(project, known - set(project.config.holidays.confirmed))
    if engine is not None:
        engine.dispose()
    return problems


def _check_confirmed(project: Project, known: set[str]) -> list[Problem]:
    """A confirmed date must be for a holiday that exists without it."""
    file = next(iter(project.docs), "config.yaml")
    problems = []
    for holiday_id in project.config.holidays.confirmed:
        if holiday_id not in known:
            path = ("holidays", "confirmed", holiday_id)
            problems.append(
                Problem(
                    file,
                    project.where(file, path),
                    f"holidays.confirmed.{holiday_id}",
                    f"unknown holiday {holiday_id!r}{_hint(holiday_id, known)}",
                )
            )
    return problems


def _hint(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(known))}; declare the shop's own under holidays.extra)"


def _existing_database(project: Project) -> Engine | None:
    """The project's database if it exists and has a schema; None when there is none
    yet. Raises _Unreadable when one is configured but cannot be read."""
    from ..store import has_schema, make_engine

    url = project.database_url()
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path in ("", ":memory:") or not Path(path).is_file():
            return None
    try:
        engine = make_engine(url)
        if has_schema(engine):
            return engine
        engine.dispose()
    except (StoreError, SQLAlchemyError) as exc:
        raise _Unreadable(_first_line(exc)) from exc
    return None


def check_offers(project: Project) -> list[Problem]:
    """Offers, in any campaign file (enabled or not), of a SKU the shop's database lacks,
    each with its file and line; one problem when the database cannot be read.

    A problem of the shop's data, not of its files: without a database, or
    without its tables yet, there is nothing to compare. An email leaves such an
    offer out.
    """
    offered = sorted(
        (name, i, offer.sku)
        for name, campaign in project.campaigns.items()
        for i, offer in enumerate(campaign.offers)
    )
    if not offered:
        return []
    try:
        engine = _existing_database(project)
        if engine is None:
            return []
        try:
            known, close = _products(engine, {sku for _, _, sku in offered})
        finally:
            engine.dispose()
    except _Unreadable as exc:
        name = offered[0][0]
        file = project.campaign_files[name]
        return [
            Problem(
                file,
                project.where(file, ("offers",)),
                "offers",
                f"offers not compared with the shop's products: the database cannot be read "
                f"({exc})",
            )
        ]
    return [
        _missing(project, name, i, sku, close.get(sku))
        for name, i, sku in offered
        if sku not in known
    ]


class _Unreadable(Exception):
    pass


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _products(engine: Engine, wanted: set[str]) -> tuple[set[str], dict[str, str]]:
    """The SKUs in `wanted` that are products, and for the others a product SKU that
    differs only in case or surrounding spaces."""
    table = Product.__table__  # type: ignore[attr-defined]
    folded = {sku.strip().upper(): sku for sku in wanted}
    try:
        with engine.connect() as conn:
            known = set(conn.execute(select(table.c.sku).where(table.c.sku.in_(wanted))).scalars())
            missing = [key for key, sku in folded.items() if sku not in known]
            near = select(table.c.sku).where(func.upper(func.trim(table.c.sku)).in_(missing))
            alike = list(conn.execute(near).scalars()) if missing else []
    except SQLAlchemyError as exc:
        raise _Unreadable(_first_line(exc)) from exc
    close = {folded[sku.strip().upper()]: sku for sku in sorted(alike)}
    return known, close


def _missing(project: Project, name: str, i: int, sku: str, close: str | None) -> Problem:
    file = project.campaign_files[name]
    if close is None:
        message = (
            f"no product with sku {sku!r} in the database "
            "(emails leave this offer out until the product is imported)"
        )
    else:
        message = (
            f"no product with sku {sku!r} in the database; did you mean {close!r}? "
            "(emails leave this offer out until the sku matches a product's exactly)"
        )
    return Problem(file, project.where(file, ("offers", i, "sku")), f"offers[{i}].sku", message)
