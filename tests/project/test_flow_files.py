"""Campaign files with steps, exits and the new triggers: what `check` says about each mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.project.loader import load_partial

HEAD = "name: series\ntrigger: {type: first_order, expires_after: 2d}\n"
STEP = "  - id: {id}\n    after: {after}\n    template: {template}\n    subject: Hi\n"


def problems(project_dir: Path, text: str) -> list[str]:
    (project_dir / "campaigns" / "series.yaml").write_text(text, encoding="utf-8")
    _, found = load_partial(project_dir / "config.yaml")
    return [str(p) for p in found if str(p).startswith("campaigns/series.yaml")]


def steps(*rows: tuple[str, str, str]) -> str:
    return "steps:\n" + "".join(STEP.format(id=i, after=a, template=t) for i, a, t in rows)


def test_a_flow_file_that_is_right_has_no_problem(project_dir: Path) -> None:
    text = HEAD + "exit: [ordered, unsubscribed, clicked, {segment: new_customers},"
    text += " {goal: {nth_order: 2}}]\n"
    text += steps(("hello", "0s", "welcome"), ("story", "3d", "thank_you"))
    assert problems(project_dir, text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            HEAD + "exit: [orderd]\n" + steps(("hello", "0s", "welcome")),
            'campaigns/series.yaml:3: exit[0]: unknown exit condition "orderd"'
            " (did you mean 'ordered'?)",
            id="unknown-exit",
        ),
        pytest.param(
            HEAD + "exit: [{goal: nth_order}]\n" + steps(("hello", "0s", "welcome")),
            "campaigns/series.yaml:3: exit[0]: goal nth_order needs the number:"
            " goal: {nth_order: 2}",
            id="goal-without-number",
        ),
        pytest.param(
            HEAD + steps(("hello", "-3d", "welcome")),
            'campaigns/series.yaml:5: steps[0].after: expected a duration like 2h or 3d, got "-3d"',
            id="negative-wait",
        ),
        pytest.param(
            HEAD + steps(("hello", "400d", "welcome")),
            "campaigns/series.yaml:5: steps[0].after: expected a duration from 0s to 365d,"
            ' got "400d"',
            id="absurd-wait",
        ),
        pytest.param(
            HEAD + steps(("hello", "0s", "welcome"), ("hello", "3d", "welcome")),
            "campaigns/series.yaml:3: steps: steps[1]: the id 'hello' is already used by"
            " steps[0] (steps are matched by id: each needs its own)",
            id="duplicate-ids",
        ),
        pytest.param(
            HEAD + steps(("hello", "0s", "welcom")),
            "campaigns/series.yaml:6: steps[0].template: template file"
            " templates/emails/welcom.html not found (did you mean 'welcome'?)",
            id="missing-template",
        ),
        pytest.param(
            HEAD
            + steps(("hello", "0s", "welcome")).replace(
                "subject: Hi", "subject: Hi\n    segment: vipp"
            ),
            "campaigns/series.yaml:8: steps[0].segment: no segment named 'vipp' in segments/"
            " (did you mean 'vip'?)",
            id="missing-step-segment",
        ),
        pytest.param(
            HEAD + "exit: [{segment: regularz}]\n" + steps(("hello", "0s", "welcome")),
            "campaigns/series.yaml:3: exit[0]: no segment named 'regularz' in segments/"
            " (did you mean 'regulars'?)",
            id="missing-exit-segment",
        ),
        pytest.param(
            HEAD + steps(("hello", "0s", "welcome")).replace("    after: 0s\n", "    aftr: 3d\n"),
            "campaigns/series.yaml:5: steps[0].aftr: unknown key (did you mean 'after'?)",
            id="unknown-step-key",
        ),
        pytest.param(
            "name: series\ntrigger: {type: birthdy}\ntemplate: welcome\nsubject: Hi\n",
            "campaigns/series.yaml:2: trigger.type: expected one of 'first_order',",
            id="unknown-trigger",
        ),
        pytest.param(
            "name: series\ntrigger: {type: inactive, dayz: 90}\ntemplate: welcome\nsubject: Hi\n",
            "campaigns/series.yaml:2: trigger.dayz: unknown key (did you mean 'days'?)",
            id="unknown-trigger-field",
        ),
        pytest.param(
            "name: series\ntrigger: {type: holiday, holidays: [eid_ul_fitr], days_before: 3}\n"
            + steps(("hello", "0s", "welcome")),
            "campaigns/series.yaml:1: a holiday campaign cannot have steps (it sends one email)",
            id="holiday-with-steps",
        ),
        pytest.param(
            HEAD + "template: welcome\n" + steps(("hello", "0s", "welcome")),
            "campaigns/series.yaml:1: with steps, each step has its own template and subject:"
            " remove template at the top of the file",
            id="template-and-steps",
        ),
        pytest.param(
            HEAD
            + "steps:\n"
            + STEP.format(id="a", after="5d", template="welcome")
            + "  - {id: b, after: 2d, from: entry, template: welcome, subject: Hi}\n",
            "campaigns/series.yaml:3: steps: steps[1] (b) falls due 2d after entry, before"
            " the step ahead of it (5d): steps run in order",
            id="out-of-order",
        ),
        pytest.param(
            "name: series\ntrigger: {type: after_purchase, delay: 30d}\ntemplate: welcome\n"
            "subject: Hi\n",
            "campaigns/series.yaml:2: trigger.after_purchase: after_purchase needs skus or categories",
            id="after-purchase-without-what",
        ),
        pytest.param(
            "name: series\ntrigger: {type: schedule, every: 36h}\ntemplate: welcome\nsubject: Hi\n",
            "campaigns/series.yaml:2: trigger.every: expected whole days or weeks like 14d or 2w,"
            " got 36h",
            id="schedule-not-whole-days",
        ),
        pytest.param(
            "name: series\ntrigger: {type: broadcast, at: 'next friday'}\ntemplate: welcome\n"
            "subject: Hi\n",
            "campaigns/series.yaml:2: trigger.at: expected a local date and time like"
            ' "2026-12-10 10:00", got "next friday"',
            id="broadcast-bad-time",
        ),
    ],
)
def test_each_mistake_is_named_with_file_line_and_a_hint(
    project_dir: Path, text: str, expected: str
) -> None:
    found = problems(project_dir, text)
    assert any(p.startswith(expected) for p in found), found


def test_every_new_trigger_has_a_default_expiry(project_dir: Path) -> None:
    triggers = {
        "inactive": "{type: inactive, days: 90}",
        "date": "{type: date, field: birthday}",
        "nth_order": "{type: nth_order, n: [2, 3, 4]}",
        "after_purchase": "{type: after_purchase, delay: 30d, categories: [tea]}",
        "product_added": "{type: product_added}",
        "back_in_stock": "{type: back_in_stock}",
        "schedule": "{type: schedule, every: 2w}",
        "broadcast": "{type: broadcast, at: '2026-12-10 10:00'}",
        "checkout_abandoned": "{type: checkout_abandoned}",
    }
    for name, trigger in triggers.items():
        text = f"name: series\ntrigger: {trigger}\ntemplate: welcome\nsubject: Hi\n"
        assert problems(project_dir, text) == [], name
        project, _ = load_partial(project_dir / "config.yaml")
        expiry = project.campaigns["series"].trigger.expires_after
        assert expiry is not None and timedelta(hours=1) <= expiry <= timedelta(days=7), name
