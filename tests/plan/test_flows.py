"""Flows against real databases: steps falling due, exits, and edits while customers are inside."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.store.db import session_scope
from engine.store.models import (
    Customer,
    EventKind,
    FlowExit,
    Message,
    MessageEvent,
    MessageStatus,
)
from tests.plan.test_planner import NOW, Shop, _shop

D = timedelta(days=1)
M = timedelta(minutes=1)

STEPS = [
    {"id": "hello", "template": "welcome", "subject": "Hello"},
    {"id": "story", "after": "3d", "template": "thank_you", "subject": "Our story"},
    {"id": "tips", "after": "4d", "template": "welcome", "subject": "Care tips"},
]


def write_flow(shop: Shop, steps: list[dict[str, Any]], **extra: Any) -> None:
    campaign = {
        "name": "series",
        "trigger": {"type": "first_order", "expires_after": "2d"},
        "steps": steps,
        **extra,
    }
    (shop.dir / "campaigns" / "series.yaml").write_text(yaml.safe_dump(campaign))
    shop.loaded = None


class FrozenShop(Shop):
    """Each planning pass runs with the clock stopped at its `now` (nothing reads another)."""

    def plan(self, at: datetime, **kw: Any) -> dict[str, Any]:
        with freeze_time(at):
            return super().plan(at, **kw)


@pytest.fixture
def flow(store: Engine, project_dir: Any) -> Shop:
    base = _shop(store, project_dir)
    shop = FrozenShop(base.engine, base.dir)
    write_flow(shop, STEPS, exit=["ordered", "unsubscribed"])
    shop.enable("series")
    return shop


def steps_of(shop: Shop, customer: str) -> list[str | None]:
    return [m.step for m in shop.messages("series") if shop.owner(m) == customer]


def exits(shop: Shop) -> list[tuple[str, str | None, str]]:
    with Session(shop.engine) as s:
        rows = s.exec(select(FlowExit).order_by(col(FlowExit.id))).scalars()  # type: ignore[call-overload]
        return [(r.occurrence, r.step, r.reason) for r in rows]


def test_each_step_once_at_its_time_with_its_own_dedupe_key(flow: Shop) -> None:
    flow.customer("ana")
    flow.order("o1", "ana", NOW - 5 * M)
    assert flow.plan(NOW)["series"]["steps"]["hello"]["queued"] == 1
    assert flow.plan(NOW)["series"]["queued"] == 0  # a second pass is a no-op
    assert flow.plan(NOW + 3 * D - 10 * M)["series"]["queued"] == 0
    report = flow.plan(NOW + 3 * D)
    assert report["series"]["steps"]["story"]["queued"] == 1
    assert report["series"]["steps"]["hello"]["queued"] == 0
    flow.plan(NOW + 7 * D)
    messages = flow.messages("series")
    assert [m.step for m in messages] == ["hello", "story", "tips"]
    assert [m.dedupe_key for m in messages] == [
        f"series:{messages[0].customer_id}:first:{step}" for step in ("hello", "story", "tips")
    ]
    assert flow.plan(NOW + 7 * D + M, rescan=True)["series"]["queued"] == 0


def test_an_order_since_entry_ends_the_flow_when_the_next_step_falls_due(flow: Shop) -> None:
    flow.customer("ana")
    flow.customer("bob")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.order("b1", "bob", NOW - 5 * M)
    flow.plan(NOW)
    flow.order("a2", "ana", NOW + D)  # the second order
    report = flow.plan(NOW + 3 * D)["series"]
    assert report["steps"]["story"] == {
        "queued": 1, "skipped_consent": 0, "skipped_suppressed": 0, "skipped_cap": 0,
        "skipped_passed": 0, "exited": {"ordered": 1}, "coupons": 0,
    }  # fmt: skip
    assert report["exited"] == 1
    flow.plan(NOW + 7 * D)
    assert steps_of(flow, "ana") == ["hello"]
    assert steps_of(flow, "bob") == ["hello", "story", "tips"]
    assert exits(flow) == [("first", "story", "ordered")]


def test_an_exit_is_for_good_even_when_its_condition_no_longer_holds(flow: Shop) -> None:
    write_flow(flow, STEPS, exit=[{"segment": "new_customers"}])
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    flow.plan(NOW + 3 * D)
    assert steps_of(flow, "ana") == ["hello", "story"]
    # new_customers: first order within 30 days. Retimed so the last step falls past it.
    write_flow(
        flow,
        [*STEPS[:2], {**STEPS[2], "after": "40d"}],
        exit=[{"segment": "new_customers"}],
    )
    flow.plan(NOW + 43 * D)
    assert steps_of(flow, "ana") == ["hello", "story"]
    assert exits(flow) == [("first", "tips", "left segment new_customers")]


def test_unsubscribing_and_clicking_are_exits(flow: Shop) -> None:
    write_flow(flow, STEPS, exit=["clicked"])
    for name in ("ana", "bob"):
        flow.customer(name)
        flow.order(f"{name}1", name, NOW - 5 * M)
    flow.plan(NOW)
    hello = {flow.owner(m): m for m in flow.messages("series")}
    with session_scope(flow.engine) as s:
        s.add(MessageEvent(message_id=hello["ana"].id, customer_id=hello["ana"].customer_id,
                           kind=EventKind.CLICK, at=NOW + D, url="https://shop.example/"))  # fmt: skip
    flow.plan(NOW + 3 * D)
    assert steps_of(flow, "ana") == ["hello"]
    assert exits(flow) == [("first", "story", "clicked")]
    write_flow(flow, STEPS, exit=["unsubscribed"])
    with session_scope(flow.engine) as s:
        bob = s.exec(select(Customer).where(col(Customer.external_id) == "bob")).scalar_one()  # type: ignore[call-overload]
        s.add(MessageEvent(message_id=hello["bob"].id, customer_id=bob.id,
                           kind=EventKind.UNSUBSCRIBE, at=NOW + 4 * D))  # fmt: skip
    flow.plan(NOW + 7 * D)
    assert steps_of(flow, "bob") == ["hello", "story"]
    assert ("first", "tips", "unsubscribed") in exits(flow)


def test_a_goal_reached_is_an_exit(flow: Shop) -> None:
    write_flow(flow, STEPS, exit=[{"goal": {"nth_order": 2}}])
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    flow.order("a2", "ana", NOW + 2 * D)
    flow.plan(NOW + 3 * D)
    assert exits(flow) == [("first", "story", "order number 2")]


# ---------------------------------------------------------------- edits while inside


def test_a_new_step_reaches_only_those_not_past_its_point(flow: Shop) -> None:
    flow.customer("early")
    flow.customer("late")
    flow.order("e1", "early", NOW - 5 * M)
    flow.plan(NOW)
    flow.plan(NOW + 3 * D)
    flow.order("l1", "late", NOW + 5 * D - 5 * M)
    flow.plan(NOW + 5 * D)  # early: hello, story; late: hello
    # A step added between story (3d) and tips (7d): due at 5d after entry.
    steps = [*STEPS[:2], {"id": "survey", "after": "2d", "template": "welcome", "subject": "?"},
             {**STEPS[2], "after": "2d"}]  # fmt: skip
    write_flow(flow, steps, exit=["ordered"])
    flow.plan(NOW + 5 * D + 10 * M)
    for day in range(6, 14):
        flow.plan(NOW + day * D)
    # early's time for survey (5d) had come before the step was added: skipped.
    assert steps_of(flow, "early") == ["hello", "story", "tips"]
    assert steps_of(flow, "late") == ["hello", "story", "survey", "tips"]


def test_a_removed_step_is_skipped_and_its_waiting_email_expires(flow: Shop) -> None:
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    flow.plan(NOW + 3 * D)
    [_, story] = flow.messages("series")
    assert story.status == MessageStatus.QUEUED
    write_flow(flow, [STEPS[0], {**STEPS[2], "after": "7d"}], exit=["ordered"])
    flow.plan(NOW + 3 * D + 20 * M)
    [_, story] = flow.messages("series")
    assert story.status == MessageStatus.EXPIRED
    assert story.last_error == "not sent: its step was removed from the campaign file"
    flow.plan(NOW + 7 * D)
    assert steps_of(flow, "ana") == ["hello", "story", "tips"]
    assert flow.messages("series")[2].status == MessageStatus.QUEUED


def test_reordered_steps_are_matched_by_id(flow: Shop) -> None:
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    flow.plan(NOW + 3 * D)  # ana: hello, story
    # tips now comes before story: ana is past it (she had story), so it is skipped.
    reordered = [STEPS[0], {**STEPS[2], "after": "3d"}, {**STEPS[1], "after": "4d"}]
    write_flow(flow, reordered, exit=["ordered"])
    report = flow.plan(NOW + 3 * D + 20 * M)["series"]
    assert report["steps"]["tips"]["skipped_passed"] == 1
    flow.customer("bob")
    flow.order("b1", "bob", NOW + 3 * D + 20 * M)
    for day in range(4, 12):
        flow.plan(NOW + day * D)
    assert steps_of(flow, "ana") == ["hello", "story"]
    assert steps_of(flow, "bob") == ["hello", "tips", "story"]


def test_a_retimed_step_goes_at_its_new_time(flow: Shop) -> None:
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    flow.plan(NOW + 3 * D)
    write_flow(flow, [*STEPS[:2], {**STEPS[2], "after": "7d"}], exit=["ordered"])
    flow.plan(NOW + 7 * D)
    assert steps_of(flow, "ana") == ["hello", "story"]
    flow.plan(NOW + 10 * D)
    assert steps_of(flow, "ana") == ["hello", "story", "tips"]


def test_a_campaign_given_steps_does_not_greet_again(flow: Shop) -> None:
    """The one email of the campaign before it had steps counts as its first step."""
    single = {"name": "series", "trigger": {"type": "first_order", "expires_after": "2d"},
              "template": "welcome", "subject": "Hello"}  # fmt: skip
    (flow.dir / "campaigns" / "series.yaml").write_text(yaml.safe_dump(single))
    flow.loaded = None
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    assert steps_of(flow, "ana") == [None]
    write_flow(flow, STEPS, exit=["ordered"])
    flow.plan(NOW + 20 * M)
    flow.plan(NOW + 3 * D)
    assert steps_of(flow, "ana") == [None, "story"]


def test_a_step_held_back_by_the_cap_waits_until_it_expires(flow: Shop) -> None:
    flow.edit("config.yaml", lambda c: c["sending"].update(frequency_cap={"max": 1, "per": "2d"}))
    write_flow(flow, [STEPS[0], {**STEPS[1], "after": "1d"}], exit=["ordered"])
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    report = flow.plan(NOW + D)["series"]
    assert report["steps"]["story"]["skipped_cap"] == 1
    # The cap frees at NOW + 2d; the step's expiry (2d after it fell due) is NOW + 3d.
    flow.plan(NOW + 2 * D + 20 * M)
    assert steps_of(flow, "ana") == ["hello", "story"]


def test_a_step_capped_past_its_expiry_is_dropped(flow: Shop) -> None:
    flow.edit("config.yaml", lambda c: c["sending"].update(frequency_cap={"max": 1, "per": "5d"}))
    write_flow(flow, [STEPS[0], {**STEPS[1], "after": "1d"}], exit=["ordered"])
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    flow.plan(NOW)
    flow.plan(NOW + D)
    flow.plan(NOW + 5 * D + 20 * M)
    assert steps_of(flow, "ana") == ["hello"]


def test_a_step_segment_filters_that_step_only(flow: Shop) -> None:
    steps = [STEPS[0], {**STEPS[1], "segment": "regulars"}, STEPS[2]]
    write_flow(flow, steps, exit=["unsubscribed"])
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    for day in range(0, 8):
        flow.plan(NOW + day * D)
    assert steps_of(flow, "ana") == ["hello", "tips"]


def test_steps_survive_two_planners(flow: Shop) -> None:
    flow.customer("ana")
    flow.order("a1", "ana", NOW - 5 * M)
    first, second = flow.plan(NOW), flow.plan(NOW)
    assert (first["series"]["queued"], second["series"]["queued"]) == (1, 0)
    with Session(flow.engine) as s:
        keys = s.exec(select(Message.dedupe_key)).scalars().all()  # type: ignore[call-overload]
    assert len(keys) == len(set(keys)) == 1
