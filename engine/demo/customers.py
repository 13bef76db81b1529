"""The demo's customers and their orders, planned as plain data from the demo shop's tables.

`plan_demo(now, customers)` returns the same `CustomerSeed`s for the same
arguments: each customer's choices come from a `random.Random` seeded with its
number, and every time is relative to `now`. Nothing here touches the database.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from ..errors import DataError
from ..intake import shop
from .tables import (
    BIRTHDAY_AT,
    CITIES,
    CONSUMABLES,
    DIASPORA_CITIES,
    DOMAINS,
    DROPPED,
    FAMILY,
    FEATURED,
    FEMALE,
    GIVEN,
    HOME_CITIES,
    MALE,
    MIN_CUSTOMERS,
    POPULATION,
    PRICES,
    PRODUCTS,
    RESTOCKED_HOURS_AGO,
    RESTOCKED_SKU,
    SCENARIOS,
    SCORES,
    SHOP_TIMEZONE,
    SPREAD,
    TAGS,
    Role,
)

SEED = "nakshi-ghor-demo"
DEFAULT_CUSTOMERS = 300
MAX_CUSTOMERS = 20_000


@dataclass(frozen=True)
class OrderSeed:
    external_id: str
    placed_at: datetime
    delivered_at: datetime | None
    lines: tuple[shop.Line, ...]
    refused_at: datetime | None = None  # cash on delivery, refused at the door then


@dataclass(frozen=True)
class CheckoutSeed:
    """A checkout the customer started and left (no order carries its cart id)."""

    cart_id: str
    started_at: datetime
    lines: tuple[shop.Line, ...]

    @property
    def amount(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal("0"))


@dataclass(frozen=True)
class CustomerSeed:
    external_id: str
    role: Role
    email: str
    name: str
    locale: str
    city: str
    timezone: str
    birthday: date | None
    tags: tuple[str, ...]
    consent: bool
    created_at: datetime
    orders: tuple[OrderSeed, ...] = ()
    survey: tuple[int, datetime] | None = None
    # (sku, when asked): the customer wants to hear when it is back in stock.
    wants: tuple[str, datetime] | None = None
    checkout: CheckoutSeed | None = None


def plan_demo(now: datetime, customers: int = DEFAULT_CUSTOMERS) -> list[CustomerSeed]:
    """The demo's customers with their orders, as data; the same for the same arguments."""
    _check_arguments(now, customers)
    roles = [role for role, n in SCENARIOS for _ in range(n)]
    return [
        _customer(i, roles[i - 1] if i <= len(roles) else None, now)
        for i in range(1, customers + 1)
    ]


def _check_arguments(now: datetime, customers: int) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise DataError(f"now must be a timezone-aware datetime, got: {now!r}")
    if isinstance(customers, bool) or not isinstance(customers, int):
        raise DataError(f"customers must be a whole number, got: {customers!r}")
    if not MIN_CUSTOMERS <= customers <= MAX_CUSTOMERS:
        raise DataError(
            f"the demo needs between {MIN_CUSTOMERS} and {MAX_CUSTOMERS} customers "
            f"to set up every scenario, got: {customers}"
        )


def _customer(index: int, scenario: Role | None, now: datetime) -> CustomerSeed:
    rng = random.Random(f"{SEED}:{index}")
    if scenario is not None:
        role = scenario
        position = index - 1 - sum(n for r, n in SCENARIOS[: _scenario_number(role)])
        city = SPREAD[position % len(SPREAD)]
    else:
        role = rng.choices([r for r, _ in POPULATION], [w for _, w in POPULATION])[0]
        city = rng.choice(HOME_CITIES if rng.random() < 0.75 else DIASPORA_CITIES)
    home = CITIES[city] == SHOP_TIMEZONE
    locale = "bn_BD" if rng.random() < (0.92 if home else 0.45) else "en"
    if index <= len(FEATURED):
        locale = FEATURED[index - 1][2]
    name, latin = _name(rng, index, locale)
    external_id = f"NG-C{index:05d}"
    orders = _orders(rng, role, index, now)
    first = orders[0].placed_at if orders else now - timedelta(days=rng.randint(1, 400))
    created_at = first - timedelta(minutes=rng.randint(3, 60 * 24 * 30))
    if role is Role.WELCOME:
        created_at = first - timedelta(minutes=rng.randint(2, 20))
    consent = _consent(rng, role, scenario is not None, index)
    return CustomerSeed(
        external_id=external_id,
        role=role,
        email=f"{latin.lower().replace(' ', '.')}.{index}@{rng.choice(DOMAINS)}",
        name=name,
        locale=locale,
        city=city,
        timezone=CITIES[city],
        birthday=_birthday_for(rng, role, index, CITIES[city], now),
        tags=tuple(sorted(rng.sample(TAGS, k=rng.choice((0, 0, 1, 1, 2))))),
        consent=consent,
        created_at=created_at,
        orders=orders,
        survey=_survey(rng, orders, now),
        wants=_wants(rng, role, now),
        checkout=_checkout(rng, role, index, now),
    )


