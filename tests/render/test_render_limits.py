"""Templates reach only their own folder, and no rendering can run away."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.check import check_project
from engine.errors import Problem, RenderError
from engine.render.limits import Limits
from engine.render.links import UnsafeLink, track_links
from engine.render.renderer import Renderer

LAYOUT = """<!DOCTYPE html>
<html><head><style>p { color: #123456; }</style></head>
<body>
{% block content %}{% endblock %}
<p>{{ shop }}</p>
</body></html>
"""
SECRET = "s3cret-0123456789abcdef-in-the-environment"


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def in_layout(body: str) -> str:
    return '{% extends "_base.html" %}{% block content %}\n' + body + "\n{% endblock %}"


def render(tmp_path: Path, suffix: str, body: str, **limits: Any) -> str:
    """Render `body` on line 2 of a text template, or of an HTML one in a layout."""
    files = {"_base.html": LAYOUT, "self.txt": "x{% include 'self.txt' %}"}
    if suffix == "html":
        files["mail.html"] = in_layout(body)
    else:
        files["mail.txt"] = "Hello\n" + body
    renderer = Renderer(write(tmp_path / "t", files), limits=Limits(**limits))
    context = {"shop": "Nakshi Ghor", "s": "x" * 999_999, "d": Decimal("1E+999999")}
    return renderer.render_file(f"mail.{suffix}", context)


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", ["txt", "html"])
@pytest.mark.parametrize(
    ("tag", "why"),
    [
        pytest.param('{% include "/proc/self/environ" %}', "is an absolute path", id="absolute"),
        pytest.param('{% include "../../../../../../proc/self/environ" %}', "goes up", id="up"),
        pytest.param('{% include "link.txt" %}', "leads outside", id="symlink"),
        pytest.param('{% from "/proc/self/environ" import x %}', "absolute", id="import"),
    ],
)
def test_a_template_cannot_read_files_outside_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, tag: str, why: str
) -> None:
    monkeypatch.setenv("LIFECYCLE_SECRET", SECRET)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "link.txt").symlink_to("/proc/self/environ")
    with pytest.raises(RenderError) as caught:
        render(tmp_path, suffix, tag)
    assert (caught.value.file, caught.value.line) == (f"mail.{suffix}", 2), str(caught.value)
    assert "SecurityError" in str(caught.value) and why in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_layout_outside_the_folder_is_refused(tmp_path: Path) -> None:
    renderer = Renderer(write(tmp_path / "t", {"mail.html": '\n{% extends "/etc/passwd" %}'}))
    with pytest.raises(RenderError, match=r"^mail.html:2: SecurityError: \{% extends %\} refused"):
        renderer.render_file("mail.html", {})


# ---------------------------------------------------------------- limits

RUNAWAYS = [
    pytest.param(
        "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "the loops would take more than 100,000 steps",
        id="silent-loop",
    ),
    pytest.param("{{ 'x' | center(999999999) }}", "center: 999,999,999 is over", id="center"),
    pytest.param("{{ 'x' | indent(999999999) }}", "indent: 999,999,999 is over", id="indent"),
    pytest.param("{{ '%0999999999d' % 1 }}", "'%0999999999d': 999,999,999 is too wide", id="%"),
    pytest.param("{{ '%0999999999d' | format(1) }}", "999,999,999 is too wide", id="format"),
    pytest.param("{{ '{:>999999999}'.format(1) }}", "999,999,999 is too wide", id="str.format"),
    pytest.param(
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "the joined text would be 1,048,576 characters",
        id="concat",
    ),
    pytest.param("{{ namespace(a=s, b=s) }}", "the arguments is over", id="namespace"),
    pytest.param("{{ s.replace('', s) }}", "replace() would be", id="replace"),
    pytest.param("{{ (s | list) | join(s) }}", "the joined text would be", id="join"),
    pytest.param("{{ s ~ s }}", "the joined text would be", id="tilde"),
    pytest.param("{{ s + s }}", "the sum would be", id="plus"),
    pytest.param("{{ 'a'.translate({}) }}", "str.translate() is not allowed", id="translate"),
    pytest.param("{{ s.expandtabs(tabsize=9999) }}", "expandtabs() would be", id="expandtabs"),
    pytest.param("{{ (1).to_bytes(999999999, 'big') }}", "to_bytes is not allowed", id="to_bytes"),
    pytest.param(
        "{% set t = s[:100000] %}{% set a = [t, t] %}{% set b = [a, a, a] %}{{ b }}",
        "the list is over 1,000,000 characters as text",
        id="nested-lists",
    ),
    pytest.param(
        "{% for i in range(40) %}{% set x = s | upper %}{% endfor %}",
        "the rendering would build more than",
        id="built-in-all",
    ),
    pytest.param("{{ [s[:1000]] * 3000 }}", "repeating 1 items 3,000 times", id="list-repeat"),
    pytest.param("{{ d | int }}", "has too many digits to be made an integer", id="decimal-int"),
    pytest.param(
        "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
        "macros, includes or layouts nest more than 40 deep",
        id="recursive-macro",
    ),
    pytest.param(
        "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
        "nest more than 40 deep",
        id="recursive-loop",
    ),
]


@pytest.mark.parametrize("suffix", ["txt", "html"])
@pytest.mark.parametrize(("source", "reason"), RUNAWAYS)
def test_a_runaway_ends_in_an_error_naming_template_and_line(
    tmp_path: Path, suffix: str, source: str, reason: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError) as caught:
        render(tmp_path, suffix, source)
    assert time.perf_counter() - started < 2.5
    assert str(caught.value).startswith(f"mail.{suffix}:2: SecurityError: "), str(caught.value)
    assert reason in str(caught.value)


def test_a_self_include_ends_in_an_error_naming_the_include(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as caught:
        render(tmp_path, "txt", "{% include 'self.txt' %}")
    assert str(caught.value) == (
        "self.txt:1: SecurityError: macros, includes or layouts nest more than 40 deep"
    )


def test_the_time_limit_stops_a_rendering_while_it_runs(tmp_path: Path) -> None:
    """Loops of pure computation, within every other limit, stop at the deadline."""
    source = (
        "{% for a in range(100000) %}{% for b in range(100000) %}"
        "{% if a == b %}{% endif %}{% endfor %}{% endfor %}"
    )
    started = time.perf_counter()
    with pytest.raises(RenderError) as caught:
        render(tmp_path, "txt", source, steps=10**12, seconds=0.3)
    elapsed = time.perf_counter() - started
    assert str(caught.value) == "mail.txt:2: SecurityError: rendering took more than 0.3 s"
    assert 0.3 <= elapsed < 1.5


def test_limits_hold_in_a_worker_thread(tmp_path: Path) -> None:
    """The daemon renders off the main thread: no signal, the same error."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            render(tmp_path, "html", "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}")
        except RenderError as exc:
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(5)
    assert not worker.is_alive()
    assert [str(e).split(": ", 1)[0] for e in errors] == ["mail.html:2"]


