"""`lifecycle preview`: what one customer would get, from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from engine.cli import main
from engine.store.db import make_engine, session_scope, upgrade
from engine.store.models import Message
from tests.render.test_context import fill_shop

SECRET = "a-test-secret-of-32-characters!!"


@pytest.fixture
def shop_dir(project_dir: Path) -> Path:
    """The shipped project with a SQLite database holding two customers and their orders."""
    engine = make_engine(f"sqlite:///{project_dir / 'lifecycle.db'}")
    upgrade(engine)
    with session_scope(engine) as session:
        fill_shop(session)
    engine.dispose()
    return project_dir


def run(shop_dir: Path, *args: str, secret: str | None = SECRET) -> Result:
    env = {"LIFECYCLE_SECRET": secret, "LIFECYCLE_DATABASE_URL": None, "LIFECYCLE_CONFIG": None}
    return CliRunner().invoke(
        main, ["preview", *args, "--config", str(shop_dir / "config.yaml")], env=env
    )


def messages(shop_dir: Path) -> int:
    engine = make_engine(f"sqlite:///{shop_dir / 'lifecycle.db'}")
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Message)).scalar_one()
    engine.dispose()
    return int(count)


def test_text_part_for_a_customer_by_shop_id(shop_dir: Path) -> None:
    result = run(shop_dir, "thank_you", "--customer", "c1", "--text")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Subject: Nakshi Ghor-এ আপনার অর্ডার NG-1-এর জন্য ধন্যবাদ\n")
    assert "- পাটের ব্যাগ × ২: ৯০০.০০৳" in result.output
    assert "মোট: ৯,৪০০.০০৳" in result.output
    assert "http://127.0.0.1:8000/u/" in result.output
    assert messages(shop_dir) == 0


def test_html_to_a_file_for_a_customer_by_email(shop_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "refund.html"
    result = run(shop_dir, "price_drop_refund", "--customer", "SAM@example.com", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "NG-2" in html and "Sylhet tea" in html
    assert "House 12, Road 5, Dhanmondi" in html
    assert 'src="http://127.0.0.1:8000/o/' in html


def test_default_customer_is_one_the_campaign_fits(shop_dir: Path) -> None:
    result = run(shop_dir, "welcome")
    assert result.exit_code == 0, result.output
    assert result.output.lstrip().startswith("<!DOCTYPE html>")
    assert "স্বাগতম, রহিমা!" in result.output  # the customer with the earliest first order


def test_missing_secret_is_said_clearly(shop_dir: Path) -> None:
    result = run(shop_dir, "welcome", secret=None)
    assert result.exit_code == 2
    assert "LIFECYCLE_SECRET: is not set" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["welcome", "--customer", "nobody"],
            "no customer with id or email 'nobody'",
            id="customer",
        ),
        pytest.param(["nope"], "no campaign named 'nope'", id="campaign"),
    ],
)
def test_unknown_names_are_errors(shop_dir: Path, args: list[str], message: str) -> None:
    result = run(shop_dir, *args)
    assert result.exit_code == 1
    assert message in result.output


@pytest.mark.parametrize(
    ("name", "attack", "message"),
    [
        pytest.param(
            "thank_you.bn.txt",
            '{% include "/proc/self/environ" %}',
            "is an absolute path",
            id="environ",
        ),
        pytest.param(
            "thank_you.bn.html",
            "{% for a in order.number * 99999 %}{% for b in order.number * 99999 %}"
            "{% endfor %}{% endfor %}",
            "the loops would take more than 100,000 steps",
            id="runaway",
        ),
        pytest.param(
            "thank_you.bn.html",
            '<a href="javascript:alert(1)">x</a>',
            "the link 'javascript:alert(1)' may not go out",
            id="link",
        ),
    ],
)
def test_a_template_that_breaks_the_rules_fails_the_preview(
    shop_dir: Path, name: str, attack: str, message: str
) -> None:
    path = shop_dir / "templates" / "emails" / name
    lines = path.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if "order.number" in line)
    lines.insert(at + 1, attack)
    path.write_text("\n".join(lines), encoding="utf-8")
    result = run(shop_dir, "thank_you", "--customer", "c1", "--text")
    assert result.exit_code == 1, result.output
    assert message in result.output
    if "link" not in message:
        assert f"{name}:{at + 2}: SecurityError" in result.output
    assert SECRET not in result.output and "LIFECYCLE" not in result.output


FLOW = """\
name: greeting_flow
description: A greeting, then a nudge two days later
trigger: {type: first_order}
steps:
  - id: greet
    template: welcome
    subject: "Welcome, {{ customer.first_name }}"
  - id: nudge
    after: 2d
    template: thank_you
    subject: "Still there? Step {{ step.number }} of {{ step.of }}"
"""


@pytest.fixture
def flow_dir(shop_dir: Path) -> Path:
    (shop_dir / "campaigns" / "greeting_flow.yaml").write_text(FLOW)
    return shop_dir


def test_any_step_of_a_flow_is_shown(flow_dir: Path) -> None:
    first = run(flow_dir, "greeting_flow", "--customer", "c1", "--text")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("Subject: Welcome, ")
    second = run(flow_dir, "greeting_flow", "--customer", "c1", "--step", "nudge", "--text")
    assert second.exit_code == 0, second.output
    assert second.output.startswith("Subject: Still there? Step 2 of 2\n")
    assert "NG-1" in second.output  # the thank-you template, with the customer's order
    assert messages(flow_dir) == 0


def test_the_step_is_named_when_written_to_a_file(flow_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "nudge.html"
    result = run(
        flow_dir, "greeting_flow", "--step", "nudge", "--customer", "c1", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (greeting_flow, step nudge, for customer" in result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("campaign", "step", "message"),
    [
        pytest.param(
            "greeting_flow",
            "nuge",
            "campaign greeting_flow has no step 'nuge' (its steps: greet, nudge)",
            id="unknown-step",
        ),
        pytest.param(
            "thank_you",
            "reminder",
            "campaign thank_you has no steps: it sends one email",
            id="no-steps",
        ),
    ],
)
def test_an_unknown_step_is_a_clear_error(
    flow_dir: Path, campaign: str, step: str, message: str
) -> None:
    result = run(flow_dir, campaign, "--customer", "c1", "--step", step)
    assert result.exit_code == 1
    assert f"error: {message}" in " ".join(result.output.split())
