"""Loading a shop's project: every bad input is one line with file, line, key and what was expected."""

from __future__ import annotations

import shutil
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError
from engine.project.campaigns import HolidayTrigger
from engine.project.loader import ENV_CONFIG, config_path, load_partial, load_project

# A campaign file whose lines the expectations below count on.
WELCOME = """\
name: welcome
description: Greet a customer right after their first order
# A welcome three weeks late is worse than none.
trigger:
  type: first_order
  expires_after: 3d
  delay: 10m
segment: everyone
template: welcome
subject: "Welcome to {{ shop.name }}, {{ customer.first_name }}"
"""


def problems(project_dir: Path) -> list[str]:
    _, found = load_partial(project_dir / "config.yaml")
    return [str(p) for p in found]


def edit(project_dir: Path, file: str, old: str, new: str) -> int:
    """Replace `old` by `new` in `file` (exactly once); return the line `new` starts on."""
    path = project_dir / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@pytest.fixture
def shop(project_dir: Path) -> Path:
    (project_dir / "campaigns" / "welcome.yaml").write_text(WELCOME, encoding="utf-8")
    assert problems(project_dir) == []
    return project_dir


# ---------------------------------------------------------------- one file, one line


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "delay: 10m",
            "delay: soon",
            'campaigns/welcome.yaml:7: trigger.delay: expected a duration like 2h or 3d, got "soon"',
            id="bad-duration",
        ),
        pytest.param(
            "delay: 10m",
            "delay: 10",
            "campaigns/welcome.yaml:7: trigger.delay: expected a duration like 2h or 3d, got 10",
            id="duration-without-unit",
        ),
        pytest.param(
            "delay: 10m",
            "delya: 10m",
            "campaigns/welcome.yaml:7: trigger.delya: unknown key (did you mean 'delay'?)",
            id="misspelled-key",
        ),
        pytest.param(
            "template: welcome",
            "templat: welcome",
            # One line: the hint, not also "template: required key is missing".
            "campaigns/welcome.yaml:9: templat: unknown key (did you mean 'template'?)",
            id="misspelled-required-key",
        ),
        pytest.param(
            "segment: everyone",
            "segment: everyone\ncolour: blue",
            "campaigns/welcome.yaml:9: colour: unknown key (expected one of: coupon, description, exit, kind, ",
            id="unknown-key",
        ),
        pytest.param(
            "type: first_order",
            "type: first_ordr",
            "campaigns/welcome.yaml:5: trigger.type: expected one of 'first_order', "
            "'order_placed', 'order_delivered', 'order_shipped', 'order_returned', 'price_drop', "
            "'holiday', 'inactive', 'date', "
            "'nth_order', 'after_purchase', 'product_added', 'back_in_stock', 'schedule', "
            "'broadcast', 'checkout_abandoned', 'credit_unused', 'tier_changed', 'referral_reward', "
            'got "first_ordr" '
            "(did you mean 'first_order'?)",
            id="unknown-trigger",
        ),
        pytest.param(
            "  type: first_order\n",
            "",
            "campaigns/welcome.yaml:4: trigger: required key 'type' is missing",
            id="trigger-without-type",
        ),
        pytest.param(
            "template: welcome\n",
            "",
            "campaigns/welcome.yaml:1: template: required key is missing (a campaign without steps",
            id="missing-key",
        ),
        pytest.param(
            'subject: "Welcome to {{ shop.name }}, {{ customer.first_name }}"',
            "subject: [Welcome, Hello]",
            "campaigns/welcome.yaml:10: subject: expected text or a mapping, got a list",
            id="wrong-type-union",
        ),
        pytest.param(
            "segment: everyone",
            "segment: everyone\nresend_in_doubt: maybe",
            'campaigns/welcome.yaml:9: resend_in_doubt: expected true or false, got "maybe"',
            id="wrong-type-bool",
        ),
        pytest.param(
            "segment: everyone",
            "segment: everyone\nkind: promo",
            "campaigns/welcome.yaml:9: kind: expected 'marketing' or 'transactional', got \"promo\"",
            id="wrong-enum",
        ),
        pytest.param(
            "name: welcome",
            "name: Welcome!",
            "campaigns/welcome.yaml:1: name: expected a name of lowercase letters, digits and _ "
            '(like thank_you), got "Welcome!"',
            id="bad-name",
        ),
        pytest.param(
            "name: welcome",
            "name: hello",
            "campaigns/welcome.yaml:1: name: name 'hello' must match the file name 'welcome'",
            id="name-not-file-name",
        ),
        pytest.param(
            "trigger:\n  type: first_order\n  expires_after: 3d\n  delay: 10m\n",
            "trigger: first_order\n",
            'campaigns/welcome.yaml:4: trigger: expected a mapping, got "first_order"',
            id="scalar-for-mapping",
        ),
        pytest.param(
            "segment: everyone",
            "segment: everyon",
            "campaigns/welcome.yaml:8: segment: no segment named 'everyon' in segments/ "
            "(did you mean 'everyone'?)",
            id="missing-segment",
        ),
        pytest.param(
            "delay: 10m",
            "delay: 10m\n  delay: 20m",
            "campaigns/welcome.yaml:8: trigger.delay: duplicate key",
            id="duplicate-yaml-key",
        ),
        pytest.param(
            "segment: everyone",
            "segment: !!python/object/apply:os.system ['true']",
            "campaigns/welcome.yaml:8: invalid YAML: 'tag:yaml.org,2002:python/object/apply:os.system': "
            "only plain YAML data is allowed",
            id="python-tag",
        ),
        pytest.param(
            "template: welcome",
            "template: welcome\n  oops: [",
            "campaigns/welcome.yaml:10: invalid YAML: mapping values are not allowed",
            id="malformed-yaml",
        ),
    ],
)
def test_a_bad_campaign_is_one_line(shop: Path, old: str, new: str, expected: str) -> None:
    edit(shop, "campaigns/welcome.yaml", old, new)
    found = problems(shop)
    assert len(found) == 1, found
    assert found[0].startswith(expected)
    with pytest.raises(ConfigError) as caught:
        load_project(shop / "config.yaml")
    assert [str(p) for p in caught.value.problems] == found


