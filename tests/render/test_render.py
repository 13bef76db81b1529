"""Sandboxed rendering, compile-time CSS inlining and its fallback."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from engine.errors import RenderError
from engine.project import pick_text
from engine.project.loader import Project, load_project
from engine.render import inlining
from engine.render.inlining import inline_css
from engine.render.limits import Limits
from engine.render.renderer import Renderer, text_part
from engine.render.samplecontext import sample_context

REPO = Path(__file__).resolve().parents[2]

LAYOUT = """<!DOCTYPE html>
<html><head><style>
.note { color: #123456; }
tr + tr td { border-top: 1px solid #abcdef; }
</style></head>
<body>{% block content %}{% endblock %}</body></html>
"""
STYLE_ONLY = """<!DOCTYPE html>
<html><head><style>
.note { color: #123456; }
p.big { font-size: 20px; }
</style></head>
<body>{% block content %}{% endblock %}
<p class="footer">{{ shop.name }}</p></body></html>
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def context(**extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "shop": {"name": "Nakshi Ghor", "locale": "bn_BD", "currency": "BDT"},
        "customer": {"name": "Rahima", "first_name": "Rahima"},
        "locale": "en",
        "timezone": "Asia/Dhaka",
        "currency": "BDT",
    }
    values.update(extra)
    return values


@pytest.fixture
def simple(tmp_path: Path) -> Renderer:
    folder = write(
        tmp_path / "t",
        {
            "_base.html": STYLE_ONLY,
            "mail.html": '{% extends "_base.html" %}{% block content %}\n'
            '<p class="note">Hello {{ customer.name }}</p>\n'
            '<p class="big">{{ amount | money }}</p>\n{% endblock %}',
            "mail.txt": "Hello {{ customer.name }}, {{ amount | money }}",
        },
    )
    return Renderer(folder)


def test_compiled_template_has_css_inlined_and_renders_without_premailer(
    simple: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = simple.html_template("mail.html")
    assert not compiled.inline_per_email

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("premailer must not run per email")

    monkeypatch.setattr(inlining.premailer, "Premailer", refuse)
    html = simple.render_file("mail.html", context(amount="1250", customer={"name": "<b>A&B</b>"}))
    assert re.search(
        r'<p class="note" style="color:#123456">Hello &lt;b&gt;A&amp;B&lt;/b&gt;</p>', html
    )
    assert 'style="font-size:20px"' in html and "৳1,250.00" in html


def test_text_parts_and_subjects_are_not_escaped(simple: Renderer) -> None:
    ctx = context(amount="1", customer={"name": "A&B <x>"})
    assert simple.render_file("mail.txt", ctx) == "Hello A&B <x>, ৳1.00"
    assert simple.render_string("Hi {{ customer.name }}", ctx, "subject") == "Hi A&B <x>"


def test_templates_compile_once_per_version(
    simple: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = inlining.premailer.Premailer

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(inlining.premailer, "Premailer", counting)
    inlining._inlined.cache_clear()  # count this renderer's own, not what tests before kept
    for _ in range(5):
        simple.revalidate()
        simple.render_file("mail.html", context(amount="1"))
    assert len(calls) == 1
    path = simple.templates_dir / "mail.html"
    path.write_text(path.read_text().replace("Hello", "Welcome back"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    simple.revalidate()
    assert "Welcome back Rahima" in simple.render_file("mail.html", context(amount="1"))
    assert len(calls) == 2
    # The layout is part of the version too.
    base = simple.templates_dir / "_base.html"
    base.write_text(STYLE_ONLY.replace("#123456", "#654321"), encoding="utf-8")
    os.utime(base, ns=(stat.st_atime_ns, stat.st_mtime_ns + 9_000_000_000))
    simple.revalidate()
    assert "color:#654321" in simple.render_file("mail.html", context(amount="1"))


def test_sibling_combinator_falls_back_to_inlining_per_email(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "t",
        {
            "_base.html": LAYOUT,
            "rows.html": '{% extends "_base.html" %}{% block content %}<table>\n'
            '{% for r in rows %}<tr class="row"><td>{{ r }}</td></tr>{% endfor %}\n'
            "</table>{% endblock %}",
        },
    )
    renderer = Renderer(folder)
    compiled = renderer.html_template("rows.html")
    assert compiled.inline_per_email
    assert any("sibling combinator" in note and "_base.html:4" in note for note in compiled.notes)
    html = renderer.render_file("rows.html", {"rows": ["a", "b", "c"]})
    cells = lxml.html.document_fromstring(html).xpath("//td")
    borders = ["border-top" in (cell.get("style") or "") for cell in cells]
    assert borders == [False, True, True]  # matched only once the rows exist


def test_includes_and_top_level_sets_are_spliced_in_before_inlining(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "t",
        {
            "_base.html": STYLE_ONLY,
            "_greeting.html": '<p class="note">Hello {{ who }}</p>',
            "mail.html": '{% extends "_base.html" %}{% set who = customer.name %}'
            '{% block content %}{% include "_greeting.html" %}{% endblock %}',
        },
    )
    renderer = Renderer(folder)
    compiled = renderer.html_template("mail.html")
    assert not compiled.inline_per_email
    html = renderer.render_file("mail.html", context())
    assert '<p class="note" style="color:#123456">Hello Rahima</p>' in html
    assert _dom(html) == _dom(
        inline_css(renderer._html_env.get_template("mail.html").render(context()))
    )


@pytest.mark.parametrize(
    ("child", "note"),
    [
        pytest.param(
            '{% extends "_base.html" %}{% macro hi(n) %}<p class="note">{{ n }}</p>{% endmacro %}'
            "{% block content %}{{ hi(customer.name) }}{% endblock %}",
            "mail.html:1: a macro is only known once rendered",
            id="macro",
        ),
        pytest.param(
            '{% extends "_base.html" %}{% block content %}{{ super() }}'
            '<p class="note">{{ customer.name }}</p>{% endblock %}',
            "mail.html:1: super() is only known once rendered",
            id="super",
        ),
    ],
)
def test_what_cannot_be_spliced_is_inlined_per_email(tmp_path: Path, child: str, note: str) -> None:
    renderer = Renderer(write(tmp_path / "t", {"_base.html": STYLE_ONLY, "mail.html": child}))
    compiled = renderer.html_template("mail.html")
    assert compiled.inline_per_email and compiled.notes == (note,)
    html = renderer.render_file("mail.html", context())
    assert '<p class="note" style="color:#123456">Rahima</p>' in html


def test_jinja_inside_css_falls_back_when_it_cannot_survive_inlining(tmp_path: Path) -> None:
    source = (
        "<html><head><style>p { color: {{ colour }}; }</style></head>"
        "<body><p>one</p><p>two</p></body></html>"
    )
    renderer = Renderer(write(tmp_path / "t", {"paint.html": source}))
    compiled = renderer.html_template("paint.html")
    assert compiled.inline_per_email
    assert compiled.notes == ("paint.html: template syntax did not survive CSS inlining",)
    html = renderer.render_file("paint.html", {"colour": "#ff0000"})
    assert html.count('style="color:#f00"') == 2  # cssutils shortens the colour


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "t",
        {
            "_base.html": STYLE_ONLY,
            "mail.html": '{% extends "_base.html" %}{% block content %}\n<p>ok</p>\n'
            "<p>{{ order.number }}</p>\n{% endblock %}",
        },
    )
    renderer = Renderer(folder)
    with pytest.raises(RenderError) as caught:
        renderer.render_file("mail.html", context())
    assert str(caught.value) == (
        "mail.html:3: 'order' is undefined; this email has: shop, customer, locale, timezone, "
        "currency"
    )
    assert (caught.value.file, caught.value.line) == ("mail.html", 3)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = write(tmp_path / "t", {"bad.txt": "line one\n{% for x in %}\n{% endfor %}"})
    with pytest.raises(RenderError, match=r"^bad.txt:2: ") as caught:
        Renderer(folder).render_file("bad.txt", {})
    assert caught.value.line == 2


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ ''.__class__.__mro__ }}", id="dunder"),
        pytest.param("{{ ('{0.__class__}' | attr('format'))(1) }}", id="attr-format"),
        pytest.param("{{ '{0.__class__.__base__}'.format(1) }}", id="str-format"),
        pytest.param("{{ shop.update({'name': 'x'}) }}", id="mutate-dict"),
    ],
)
def test_sandbox_escapes_are_blocked(tmp_path: Path, source: str) -> None:
    renderer = Renderer(write(tmp_path / "t", {"evil.txt": source}))
    with pytest.raises(RenderError, match="SecurityError"):
        renderer.render_file("evil.txt", context())


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        pytest.param("{{ 'x' * 100000000 }}", "repeating 1 items 100,000,000 times", id="repeat"),
        pytest.param("{{ [0] * 10 ** 9 }}", "repeating 1 items 1,000,000,000 times", id="list"),
        pytest.param("{{ 7 ** 10000000 }}", "7 ** 10000000 is too large a number", id="power"),
        pytest.param(
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
            "the loops would take more than 100,000 steps in all",
            id="loops",
        ),
        pytest.param(
            "{% for i in range(90000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}",
            "rendered output is over the 1,000,000 limit",
            id="output",
        ),
    ],
)
def test_a_template_cannot_run_away(tmp_path: Path, source: str, reason: str) -> None:
    """Each is refused quickly, naming the file (and the line, where there is one)
    without building the thing."""
    renderer = Renderer(write(tmp_path / "t", {"huge.txt": "Hello\n" + source}))
    started = time.perf_counter()
    with pytest.raises(RenderError) as caught:
        renderer.render_file("huge.txt", context())
    assert time.perf_counter() - started < 5
    where = "huge.txt: " if "output" in reason else "huge.txt:2: "  # the whole output: no line
    assert str(caught.value).startswith(where) and reason in str(caught.value)


