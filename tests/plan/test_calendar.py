"""The holiday calendar: package estimates, confirmed dates, the shop's own occasions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from engine.check import check_project
from engine.intake.shop import add_holiday, upsert_product
from engine.plan.calendar import (
    check_holidays,
    check_offers,
    holiday_dates,
    known_holiday_ids,
    package_holidays,
)
from engine.project.loader import Project, load_project
from engine.store.db import make_engine, session_scope, upgrade

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def edit_config(project_dir: Path, **holidays: object) -> Project:
    path = project_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["holidays"].update(holidays)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_project(path)


def by_id(dates: list, holiday_id: str) -> list:  # type: ignore[type-arg]
    return [h for h in dates if h.id == holiday_id]


def test_bangladesh_ids_names_and_first_days() -> None:
    found = {(h.id, h.date): h for h in package_holidays("BD", (2027,))}
    eid = found["eid_ul_fitr", date(2027, 3, 10)]
    assert eid.name == {"en": "Eid al-Fitr", "bn": "ঈদুল ফিতর"}
    assert eid.estimated
    # The three days of Eid count once, from the first.
    assert ("eid_ul_fitr", date(2027, 3, 11)) not in found
    assert found["pohela_boishakh", date(2027, 4, 14)].name["bn"] == "পহেলা বৈশাখ"  # type: ignore[index]
    assert {"eid_ul_adha", "victory_day", "shab_e_barat"} <= {h.id for h in found.values()}


def test_confirmed_date_replaces_estimate_of_its_year_only(project_dir: Path) -> None:
    project = edit_config(project_dir, confirmed={"eid_ul_fitr": [date(2027, 3, 11)]})
    eids = by_id(holiday_dates(project, [2026, 2027]), "eid_ul_fitr")
    assert [(h.date, h.source, h.occurrence) for h in eids] == [
        (date(2026, 3, 21), "package", "eid_ul_fitr-2026"),
        (date(2027, 3, 11), "config", "eid_ul_fitr-2027"),
    ]
    assert eids[1].name == {"en": "Eid al-Fitr", "bn": "ঈদুল ফিতর"}


def test_extra_and_shop_holidays(project_dir: Path, now: datetime) -> None:
    project = load_project(project_dir / "config.yaml")
    engine = make_engine(project.database_url())
    upgrade(engine)
    assert by_id(holiday_dates(project, [2026], engine), "flash_sale") == []
    with session_scope(engine) as s:
        add_holiday(s, holiday_id="flash_sale", day=date(2026, 12, 5), name="Flash sale", now=now)
    dates = holiday_dates(project, [2026, 2027], engine)
    [sale] = by_id(dates, "flash_sale")
    assert (sale.date, sale.source, sale.occurrence) == (
        date(2026, 12, 5),
        "shop",
        "flash_sale-2026",
    )
    assert sale.name == {"en": "Nakshi Ghor flash sale", "bn": "নকশি ঘরের ফ্ল্যাশ সেল"}
    [friday] = by_id(dates, "black_friday")
    assert (friday.date, friday.source) == (date(2026, 11, 27), "config")
    # Moving the sale keeps its occurrence key.
    with session_scope(engine) as s:
        add_holiday(s, holiday_id="flash_sale", day=date(2026, 12, 9), name="Flash sale", now=now)
    [moved] = by_id(holiday_dates(project, [2026], engine), "flash_sale")
    assert (moved.date, moved.occurrence) == (date(2026, 12, 9), "flash_sale-2026")
    assert "flash_sale" in known_holiday_ids(project, engine)
    engine.dispose()


def test_check_unknown_holiday_id_with_file_and_line(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "holiday_preannounce.yaml"
    path.write_text(path.read_text().replace("eid_ul_adha", "eid_al_adha"))
    _, problems = check_project(project_dir / "config.yaml")
    [problem] = problems
    assert (problem.file, problem.line, problem.key) == (
        "campaigns/holiday_preannounce.yaml",
        5,
        "trigger.holidays[1]",
    )
    assert "unknown holiday 'eid_al_adha'" in problem.message
    assert "did you mean 'eid_ul_adha'" in problem.message


@pytest.mark.parametrize(
    ("old", "new", "line", "key"),
    [
        pytest.param('at: "10:00"', 'at: "25:00"', 7, "trigger.at", id="bad-at"),
        pytest.param(
            "days_before: 3", "days_before: -1", 6, "trigger.days_before", id="negative-days"
        ),
    ],
)
def test_check_bad_trigger_values(
    project_dir: Path, old: str, new: str, line: int, key: str
) -> None:
    path = project_dir / "campaigns" / "holiday_preannounce.yaml"
    path.write_text(path.read_text().replace(old, new))
    _, problems = check_project(project_dir / "config.yaml")
    [problem] = [p for p in problems if p.file.startswith("campaigns/")]
    assert (problem.file, problem.line, problem.key) == (
        "campaigns/holiday_preannounce.yaml",
        line,
        key,
    )


def test_check_offers_against_existing_database(project_dir: Path, now: datetime) -> None:
    project = load_project(project_dir / "config.yaml")
    assert check_offers(project) == []  # no database yet: nothing to compare
    engine = make_engine(project.database_url())
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(s, sku="JUTE-BAG-01", name="Jute bag", price="350", now=now)
        upsert_product(s, sku="TEA-500G", name="Tea", price="420", now=now)
    engine.dispose()
    assert check_holidays(project) == []
    [problem] = check_offers(project)
    assert (problem.file, problem.line, problem.key) == (
        "campaigns/holiday_preannounce.yaml",
        20,
        "offers[2].sku",
    )
    assert "SARI-JAM-01" in problem.message


def test_check_unknown_confirmed_id(project_dir: Path) -> None:
    path = project_dir / "config.yaml"
    path.write_text(
        path.read_text().replace("confirmed: {}", "confirmed: {eid_ul_fiter: 2027-03-11}")
    )
    _, problems = check_project(path)
    [problem] = problems
    assert (problem.file, problem.key) == ("config.yaml", "holidays.confirmed.eid_ul_fiter")
    assert problem.line == next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if "eid_ul_fiter" in line
    )
    assert "did you mean 'eid_ul_fitr'" in problem.message


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_check_names_a_missing_offer_and_the_sku_meant(
    project_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", store_url)
    engine = make_engine(store_url)
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(s, sku="JUTE-BAG-01", name="Jute bag", price="350", now=NOW)
        upsert_product(s, sku="tea-500g", name="Tea", price="420", now=NOW)
    engine.dispose()
    _, problems = check_project(project_dir / "config.yaml", strict=True)
    file = "campaigns/holiday_preannounce.yaml"
    assert [str(p) for p in problems] == [
        f"{file}:19: offers[1].sku: no product with sku 'TEA-500G' in the database; did you "
        "mean 'tea-500g'? (emails leave this offer out until the sku matches a product's "
        "exactly)",
        f"{file}:20: offers[2].sku: no product with sku 'SARI-JAM-01' in the database "
        "(emails leave this offer out until the product is imported)",
    ]


def test_check_says_when_the_offers_could_not_be_compared(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database file, it is text" * 100)
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", f"sqlite:///{broken}")
    [problem] = check_offers(load_project(project_dir / "config.yaml"))
    assert (problem.file, problem.line, problem.key) == (
        "campaigns/holiday_preannounce.yaml",
        17,
        "offers",
    )
    assert problem.message.startswith(
        "offers not compared with the shop's products: the database cannot be read ("
    )
    assert "file is not a database" in problem.message