def test_a_missing_template_names_both_files(shop: Path) -> None:
    edit(shop, "campaigns/welcome.yaml", "template: welcome", "template: welcom")
    assert problems(shop) == [
        "campaigns/welcome.yaml:9: template: template file templates/emails/welcom.html not found (did you mean 'welcome'?)",
        "campaigns/welcome.yaml:9: template: template file templates/emails/welcom.txt not found",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "timezone: Asia/Dhaka",
            "timezone: Asia/Dhakka",
            'config.yaml:{line}: shop.timezone: expected a timezone like "Asia/Dhaka", got "Asia/Dhakka"',
            id="timezone",
        ),
        pytest.param(
            "locale: bn_BD",
            "locale: xx_YY",
            'config.yaml:{line}: shop.locale: expected a locale like "bn_BD" or "en", got "xx_YY"',
            id="locale",
        ),
        pytest.param(
            "tick_seconds: 60",
            "tick_second: 60",
            "config.yaml:{line}: tick_second: unknown key (did you mean 'tick_seconds'?)",
            id="misspelled-key",
        ),
        pytest.param(
            "port: 8025",
            "prot: 8025",
            "config.yaml:{line}: sending.smtp.prot: unknown key (did you mean 'port'?)",
            id="misspelled-nested-key",
        ),
        pytest.param(
            "tick_seconds: 60",
            "tick_seconds: soon",
            'config.yaml:{line}: tick_seconds: expected a whole number from 1 to 3600, got "soon"',
            id="wrong-type",
        ),
        pytest.param(
            "port: 8025",
            "port: [8025]",
            "config.yaml:{line}: sending.smtp.port: expected a whole number from 1 to 65535, "
            "got [8025]",
            id="list-for-number",
        ),
        pytest.param(
            "port: 8025",
            "port: 70000",
            "config.yaml:{line}: sending.smtp.port: expected a whole number from 1 to 65535, "
            "got 70000",
            id="out-of-range",
        ),
        pytest.param(
            "per: 7d",
            "per: weekly",
            'config.yaml:{line}: sending.frequency_cap.per: expected a duration like 2h or 3d, got "weekly"',
            id="bad-duration",
        ),
        pytest.param(
            'window: {start: "09:00", end: "20:00"}',
            'window: {start: "9am", end: "20:00"}',
            'config.yaml:{line}: sending.window.start: expected a time of day like "10:00", got "9am"',
            id="bad-time",
        ),
        pytest.param(
            "email: hello@nakshighor.example",
            "email: hello",
            'config.yaml:{line}: sending.from.email: expected an email address, got "hello"',
            id="bad-email",
        ),
        pytest.param(
            "currency: BDT",
            "currency: taka",
            'config.yaml:{line}: shop.currency: expected a three-letter currency code like BDT, got "taka"',
            id="bad-currency",
        ),
        pytest.param(
            "tick_seconds: 60",
            "tick_seconds: 60\ntick_seconds: 30",
            "config.yaml:{next}: tick_seconds: duplicate key",
            id="duplicate-yaml-key",
        ),
        pytest.param(
            "confirmed: {}",
            "confirmed: {eid_ul_fitr: 2027-13-10}",
            "config.yaml:{line}: invalid YAML: '2027-13-10' is not a valid date: month must be in 1..12",
            id="impossible-date",
        ),
        pytest.param(
            "  - thank_you\n",
            "  - thank_yuo\n",
            "config.yaml:{line}: campaigns[1]: no campaign named 'thank_yuo' (did you mean 'thank_you'?)",
            id="campaign-that-does-not-exist",
        ),
    ],
)
def test_a_bad_config_is_one_line(shop: Path, old: str, new: str, expected: str) -> None:
    line = edit(shop, "config.yaml", old, new)
    assert problems(shop) == [expected.format(line=line, next=line + 1)]


