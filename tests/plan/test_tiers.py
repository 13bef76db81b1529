"""Loyalty tiers: recomputed set-based before the campaigns, with a history, and what reads them.

The shipped tiers.yaml (the Nakshi Club): silver at 2 orders within a year, gold at
10,000 spent within a year, diamond at 25,000 (or 10 referrals, by config.yaml's
referral rewards). A jute bag costs 350, so 30 of them (10,500) is gold and 80
(28,000) diamond. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from freezegun import freeze_time
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.deliver import Composer
from engine.intake.shop import add_holiday
from engine.plan.segments import check_segments, compile_segment
from engine.plan.tiers import recompute_tiers
from engine.project import Secrets, load_partial
from engine.project.config import Segment
from engine.render import Renderer
from engine.store import Customer, ReferralReward, TierChange, session_scope
from tests.plan.test_planner import NOW, Shop, _shop
from tests.plan.test_triggers_purchases import NAME, write_campaign

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(store: Engine, project_dir: Path) -> Shop:
    shop = _shop(store, project_dir)
    shop.enable()  # no campaigns: the passes only recompute the tiers
    return shop


def tiers(shop: Shop) -> dict[str, str | None]:
    with Session(shop.engine) as s:
        rows = s.execute(select(col(Customer.external_id), col(Customer.tier))).all()
    return dict(sorted((name, tier) for name, tier in rows))


def changes(shop: Shop) -> list[tuple[str, str | None, str | None, str]]:
    query = (
        select(
            col(Customer.external_id),
            col(TierChange.from_tier),
            col(TierChange.to_tier),
            col(TierChange.direction),
        )
        .join(Customer, col(Customer.id) == col(TierChange.customer_id))
        .order_by(col(TierChange.id))
    )
    with Session(shop.engine) as s:
        return [tuple(row) for row in s.execute(query).all()]  # type: ignore[misc]


def regulars(shop: Shop) -> None:
    """one: 1 order (no tier); two: 2 orders (silver); big: 10,500 spent (gold), all
    ordered after the program's first recomputation (a day before NOW, with no one)."""
    shop.plan(NOW - D)
    for name in ("one", "two", "big"):
        shop.customer(name)
    shop.order("o1", "one", NOW - 10 * D)
    shop.order("t1", "two", NOW - 20 * D)
    shop.order("t2", "two", NOW - 10 * D)
    shop.order("b1", "big", NOW - 10 * D, quantity=30)


def test_tiers_follow_the_orders_and_keep_a_history(shop: Shop) -> None:
    regulars(shop)
    shop.plan(NOW)
    assert tiers(shop) == {"big": "gold", "one": None, "two": "silver"}
    assert sorted(changes(shop), key=str) == [
        ("big", None, "gold", "up"),
        ("two", None, "silver", "up"),
    ]
    with Session(shop.engine) as s:
        since = s.execute(select(col(Customer.tier_since)).where(col(Customer.tier) == "gold"))
        assert since.scalar_one() == NOW

    shop.order("b2", "big", NOW, quantity=50)  # 28,000 within a year: diamond
    shop.plan(NOW + 5 * M)  # not yet: tiers are recomputed every 15 minutes
    assert tiers(shop)["big"] == "gold"
    shop.plan(NOW + 16 * M)
    assert tiers(shop)["big"] == "diamond"
    assert changes(shop)[-1] == ("big", "gold", "diamond", "up")

    shop.plan(NOW + 400 * D)  # a year without orders: every tier lapses
    assert set(tiers(shop).values()) == {None}
    assert sorted(changes(shop)[-2:], key=str) == [
        ("big", "diamond", None, "down"),
        ("two", "silver", None, "down"),
    ]
    shop.plan(NOW + 401 * D, rescan=True)
    assert len(changes(shop)) == 5  # nothing moved, nothing written


def test_a_dry_run_moves_no_one(shop: Shop) -> None:
    regulars(shop)
    shop.plan(NOW, dry_run=True)
    assert set(tiers(shop).values()) == {None} and changes(shop) == []


def test_an_edited_tiers_file_is_applied_at_once(shop: Shop) -> None:
    regulars(shop)
    shop.plan(NOW)
    shop.edit("tiers.yaml", lambda t: t["tiers"][0].update(rule={"orders": {"at_least": 3}}))
    shop.plan(NOW + M)  # within 15 minutes, but the file changed
    assert tiers(shop)["two"] is None
    assert changes(shop)[-1] == ("two", "silver", None, "down")


