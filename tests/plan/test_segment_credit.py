"""The `credit` segment rule: customers by their store-credit balance at the segment's
`now` (credits not expired, less what was redeemed), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.check import check_project
from engine.errors import ConfigError
from engine.intake import shop, wallet
from engine.plan.segments import compile_segment
from engine.project.config import Segment
from engine.store.db import session_scope
from engine.store.models import Credit, Customer
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
D = timedelta(days=1)
EVERYONE = {"ana", "bob", "cat", "dan", "eve"}


@pytest.fixture
def wallets(fresh_store: Engine) -> Engine:
    """ana 100.00; bob 99.99; cat 20.00 (150.00 more expired a second ago); dan 99.99
    until tomorrow (200.00 expiring then, 100.01 of it redeemed); eve has no credit."""
    credits: dict[str, list[tuple[str, datetime | None]]] = {
        "ana": [("100.00", None)],
        "bob": [("99.99", None)],
        "cat": [("150.00", NOW - timedelta(seconds=1)), ("20.00", None)],
        "dan": [("200.00", NOW + D)],
        "eve": [],
    }
    with session_scope(fresh_store) as s:
        for name, entries in credits.items():
            person = shop.upsert_customer(
                s, external_id=name, email=f"{name}@example.com", now=NOW - 30 * D
            )
            assert person.id is not None
            for i, (amount, expires) in enumerate(entries):
                s.add(
                    Credit(dedupe_key=f"test:{name}:{i}", customer_id=person.id,
                           amount=Decimal(amount), reason="price drop before delivery",
                           created_at=NOW - 10 * D, expires_at=expires)
                )  # fmt: skip
            s.flush()
            if name == "dan":
                wallet.redeem(s, person.id, "100.01", "O-1", "evt-dan", NOW - D)
    return fresh_store


def members(engine: Engine, rules: dict[str, Any], now: datetime = NOW) -> set[str]:
    segment = Segment(name="test", rules=rules)
    with Session(engine) as s:
        query = select(col(Customer.external_id)).where(compile_segment(segment, now))
        return set(s.execute(query).scalars())


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param({"credit": {"at_least": 100}}, {"ana"}, id="at-least-100"),
        pytest.param({"credit": {"at_least": "99.99"}}, {"ana", "bob", "dan"}, id="to-the-paisa"),
        pytest.param({"credit": {"at_least": "100.01"}}, set(), id="one-paisa-above-all"),
        pytest.param({"credit": {"at_least": 0.01, "at_most": 99.99}}, {"bob", "cat", "dan"}, id="between"),
        pytest.param({"credit": {"at_most": 0}}, {"eve"}, id="none-to-spend"),
        pytest.param({"credit": {"at_least": 0}}, EVERYONE, id="at-least-zero-is-everyone"),
        pytest.param({"not": {"credit": {"at_least": 100}}}, EVERYONE - {"ana"}, id="not"),
        pytest.param({"credit": {"at_least": 20}, "consent": False}, {"ana", "bob", "cat", "dan"}, id="with-another-rule"),
    ],
)  # fmt: skip
def test_the_rule_selects_by_the_balance_now(
    wallets: Engine, rules: dict[str, Any], expected: set[str]
) -> None:
    assert members(wallets, rules) == expected


def test_the_rule_counts_at_the_segments_now(wallets: Engine) -> None:
    """Dan's credit expires tomorrow, and what he redeemed from it with it."""
    rule = {"credit": {"at_least": "99.99"}}
    assert members(wallets, rule, NOW + D - timedelta(seconds=1)) == {"ana", "bob", "dan"}
    assert members(wallets, rule, NOW + D) == {"ana", "bob"}
    # A second before cat's older credit expired, she had 170.00.
    assert members(wallets, {"credit": {"at_least": 170}}, NOW - timedelta(seconds=2)) == {"cat"}


@pytest.mark.parametrize(
    ("rules", "key", "message"),
    [
        pytest.param({"credit": {"at_least": "10.001"}}, "rules.credit.at_least", 'expected an amount with at most two decimals, got "10.001"', id="three-decimals"),
        pytest.param({"credit": {"at_least": -5}}, "rules.credit.at_least", "expected an amount of zero or more, got -5", id="negative"),
        pytest.param({"credit": {"at_least": "lots"}}, "rules.credit.at_least", 'expected an amount like 0.01 or 250, got "lots"', id="not-a-number"),
        pytest.param({"credit": {"at_least": 100, "at_most": 50}}, "rules.credit.at_most", "at_most (50) is below at_least (100)", id="crossed"),
        pytest.param({"credit": {}}, "rules.credit", "expected at_least or at_most (or both)", id="empty"),
        pytest.param({"credit": 100}, "rules.credit", "expected a mapping with at_least, at_most, got 100", id="bare-number"),
        pytest.param({"credit": {"more_than": 5}}, "rules.credit.more_than", "unknown option 'more_than' (expected one of: at_least, at_most)", id="unknown-option"),
    ],
)  # fmt: skip
def test_a_bad_amount_is_refused_with_where_and_what(
    rules: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        compile_segment(Segment(name="test", rules=rules), NOW)
    [problem] = info.value.problems
    assert (problem.file, problem.key, problem.message) == ("segments/test.yaml", key, message)


def test_check_names_the_file_and_line_of_a_bad_amount(project_dir: Path) -> None:
    (project_dir / "segments" / "regulars.yaml").write_text(
        "name: regulars\n"
        "rules:\n"
        "  all:\n"
        "    - orders: {at_least: 3, within: 180d}\n"
        "    - credit:\n"
        "        at_least: 12.345\n"
    )
    _, problems = check_project(project_dir / "config.yaml")
    assert [str(p) for p in problems] == [
        "segments/regulars.yaml:6: rules.all[1].credit.at_least: "
        "expected an amount with at most two decimals, got 12.345"
    ]