def test_a_time_of_day_unquoted_stays_a_time(shop: Path) -> None:
    """YAML 1.1 reads 10:00 as 600; here it stays ten o'clock."""
    edit(shop, "campaigns/holiday_preannounce.yaml", 'at: "10:00"', "at: 10:00")
    edit(
        shop,
        "config.yaml",
        'window: {start: "09:00", end: "20:00"}',
        "window: {start: 09:00, end: 20:00}",
    )
    project = load_project(shop / "config.yaml")
    trigger = project.campaigns["holiday_preannounce"].trigger
    assert isinstance(trigger, HolidayTrigger)
    assert trigger.at == time(10, 0)
    assert project.config.sending.window.start == time(9, 0)
    assert project.campaigns["welcome"].trigger.delay == timedelta(minutes=10)


# ---------------------------------------------------------------- across files


def test_a_duplicate_campaign_name(shop: Path) -> None:
    (shop / "campaigns" / "welcome_again.yaml").write_text(WELCOME, encoding="utf-8")
    assert problems(shop) == [
        "campaigns/welcome_again.yaml:1: name: duplicate name 'welcome': also in campaigns/welcome.yaml"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("- a\n- b\n", "expected a mapping of keys to values at the top", id="list"),
        pytest.param("", "expected a mapping of keys to values at the top", id="empty"),
    ],
)
def test_a_file_that_is_not_a_mapping(shop: Path, text: str, expected: str) -> None:
    (shop / "segments" / "odd.yaml").write_text(text, encoding="utf-8")
    assert problems(shop) == [f"segments/odd.yaml:1: {expected}"]


def test_a_broken_segment_is_reported_once(shop: Path) -> None:
    """The campaign naming it gets no second 'no segment named' line."""
    (shop / "segments" / "everyone.yaml").write_text("name: everyone\n  x: [\n", encoding="utf-8")
    (problem,) = problems(shop)
    assert problem.startswith(
        "segments/everyone.yaml:2: invalid YAML: mapping values are not allowed"
    )


def test_a_broken_enabled_campaign_is_reported_once(shop: Path) -> None:
    edit(shop, "campaigns/welcome.yaml", "delay: 10m", "delay: soon")
    found = problems(shop)
    assert len(found) == 1
    assert not any("no campaign named" in p for p in found)


