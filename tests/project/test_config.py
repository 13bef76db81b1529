"""The values a marketer types, and the frozen models that hold them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine.project.campaigns import Campaign, HolidayTrigger
from engine.project.config import Config, Holidays, SendWindow
from engine.project.loader import Project, Secrets, load_project
from engine.project.values import (
    parse_amount,
    parse_duration,
    parse_email,
    parse_language,
    parse_locale,
    parse_percent,
    parse_slug,
    parse_time_of_day,
    parse_timezone,
    pick_text,
)

CONFIG = {
    "shop": {"name": "Nakshi Ghor", "address": "House 12, Dhaka", "url": "https://ng.example"},
    "sending": {"from": {"name": "Nakshi Ghor", "email": "hello@ng.example"}},
}


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [
        pytest.param(parse_duration, "90s", timedelta(seconds=90), id="seconds"),
        pytest.param(parse_duration, "10m", timedelta(minutes=10), id="minutes"),
        pytest.param(parse_duration, "2h", timedelta(hours=2), id="hours"),
        pytest.param(parse_duration, "3d", timedelta(days=3), id="days"),
        pytest.param(parse_duration, "1w", timedelta(weeks=1), id="weeks"),
        pytest.param(parse_duration, " 2 h ", timedelta(hours=2), id="spaces"),
        pytest.param(parse_duration, "0m", timedelta(0), id="zero"),
        pytest.param(parse_duration, "3650d", timedelta(days=3650), id="ten-years"),
        pytest.param(parse_duration, "521w", timedelta(weeks=521), id="ten-years-in-weeks"),
        pytest.param(parse_amount, "1000000000", Decimal("1000000000"), id="largest-amount"),
        pytest.param(parse_percent, "99.99%", Decimal("99.99"), id="percent-two-decimals"),
        pytest.param(parse_language, "bn-BD", "bn_BD", id="language-normalised"),
        pytest.param(parse_language, "EN", "en", id="language-case"),
        pytest.param(parse_time_of_day, "10:00", time(10, 0), id="ten"),
        pytest.param(parse_time_of_day, "9:30", time(9, 30), id="one-digit-hour"),
        pytest.param(parse_time_of_day, "23:59", time(23, 59), id="last-minute"),
        pytest.param(parse_time_of_day, "00:00", time(0, 0), id="midnight"),
        pytest.param(parse_locale, "bn_BD", "bn_BD", id="bengali"),
        pytest.param(parse_locale, "bn-BD", "bn_BD", id="bengali-with-dash"),
        pytest.param(parse_locale, "en", "en", id="english"),
        pytest.param(parse_timezone, "Asia/Dhaka", "Asia/Dhaka", id="dhaka"),
        pytest.param(parse_timezone, "America/Toronto", "America/Toronto", id="toronto"),
        pytest.param(parse_email, " help@shop.example ", "help@shop.example", id="email"),
        pytest.param(parse_slug, "thank_you", "thank_you", id="slug"),
        pytest.param(parse_amount, 0.01, Decimal("0.01"), id="yaml-float-by-its-text"),
        pytest.param(parse_amount, "250", Decimal("250"), id="amount-text"),
        pytest.param(parse_percent, "20%", Decimal("20"), id="percent"),
        pytest.param(parse_percent, 12.5, Decimal("12.5"), id="percent-number"),
    ],
)
def test_good_values(parse: Callable[[Any], Any], value: object, expected: object) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        pytest.param(
            parse_duration, "soon", 'expected a duration like 2h or 3d, got "soon"', id="word"
        ),
        pytest.param(parse_duration, 2, "expected a duration like 2h or 3d, got 2", id="number"),
        pytest.param(parse_duration, "1.5h", 'got "1.5h"', id="fraction"),
        pytest.param(parse_duration, "-1h", 'got "-1h"', id="negative"),
        pytest.param(parse_duration, "2 hours", 'got "2 hours"', id="long-unit"),
        pytest.param(parse_duration, None, "got None", id="nothing"),
        pytest.param(
            parse_duration,
            "3651d",
            'expected a duration of at most 3650d (ten years), got "3651d"',
            id="past-ten-years",
        ),
        pytest.param(
            parse_duration,
            "100000000000d",  # was an OverflowError
            'expected a duration of at most 3650d (ten years), got "100000000000d"',
            id="overflow",
        ),
        pytest.param(parse_duration, "9" * 5000 + "s", "expected a duration like", id="digits"),
        pytest.param(
            parse_time_of_day, "24:00", 'expected a time of day like "10:00", got "24:00"', id="24h"
        ),
        pytest.param(parse_time_of_day, "10:60", 'got "10:60"', id="minute-60"),
        pytest.param(parse_time_of_day, "10am", 'got "10am"', id="am"),
        # What YAML 1.1 would have made of an unquoted 10:00.
        pytest.param(parse_time_of_day, 600, "got 600", id="sexagesimal"),
        pytest.param(
            parse_locale,
            "xx_YY",
            'expected a locale like "bn_BD" or "en", got "xx_YY"',
            id="locale",
        ),
        pytest.param(parse_locale, 7, "got 7", id="locale-number"),
        pytest.param(
            parse_timezone,
            "Asia/Dhakka",
            'expected a timezone like "Asia/Dhaka", got "Asia/Dhakka"',
            id="timezone",
        ),
        pytest.param(parse_timezone, "../../etc/passwd", "got", id="timezone-path"),
        pytest.param(parse_timezone, "", 'got ""', id="timezone-empty"),
        pytest.param(parse_email, "hello", 'expected an email address, got "hello"', id="email"),
        pytest.param(parse_email, "a@b@c.example", "expected an email address", id="two-ats"),
        pytest.param(parse_slug, "Thank-You", 'got "Thank-You"', id="slug"),
        pytest.param(parse_amount, "-1", "expected an amount of zero or more", id="negative"),
        pytest.param(parse_amount, "NaN", "expected an amount of zero or more", id="nan"),
        pytest.param(
            parse_amount, "lots", 'expected an amount like 0.01 or 250, got "lots"', id="word"
        ),
        pytest.param(
            parse_amount,
            "1e999999999",
            'expected an amount of at most 1,000,000,000, got "1e999999999"',
            id="huge",
        ),
        pytest.param(
            parse_amount, 0.001, "expected an amount with at most two decimals", id="paisa"
        ),
        pytest.param(parse_percent, "100%", "between 0% and 100%", id="hundred"),
        pytest.param(parse_percent, "1e-300", "at most two decimals", id="tiny"),
        pytest.param(
            parse_language, "qn", "unknown language 'qn' (did you mean 'en' or 'bn'?)", id="qn"
        ),
        pytest.param(parse_language, 7, "unknown language 7", id="language-number"),
        pytest.param(parse_percent, "0%", "between 0% and 100%", id="zero"),
        pytest.param(
            parse_percent, "half", 'expected a discount like "20%", got "half"', id="word"
        ),
    ],
)
def test_bad_values_say_what_was_expected(
    parse: Callable[[Any], Any], value: object, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        parse(value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        pytest.param({"en": "Hi", "bn_BD": "বাংলা"}, "bn_BD", "বাংলা", id="exact"),
        pytest.param({"en": "Hi", "bn": "বাংলা"}, "bn_BD", "বাংলা", id="language"),
        pytest.param({"en": "Hi", "bn_BD": "বাংলা"}, "bn_IN", "Hi", id="no-country-fallback"),
        pytest.param({"en": "Hi", "bn": "বাংলা"}, "fr", "Hi", id="english-fallback"),
        pytest.param({"de": "Hallo"}, "bn_BD", "Hallo", id="any-fallback"),
        pytest.param("One for all", "bn_BD", "One for all", id="plain-text"),
    ],
)
def test_text_is_picked_by_locale(text: Any, locale: str, expected: str) -> None:
    assert pick_text(text, locale) == expected


def test_config_defaults_and_aliases() -> None:
    config = Config.model_validate(CONFIG)
    assert config.sending.sender.email == "hello@ng.example"  # written as `from`
    assert config.sending.window.start == time(9, 0)
    assert config.shop.timezone == "Asia/Dhaka"
    assert config.database == "sqlite:///lifecycle.db"
    with pytest.raises(ValidationError):
        config.tick_seconds = 5  # frozen: validated once, at load


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        pytest.param({"shopp": {}}, ("shopp",), id="unknown-top-key"),
        pytest.param(
            {"shop": {**CONFIG["shop"], "currency": "taka"}}, ("shop", "currency"), id="currency"
        ),
        pytest.param({"shop": {**CONFIG["shop"], "url": "ng.example"}}, ("shop", "url"), id="url"),
        pytest.param({"tick_seconds": 0}, ("tick_seconds",), id="tick-zero"),
        pytest.param(
            {"holidays": {"country": "Bangladesh"}}, ("holidays", "country"), id="country"
        ),
    ],
)
def test_config_rejects(change: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({**CONFIG, **change})
    assert [e["loc"][: len(loc)] for e in caught.value.errors()] == [loc]


def test_friendly_messages_for_codes_and_addresses() -> None:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(
            {**CONFIG, "shop": {**CONFIG["shop"], "currency": "taka", "url": "ng.example"}}
        )
    messages = sorted(e["msg"] for e in caught.value.errors())
    assert messages == [
        'Value error, expected a three-letter currency code like BDT, got "taka"',
        'Value error, expected a web address like https://shop.example, got "ng.example"',
    ]


def test_an_empty_send_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="an empty window sends nothing"):
        SendWindow.model_validate({"start": "10:00", "end": "10:00"})
    # A window across midnight is allowed.
    assert SendWindow.model_validate({"start": "20:00", "end": "02:00"}).end == time(2, 0)


def test_a_single_confirmed_date_is_a_list() -> None:
    holidays = Holidays.model_validate({"confirmed": {"eid_ul_fitr": "2027-03-10"}})
    assert [d.isoformat() for d in holidays.confirmed["eid_ul_fitr"]] == ["2027-03-10"]


def test_a_campaign_trigger_is_chosen_by_its_type() -> None:
    campaign = Campaign.model_validate(
        {
            "name": "holiday_preannounce",
            "trigger": {"type": "holiday", "holidays": ["eid_ul_fitr"], "days_before": 3},
            "template": "holiday_preannounce",
            "subject": {"en": "Soon", "bn": "শীঘ্রই"},
            "offers": [{"sku": "TEA-500G", "discount": "10%"}],
        }
    )
    assert isinstance(campaign.trigger, HolidayTrigger)
    assert campaign.trigger.at == time(10, 0)
    assert campaign.segment == "everyone"
    assert campaign.offers[0].discount == Decimal("10")


def _campaign(subject: Any) -> dict[str, Any]:
    return {"name": "w", "trigger": {"type": "first_order"}, "template": "w", "subject": subject}


def test_text_keys_are_normalised_languages() -> None:
    campaign = Campaign.model_validate(_campaign({"EN": "Hi", "bn-BD": "হাই"}))
    assert campaign.subject == {"en": "Hi", "bn_BD": "হাই"}
    assert pick_text(campaign.subject, "bn_BD") == "হাই"


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        pytest.param({}, "expected text or a mapping of language to text, got an empty mapping",
                     id="empty"),  # pick_text had nothing to pick: a StopIteration at send time
        pytest.param({"en": "Hi", "qn": "Hi"}, "unknown language 'qn'", id="typo"),
    ],
)  # fmt: skip
def test_bad_localized_text_is_refused(subject: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Campaign.model_validate(_campaign(subject))


# ---------------------------------------------------------------- secrets and the database URL


def test_secrets_come_from_the_environment_only() -> None:
    secrets = Secrets.from_env(
        {
            "LIFECYCLE_SMTP_PASSWORD": "smtp-pw",
            "LIFECYCLE_SECRET": "s" * 32,
            "LIFECYCLE_API_KEY": "",  # set but empty: absent
            "LIFECYCLE_DATABASE_URL": "postgresql://shop@db/lifecycle",
        }
    )
    assert secrets.smtp_password == "smtp-pw"
    assert secrets.secret == "s" * 32
    assert secrets.api_key is None
    assert secrets.database_url == "postgresql://shop@db/lifecycle"
    assert Secrets.from_env({}) == Secrets()


def test_secrets_are_not_config_keys(project_dir: Path) -> None:
    config = project_dir / "config.yaml"
    config.write_text(
        config.read_text().replace("tick_seconds: 60", "tick_seconds: 60\nsmtp_password: hunter2")
    )
    with pytest.raises(ValueError, match=r"config.yaml:\d+: smtp_password: unknown key"):
        load_project(config)


@pytest.fixture
def shipped(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.mark.parametrize(
    ("written", "environment", "expected"),
    [
        pytest.param(
            "sqlite:///lifecycle.db", None, "sqlite:///{root}/lifecycle.db", id="relative"
        ),
        pytest.param(
            "sqlite:///data/shop.db", None, "sqlite:///{root}/data/shop.db", id="subfolder"
        ),
        pytest.param(
            "sqlite:////var/lib/shop.db", None, "sqlite:////var/lib/shop.db", id="absolute"
        ),
        pytest.param("sqlite:///:memory:", None, "sqlite:///:memory:", id="memory"),
        pytest.param(
            "sqlite:///lifecycle.db",
            "postgresql://shop@db/lifecycle",
            "postgresql://shop@db/lifecycle",
            id="environment-wins",
        ),
        pytest.param(
            "sqlite:///lifecycle.db",
            "sqlite:///other.db",
            "sqlite:///{root}/other.db",
            id="environment-relative-too",
        ),
    ],
)
def test_the_database_url(
    project_dir: Path, written: str, environment: str | None, expected: str
) -> None:
    config = project_dir / "config.yaml"
    config.write_text(
        config.read_text().replace("database: sqlite:///lifecycle.db", f'database: "{written}"')
    )
    project = load_project(config)
    secrets = Secrets(database_url=environment)
    assert project.database_url(secrets) == expected.format(root=project_dir.resolve())


def test_the_database_url_reads_the_environment_by_default(
    shipped: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", "postgresql://shop@db/x")
    assert shipped.database_url() == "postgresql://shop@db/x"
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL")
    assert shipped.database_url() == f"sqlite:///{shipped.root / 'lifecycle.db'}"


@pytest.mark.parametrize(
    ("bounces", "sending", "message"),
    [
        ({"maildir": "bounces"}, {}, "needs sending.bounce_address"),
        ({"listen": {"port": 2525}}, {}, "needs sending.bounce_address"),
        (
            {"maildir": "b", "imap": {"host": "h", "username": "u"}},
            {"bounce_address": "b@x.example"},
            "either maildir or imap",
        ),
        ({"processed_folder": "Same", "unmatched_folder": "Same"}, {}, "must differ"),
        ({"soft_limit": 0}, {}, "soft_limit"),
        ({"every": "10s"}, {}, "every"),
    ],
)
def test_bounce_settings_that_cannot_work_are_refused(
    bounces: dict[str, Any], sending: dict[str, Any], message: str
) -> None:
    config = {**CONFIG, "sending": {**CONFIG["sending"], **sending}, "bounces": bounces}
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(config)
    assert message in str(caught.value)


def test_a_bounce_mailbox_with_its_address_is_accepted() -> None:
    config = {
        **CONFIG,
        "sending": {**CONFIG["sending"], "bounce_address": "bounce@bounces.ng.example"},
        "bounces": {
            "imap": {"host": "mail.ng.example", "username": "bounce"},
            "listen": {"port": 2525},
        },
    }
    parsed = Config.model_validate(config)
    assert parsed.bounces.imap is not None and parsed.bounces.imap.port == 993
    assert parsed.bounces.soft_limit == 3 and parsed.bounces.soft_window == timedelta(days=30)
