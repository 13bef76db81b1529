"""What a broken template says: the variable by its full name, the filter meant, the
line where an unclosed tag was opened; the same words when sending and in `lifecycle check`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.errors import Problem, RenderError
from engine.project.loader import load_project
from engine.render.renderer import Renderer
from engine.render.templatecheck import check_templates

LAYOUT = """<!DOCTYPE html>
<html><head><style>p { color: #123456; }</style></head>
<body>{% block content %}{% endblock %}
<p>{{ shop.name }}</p></body></html>
"""


def context() -> dict[str, Any]:
    return {
        "shop": {"name": "Nakshi Ghor", "currency": "BDT"},
        "customer": {"name": "Rahima", "first_name": "Rahima", "email": "r@example.com"},
        "offers": [{"sku": "TEA-500G", "name": "Tea"}],
        "amount": 350,
        "order": None,
        "locale": "en",
    }


def render_error(tmp_path: Path, name: str, files: dict[str, str]) -> RenderError:
    folder = tmp_path / "t"
    folder.mkdir()
    for file, text in {"_base.html": LAYOUT, **files}.items():
        (folder / file).write_text(text, encoding="utf-8")
    with pytest.raises(RenderError) as caught:
        Renderer(folder).render_file(name, context())
    return caught.value


@pytest.mark.parametrize(
    ("name", "source", "message"),
    [
        pytest.param(
            "mail.html",
            '{% extends "_base.html" %}{% block content %}\n<p>Hi</p>\n'
            "<p>{{ customer.nickname }}</p>\n{% endblock %}",
            "mail.html:3: 'customer.nickname' is undefined; customer has: name, first_name, email",
            id="attribute-html",
        ),
        pytest.param(
            "mail.txt",
            "Hi\n{{ customer['nickname'] }}",
            "mail.txt:2: 'customer.nickname' is undefined; customer has: name, first_name, email",
            id="item",
        ),
        pytest.param(
            "mail.txt",
            "{% for offer in offers %}\n{{ offer.sku }}: {{ offer.price }}\n{% endfor %}",
            "mail.txt:2: 'offer.price' is undefined; offer has: sku, name",
            id="loop-variable",
        ),
        pytest.param(
            "mail.txt",
            "Hi\n\n{{ coupon.code }}",
            "mail.txt:3: 'coupon' is undefined; this email has: shop, customer, offers, amount, "
            "order, locale",
            id="top-level",
        ),
        pytest.param(
            "mail.txt",
            "Hi {{ custmer.name }}",
            "mail.txt:1: 'custmer' is undefined (did you mean 'customer'?); this email has: "
            "shop, customer, offers, amount, order, locale",
            id="top-level-typo",
        ),
        pytest.param(
            "mail.txt",
            "{{ customer.frist_name }}",
            "mail.txt:1: 'customer.frist_name' is undefined (did you mean 'first_name'?); "
            "customer has: name, first_name, email",
            id="attribute-typo",
        ),
        pytest.param(
            "mail.txt",
            "Order {{ order.number }}",
            "mail.txt:1: 'order.number' is undefined: order is None in this email",
            id="none",
        ),
        pytest.param(
            "mail.txt",
            "{{ offers[2].name }}",
            "mail.txt:1: 'offers[2]' is undefined; offers has 1 item",
            id="index",
        ),
    ],
)
def test_an_undefined_variable_is_named_with_what_is_there(
    tmp_path: Path, name: str, source: str, message: str
) -> None:
    error = render_error(tmp_path, name, {name: source})
    assert str(error) == message


def test_an_undefined_variable_in_a_subject(tmp_path: Path) -> None:
    renderer = Renderer(tmp_path)
    with pytest.raises(RenderError) as caught:
        renderer.render_string("Hi {{ customer.nickname }}", context(), "welcome.yaml: subject")
    assert str(caught.value) == (
        "welcome.yaml: subject: 'customer.nickname' is undefined; "
        "customer has: name, first_name, email"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(
            "Total:\n{{ amount | mony }}",
            "mail.txt:2: No filter named 'mony'; did you mean 'money'?",
            id="typo",
        ),
        pytest.param(
            "Total:\n{{ amount | cash }}",
            "mail.txt:2: No filter named 'cash' (the shop's own are money, date, percent, number)",
            id="no-close-name",
        ),
        pytest.param(
            "{% if amount is defind %}x{% endif %}",
            "mail.txt:1: No test named 'defind'; did you mean 'defined'?",
            id="test-typo",
        ),
    ],
)
def test_an_unknown_filter_says_which_was_meant(tmp_path: Path, source: str, message: str) -> None:
    assert str(render_error(tmp_path, "mail.txt", {"mail.txt": source})) == message


@pytest.mark.parametrize(
    ("name", "source", "message", "line"),
    [
        pytest.param(
            "mail.txt",
            "Hi\n{% if amount %}\nyou spent {{ amount }}\n\nthanks\n{{ shop.name }}\n",
            "mail.txt:2: {% if %} opened at line 2 is never closed: end it with {% endif %}",
            2,
            id="if",
        ),
        pytest.param(
            "mail.html",
            '{% extends "_base.html" %}\n{% block content %}\n<p>Hi</p>\n'
            "{% for offer in offers %}\n<p>{{ offer.name }}</p>\n{% endblock %}\n",
            "mail.html:4: {% for %} opened at line 4 is not closed before line 6: "
            "end it with {% endfor %} first",
            4,
            id="for-inside-block",
        ),
        pytest.param(
            "mail.txt",
            "{% set note = 1 %}{% set footer %}\nbye\n{% if note %}{% endif %}\n",
            "mail.txt:1: {% set %} opened at line 1 is never closed: end it with {% endset %}",
            1,
            id="set-block",
        ),
    ],
)
def test_an_unclosed_tag_is_reported_where_it_was_opened(
    tmp_path: Path, name: str, source: str, message: str, line: int
) -> None:
    error = render_error(tmp_path, name, {name: source})
    assert str(error) == message
    assert (error.file, error.line) == (name, line)


def test_lifecycle_check_uses_the_same_words(project_dir: Path) -> None:
    emails = project_dir / "templates" / "emails"
    thanks = emails / "thank_you.txt"
    lines = thanks.read_text(encoding="utf-8").splitlines()
    lines[2] = "{% if customer.name %}" + lines[2]
    lines[3] = "{{ 350 | mony }}"
    thanks.write_text("\n".join(lines) + "\n", encoding="utf-8")
    folder = "templates/emails/thank_you.txt"
    problems = check_templates(load_project(project_dir / "config.yaml"))
    assert (
        Problem(folder, 3, "", "{% if %} opened at line 3 is never closed: end it with {% endif %}")
        in problems
    ), [str(p) for p in problems]
    lines[2] = lines[2].removeprefix("{% if customer.name %}")
    thanks.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = check_templates(load_project(project_dir / "config.yaml"))
    assert Problem(folder, 4, "", "No filter named 'mony'; did you mean 'money'?") in problems, [
        str(p) for p in problems
    ]
