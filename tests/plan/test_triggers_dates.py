"""Triggers on the customer's clock, through time: birthdays and anniversaries, a fortnightly
letter, a broadcast; each at its local time in the customer's zone, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from engine.store.db import session_scope
from engine.store.models import BroadcastTime
from tests.plan.test_planner import NOW, Shop
from tests.plan.test_triggers_purchases import (
    NAME,
    buy,
    catalogue_shop,
    customer_id,
    days,
    passes,
    person,
    sent,
    write_campaign,
)

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
BIRTHDAY = {"type": "date", "field": "birthday", "at": "10:00"}


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def shop(store: Engine, project_dir: Any) -> Shop:
    shop = catalogue_shop(store, project_dir)
    shop.edit("config.yaml", lambda c: c["sending"].update(frequency_cap=None))
    return shop


# ---------------------------------------------------------------- birthdays

# Young customers: a pass matches each due day against every year since the oldest date.
BORN = {
    "jan": date(2024, 1, 15),
    "leap": date(2024, 2, 29),
    "feb28": date(2025, 2, 28),
    "mar1": date(2024, 3, 1),
    "dec31": date(2023, 12, 31),
}


# The days around each birthday of BORN, for PostgreSQL (its SQL is the same as on
# SQLite, where the whole year runs): a pass on each of them is what the year tests.
AROUND = {(1, 1), (1, 2), (1, 14), (1, 15), (1, 16), (2, 27), (2, 28), (3, 1), (3, 2), (12, 30), (12, 31)}  # fmt: skip


@pytest.mark.slow  # 365 passes: about 8 s on SQLite (PostgreSQL: 11 of them)
def test_a_year_of_daily_passes_wishes_each_birthday_once(shop: Shop) -> None:
    write_campaign(shop, BIRTHDAY)
    for name, born in BORN.items():
        person(shop, name, birthday=born)
    # 06:00 UTC is 12:00 in Dhaka: each day's 10:00 has passed.
    year = days(utc(2027, 1, 1, 6, 0), 365)
    if shop.engine.dialect.name == "postgresql":
        year = [day for day in year if (day.month, day.day) in AROUND]
    queued = passes(shop, year)
    # The first pass also wishes dec31 the 2026 birthday it fell on the day before (a day
    # late is within the default two days' expiry).
    assert queued[0] == 1 and sum(queued) == len(BORN) + 1
    [late] = [m for m in sent(shop) if m.occurrence == "birthday-2026"]
    assert (shop.owner(late), late.context["date"]) == ("dec31", "2026-12-31")  # type: ignore[index]
    wished = {shop.owner(m): m for m in sent(shop) if m.occurrence == "birthday-2027"}
    assert len(wished) == len(BORN)
    on_day = {name: m.created_at.date() for name, m in wished.items()}
    assert on_day == {
        "jan": date(2027, 1, 15),
        "leap": date(2027, 2, 28),  # no 29 February in 2027
        "feb28": date(2027, 2, 28),
        "mar1": date(2027, 3, 1),
        "dec31": date(2027, 12, 31),
    }
    for name, m in wished.items():
        assert m.occurrence == "birthday-2027"
        assert m.dedupe_key == f"{NAME}:{customer_id(shop, name)}:birthday-2027"
        assert m.send_after == m.created_at  # planned at 12:00, inside the window: at once
        assert m.context == {
            "date_field": "birthday",
            "date": on_day[name].isoformat(),
            "years": 2027 - BORN[name].year,
        }
    # 2028 has a 29 February: the leap-day birthday is on its own day.
    assert passes(shop, days(utc(2028, 2, 27, 6, 0), 3)) == [0, 1, 1]
    in_2028 = {shop.owner(m): m for m in sent(shop) if m.occurrence == "birthday-2028"}
    assert {n: m.created_at.date() for n, m in in_2028.items()} == {
        "feb28": date(2028, 2, 28),
        "leap": date(2028, 2, 29),
    }
    assert in_2028["leap"].context == {"date_field": "birthday", "date": "2028-02-29", "years": 4}


@pytest.mark.parametrize(
    ("zone", "born", "due"),
    [
        pytest.param("Asia/Dhaka", date(2015, 6, 20), utc(2027, 6, 20, 4, 0), id="dhaka"),
        # Clocks go forward at 02:00 on 14 March 2027: 10:00 is EDT, 14:00 UTC (not 15:00).
        pytest.param(
            "America/New_York", date(2016, 3, 14), utc(2027, 3, 14, 14, 0), id="new-york-spring"
        ),
        # Clocks go back on 7 November 2027: 10:00 is EST again, 15:00 UTC.
        pytest.param(
            "America/New_York", date(2016, 11, 7), utc(2027, 11, 7, 15, 0), id="new-york-autumn"
        ),
        # British Summer Time from 28 March 2027: 10:00 BST is 09:00 UTC.
        pytest.param("Europe/London", date(2014, 3, 28), utc(2027, 3, 28, 9, 0), id="london"),
        # 1 January at 10:00 in UTC+14 is still 31 December in UTC: the local day counts.
        pytest.param(
            "Pacific/Kiritimati", date(2001, 1, 1), utc(2026, 12, 31, 20, 0), id="kiritimati"
        ),
    ],
)
def test_a_birthday_goes_at_ten_on_the_customers_own_clock(
    shop: Shop, zone: str, born: date, due: datetime
) -> None:
    write_campaign(shop, BIRTHDAY)
    person(shop, "ana", tz=zone, birthday=born)
    moments = [due - 24 * H, due - H, due - M, due, due + H, due + 25 * H]
    assert passes(shop, moments) == [0, 0, 0, 1, 0, 0]
    [wish] = sent(shop)
    local_day = born.replace(year=2027)
    assert wish.created_at == due  # the first hourly pass at or after 10:00 local
    assert wish.occurrence == "birthday-2027"
    assert wish.context == {
        "date_field": "birthday",
        "date": local_day.isoformat(),
        "years": 2027 - born.year,
    }
    assert (wish.send_after, wish.expires_at) == (due, due + 2 * D)


def test_days_before_a_birthday(shop: Shop) -> None:
    write_campaign(shop, {**BIRTHDAY, "days_before": 3})
    person(shop, "ana", birthday=date(2015, 6, 20))
    queued = passes(shop, days(utc(2027, 6, 14, 6, 0), 9))
    assert queued == [0, 0, 0, 1, 0, 0, 0, 0, 0]  # on 17 June
    [early] = sent(shop)
    assert early.created_at == utc(2027, 6, 17, 6, 0)
    assert early.context == {"date_field": "birthday", "date": "2027-06-20", "years": 12}
    assert early.occurrence == "birthday-2027"


def test_a_first_orders_anniversary_on_its_local_day(shop: Shop) -> None:
    write_campaign(shop, {"type": "date", "field": "first_order", "at": "10:00"})
    person(shop, "ana")
    # 20:00 UTC on 9 March is 02:00 on 10 March in Dhaka: the anniversary is the 10th.
    buy(shop, "a1", "ana", utc(2026, 3, 9, 20, 0))
    buy(shop, "a2", "ana", utc(2026, 9, 1, 6, 0))
    assert passes(shop, days(utc(2026, 3, 10, 6, 0), 2)) == [0, 0]  # not on the day itself
    assert passes(shop, days(utc(2027, 3, 8, 6, 0), 4)) == [0, 0, 1, 0]
    [anniversary] = sent(shop)
    assert anniversary.created_at == utc(2027, 3, 10, 6, 0)
    assert anniversary.occurrence == "first_order-2027"
    assert anniversary.context == {"date_field": "first_order", "date": "2027-03-10", "years": 1}


def test_a_signup_anniversary(shop: Shop) -> None:
    write_campaign(shop, {"type": "date", "field": "signup", "at": "10:00"})
    person(shop, "ana", signed_up=utc(2025, 7, 1, 12, 0))
    assert passes(shop, days(utc(2026, 6, 29, 6, 0), 5)) == [0, 0, 1, 0, 0]
    [anniversary] = sent(shop)
    assert anniversary.occurrence == "signup-2026"
    assert anniversary.context == {"date_field": "signup", "date": "2026-07-01", "years": 1}
    assert anniversary.send_after == utc(2026, 7, 1, 6, 0)


# ---------------------------------------------------------------- schedule


def test_a_fortnightly_letter_over_eight_weeks(shop: Shop) -> None:
    write_campaign(
        shop,
        {"type": "schedule", "every": "14d", "at": "10:00", "starting": "2026-11-02"},
        segment="regulars",
    )
    for name, zone in (("ana", None), ("bob", "America/New_York"), ("cat", None)):
        person(shop, name, tz=zone)
    for name in ("ana", "bob"):  # regulars: three orders within 180 days
        for i in range(3):
            buy(shop, f"{name}{i}", name, NOW - (10 + i) * D)
    buy(shop, "cat0", "cat", NOW - 10 * D)
    # Letters fall on 16 and 30 November, 14 and 28 December, 11 January; the 16th has
    # passed on the first pass (and is older than the default day's expiry).
    passes(shop, days(NOW, 8 * 7))
    periods = ["2026-11-30", "2026-12-14", "2026-12-28", "2027-01-11"]
    for name in ("ana", "bob"):
        letters = sent(shop, name)
        assert [m.occurrence for m in letters] == [f"every-{p}" for p in periods]
        assert [m.context for m in letters] == [{"period_start": p} for p in periods]
    assert sent(shop, "cat") == []
    ana = sent(shop, "ana")
    assert [m.send_after for m in ana] == [
        datetime.combine(date.fromisoformat(p), datetime.min.time(), UTC) + 6 * H for p in periods
    ]  # planned at 12:00 in Dhaka on the day, at once
    # New York's 10:00 is after the day's 06:00 UTC pass: planned the next morning (01:00
    # local), sent when its window opens at 09:00 (EST, 14:00 UTC).
    assert [m.send_after for m in sent(shop, "bob")] == [
        datetime.combine(date.fromisoformat(p), datetime.min.time(), UTC) + D + 14 * H
        for p in periods
    ]


# ---------------------------------------------------------------- broadcast

LOCAL_AT = "2026-12-10 10:00"


def test_a_broadcast_goes_at_its_local_time_in_each_zone(shop: Shop) -> None:
    write_campaign(shop, {"type": "broadcast", "at": LOCAL_AT})
    person(shop, "ana")  # Dhaka: 04:00 UTC
    person(shop, "bob", tz="America/New_York")  # 15:00 UTC
    queued = passes(shop, days(utc(2026, 12, 9, 4, 0), 48, H))
    assert sum(queued) == 2
    assert queued[24] == 1 and queued[35] == 1  # 04:00 and 15:00 UTC on the 10th
    for name, at in (("ana", utc(2026, 12, 10, 4, 0)), ("bob", utc(2026, 12, 10, 15, 0))):
        [message] = sent(shop, name)
        assert message.occurrence == f"broadcast-{LOCAL_AT}"
        assert message.dedupe_key == f"{NAME}:{customer_id(shop, name)}:broadcast-{LOCAL_AT}"
        assert message.context == {"broadcast_at": LOCAL_AT}
        assert (message.created_at, message.send_after) == (at, at)


def test_a_cancelled_broadcast_sends_nothing_and_a_time_set_later_goes(shop: Shop) -> None:
    write_campaign(shop, {"type": "broadcast", "at": LOCAL_AT})
    person(shop, "ana")
    with session_scope(shop.engine) as s:
        s.add(BroadcastTime(campaign=NAME, local_at=LOCAL_AT, created_at=NOW, cancelled_at=NOW))
        s.add(BroadcastTime(campaign=NAME, local_at="2026-12-12 11:30", created_at=NOW))
    moments = [utc(2026, 12, 9, 0, 0), utc(2026, 12, 10, 4, 0), utc(2026, 12, 10, 16, 0),
               utc(2026, 12, 12, 5, 29), utc(2026, 12, 12, 5, 30), utc(2026, 12, 13, 0, 0)]  # fmt: skip
    assert passes(shop, moments) == [0, 0, 0, 0, 1, 0]
    [later] = sent(shop)
    assert later.occurrence == "broadcast-2026-12-12 11:30"
    assert later.created_at == utc(2026, 12, 12, 5, 30)
