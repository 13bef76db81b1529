"""Segment rules compiled to SQL, each rule against a small real shop."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.check import check_project
from engine.errors import ConfigError
from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.plan.segments import compile_segment
from engine.project.config import Segment
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Customer, EventKind, Message, MessageEvent, MessageStatus

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """ana: a Dhaka regular; bob: lapsed; cat: no orders; dan: new; eve: opener."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('seg') / 'store.db'}")
    upgrade(engine)
    with session_scope(engine) as s:
        upsert_product(
            s, sku="JUTE-BAG-01", name="Jute bag", price="350", now=ago(900), category="bags"
        )
        upsert_product(s, sku="TEA-500G", name="Tea", price="420", now=ago(900), category="tea")
        upsert_product(s, sku="SARI-01", name="Sari", price="9000", now=ago(900), category="saris")
        people: list[dict[str, Any]] = [
            dict(external_id="ana", locale="bn_BD", city="Dhaka", tags=["wholesale"],
                 birthday=date(1990, 4, 14), marketing_consent=True, created_at=ago(400)),
            dict(external_id="bob", locale="en", city="Chattogram", marketing_consent=False,
                 created_at=ago(300)),
            dict(external_id="cat", locale="en_US", city="dhaka", birthday=date(2000, 4, 20),
                 marketing_consent=True, created_at=ago(10)),
            dict(external_id="dan", locale="bn", marketing_consent=True, created_at=ago(6)),
            dict(external_id="eve", locale="en", tags=["press", "wholesale"], created_at=ago(500)),
        ]  # fmt: skip
        for p in people:
            upsert_customer(s, email=f"{p['external_id']}@example.com", now=NOW, **p)
        orders = [
            ("ana", "JUTE-BAG-01", 170, 10, False),
            ("ana", "JUTE-BAG-01", 100, 10, False),
            ("ana", "TEA-500G", 20, 40, False),
            ("bob", "TEA-500G", 200, 1, False),
            ("bob", "SARI-01", 3, 1, True),  # cancelled: never counts
            ("dan", "SARI-01", 5, 3, False),
            ("eve", "TEA-500G", 400, 1, False),
            ("eve", "TEA-500G", 90, 1, False),
            ("eve", "JUTE-BAG-01", 30, 1, False),
        ]
        for i, (who, sku, days, qty, cancelled) in enumerate(orders):
            record_order(s, external_id=f"o{i}", customer_id=who, items=[Line(sku, qty)],
                         placed_at=ago(days), cancelled=cancelled)  # fmt: skip
        ids = {c.external_id: c.id for c in s.exec(select(Customer)).scalars()}
        sent = Message(dedupe_key="welcome:x:first", campaign="welcome", customer_id=ids["dan"],
                       occurrence="first", status=MessageStatus.SENT, created_at=ago(5),
                       send_after=ago(5), sent_at=ago(5))  # fmt: skip
        s.add(sent)
        s.flush()
        for who, kind, days, machine in [
            ("dan", EventKind.OPEN, 3, False),
            ("eve", EventKind.OPEN, 2, True),  # Apple's proxy, not a person
            ("eve", EventKind.CLICK, 2, False),
            ("ana", EventKind.OPEN, 60, False),
        ]:
            s.add(MessageEvent(message_id=sent.id, customer_id=ids[who], kind=kind, at=ago(days),
                               machine=machine))  # fmt: skip
    yield engine
    engine.dispose()


def members(engine: Engine, rules: dict[str, Any] | None) -> set[str]:
    segment = Segment(name="test", rules=rules)
    with Session(engine) as s:
        query = select(col(Customer.external_id)).where(compile_segment(segment, NOW))
        return set(s.exec(query).scalars())  # type: ignore[call-overload]


