"""`lifecycle check` on flows: every step's template and texts, sample data per trigger."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from engine.errors import Problem
from engine.project.loader import load_project
from engine.render.samplecontext import sample_context
from engine.render.templatecheck import check_templates
from tests.render.test_context_flows import CAMPAIGNS, write_flow_project
from tests.render.test_templatecheck import line_of


def test_every_step_of_every_new_trigger_passes(project_dir: Path) -> None:
    assert check_templates(write_flow_project(project_dir)) == []


def test_a_step_subject_and_template_error_name_the_file_step_and_line(
    project_dir: Path,
) -> None:
    write_flow_project(project_dir)
    campaign = project_dir / "campaigns" / "lapsed.yaml"
    text = campaign.read_text(encoding="utf-8")
    campaign.write_text(text.replace("Step {{ step.number }}", "Step {{ step.nmber }}"), "utf-8")
    reminder = project_dir / "templates" / "emails" / "flowtest_reminder.txt"
    reminder.write_text("{{ product.name }}\n" + reminder.read_text("utf-8"), "utf-8")
    problems = check_templates(load_project(project_dir / "config.yaml"))
    assert (
        Problem(
            "campaigns/lapsed.yaml",
            line_of(campaign, "step.nmber"),
            "steps.1.subject",
            "step reminder: subject: 'step.nmber' is undefined (did you mean 'number'?); "
            "step has: id, number, of",
        )
        in problems
    ), [str(p) for p in problems]
    # An inactive customer's email is about no product: the second step's template says so.
    [template] = [p for p in problems if p.file.endswith("flowtest_reminder.txt")]
    assert (template.line, template.message) == (
        1,
        "'product.name' is undefined: product is None in this email",
    )


@pytest.mark.parametrize(
    ("campaign", "key", "shape"),
    [
        pytest.param("new_arrival", "product", {"in_stock", "stock", "name", "sku", "price",
                     "category"}, id="product_added"),
        pytest.param("restocked", "product", {"in_stock", "stock", "name", "sku", "price",
                     "category"}, id="back_in_stock"),
        pytest.param("basket", "cart", {"id", "items", "amount", "started_at"},
                     id="checkout_abandoned"),
        pytest.param("birthday_note", "occasion", {"field", "date", "years"}, id="date"),
        pytest.param("fortnight", "period", {"start"}, id="schedule"),
    ],
)  # fmt: skip
def test_samples_have_the_shape_of_each_trigger(
    project_dir: Path, campaign: str, key: str, shape: set[str]
) -> None:
    project = write_flow_project(project_dir)
    context = sample_context(project, project.campaigns[campaign], "bn_BD")
    assert set(context[key]) == shape
    assert context["favourite"]["category"] and len(context["favourite"]["products"]) == 3
    assert context["last_order"]["items"] and context["customer"]["days_since_order"] == 45
    others = {"product", "cart", "occasion", "period"} - {key}
    assert all(context[other] is None for other in others), others
    assert context["nth"] is None


def test_samples_of_orders_steps_and_the_founding_triggers(project_dir: Path) -> None:
    project = write_flow_project(project_dir)
    campaigns = project.campaigns
    lapsed = campaigns["lapsed"]
    second = sample_context(project, lapsed, "en", step=lapsed.flow[1])
    assert second["step"] == {"id": "reminder", "number": 2, "of": 2}
    assert second["customer"]["days_since_order"] == 60  # the trigger's days
    assert second["order"]["number"] == second["last_order"]["number"]
    assert sample_context(project, campaigns["ladder"], "en")["nth"] == 2
    assert sample_context(project, campaigns["tea_again"], "en")["order"] is not None
    birthday = sample_context(project, campaigns["birthday_note"], "en")["occasion"]
    assert birthday["field"] == "birthday" and isinstance(birthday["date"], date)
    founding = sample_context(project, campaigns["thank_you"], "en")
    assert founding["favourite"] == {"category": None, "products": []}
    assert founding["last_order"] is None and founding["customer"]["days_since_order"] is None
    assert founding["step"] == {"id": None, "number": 1, "of": 1}
    assert set(CAMPAIGNS) <= set(campaigns)