def test_what_fits_the_limits_renders(tmp_path: Path) -> None:
    source = (
        "{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}"
        "{{ 'ab' * 3 }}{{ 2 ** 64 }}"
    )
    renderer = Renderer(write(tmp_path / "t", {"ok.txt": source}))
    assert renderer.render_file("ok.txt", context()) == "ababab18446744073709551616"
    assert (
        renderer.render_file("ok.txt", context()) == "ababab18446744073709551616"
    )  # budget per render


def test_a_slow_rendering_is_stopped(tmp_path: Path) -> None:
    renderer = Renderer(
        write(tmp_path / "t", {"a.txt": "{% for i in range(5) %}{{ i }}{% endfor %}"}),
        limits=Limits(seconds=-1.0),  # every rendering is already late
    )
    with pytest.raises(
        RenderError, match=r"^a.txt:1: SecurityError: rendering took more than -1 s"
    ):
        renderer.render_file("a.txt", context())


def test_no_environment_or_config_objects_reach_templates(tmp_path: Path) -> None:
    renderer = Renderer(write(tmp_path / "t", {"a.txt": "{{ config }}", "b.txt": "{{ lipsum() }}"}))
    for name in ("a.txt", "b.txt"):
        with pytest.raises(RenderError, match="is undefined"):
            renderer.render_file(name, context())