def _scenario_number(role: Role) -> int:
    return next(i for i, (r, _) in enumerate(SCENARIOS) if r is role)


def _consent(rng: random.Random, role: Role, scenario: bool, index: int) -> bool:
    if role is Role.PRICE_DROP:
        # The refund notice is transactional: some of these buyers never opted in.
        return index % 3 != 0
    if scenario:
        return True
    return rng.random() < 0.85


def _name(rng: random.Random, index: int, locale: str) -> tuple[str, str]:
    if index <= len(FEATURED):
        shown, latin, _ = FEATURED[index - 1]
        return shown, latin
    gender = rng.choice((FEMALE, MALE))
    given_bn, given_en = rng.choice(GIVEN[gender])
    family_bn, family_en = rng.choice(FAMILY[gender])
    latin = f"{given_en} {family_en}"
    bengali_script = locale == "bn_BD" and rng.random() < 0.8
    return (f"{given_bn} {family_bn}" if bengali_script else latin), latin


def _birthday(rng: random.Random) -> date | None:
    if rng.random() < 0.1:
        return None
    return date(rng.randint(1962, 2004), rng.randint(1, 12), rng.randint(1, 28))


def _birthday_for(
    rng: random.Random, role: Role, index: int, timezone: str, now: datetime
) -> date | None:
    """A chance birthday; for the birthday scenario, one whose wishes are due now.

    Wishes go at 10:00 on the customer's clock and keep two days: a birthday
    today once it is 10:00 there, else yesterday's. The scenario's last customer
    was born on 29 February.
    """
    drawn = _birthday(rng)
    if role is not Role.BIRTHDAY:
        return drawn
    if index == _last_of(Role.BIRTHDAY):
        return date(1996, 2, 29)
    local = now.astimezone(ZoneInfo(timezone))
    day = local.date() if local.time() >= BIRTHDAY_AT else local.date() - timedelta(days=1)
    year = rng.randint(1965, 2002)
    if (day.month, day.day) == (2, 29) and not calendar.isleap(year):
        year = 1996
    return day.replace(year=year)


def _last_of(role: Role) -> int:
    """The customer number of a scenario's last customer."""
    number = _scenario_number(role)
    return sum(n for _, n in SCENARIOS[: number + 1])


def _wants(rng: random.Random, role: Role, now: datetime) -> tuple[str, datetime] | None:
    """The wanted scenario asked for the quilt while it was sold out."""
    if role is not Role.WANTED:
        return None
    asked = now - timedelta(hours=RESTOCKED_HOURS_AGO + rng.randint(24, 24 * 30))
    return RESTOCKED_SKU, asked


def _checkout(rng: random.Random, role: Role, index: int, now: datetime) -> CheckoutSeed | None:
    """The cart scenario left a checkout 70 minutes to 20 hours ago."""
    if role is not Role.CART:
        return None
    started = now - timedelta(minutes=70 + (index * 173) % (20 * 60 - 70))
    return CheckoutSeed(f"NG-CART-{index:05d}", started, _basket(rng))