def test_without_tiers_file_everyone_leaves_their_tier(shop: Shop) -> None:
    regulars(shop)
    shop.plan(NOW)
    for file in ("tiers.yaml", "campaigns/tier_changed.yaml"):  # (it needs the tiers)
        (shop.dir / file).unlink()
    shop.edit("config.yaml", lambda c: c["referrals"].update(rewards=[]))
    shop.plan(NOW + M)
    assert set(tiers(shop).values()) == {None}
    assert [c[3] for c in changes(shop)[-2:]] == ["down", "down"]


def test_a_referral_reward_grants_its_tier_for_good(shop: Shop) -> None:
    regulars(shop)
    with session_scope(shop.engine) as s:
        one = s.execute(select(col(Customer.id)).where(col(Customer.external_id) == "one"))
        s.execute(insert(ReferralReward).values(customer_id=one.scalar_one(), threshold=10, at=NOW))
    shop.plan(NOW)
    assert tiers(shop)["one"] == "diamond"  # config.yaml: {at: 10, tier: diamond}
    shop.plan(NOW + 400 * D)
    assert tiers(shop)["one"] == "diamond"


def test_recomputing_runs_in_the_callers_transaction(shop: Shop) -> None:
    regulars(shop)
    with shop.engine.connect() as conn, conn.begin() as transaction:
        result = recompute_tiers(conn, shop.project, NOW)
        assert result.as_dict() == {"ran": True, "up": 2, "down": 0, "start": 0}
        transaction.rollback()
    assert changes(shop) == []


def test_the_first_recomputation_places_everyone_without_news(shop: Shop) -> None:
    for name in ("two", "big"):
        shop.customer(name)
    shop.order("t1", "two", NOW - 20 * D)
    shop.order("t2", "two", NOW - 10 * D)
    shop.order("b1", "big", NOW - 10 * D, quantity=30)
    write_campaign(shop, {"type": "tier_changed", "direction": "any"})
    with freeze_time(NOW):
        assert shop.plan(NOW)[NAME]["queued"] == 0
    assert sorted(changes(shop), key=str) == [
        ("big", None, "gold", "start"),
        ("two", None, "silver", "start"),
    ]
    shop.order("t3", "two", NOW, quantity=40)  # two: 14,700 within a year, gold
    with freeze_time(NOW + 16 * M):
        assert shop.plan(NOW + 16 * M)[NAME]["queued"] == 1
    assert changes(shop)[-1] == ("two", "silver", "gold", "up")


# ---------------------------------------------------------------- segments and the check


def test_tier_segment_rule(shop: Shop) -> None:
    regulars(shop)
    shop.plan(NOW)

    def members(rules: dict[str, Any]) -> list[str]:
        rule = compile_segment(Segment(name="s", rules=rules), NOW)
        query = select(col(Customer.external_id)).where(rule).order_by(col(Customer.external_id))
        with Session(shop.engine) as s:
            return list(s.execute(query).scalars())

    assert members({"tier": "gold"}) == ["big"]
    assert members({"tier": ["silver", "gold"]}) == ["big", "two"]
    assert members({"tier": "none"}) == ["one"]
    assert members({"not": {"tier": "gold"}}) == ["one", "two"]


def test_check_names_unknown_tiers_with_file_and_line(project_dir: Path) -> None:
    (project_dir / "segments" / "club.yaml").write_text("name: club\nrules:\n  tier: platinum\n")
    campaign = {
        "name": "tier_news",
        "template": "welcome",
        "subject": "Hello",
        "trigger": {"type": "tier_changed", "to": ["gold", "golden"]},
    }
    (project_dir / "campaigns" / "tier_news.yaml").write_text(yaml.safe_dump(campaign))
    project, problems = load_partial(project_dir / "config.yaml")
    assert project is not None
    shown = [str(p) for p in [*problems, *check_segments(project)]]
    assert any(
        "campaigns/tier_news.yaml:" in p and "trigger.to[1]: unknown tier 'golden'" in p
        for p in shown
    ), shown
    assert any(
        p.startswith("segments/club.yaml:3: rules.tier: unknown tier 'platinum'") for p in shown
    ), shown

    (project_dir / "tiers.yaml").unlink()
    _, problems = load_partial(project_dir / "config.yaml")
    shown = [str(p) for p in problems]
    assert any("a tier_changed campaign needs tiers.yaml" in p for p in shown), shown
    assert any("referrals.rewards[2].tier: unknown tier 'diamond'" in p for p in shown), shown