def test_every_problem_in_every_file_at_once(shop: Path) -> None:
    edit(shop, "campaigns/welcome.yaml", "delay: 10m", "delay: soon")
    edit(shop, "campaigns/thank_you.yaml", "segment: everyone", "segment: everyon")
    edit(shop, "campaigns/holiday_preannounce.yaml", "days_before: 3", "days_befor: 3")
    (shop / "segments" / "broken.yaml").write_text("name: [\n", encoding="utf-8")
    config_line = edit(shop, "config.yaml", "timezone: Asia/Dhaka", "timezone: Mars/Base")
    with pytest.raises(ConfigError) as caught:
        load_project(shop / "config.yaml")
    found = [str(p) for p in caught.value.problems]
    # config.yaml is invalid, yet the campaigns and their references are still checked.
    assert found[0] == (
        f'config.yaml:{config_line}: shop.timezone: expected a timezone like "Asia/Dhaka", '
        'got "Mars/Base"'
    )
    assert [p.split(":")[0] for p in found] == [
        "config.yaml",
        "campaigns/holiday_preannounce.yaml",
        "campaigns/welcome.yaml",
        "segments/broken.yaml",
        "campaigns/thank_you.yaml",
    ]
    assert str(caught.value).splitlines() == found


def test_a_missing_config_file_and_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path / "config.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "config.yaml: file not found",
        "campaigns: folder not found",
        "segments: folder not found",
    ]


# ---------------------------------------------------------------- where files are found