EVERYONE = {"ana", "bob", "cat", "dan", "eve"}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param(None, EVERYONE, id="no-rules-everyone"),
        pytest.param({"orders": {"at_least": 3, "within": "180d"}}, {"ana"}, id="regulars"),
        pytest.param({"orders": {"at_least": 2, "within": "180d"}}, {"ana", "eve"}, id="two-in-window"),
        pytest.param({"orders": {"at_most": 0, "within": "180d"}}, {"bob", "cat"}, id="none-in-window"),
        pytest.param({"orders": {"at_least": 1, "at_most": 1}}, {"bob", "dan"}, id="exactly-one-ever"),
        pytest.param({"orders": {"at_least": 3}}, {"ana", "eve"}, id="three-ever"),
        pytest.param({"spent": {"at_least": 10000}}, {"ana", "dan"}, id="spent-ever"),
        pytest.param({"spent": {"at_least": 10000, "within": "30d"}}, {"ana", "dan"}, id="spent-window"),
        pytest.param({"spent": {"at_most": 800, "within": "365d"}}, {"bob", "cat", "eve"}, id="spent-at-most"),
        pytest.param({"first_order": {"within": "30d"}}, {"dan"}, id="new-customers"),
        pytest.param({"first_order": {"before": "365d"}}, {"eve"}, id="first-order-before"),
        pytest.param({"all": [{"orders": {"at_least": 1}}, {"last_order": {"before": "120d"}}]}, {"bob"}, id="lapsed"),
        pytest.param({"last_order": {"within": "25d"}}, {"ana", "dan"}, id="last-order-within"),
        pytest.param({"created": {"within": "30d"}}, {"cat", "dan"}, id="created-within"),
        pytest.param({"created": {"before": "365d"}}, {"ana", "eve"}, id="created-before"),
        pytest.param({"bought": {"sku": "JUTE-BAG-01"}}, {"ana", "eve"}, id="bought-sku"),
        pytest.param({"bought": {"sku": "JUTE-BAG-01", "within": "60d"}}, {"eve"}, id="bought-sku-within"),
        pytest.param({"bought": {"category": "saris"}}, {"dan"}, id="bought-category-not-cancelled"),
        pytest.param({"locale": "bn"}, {"ana", "dan"}, id="locale-language"),
        pytest.param({"locale": ["en_US", "bn_BD"]}, {"ana", "cat"}, id="locale-list"),
        pytest.param({"city": "Dhaka"}, {"ana", "cat"}, id="city-any-case"),
        pytest.param({"tag": "wholesale"}, {"ana", "eve"}, id="tag"),
        pytest.param({"tag": ["press", "none"]}, {"eve"}, id="tag-list"),
        pytest.param({"birthday": {"month": 4, "day": 14}}, {"ana"}, id="birthday-day"),
        pytest.param({"birthday": {"month": 4}}, {"ana", "cat"}, id="birthday-month"),
        pytest.param({"consent": True}, {"ana", "cat", "dan"}, id="consent"),
        pytest.param({"consent": False}, {"bob", "eve"}, id="no-consent"),
        pytest.param({"opened": {"within": "30d"}}, {"dan"}, id="opened-human-only"),
        pytest.param({"opened": {"within": "90d"}}, {"ana", "dan"}, id="opened-longer"),
        pytest.param({"clicked": {"within": "30d"}}, {"eve"}, id="clicked"),
        pytest.param({"received": {"campaign": "welcome", "within": "30d"}}, {"dan"}, id="received"),
        pytest.param({"received": {"campaign": "welcome", "within": "1d"}}, set(), id="received-too-long-ago"),
        pytest.param({"any": [{"city": "Dhaka"}, {"consent": False}]}, EVERYONE - {"dan"}, id="any"),
        pytest.param({"not": {"city": "Dhaka"}}, {"bob", "dan", "eve"}, id="not-null-city-counts"),
        pytest.param({"consent": True, "locale": "en"}, {"cat"}, id="mapping-means-all"),
        pytest.param({"all": [{"any": [{"tag": "press"}, {"locale": "bn"}]}, {"not": {"consent": False}}]}, {"ana", "dan"}, id="nested"),
    ],
)  # fmt: skip
def test_rule_selects_expected_customers(shop: Engine, rules: Any, expected: set[str]) -> None:
    assert members(shop, rules) == expected