def test_check_refuses_a_bad_tiers_file(project_dir: Path) -> None:
    (project_dir / "tiers.yaml").write_text(
        "program: Club\ntiers:\n  - {id: a, name: A, rule: {orders: {at_least: 2}}}\n"
        "  - {id: a, name: B, rule: {spent: {at_lest: 5}}}\n"
    )
    _, problems = load_partial(project_dir / "config.yaml")
    assert any(p.file == "tiers.yaml" and "two tiers named 'a'" in p.message for p in problems), (
        problems
    )
    (project_dir / "tiers.yaml").write_text(
        "program: Club\ntiers:\n  - {id: a, name: A, rule: {spent: {at_lest: 5}}}\n"
    )
    project, problems = load_partial(project_dir / "config.yaml")
    assert project is not None
    [bad] = [p for p in check_segments(project) if p.file == "tiers.yaml"]
    assert (bad.line, bad.key) == (3, "tiers[0].rule.spent.at_lest")
    assert "did you mean 'at_least'?" in bad.message


# ---------------------------------------------------------------- the tier_changed trigger


def test_tier_changed_congratulates_each_move_up_once(shop: Shop) -> None:
    regulars(shop)
    write_campaign(shop, {"type": "tier_changed"})
    with freeze_time(NOW):
        assert shop.plan(NOW)[NAME]["queued"] == 2
        assert shop.plan(NOW + H, rescan=True)[NAME]["queued"] == 0
    messages = {shop.owner(m): m for m in shop.messages(NAME)}
    assert set(messages) == {"big", "two"}
    gold = messages["big"]
    assert gold.context == {
        "tier_change_id": int(gold.occurrence.removeprefix("tier-")),
        "from_tier": None,
        "to_tier": "gold",
        "direction": "up",
    }
    assert gold.expires_at == NOW + 7 * D  # the trigger's default expiry

    with freeze_time(NOW + 400 * D):  # everyone lapses: no email for a move down
        assert shop.plan(NOW + 400 * D)[NAME]["queued"] == 0


def test_tier_changed_down_and_only_while_still_in_that_tier(shop: Shop) -> None:
    regulars(shop)
    shop.plan(NOW)  # two: silver, big: gold (no campaign yet)
    shop.order("t3", "two", NOW + M, quantity=40)  # two spends 14,700: gold
    write_campaign(shop, {"type": "tier_changed", "direction": "any", "to": ["gold"]})
    with freeze_time(NOW + 16 * M):
        assert shop.plan(NOW + 16 * M)[NAME]["queued"] == 2  # big's move to gold, two's
    assert {m.context["from_tier"] for m in shop.messages(NAME)} == {None, "silver"}

    write_campaign(shop, {"type": "tier_changed", "direction": "down"})
    shop.edit("tiers.yaml", lambda t: t["tiers"][1]["rule"]["spent"].update(at_least=20000))
    with freeze_time(NOW + 20 * M):
        assert shop.plan(NOW + 20 * M)[NAME]["queued"] == 2
    down = [m for m in shop.messages(NAME) if m.context["direction"] == "down"]
    assert sorted((shop.owner(m), m.context["to_tier"]) for m in down) == [
        ("big", None), ("two", "silver")
    ]  # fmt: skip