def test_dict_keys_win_over_dict_methods(tmp_path: Path) -> None:
    renderer = Renderer(
        write(tmp_path / "t", {"a.txt": "{% for i in order.items %}{{ i }};{% endfor %}"})
    )
    assert renderer.render_file("a.txt", {"order": {"items": ["x", "y"]}}) == "x;y;"


def test_output_over_the_size_cap_fails(tmp_path: Path) -> None:
    renderer = Renderer(
        write(tmp_path / "t", {"big.txt": "{% for i in range(n) %}x{% endfor %}"}), max_output=1000
    )
    assert renderer.render_file("big.txt", {"n": 1000}) == "x" * 1000
    with pytest.raises(RenderError, match="over the 1,000 limit"):
        renderer.render_file("big.txt", {"n": 1001})


def test_locale_variant_is_picked_with_fallback(tmp_path: Path) -> None:
    renderer = Renderer(
        write(tmp_path / "t", {"m.txt": "plain", "m.bn.txt": "বাংলা", "n.txt": "only plain"})
    )
    assert renderer.variant("m", "txt", "bn_BD") == "m.bn.txt"
    assert renderer.variant("m", "txt", "en") == "m.txt"
    assert renderer.variant("n", "txt", "bn_BD") == "n.txt"


@pytest.mark.parametrize(
    ("rendered", "text"),
    [
        pytest.param("Hi\n\n--\nShop", "Hi\n\n-- \nShop\n", id="separator-and-newline"),
        pytest.param("Hi\n-- \nShop\n\n\n", "Hi\n-- \nShop\n", id="one-newline"),
        pytest.param("Hi\n--  \t\nShop", "Hi\n-- \nShop\n", id="spaces-after"),
        pytest.param("a\n--\nb\n--\nShop", "a\n--\nb\n-- \nShop\n", id="the-last-only"),
        pytest.param("Hi\n---\n- -\nx --", "Hi\n---\n- -\nx --\n", id="no-separator"),
        pytest.param("", "\n", id="empty"),
    ],
)
def test_text_part_ends_in_a_newline_with_the_signature_separator(rendered: str, text: str) -> None:
    assert text_part(rendered) == text
    assert text_part(text) == text