@pytest.mark.parametrize(
    ("source", "line"),
    [
        pytest.param("\n\n{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}", 3, id="brackets"),
        pytest.param("\n" + "{% for a in b %}" * 25 + "{% endfor %}" * 25, 2, id="blocks"),
    ],
)
def test_nesting_too_deep_to_compile_is_a_syntax_error(
    tmp_path: Path, source: str, line: int
) -> None:
    renderer = Renderer(write(tmp_path / "t", {"deep.txt": source}))
    with pytest.raises(RenderError) as caught:
        renderer.render_file("deep.txt", {"b": []})
    assert str(caught.value) == f"deep.txt:{line}: the template nests too deeply to be compiled"


def test_security_errors_in_html_name_the_line_written(tmp_path: Path) -> None:
    """The compiled HTML is spliced and inlined: its lines are not the file's."""
    body = "<p>one</p>\n<p>two</p>\n<p>{{ ''.__class__.__mro__ }}</p>"
    layout = LAYOUT.replace("<p>{{ shop }}</p>", "<p>{{ shop }}</p>\n<p>{{ shop.__class__ }}</p>")
    folder = write(tmp_path / "t", {"_base.html": layout, "a.html": in_layout(body)})
    renderer = Renderer(folder)
    assert renderer.html_template("a.html").precompiled is not None  # the inlined-ahead path
    with pytest.raises(RenderError) as caught:
        renderer.render_file("a.html", {"shop": "x"})
    assert (caught.value.file, caught.value.line) == ("a.html", 4)
    (folder / "a.html").write_text(in_layout("<p>fine</p>"), encoding="utf-8")
    renderer = Renderer(folder)
    with pytest.raises(RenderError) as caught:
        renderer.render_file("a.html", {"shop": "x"})
    assert (caught.value.file, caught.value.line) == ("_base.html", 6)
    assert "SecurityError" in str(caught.value)


def test_what_a_real_email_does_fits(tmp_path: Path) -> None:
    source = (
        "{% macro row(x) %}<td>{{ x }}</td>{% endmacro %}"
        "{% for i in range(50) %}{{ row(i) }}{{ '%05d' % i }}{{ 'a' ~ i }}{% endfor %}"
        "{{ 'x' | center(9) }}{{ ['a', 'b'] | join(', ') }}{{ '{:>4}'.format(7) }}"
    )
    out = render(tmp_path, "txt", source)
    assert out.startswith("Hello\n<td>0</td>00000a0") and out.endswith("    x    a, b   7")


# ---------------------------------------------------------------- check


