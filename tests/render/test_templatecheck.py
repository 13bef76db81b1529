"""The shipped templates, and what `lifecycle check` says about broken ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.check import _checkers, check_project
from engine.errors import Problem
from engine.project.loader import Project, load_project
from engine.render.renderer import Renderer
from engine.render.samplecontext import sample_context
from engine.render.templatecheck import check_templates

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates" / "emails"
CAMPAIGNS = ["welcome", "thank_you", "holiday_preannounce", "price_drop_refund"]
BENGALI_LETTERS = re.compile(r"[\u0980-\u09f2\u09f4-\u09ff]")  # the Bengali block but ৳


@pytest.fixture(scope="module")
def shipped() -> tuple[Project, Renderer]:
    project = load_project(REPO / "config.yaml")
    return project, Renderer(project.templates_dir)


def test_the_shipped_templates_pass_the_check(shipped: tuple[Project, Renderer]) -> None:
    project, _ = shipped
    assert check_templates(project) == []
    assert check_templates in _checkers()


@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_every_campaign_has_bengali_and_english_copy(
    shipped: tuple[Project, Renderer], campaign: str
) -> None:
    project, renderer = shipped
    for suffix in ("html", "txt"):
        assert renderer.variant(campaign, suffix, "bn_BD") == f"{campaign}.bn.{suffix}"
        assert renderer.variant(campaign, suffix, "en") == f"{campaign}.{suffix}"
        english = renderer.render_file(
            f"{campaign}.{suffix}", sample_context(project, project.campaigns[campaign], "en")
        )
        bengali = renderer.render_file(
            f"{campaign}.bn.{suffix}",
            sample_context(project, project.campaigns[campaign], "bn_BD"),
        )
        assert not BENGALI_LETTERS.search(english), campaign
        letters = len(BENGALI_LETTERS.findall(re.sub(r"<[^>]+>", "", bengali)))
        assert letters > 150, f"{campaign}.bn.{suffix} is not written in Bengali"
        for text in (english, bengali):
            assert project.config.shop.address in text


def test_the_layout_is_mobile_friendly_with_bengali_fonts() -> None:
    layout = (TEMPLATES / "_base.html").read_text(encoding="utf-8")
    assert '"Noto Sans Bengali", "Hind Siliguri"' in layout and "sans-serif" in layout
    assert "max-width: 600px" in layout and 'name="viewport"' in layout
    assert '<div class="preheader">{{ preheader }}</div>' in layout
    assert '<img class="pixel" src="{{ pixel_url }}"' in layout
    assert "{{ shop.address }}" in layout and "{{ unsubscribe_url }}" in layout


def test_mobile_rules_survive_inlining(shipped: tuple[Project, Renderer]) -> None:
    project, renderer = shipped
    html = renderer.render_file(
        "thank_you.html", sample_context(project, project.campaigns["thank_you"], "en")
    )
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style and "@media only screen and (max-width: 620px)" in style.group(1)
    assert "!important" in style.group(1)  # or the inlined styles would win on phones
    assert 'class="container" width="100%"' in html and "max-width:600px" in html


def test_the_refund_notice_states_every_figure(shipped: tuple[Project, Renderer]) -> None:
    project, renderer = shipped
    context = sample_context(project, project.campaigns["price_drop_refund"], "bn_BD")
    text = renderer.render_file("price_drop_refund.bn.txt", context)
    for line in (
        "অর্ডার নম্বর: NG-10234",
        "পণ্য: সিলেটের চা, ৫০০ গ্রাম",
        "আপনি দিয়েছিলেন (প্রতিটি): ৩২০.৫০৳",
        "নতুন দাম (প্রতিটি): ৩১৩.২৫৳",
        "পরিমাণ: ২",
        "আপনার অ্যাকাউন্টে ফেরত: ১৪.৫০৳",
    ):
        assert line in text


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_check_reports_every_broken_template_with_file_and_line(project_dir: Path) -> None:
    emails = project_dir / "templates" / "emails"
    edit(emails / "welcome.bn.html", "<h2>আমাদের গল্প</h2>", "<h2>{{ shop.owner }}</h2>")
    edit(emails / "thank_you.txt", "WHAT WAS IN IT", "{% for line in %}")
    edit(emails / "holiday_preannounce.txt", "See the offers:", "{{ ''.__class__.__mro__ }}")
    edit(emails / "welcome.txt", "Unsubscribe with one click: {{ unsubscribe_url }}", "")
    edit(
        emails / "price_drop_refund.txt", "Turn off our marketing emails: {{ unsubscribe_url }}", ""
    )
    edit(
        project_dir / "campaigns" / "welcome.yaml",
        "স্বাগতম, {{ customer.first_name }}",
        "{{ customr }}",
    )
    project, problems = check_project(project_dir / "config.yaml")
    assert project is not None
    folder = "templates/emails"
    expected = [
        Problem(
            f"{folder}/welcome.bn.html",
            line_of(emails / "welcome.bn.html", "shop.owner"),
            "",
            "'shop.owner' is undefined; shop has: name, url, address, story, support_email, "
            "locale, timezone, currency",
        ),
        Problem(
            f"{folder}/thank_you.txt",
            line_of(emails / "thank_you.txt", "{% for line in %}"),
            "",
            "Expected an expression, got 'end of statement block'",
        ),
        Problem(
            "campaigns/welcome.yaml",
            line_of(project_dir / "campaigns" / "welcome.yaml", "{{ customr }}"),
            "subject.bn",
            "subject: 'customr' is undefined (did you mean 'customer'?); this email has: "
            "campaign, step, shop, customer, order, last_order, favourite, product, cart, "
            "occasion, period, nth, coupon, tier_change, referral, reward, holiday, offers, item, "
            "credit, preheader, subject, unsubscribe_url, pixel_url, survey, is_marketing, locale, "
            "lang, timezone, currency",
        ),
        Problem(
            f"{folder}/welcome.txt",
            None,
            "",
            "a marketing email must carry the unsubscribe link ({{ unsubscribe_url }})",
        ),
    ]
    for problem in expected:
        assert problem in problems, f"{problem} not in {[str(p) for p in problems]}"
    escape = [p for p in problems if p.file == f"{folder}/holiday_preannounce.txt"]
    assert escape and all("SecurityError" in p.message for p in escape)
    assert escape[0].line == line_of(emails / "holiday_preannounce.txt", "__class__")
    # The refund is transactional: no unsubscribe link required.
    assert not [p for p in problems if "price_drop_refund" in p.file]


def test_check_insists_on_the_postal_address(project_dir: Path) -> None:
    emails = project_dir / "templates" / "emails"
    base = emails / "_base.html"
    base.write_text(
        base.read_text(encoding="utf-8").replace(
            "{{ shop.name }} · {{ shop.address }}", "{{ shop.name }}"
        ),
        encoding="utf-8",
    )
    problems = check_templates(load_project(project_dir / "config.yaml"))
    files = {p.file for p in problems}
    assert {f"templates/emails/{c}.html" for c in CAMPAIGNS} <= files
    assert {f"templates/emails/{c}.bn.html" for c in CAMPAIGNS} <= files
    assert all("postal address" in p.message for p in problems)


def test_check_reports_css_that_cannot_be_inlined_ahead(project_dir: Path) -> None:
    emails = project_dir / "templates" / "emails"
    edit(
        emails / "_base.html",
        ".old {",
        ".lines tr + tr td { background-color: #fafafa; }\n.old {",
    )
    edit(
        emails / "thank_you.html",
        "<tr><td>{{ line.product_name }}",
        '<tr class="{{ line.sku }}"><td>{{ line.product_name }}',
    )
    project = load_project(project_dir / "config.yaml")
    problems = check_templates(project)
    sibling = line_of(emails / "_base.html", ".lines tr + tr td")
    assert any(
        p.file == "templates/emails/_base.html"
        and p.line == sibling
        and "'.lines tr + tr td' uses a sibling combinator" in p.message
        and "inlined per email" in p.message
        for p in problems
    ), problems
    assert any(
        p.file == "templates/emails/thank_you.html" and "class= is built from" in p.message
        for p in problems
    ), problems
    # Accepting the cost silences the note; the email still renders, inlined per email.
    for name in ("_base.html", "thank_you.html"):
        edit(
            emails / name,
            "{% block content %}",
            "{# lifecycle: inline-per-email #}{% block content %}",
        )
    project = load_project(project_dir / "config.yaml")  # the check reads what it loaded
    assert check_templates(project) == []
    renderer = Renderer(project.templates_dir)
    assert renderer.html_template("thank_you.html").inline_per_email