@pytest.mark.parametrize(
    ("rules", "key", "words"),
    [
        pytest.param({"ordrs": {"at_least": 1}}, "rules.ordrs", "did you mean 'orders'", id="unknown-rule"),
        pytest.param({"orders": {"at_lest": 1}}, "rules.orders.at_lest", "did you mean 'at_least'", id="unknown-operator"),
        pytest.param({"orders": {"within": "180d"}}, "rules.orders", "at_least or at_most", id="no-bound"),
        pytest.param({"orders": {"at_least": -1}}, "rules.orders.at_least", "from 0 to 1,000,000", id="negative"),
        pytest.param({"orders": {"at_least": 1, "within": "6 months"}}, "rules.orders.within", "duration", id="bad-duration"),
        pytest.param({"spent": {"at_least": "lots"}}, "rules.spent.at_least", "amount", id="bad-amount"),
        pytest.param({"first_order": {"within": "1d", "before": "2d"}}, "rules.first_order", "exactly one", id="within-and-before"),
        pytest.param({"all": {"orders": {"at_least": 1}}}, "rules.all", "list of rules", id="all-not-list"),
        pytest.param({"any": [{"city": "X"}, {"tagg": "y"}]}, "rules.any[1].tagg", "unknown rule", id="nested-unknown"),
        pytest.param({"birthday": {"month": 13}}, "rules.birthday.month", "1 to 12", id="bad-month"),
        pytest.param({"consent": "yes"}, "rules.consent", "true or false", id="consent-text"),
        pytest.param({"bought": {"sku": "A", "category": "B"}}, "rules.bought", "exactly one", id="sku-and-category"),
        pytest.param({"received": {"within": "3d"}}, "rules.received", "'campaign' is missing", id="received-no-campaign"),
    ],
)  # fmt: skip
def test_bad_rule_is_refused(rules: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_segment(Segment(name="test", rules=rules), NOW)
    [problem] = info.value.problems
    assert problem.key == key
    assert words in problem.message


def test_shipped_segments_compile(project_dir: Path) -> None:
    project, problems = check_project(project_dir / "config.yaml")
    assert problems == []
    assert project is not None
    for segment in project.segments.values():
        compile_segment(segment, NOW)


def test_check_reports_file_line_and_key(project_dir: Path) -> None:
    (project_dir / "segments" / "regulars.yaml").write_text(
        "name: regulars\n"
        "rules:\n"
        "  all:\n"
        "    - orders: {at_least: 3, within: 180d}\n"
        "    - spent:\n"
        "        at_leest: 500\n"
        "    - colour: blue\n"
    )
    _, problems = check_project(project_dir / "config.yaml")
    found = {(p.file, p.line, p.key) for p in problems}
    assert found == {
        ("segments/regulars.yaml", 6, "rules.all[1].spent.at_leest"),
        ("segments/regulars.yaml", 7, "rules.all[2].colour"),
    }


def test_dialect_specific_rules_on_each_database(store: Engine) -> None:
    """Date parts, money sums and windows compile the same on SQLite and PostgreSQL."""
    with session_scope(store) as s:
        upsert_product(s, sku="TEA-500G", name="Tea", price="420.50", now=ago(900))
        upsert_customer(s, external_id="a", email="a@example.com", now=NOW,
                        birthday=date(1991, 4, 14), created_at=ago(3))  # fmt: skip
        upsert_customer(s, external_id="b", email="b@example.com", now=NOW, created_at=ago(3))
        for i, days in enumerate((10, 20)):
            record_order(s, external_id=f"o{i}", customer_id="a", items=[Line("TEA-500G", 1)],
                         placed_at=ago(days))  # fmt: skip
    assert members(store, {"birthday": {"month": 4, "day": 14}}) == {"a"}
    assert members(store, {"spent": {"at_least": "841.00", "within": "30d"}}) == {"a"}
    assert members(store, {"spent": {"at_least": "841.01", "within": "30d"}}) == set()
    assert members(store, {"orders": {"at_most": 1, "within": "15d"}}) == {"a", "b"}
    assert members(store, {"bought": {"sku": "TEA-500G", "within": "15d"}}) == {"a"}


# The largest value each bound allows; one more is refused (below).
AT_THE_BOUNDS = [
    {"orders": {"at_least": 1_000_000, "within": "3650d"}},
    {"orders": {"at_most": 1_000_000}},
    {"spent": {"at_least": "1000000000", "within": "3650d"}},
    {"spent": {"at_most": 1000000000.00}},
    {"spent": {"at_least": 0.01}},
    {"last_order": {"before": "3650d"}},
    {"opened": {"within": "1s"}},
]


def test_values_at_the_bounds_run_on_each_database(store: Engine) -> None:
    with Session(store) as session:
        for rules in AT_THE_BOUNDS:
            rule = compile_segment(Segment(name="test", rules=rules), NOW)
            assert session.exec(select(col(Customer.id)).where(rule)).all() == []


@pytest.mark.parametrize(
    ("rules", "key", "message"),
    [
        pytest.param({"orders": {"at_least": 1_000_001}}, "rules.orders.at_least",
                     "expected a whole number from 0 to 1,000,000, got 1000001", id="count"),
        pytest.param({"orders": {"at_most": 10**20}}, "rules.orders.at_most",
                     f"expected a whole number from 0 to 1,000,000, got {10**20}",
                     id="count-overflow"),
        pytest.param({"orders": {"at_least": True}}, "rules.orders.at_least",
                     "expected a whole number from 0 to 1,000,000, got True", id="count-bool"),
        pytest.param({"spent": {"at_least": 1000000000.01}}, "rules.spent.at_least",
                     "expected an amount of at most 1,000,000,000, got 1000000000.01",
                     id="amount"),
        pytest.param({"spent": {"at_least": 0.001}}, "rules.spent.at_least",
                     "expected an amount with at most two decimals, got 0.001", id="paisa"),
        pytest.param({"spent": {"at_least": "1e999999999"}}, "rules.spent.at_least",
                     'expected an amount of at most 1,000,000,000, got "1e999999999"',
                     id="amount-huge"),
        pytest.param({"last_order": {"before": "3651d"}}, "rules.last_order.before",
                     'expected a duration of at most 3650d (ten years), got "3651d"',
                     id="window"),
        pytest.param({"orders": {"at_least": 1, "within": "100000000000d"}},
                     "rules.orders.within",
                     'expected a duration of at most 3650d (ten years), got "100000000000d"',
                     id="window-overflow"),
        pytest.param({"opened": {"within": "0s"}}, "rules.opened.within",
                     'expected a positive duration, got "0s"', id="window-zero"),
    ],
)  # fmt: skip
def test_values_past_the_bounds_are_refused(rules: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_segment(Segment(name="test", rules=rules), NOW)
    [problem] = info.value.problems
    assert (problem.key, problem.message) == (key, message)