def _orders(rng: random.Random, role: Role, index: int, now: datetime) -> tuple[OrderSeed, ...]:
    """Past orders (all delivered, none in the last 10 days) plus the scenario's recent one."""
    past: list[tuple[datetime, tuple[shop.Line, ...]]] = []
    recent: list[tuple[datetime, datetime | None, tuple[shop.Line, ...]]] = []
    if role is Role.WELCOME:
        placed = now - timedelta(minutes=12 + (index * 7) % 44)
        recent.append((placed, None, _basket(rng, avoid=DROPPED)))
    elif role is Role.THANK_YOU:
        past += _past(rng, now, rng.randint(1, 3), 10, 300)
        delivered = now - timedelta(minutes=135 + (index * 37) % 225)
        placed = delivered - timedelta(hours=rng.randint(20, 60))
        recent.append((placed, delivered, _basket(rng, avoid=DROPPED)))
    elif role is Role.PRICE_DROP:
        past += _past(rng, now, rng.randint(1, 2), 10, 300)
        placed = now - timedelta(hours=26 + index % 20, minutes=rng.randint(0, 59))
        recent.append((placed, None, _dropped_lines(index)))
    elif role is Role.REGULAR:
        past += _past(rng, now, rng.randint(3, 6), 10, 170)
        past += _past(rng, now, rng.randint(0, 3), 190, 700)
    elif role is Role.VIP:
        past += [
            (at, (shop.Line("SARI-JAM-01", 1, PRICES["SARI-JAM-01"]), *lines))
            for at, lines in _past(rng, now, 2, 10, 330)
        ]
        past += _past(rng, now, rng.randint(2, 5), 10, 330, expensive=True)
    elif role is Role.LAPSED:
        past += _past(rng, now, rng.randint(1, 4), 130, 700)
    elif role is Role.OCCASIONAL:
        past += _past(rng, now, rng.randint(1, 2), 10, 400)
    elif role is Role.LAPSING:
        past += _past(rng, now, rng.randint(0, 2), 120, 500)
        # 90 days and 2 hours to 96 days ago: due, and inside win_back's week.
        minutes = 90 * 1440 + 120 + (index * 829) % (6 * 1440 - 120)
        past.append((now - timedelta(minutes=minutes), _basket(rng)))
    elif role in (Role.BIRTHDAY, Role.WANTED, Role.CART):
        past += _past(rng, now, rng.randint(index % 2, 2), 100, 400)
    elif role is Role.REPLENISH:
        past += _past(rng, now, rng.randint(1, 2), 120, 400)
        delivered = now - timedelta(minutes=30 * 1440 + 60 + (index * 617) % (2 * 1440))
        placed = delivered - timedelta(hours=rng.randint(20, 72))
        recent.append((placed, delivered, _pantry(rng)))
    elif role is Role.HOME_BUYER:
        pati = shop.Line("PATI-01", 1, PRICES["PATI-01"])
        past += [(at, (pati, *lines)) for at, lines in _past(rng, now, 1, 100, 300)]
        past += _past(rng, now, rng.randint(0, 1), 100, 400)
    elif role is Role.NEWCOMER:
        past += _past(rng, now, rng.randint(1, 2), 12, 80, avoid=CONSUMABLES)
    elif role is Role.LADDER:
        # The 2nd, 3rd or 4th order, delivered 2 days and 2 hours to 4 days ago: due
        # (2 days after delivery) and inside the ladder's 3 days.
        past += _past(rng, now, 1 + index % 3, 20, 300)
        delivered = now - timedelta(minutes=2 * 1440 + 120 + (index * 311) % (2 * 1440 - 120))
        placed = delivered - timedelta(hours=rng.randint(20, 72))
        recent.append((placed, delivered, _basket(rng, avoid=DROPPED)))
    elif role is Role.SURVEY:
        past += _past(rng, now, rng.randint(0, 2), 60, 400)
        # Delivered 7 days and an hour to 9 days ago: due, and inside the survey's 3 days.
        delivered = now - timedelta(minutes=7 * 1440 + 60 + (index * 617) % (2 * 1440))
        placed = delivered - timedelta(hours=rng.randint(20, 72))
        recent.append((placed, delivered, _basket(rng, avoid=DROPPED)))
    elif role is Role.CLUB:
        # One order 20 to 300 days ago, a second placed a day and an hour to two days ago
        # (not delivered yet): no tier when the club began (`CLUB_AGE`), silver now.
        past += _past(rng, now, 1, 20, 300)
        placed = now - timedelta(minutes=1440 + 60 + (index * 397) % (1440 - 60))
        recent.append((placed, None, _basket(rng, avoid=DROPPED)))
    elif role is Role.REFERRER:
        past += _past(rng, now, rng.randint(1, 3), 20, 300)
    elif role is Role.FRIEND:
        # A first order carrying a referrer's code (`seed`), delivered a day and an hour to
        # three days ago: it counts for the referrer at the first planning pass. Placed
        # over a week before (a courier to a far district), past the welcome's lookback.
        delivered = now - timedelta(minutes=1440 + 60 + (index * 313) % (2 * 1440 - 60))
        placed = delivered - timedelta(days=6, hours=rng.randint(1, 20))
        recent.append((placed, delivered, _basket(rng, avoid=DROPPED)))
    elif role is Role.REFUSED:
        past += _past(rng, now, rng.randint(1, 2), 20, 300)
        refused = _refused_at(index, now)
        recent.append((refused - timedelta(hours=rng.randint(20, 60)), None, _basket(rng)))
    timeline = sorted(
        [(at, at + timedelta(hours=rng.randint(20, 120)), lines) for at, lines in past] + recent,
        key=lambda order: order[0],
    )
    return tuple(
        OrderSeed(
            f"NG-{index:05d}-{n:02d}",
            placed,
            delivered,
            lines,
            _refused_at(index, now) if role is Role.REFUSED and n == len(timeline) else None,
        )
        for n, (placed, delivered, lines) in enumerate(timeline, start=1)
    )