# ---------------------------------------------------------------- shipped templates


@pytest.fixture(scope="module")
def shipped() -> tuple[Project, Renderer]:
    project = load_project(REPO / "config.yaml")
    return project, Renderer(project.templates_dir)


def _dom(html: str) -> str:
    return lxml.html.tostring(lxml.html.document_fromstring(html), encoding="unicode")


@pytest.mark.parametrize("locale", ["en", "bn_BD"])
@pytest.mark.parametrize(
    "campaign", ["welcome", "thank_you", "holiday_preannounce", "price_drop_refund"]
)
def test_compile_time_inlining_equals_inlining_each_email(
    shipped: tuple[Project, Renderer], campaign: str, locale: str
) -> None:
    project, renderer = shipped
    ctx = sample_context(project, project.campaigns[campaign], locale)
    name = renderer.variant(campaign, "html", locale)
    assert not renderer.html_template(name).inline_per_email
    compiled = renderer.render_file(name, ctx)
    per_email = inline_css(renderer._html_env.get_template(name).render(ctx))
    assert _dom(compiled) == _dom(per_email)
    assert 'style="' in compiled and "Noto Sans Bengali" in compiled


@pytest.mark.parametrize("locale", ["en", "bn_BD"])
def test_every_text_part_signs_off_before_its_footer(
    shipped: tuple[Project, Renderer], locale: str
) -> None:
    """Every step of every shipped campaign: the footer (address, unsubscribe link) follows
    the signature separator `-- ` on a line of its own, and the text ends in a newline."""
    project, renderer = shipped
    for campaign in project.campaigns.values():
        for step in campaign.flow:
            where = f"{campaign.name} {step.label} {locale}"
            context = sample_context(project, campaign, locale, step=step)
            text = renderer.render_email(
                step.template,
                locale,
                context,
                subject=pick_text(step.subject, locale),
                preheader=pick_text(step.preheader, locale),
            ).text
            assert text.endswith("\n") and not text.endswith("\n\n"), where
            body, separator, footer = text.rpartition("\n-- \n")
            assert separator and body.strip(), where
            assert project.config.shop.address in footer, where
            assert context["unsubscribe_url"] in footer, where