def test_folders_are_relative_to_the_config_file(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    project = load_project(shop / "config.yaml")
    assert project.root == shop.resolve()
    assert project.templates_dir == shop.resolve() / "templates" / "emails"
    assert set(project.campaigns) == {p.stem for p in (shop / "campaigns").glob("*.yaml")}
    assert {"welcome", "thank_you", "holiday_preannounce", "price_drop_refund"} <= set(
        project.campaigns
    )
    assert project.campaign_files["welcome"] == "campaigns/welcome.yaml"
    assert [c.name for c in project.enabled_campaigns] == project.config.campaigns


def test_folders_can_be_renamed_in_config(shop: Path) -> None:
    shutil.move(shop / "campaigns", shop / "emails")
    shutil.move(shop / "templates", shop / "layouts")
    edit(
        shop,
        "config.yaml",
        "tick_seconds: 60",
        "tick_seconds: 60\npaths: {campaigns: emails, templates: layouts/emails}",
    )
    project = load_project(shop / "config.yaml")
    assert project.campaign_files["welcome"] == "emails/welcome.yaml"
    assert project.templates_dir == shop.resolve() / "layouts" / "emails"


@pytest.mark.parametrize(
    ("explicit", "environment", "expected"),
    [
        pytest.param("shop/config.yaml", "other.yaml", "shop/config.yaml", id="option-wins"),
        pytest.param(None, "other.yaml", "other.yaml", id="environment"),
        pytest.param(None, None, "config.yaml", id="default"),
        pytest.param(None, "", "config.yaml", id="empty-environment"),
    ],
)
def test_which_config_file(
    monkeypatch: pytest.MonkeyPatch, explicit: str | None, environment: str | None, expected: str
) -> None:
    if environment is None:
        monkeypatch.delenv(ENV_CONFIG, raising=False)
    else:
        monkeypatch.setenv(ENV_CONFIG, environment)
    assert config_path(explicit) == Path(expected)


def test_the_environment_picks_the_project(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CONFIG, str(shop / "config.yaml"))
    monkeypatch.chdir(shop.parent)
    assert load_project().root == shop.resolve()


def test_where_a_key_was_written(shop: Path) -> None:
    project = load_project(shop / "config.yaml")
    assert project.where("campaigns/welcome.yaml", ("trigger", "delay")) == 7
    assert project.where("campaigns/welcome.yaml", ("trigger", "at")) == 4
    assert project.where("nowhere.yaml", ("name",)) is None


# ---------------------------------------------------------------- every number has a range

CFG, WEL, HOL, THX = (
    "config.yaml",
    "campaigns/welcome.yaml",
    "campaigns/holiday_preannounce.yaml",
    "campaigns/thank_you.yaml",
)
SENDING = "  connections: 4\n"


def _setting(key: str, value: str) -> tuple[str, str, str]:
    """An edit adding `sending.<key>: <value>` on the line after `connections` ({next})."""
    return CFG, SENDING, f"{SENDING}  {key}: {value}\n"


def _inside(file: str, old: str, new: str, id: str) -> Any:
    return pytest.param(file, old, new, None, id=f"{id}-inside")


def _outside(file: str, old: str, new: str, message: str, id: str) -> Any:
    return pytest.param(file, old, new, message, id=f"{id}-outside")


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        _inside(CFG, "tick_seconds: 60", "tick_seconds: 3600", "tick"),
        _outside(CFG, "tick_seconds: 60", "tick_seconds: 3601",
                 "tick_seconds: expected a whole number from 1 to 3600, got 3601", "tick"),
        _outside(CFG, "tick_seconds: 60", "tick_seconds: true",
                 "tick_seconds: expected a whole number from 1 to 3600, got True", "tick-bool"),
        _inside(CFG, "rate_per_second: 50", "rate_per_second: 0.01", "rate-low"),
        _outside(CFG, "rate_per_second: 50", "rate_per_second: 0.009",
                 "sending.rate_per_second: expected a number from 0.01 to 10000, got 0.009",
                 "rate-low"),
        _outside(CFG, "rate_per_second: 50", "rate_per_second: 1e-300",
                 'sending.rate_per_second: expected a number from 0.01 to 10000, got "1e-300"',
                 "rate-tiny"),
        _inside(CFG, "rate_per_second: 50", "rate_per_second: 10000", "rate-high"),
        _outside(CFG, "rate_per_second: 50", "rate_per_second: 10000.5",
                 "sending.rate_per_second: expected a number from 0.01 to 10000, got 10000.5",
                 "rate-high"),
        _outside(CFG, "rate_per_second: 50", "rate_per_second: .nan",
                 "sending.rate_per_second: expected a number from 0.01 to 10000, got nan",
                 "rate-nan"),
        _inside(CFG, "connections: 4", "connections: 64", "connections"),
        _outside(CFG, "connections: 4", "connections: 65",
                 "sending.connections: expected a whole number from 1 to 64, got 65",
                 "connections"),
        _inside(*_setting("lease", "1s"), "lease-low"),
        _outside(*_setting("lease", "0s"),
                 'sending.lease: expected a duration from 1s to 1d, got "0s"', "lease-low"),
        _inside(*_setting("lease", "24h"), "lease-high"),
        _outside(*_setting("lease", "25h"),
                 'sending.lease: expected a duration from 1s to 1d, got "25h"', "lease-high"),
        _inside(*_setting("batch_size", "10000"), "batch"),
        _outside(*_setting("batch_size", "10001"),
                 "sending.batch_size: expected a whole number from 1 to 10000, got 10001",
                 "batch"),
        _inside(*_setting("max_attempts", "100"), "attempts"),
        _outside(*_setting("max_attempts", "0"),
                 "sending.max_attempts: expected a whole number from 1 to 100, got 0",
                 "attempts"),
        _inside(*_setting("recycle_after", "100000"), "recycle"),
        _outside(*_setting("recycle_after", "100001"),
                 "sending.recycle_after: expected a whole number from 1 to 100000, got 100001",
                 "recycle"),
        _inside(*_setting("max_age", "30d"), "max-age"),
        _outside(*_setting("max_age", "31d"),
                 'sending.max_age: expected a duration from 1m to 30d, got "31d"', "max-age"),
        _inside(CFG, "per: 7d}", "per: 1h}", "cap-per"),
        _outside(CFG, "per: 7d}", "per: 0s}",
                 'sending.frequency_cap.per: expected a duration from 1h to 365d, got "0s"',
                 "cap-per"),
        _outside(CFG, "per: 7d}", "per: 100000000000d}",
                 "sending.frequency_cap.per: expected a duration from 1h to 365d, "
                 'got "100000000000d"',
                 "cap-per-overflow"),
        _inside(CFG, "{max: 3,", "{max: 1000,", "cap-max"),
        _outside(CFG, "{max: 3,", "{max: 1001,",
                 "sending.frequency_cap.max: expected a whole number from 1 to 1000, got 1001",
                 "cap-max"),
        _inside(CFG, "minimum: 0.01", "minimum: 1000000000", "refund-high"),
        _outside(CFG, "minimum: 0.01", "minimum: 1000000000.01",
                 "refunds.minimum: expected an amount of at most 1,000,000,000, "
                 "got 1000000000.01",
                 "refund-high"),
        _outside(CFG, "minimum: 0.01", "minimum: 1e999999999",
                 'refunds.minimum: expected an amount of at most 1,000,000,000, '
                 'got "1e999999999"',
                 "refund-huge"),
        _outside(CFG, "minimum: 0.01", "minimum: 0",
                 "refunds.minimum: expected an amount of at least 0.01, got 0", "refund-zero"),
        _outside(CFG, "minimum: 0.01", "minimum: 0.005",
                 "refunds.minimum: expected an amount with at most two decimals, got 0.005",
                 "refund-paisa"),
        _inside(CFG, "attribution_days: 7", "attribution_days: 365", "attribution"),
        _outside(CFG, "attribution_days: 7", "attribution_days: 366",
                 "reports.attribution_days: expected a whole number from 1 to 365, got 366",
                 "attribution"),
        _inside(WEL, "delay: 10m", "delay: 365d", "delay"),
        _outside(WEL, "delay: 10m", "delay: 366d",
                 'trigger.delay: expected a duration from 0s to 365d, got "366d"', "delay"),
        _outside(WEL, "delay: 10m", "delay: 999999999d",
                 'trigger.delay: expected a duration from 0s to 365d, got "999999999d"',
                 "delay-huge"),
        _inside(WEL, "expires_after: 3d", "expires_after: 1m", "expires"),
        _outside(WEL, "expires_after: 3d", "expires_after: 59s",
                 'trigger.expires_after: expected a duration from 1m to 365d, got "59s"',
                 "expires"),
        _inside(THX, "quiet_after_welcome: 1h", "quiet_after_welcome: 30d", "quiet"),
        _outside(THX, "quiet_after_welcome: 1h", "quiet_after_welcome: 31d",
                 'trigger.quiet_after_welcome: expected a duration from 0s to 30d, got "31d"',
                 "quiet"),
        _inside(HOL, "days_before: 3", "days_before: 365", "days-before"),
        _outside(HOL, "days_before: 3", "days_before: 366",
                 "trigger.days_before: expected a whole number from 0 to 365, got 366",
                 "days-before"),
        _inside(HOL, "discount: 20%", "discount: 99.99%", "discount"),
        _outside(HOL, "discount: 20%", "discount: 12.345%",
                 'offers[0].discount: expected a discount with at most two decimals, '
                 'got "12.345%"',
                 "discount"),
        _inside(HOL, "  en: Regular customers", "  bn_BD: Regular customers", "language"),
        _outside(HOL, "  en: Regular customers", "  qn: Regular customers",
                 "preheader.qn: unknown language 'qn' (did you mean 'en' or 'bn'?)",
                 "language"),
        _outside(HOL, "  en: Regular customers", "  english: Regular customers",
                 "preheader.english: unknown language 'english' "
                 "(expected a locale like en, bn or bn_BD)",
                 "language-word"),
    ],
)  # fmt: skip
def test_every_number_and_duration_has_a_range(
    shop: Path, file: str, old: str, new: str, expected: str | None
) -> None:
    line = edit(shop, file, old, new) + (1 if old == SENDING else 0)
    assert problems(shop) == ([f"{file}:{line}: {expected}"] if expected else [])


def test_a_certificate_authority_file_that_is_not_there(shop: Path) -> None:
    line = edit(
        shop, "config.yaml", "    port: 8025\n", "    port: 8025\n    ca_file: certs/relay-ca.pem\n"
    )
    assert problems(shop) == [
        f"config.yaml:{line + 1}: sending.smtp.ca_file: certificate authority file certs/relay-ca.pem not found"
    ]
    (shop / "certs").mkdir()
    (shop / "certs" / "relay-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert problems(shop) == []