def plain_texts(shop: Shop, campaign: str) -> tuple[list[Any], list[str]]:
    """The campaign's queued messages and the plain text of each, as composed to go."""
    composer = Composer(
        shop.project, Secrets(secret="a-test-secret-of-32-characters!!"),
        renderer=Renderer(REPO / "templates" / "emails"),
    )  # fmt: skip
    messages = shop.messages(campaign)
    with Session(shop.engine) as s:
        prepared = composer.prepare(s, messages, now=NOW)
    texts = []
    for outgoing in prepared:
        parsed = email.message_from_bytes(outgoing.data, policy=email.policy.default)  # type: ignore[union-attr]
        texts.append(parsed.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    return messages, texts


def test_tier_changed_email_in_both_languages(shop: Shop) -> None:
    regulars(shop)
    with session_scope(shop.engine) as s:
        s.execute(
            Customer.__table__.update()  # type: ignore[attr-defined]
            .where(Customer.__table__.c.external_id == "big")  # type: ignore[attr-defined]
            .values(locale="bn_BD", name="রহিমা খাতুন")
        )
    shop.enable("tier_changed")
    with freeze_time(NOW):
        shop.plan(NOW)
    composer = Composer(
        shop.project, Secrets(secret="a-test-secret-of-32-characters!!"),
        renderer=Renderer(REPO / "templates" / "emails"),
    )  # fmt: skip
    with Session(shop.engine) as s:
        prepared = composer.prepare(s, shop.messages("tier_changed"), now=NOW)
    parsed = {}
    for outgoing in prepared:
        message = email.message_from_bytes(outgoing.data, policy=email.policy.default)  # type: ignore[union-attr]
        parsed[message["To"].addresses[0].username] = message
    assert parsed["big"]["Subject"] == "সোনালি সদস্যপদে স্বাগতম, রহিমা"
    text = parsed["big"].get_body(("plain",)).get_content()
    assert "নকশি ক্লাব-এর সোনালি সদস্য" in text and "৫% ছাড়" in text
    assert parsed["two"]["Subject"] == "Welcome to Silver, friend"
    english = parsed["two"].get_body(("plain",)).get_content()
    assert "Silver member of the Nakshi Club" in english and "Early word of every sale" in english


# ---------------------------------------------------------------- VIP early access


def test_holiday_early_access_for_a_tier(shop: Shop) -> None:
    shop.enable("holiday_preannounce")
    shop.edit("campaigns/holiday_preannounce.yaml", lambda c: (
        c["trigger"].update(holidays=["flash_sale"], expires_after=None,
                            early_access={"tiers": ["silver"], "days_before": 5}),
        c.update(segment="everyone")))  # fmt: skip
    shop.customer("vip")
    shop.customer("once")
    shop.order("v1", "vip", NOW - 20 * D)
    shop.order("v2", "vip", NOW - 10 * D)
    shop.order("o1", "once", NOW - 10 * D)
    with session_scope(shop.engine) as s:
        add_holiday(s, holiday_id="flash_sale", day=date(2026, 12, 5), name="Sale", now=NOW)
    early = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka, 5 days before
    regular = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # 3 days before
    assert shop.plan(early - M)["holiday_preannounce"]["queued"] == 0
    assert shop.plan(early)["holiday_preannounce"]["queued"] == 1
    assert shop.plan(regular - M)["holiday_preannounce"]["queued"] == 0
    result = shop.plan(regular)["holiday_preannounce"]
    assert (result["queued"], result["skipped_consent"]) == (1, 0)
    messages = {shop.owner(m): m for m in shop.messages("holiday_preannounce")}
    assert messages["vip"].send_after == early and messages["once"].send_after == regular
    assert messages["vip"].occurrence == messages["once"].occurrence == "flash_sale-2026"
    texts = {
        shop.owner(m): text
        for m, text in zip(*plain_texts(shop, "holiday_preannounce"), strict=True)
    }
    assert "As a Silver member of the Nakshi Club you hear about our offers first" in texts["vip"]
    assert "As one of our regular customers you hear" in texts["once"]


def test_early_access_must_come_earlier(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "holiday_preannounce.yaml"
    data = yaml.safe_load(path.read_text())
    data["trigger"]["early_access"] = {
        "tiers": ["gold"],
        "days_before": data["trigger"]["days_before"],
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _, problems = load_partial(project_dir / "config.yaml")
    assert any(
        p.file == "campaigns/holiday_preannounce.yaml" and "early access comes earlier" in p.message
        for p in problems
    ), problems


def test_tier_counts_stay_consistent(shop: Shop) -> None:
    """Every customer's tier is the last change recorded for them."""
    regulars(shop)
    for at in (NOW, NOW + 16 * M, NOW + 400 * D):
        shop.plan(at)
    with Session(shop.engine) as s:
        latest = (
            select(col(TierChange.customer_id), func.max(col(TierChange.id)).label("last"))
            .group_by(col(TierChange.customer_id))
            .subquery()
        )
        rows = s.execute(
            select(col(Customer.tier), col(TierChange.to_tier))
            .join(latest, latest.c.customer_id == col(Customer.id))
            .join(TierChange, col(TierChange.id) == latest.c.last)
        ).all()
    assert rows and all(tier == to for tier, to in rows)


def test_an_order_dated_after_the_recomputation_does_not_count_yet(shop: Shop) -> None:
    """Rules with a window count orders up to `now`: placed as of three days ago, then now."""
    shop.customer("two")
    shop.order("t1", "two", NOW - 20 * D)
    shop.order("t2", "two", NOW - D)
    with shop.engine.begin() as conn:
        assert recompute_tiers(conn, shop.project, NOW - 3 * D).start == 0
    shop.plan(NOW)
    assert tiers(shop) == {"two": "silver"}
    assert changes(shop) == [("two", None, "silver", "up")]


def test_two_recomputations_at_one_moment_count_only_their_own_moves(shop: Shop) -> None:
    """A forced second recomputation at the same `now` reports (and applies) only what it
    moved, not the first one's moves again."""
    regulars(shop)
    with shop.engine.begin() as conn:
        assert recompute_tiers(conn, shop.project, NOW).up == 2
    shop.order("o2", "one", NOW - 5 * D)  # one: now 2 orders, silver
    with shop.engine.begin() as conn:
        again = recompute_tiers(conn, shop.project, NOW, force=True)
    assert again.as_dict() == {"ran": True, "up": 1, "down": 0, "start": 0}
    assert tiers(shop) == {"big": "gold", "one": "silver", "two": "silver"}