ATTACKS = {
    "environ": '{% include "/proc/self/environ" %}',
    "passwd": '{% include "../../../../etc/passwd" %}',
    "loop": "{% for a in order.number * 99999 %}{% for b in order.number * 99999 %}"
    "{% endfor %}{% endfor %}",
    "center": "{{ 'x' | center(999999999) }}",
    "percent": "{{ '%0999999999d' % 1 }}",
    "macro": "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "include": "{% include 'thank_you.txt' %}",
}


def test_check_reports_every_attack_with_file_and_line(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_SECRET", SECRET)
    emails = project_dir / "templates" / "emails"
    text = (emails / "thank_you.txt").read_text(encoding="utf-8").splitlines()
    for attack in ATTACKS.values():
        text.insert(2, attack)  # each pushes the others down a line
    (emails / "thank_you.txt").write_text("\n".join(text), encoding="utf-8")
    _, problems = check_project(project_dir / "config.yaml")
    mine = [p for p in problems if p.file == "templates/emails/thank_you.txt"]
    assert SECRET not in str(problems)
    lines = {p.line for p in mine}
    # The first attack in the file (the last inserted) stops the rendering; the
    # includes outside the folder are found without rendering.
    assert lines >= {3, 8, 9}, [str(p) for p in mine]
    assert all(p.line and "SecurityError" in p.message for p in mine), [str(p) for p in mine]


@pytest.mark.parametrize("kind", list(ATTACKS))
def test_check_reports_each_attack_alone(project_dir: Path, kind: str) -> None:
    emails = project_dir / "templates" / "emails"
    for name in ("thank_you.txt", "thank_you.html"):
        path = emails / name
        lines = path.read_text(encoding="utf-8").splitlines()
        at = next(i for i, line in enumerate(lines) if "order.number" in line)
        lines.insert(at + 1, ATTACKS[kind].replace("thank_you.txt", name))
        path.write_text("\n".join(lines), encoding="utf-8")
        _, problems = check_project(project_dir / "config.yaml")
        mine = [p for p in problems if p.file == f"templates/emails/{name}"]
        assert any(p.line == at + 2 and "SecurityError" in p.message for p in mine), [
            str(p) for p in problems
        ]


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(document.cookie)",
        "//evil.example/login",
        "java&#115;cript:alert(1)",
        " JavaScript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
    ],
)
def test_check_refuses_links_that_are_not_http_https_mailto_or_tel(
    project_dir: Path, href: str
) -> None:
    path = project_dir / "templates" / "emails" / "thank_you.html"
    lines = path.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if "shop.url" in line)
    lines.insert(at + 1, f'<p><a href="{href}">Track your parcel</a></p>')
    path.write_text("\n".join(lines), encoding="utf-8")
    _, problems = check_project(project_dir / "config.yaml")
    assert (
        Problem(
            "templates/emails/thank_you.html",
            at + 2,
            "",
            f"the link {href.replace('&#115;', 's').strip()!r} may not go out: "
            "only http, https, mailto and tel links are allowed",
        )
        in problems
    ), [str(p) for p in problems]


def test_sending_refuses_an_unsafe_link() -> None:
    for html in ('<a href="javascript:x()">a</a>', "<a class=b href=//evil.example>a</a>"):
        with pytest.raises(UnsafeLink, match="may not go out"):
            track_links(html, lambda url: url)
    safe = '<a href="mailto:a@b.example">m</a><a href="tel:+8801">t</a><a href="#top">top</a>'
    assert track_links(safe, lambda url: url) == safe


def test_a_layout_that_extends_itself_ends_in_an_error(tmp_path: Path) -> None:
    renderer = Renderer(write(tmp_path / "t", {"a.html": "<p>x</p>\n{% extends 'a.html' %}"}))
    with pytest.raises(
        RenderError, match=r"^a.html:2: SecurityError: layouts extend each other more than 40 deep"
    ):
        renderer.render_file("a.html", {})


def test_html_inlined_per_email_is_bounded_before_premailer(tmp_path: Path) -> None:
    """premailer is quadratic: 290 KB of rows took it 18 s."""
    layout = LAYOUT.replace("p { color: #123456; }", "tr + tr td { color: red; }")
    rows = "<table>{% for i in range(n) %}<tr><td>{{ i }}</td></tr>{% endfor %}</table>"
    folder = write(tmp_path / "t", {"_base.html": layout, "rows.html": in_layout(rows)})
    renderer = Renderer(folder, limits=Limits(inlined=20_000))
    assert renderer.html_template("rows.html").inline_per_email
    assert renderer.render_file("rows.html", {"n": 10, "shop": "x"}).count("color:red") == 9
    started = time.perf_counter()
    with pytest.raises(RenderError, match=r"^rows.html: SecurityError: the email is [\d,]+ char"):
        renderer.render_file("rows.html", {"n": 2000, "shop": "x"})
    assert time.perf_counter() - started < 1