def _refused_at(index: int, now: datetime) -> datetime:
    """A day and two hours to three days ago: the follow-up (a day after) is due, and
    inside its 3 days."""
    return now - timedelta(minutes=1440 + 120 + (index * 263) % (2 * 1440 - 120))


def _past(
    rng: random.Random,
    now: datetime,
    count: int,
    newest: int,
    oldest: int,
    *,
    expensive: bool = False,
    avoid: frozenset[str] = frozenset(),
) -> list[tuple[datetime, tuple[shop.Line, ...]]]:
    """`count` orders placed between `newest` and `oldest` days ago."""
    return [
        (
            now - timedelta(minutes=rng.randint(newest * 1440, oldest * 1440)),
            _basket(rng, expensive=expensive, avoid=avoid),
        )
        for _ in range(count)
    ]


def _basket(
    rng: random.Random, *, avoid: set[str] | frozenset[str] = frozenset(), expensive: bool = False
) -> tuple[shop.Line, ...]:
    everyday = [p for p in PRODUCTS if p.price < 1000 and p.sku not in avoid]
    pool = [p for p in PRODUCTS if p.sku not in avoid] if expensive else everyday
    chosen = rng.sample(pool, k=rng.randint(1, 3))
    return tuple(
        shop.Line(p.sku, rng.randint(1, 3) if p.price < 1000 else 1, p.price)
        for p in sorted(chosen, key=lambda p: p.sku)
    )


def _pantry(rng: random.Random) -> tuple[shop.Line, ...]:
    """Tea, honey, oil or molasses: what runs out in about a month."""
    pantry = [p for p in PRODUCTS if p.sku in CONSUMABLES and p.sku not in DROPPED]
    chosen = rng.sample(pantry, k=rng.randint(1, 2))
    return tuple(
        shop.Line(p.sku, rng.randint(1, 3), p.price) for p in sorted(chosen, key=lambda p: p.sku)
    )


def _dropped_lines(index: int) -> tuple[shop.Line, ...]:
    honey = shop.Line("HONEY-500G", 2, PRICES["HONEY-500G"])
    oil = shop.Line("OIL-500ML", 1, PRICES["OIL-500ML"])
    gamcha = shop.Line("GAMCHA-01", 2, PRICES["GAMCHA-01"])
    return ((honey,), (oil, gamcha), (honey, oil))[index % 3]


def _survey(
    rng: random.Random, orders: tuple[OrderSeed, ...], now: datetime
) -> tuple[int, datetime] | None:
    delivered = [o.delivered_at for o in orders if o.delivered_at is not None]
    if not delivered or rng.random() >= 0.25:
        return None
    at = max(delivered) + timedelta(hours=rng.randint(6, 72))
    return rng.choice(SCORES), min(at, now)
