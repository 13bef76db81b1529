"""The demo shop's fixed facts: its products and price drops, its customers' cities and names.

Nothing here changes with time or chance: `engine.demo.customers` draws the demo's
customers from these tables with a seeded `random.Random`, and `engine.demo.seed`
writes the catalogue and the price drops to the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal
from enum import StrEnum

SHOP_TIMEZONE = "Asia/Dhaka"

CITIES: dict[str, str] = {
    "Dhaka": "Asia/Dhaka",
    "Chattogram": "Asia/Dhaka",
    "Sylhet": "Asia/Dhaka",
    "Rajshahi": "Asia/Dhaka",
    "Khulna": "Asia/Dhaka",
    "London": "Europe/London",
    "New York": "America/New_York",
    "Dubai": "Asia/Dubai",
    "Toronto": "America/Toronto",
    "Sydney": "Australia/Sydney",
    "Kuala Lumpur": "Asia/Kuala_Lumpur",
    "Los Angeles": "America/Los_Angeles",
}
HOME_CITIES = (
    "Dhaka",
    "Dhaka",
    "Dhaka",
    "Chattogram",
    "Chattogram",
    "Sylhet",
    "Rajshahi",
    "Khulna",
)
DIASPORA_CITIES = (
    "London",
    "London",
    "New York",
    "Dubai",
    "Dubai",
    "Kuala Lumpur",
    "Toronto",
    "Sydney",
    "Los Angeles",
)
# A scenario's customers take these cities in turn, one each. Between them at
# least two clocks read 09:00–20:00 at any moment of the year (three or four most
# of the day), so every campaign has someone to send to now, whatever the hour.
SPREAD = ("Dhaka", "Sydney", "London", "New York", "Kuala Lumpur", "Los Angeles", "Dubai")


@dataclass(frozen=True)
class ProductSeed:
    sku: str
    name: str
    name_bn: str
    category: str
    price: Decimal
    stock: int


def _product(
    sku: str, name: str, name_bn: str, category: str, price: str, stock: int
) -> ProductSeed:
    return ProductSeed(sku, name, name_bn, category, Decimal(price), stock)


PRODUCTS = (
    _product("JUTE-BAG-01", "Jute tote bag", "পাটের টোট ব্যাগ", "bags", "450.00", 120),
    _product("JUTE-BAG-02", "Large jute shopping bag", "বড় পাটের বাজারের ব্যাগ", "bags", "650.00", 80),
    _product("TEA-500G", "Sylhet black tea, 500 g", "সিলেটের কালো চা, ৫০০ গ্রাম", "tea", "380.00", 200),
    _product(
        "TEA-GREEN-250G",
        "Srimangal green tea, 250 g",
        "শ্রীমঙ্গলের সবুজ চা, ২৫০ গ্রাম",
        "tea",
        "320.00",
        150,
    ),
    _product("SARI-JAM-01", "Dhakai Jamdani sari", "ঢাকাই জামদানি শাড়ি", "saris", "12500.00", 8),
    _product("SARI-TANT-01", "Tangail tant sari", "টাঙ্গাইলের তাঁতের শাড়ি", "saris", "3200.00", 25),
    _product("KANTHA-01", "Nakshi kantha quilt", "নকশি কাঁথা", "kantha", "6800.00", 10),
    _product("GAMCHA-01", "Handloom cotton gamcha", "তাঁতের সুতি গামছা", "textiles", "180.00", 300),
    _product("POT-SET-01", "Terracotta pottery set", "পোড়ামাটির বাসনের সেট", "pottery", "950.00", 40),
    _product("HONEY-500G", "Sundarbans honey, 500 g", "সুন্দরবনের মধু, ৫০০ গ্রাম", "food", "350.00", 90),
    _product("OIL-500ML", "Mustard oil, 500 ml", "সরিষার তেল, ৫০০ মিলি", "food", "120.00", 160),
    _product("GUR-1KG", "Date palm molasses, 1 kg", "খেজুরের গুড়, ১ কেজি", "food", "480.00", 60),
    _product("PATI-01", "Shital pati mat", "শীতল পাটি", "home", "1500.00", 15),
)
PRICES = {p.sku: p.price for p in PRODUCTS}


@dataclass(frozen=True)
class PriceDrop:
    """A product that got cheaper `hours_ago` hours before now."""

    sku: str
    before: Decimal
    after: Decimal
    hours_ago: int


# 350 → 336 is the 14-taka story; 120.00 → 119.86 shows a refund of 14 paisa is kept.
PRICE_DROPS = (
    PriceDrop("HONEY-500G", Decimal("350.00"), Decimal("336.00"), hours_ago=20),
    PriceDrop("OIL-500ML", Decimal("120.00"), Decimal("119.86"), hours_ago=14),
)
DROPPED = {d.sku for d in PRICE_DROPS}
# What a household runs out of (the replenish campaign's categories).
CONSUMABLES = frozenset(p.sku for p in PRODUCTS if p.category in ("tea", "food"))

# The quilt that sold out and came back `RESTOCKED_HOURS_AGO` hours ago, asked for meanwhile.
RESTOCKED_SKU = "KANTHA-01"
RESTOCKED_HOURS_AGO = 6
SOLD_OUT_DAYS = 40
# A product the shop added `NEW_PRODUCT_HOURS_AGO` hours ago, in a category its customers buy.
NEW_PRODUCT = ProductSeed(
    "HOGLA-BASKET-01",
    "Hogla leaf storage basket",
    "হোগলা পাতার ঝুড়ি",
    "home",
    Decimal("850.00"),
    30,
)
NEW_PRODUCT_HOURS_AGO = 5
# The birthdays are due at 10:00 on the customer's clock (the birthday campaign's `at`).
BIRTHDAY_AT = time(10, 0)
# The catalogue's first prices date from before the oldest order.
CATALOGUE_AGE = timedelta(days=800)


class Role(StrEnum):
    WELCOME = "welcome"  # first order in the last hour
    THANK_YOU = "thank_you"  # an order delivered a few hours ago
    PRICE_DROP = "price_drop"  # an undelivered order, then the price fell
    REGULAR = "regular"  # 3+ orders in the last 180 days
    VIP = "vip"  # 20,000 taka or more in the last year
    LAPSED = "lapsed"  # nothing in the last 120 days
    LAPSING = "lapsing"  # last order 90 to 96 days ago (win_back)
    BIRTHDAY = "birthday"  # birthday today, or yesterday before 10:00 on their clock
    REPLENISH = "replenish"  # tea or food delivered 30 to 32 days ago
    WANTED = "wanted"  # asked to hear when the sold-out quilt is back (back_in_stock)
    HOME_BUYER = "home_buyer"  # bought a shital pati; a new home product just came in
    NEWCOMER = "newcomer"  # first order 12 to 80 days ago (fortnightly_update)
    CART = "cart"  # left a checkout 1 to 20 hours ago (abandoned_checkout)
    LADDER = "ladder"  # a 2nd to 4th order delivered 2 to 4 days ago (loyalty_ladder)
    SURVEY = "survey"  # an order delivered 7 to 9 days ago (survey_after_delivery)
    CLUB = "club"  # a 2nd order in a year placed 1 to 2 days ago: silver since (tier_changed)
    REFERRER = "referrer"  # a friend's first order with their code was delivered (referral_reward)
    FRIEND = "friend"  # a first order carrying a referrer's code, delivered 1 to 3 days ago
    REFUSED = "refused"  # refused a cash on delivery parcel at the door 1 to 3 days ago
    OCCASIONAL = "occasional"  # one or two orders
    BROWSER = "browser"  # signed up, never ordered


# The first customers play these parts, in this order, each spread over SPREAD.
SCENARIOS = (
    (Role.WELCOME, 7),
    (Role.THANK_YOU, 7),
    (Role.PRICE_DROP, 7),
    (Role.REGULAR, 7),
    (Role.VIP, 4),
    (Role.LAPSED, 4),
    (Role.LAPSING, 7),
    # The eighth was born on 29 February: greeted on 28 February in other years.
    (Role.BIRTHDAY, 8),
    (Role.REPLENISH, 7),
    (Role.WANTED, 7),
    (Role.HOME_BUYER, 7),
    (Role.NEWCOMER, 7),
    (Role.CART, 7),
    (Role.LADDER, 7),
    (Role.SURVEY, 7),
    (Role.CLUB, 7),
    (Role.REFERRER, 7),
    (Role.FRIEND, 7),
    (Role.REFUSED, 7),
)
MIN_CUSTOMERS = sum(n for _, n in SCENARIOS)
# Everyone after them gets a role by chance.
POPULATION = (
    (Role.OCCASIONAL, 35),
    (Role.REGULAR, 22),
    (Role.LAPSED, 20),
    (Role.BROWSER, 17),
    (Role.VIP, 6),
)

FEMALE = "female"
MALE = "male"
# (Bengali, Latin) given names and the family names that go with them.
GIVEN = {
    FEMALE: (
        ("ফারজানা", "Farzana"),
        ("নুসরাত", "Nusrat"),
        ("তাসলিমা", "Taslima"),
        ("সাবরিনা", "Sabrina"),
        ("রুমানা", "Rumana"),
        ("শারমিন", "Sharmin"),
        ("আয়েশা", "Ayesha"),
        ("সুমাইয়া", "Sumaiya"),
        ("তানিয়া", "Tania"),
        ("মিতু", "Mitu"),
    ),
    MALE: (
        ("রহিম", "Rahim"),
        ("তানভীর", "Tanvir"),
        ("করিম", "Karim"),
        ("আরিফ", "Arif"),
        ("সাকিব", "Sakib"),
        ("মাহমুদ", "Mahmud"),
        ("ইমরান", "Imran"),
        ("রাকিব", "Rakib"),
        ("জাহিদ", "Zahid"),
        ("সুমন", "Sumon"),
    ),
}
FAMILY = {
    FEMALE: (
        ("আক্তার", "Akter"),
        ("জাহান", "Jahan"),
        ("খাতুন", "Khatun"),
        ("বেগম", "Begum"),
        ("ইসলাম", "Islam"),
        ("রহমান", "Rahman"),
        ("চৌধুরী", "Chowdhury"),
    ),
    MALE: (
        ("উদ্দিন", "Uddin"),
        ("হাসান", "Hasan"),
        ("ইসলাম", "Islam"),
        ("রহমান", "Rahman"),
        ("চৌধুরী", "Chowdhury"),
        ("হোসেন", "Hossain"),
        ("আহমেদ", "Ahmed"),
    ),
}
# The first customers, as the shop's owner would name them in a demo.
FEATURED = (
    ("রহিম উদ্দিন", "Rahim Uddin", "bn_BD"),
    ("Farzana Akter", "Farzana Akter", "en"),
    ("Tanvir Hasan", "Tanvir Hasan", "en"),
    ("নুসরাত জাহান", "Nusrat Jahan", "bn_BD"),
)
TAGS = ("facebook", "instagram", "referral", "gift-buyer", "wholesale", "kantha-lover", "tea-club")
DOMAINS = ("example.com", "example.net", "example.org")
# Survey scores lean happy, as a small shop's regulars do.
SCORES = (0, 2, 4, 5, 6, 6, 7, 7, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 10)
