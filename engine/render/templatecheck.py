"""What `lifecycle check` says about the templates.

Every campaign's templates, subject and preheader (of each step of its flow)
are test-rendered with sample data of its trigger in every language variant; each failure (a limit passed included), missing
footer line, link that may not go out, extends/include/import of a file outside
the templates folder and CSS that cannot be inlined ahead becomes a `Problem`
naming the file and line.
"""

from __future__ import annotations

import html as htmllib
from collections.abc import Callable
from typing import Any

from jinja2 import TemplateError

from ..errors import Problem, RenderError
from ..project import Campaign, FlowStep, Project, pick_text
from ..store import MessageKind
from .inlining import inlining_notes
from .links import unsafe_links
from .renderer import Renderer, describe, locate

ACCEPT_PER_EMAIL = "lifecycle: inline-per-email"
CHECK_LOCALES = ("en", "bn_BD")


def check_templates(project: Project) -> list[Problem]:
    """Test-render every campaign's templates and subject in every language variant.

    Reports, with file and line: syntax errors, undefined variables, sandbox
    escapes and limits passed (SecurityError), an extends, include or import of
    a file outside the templates folder, a link that is not http, https, mailto
    or tel, a footer without the postal address or (for marketing) without the
    unsubscribe link, and CSS that cannot be inlined
    before rendering (accept that with a `{# lifecycle: inline-per-email #}`
    comment in the template).
    """
    from .samplecontext import sample_context

    renderer = Renderer.for_project(project)  # what the project holds is what it sends
    folder = project.config.paths.templates.rstrip("/")
    problems: list[Problem] = []
    seen: set[tuple[str, str, int | None, str]] = set()

    def add(problem: Problem) -> None:
        key = (problem.file, problem.key, problem.line, problem.message)
        if key not in seen:
            seen.add(key)
            problems.append(problem)

    for path in sorted(project.templates_dir.glob("*.*")):
        if path.suffix in (".html", ".txt"):
            _check_syntax(renderer, path.name, folder, add)
    for campaign in project.campaigns.values():
        for step in campaign.flow:
            for locale in _locales(project, step.template):
                context = sample_context(project, campaign, locale, step=step)
                _check_step(project, renderer, campaign, step, locale, context, folder, add)
    return problems


def _locales(project: Project, template: str) -> list[str]:
    locales = [*CHECK_LOCALES, project.config.shop.locale]
    for path in project.templates_dir.glob(f"{template}.*.*"):
        parts = path.name.split(".")
        if len(parts) == 3:
            locales.append(parts[1])
    return list(dict.fromkeys(locales))


def _check_syntax(
    renderer: Renderer, name: str, folder: str, add: Callable[[Problem], None]
) -> None:
    env = renderer._html_env if name.endswith(".html") else renderer._text_env
    try:
        source = renderer._read(name)
    except RenderError as exc:
        add(Problem(f"{folder}/{name}", None, "", str(exc).split(": ", 1)[-1]))
        return
    for refused_at, why in renderer._files.refused(env, source, name):
        add(Problem(f"{folder}/{name}", refused_at, "", f"SecurityError: {why}"))
    try:
        env.get_template(name)
    except TemplateError as exc:
        file, line = locate(exc, renderer.templates_dir)
        add(Problem(f"{folder}/{file or name}", line, "", describe(exc)))
        return
    if name.endswith(".html") and ACCEPT_PER_EMAIL not in source:
        notes = inlining_notes(name, source)
        if not notes:
            try:
                compiled = renderer.html_template(name)
            except RenderError as exc:
                message = str(exc).split(": ", 1)[-1] if exc.line else str(exc)
                add(Problem(f"{folder}/{exc.file or name}", exc.line, "", message))
                return
            notes = [n for n in compiled.notes if n.split(":")[0] == name]
        for note in notes:
            where, _, what = note.partition(": ")
            line = int(where.rsplit(":", 1)[1]) if ":" in where else None
            add(
                Problem(
                    f"{folder}/{name}",
                    line,
                    "",
                    f"{what}; its CSS will be inlined per email (about 145× slower). "
                    "Write the CSS so it does not depend on the rendered rows (a class "
                    f"on each row), or add {{# {ACCEPT_PER_EMAIL} #}} to accept that",
                )
            )


def _check_step(
    project: Project,
    renderer: Renderer,
    campaign: Campaign,
    step: FlowStep,
    locale: str,
    context: dict[str, Any],
    folder: str,
    add: Callable[[Problem], None],
) -> None:
    """One step's subject, preheader and templates; a subject's or preheader's problem
    names the campaign file, the key (`steps.1.subject` for the second step) and line."""
    file = project.campaign_files.get(campaign.name, f"{campaign.name}.yaml")
    at: tuple[str | int, ...] = ("steps", step.number - 1) if step.id else ()
    for key, text in (("preheader", step.preheader), ("subject", step.subject)):
        path = (*at, key) if isinstance(text, str) else (*at, key, _text_key(text, locale))
        try:
            context[key] = renderer.render_string(pick_text(text, locale), context, key).strip()
        except RenderError as exc:
            message = f"step {step.id}: {exc}" if step.id else str(exc)
            add(Problem(file, project.where(file, path), ".".join(map(str, path)), message))
            context[key] = ""
    parts = {}
    for suffix in ("html", "txt"):
        name = renderer.variant(step.template, suffix, locale)
        try:
            parts[suffix] = renderer.render_file(name, context)
        except RenderError as exc:
            message = str(exc).split(": ", 1)[-1] if exc.line else str(exc)
            add(Problem(f"{folder}/{exc.file or name}", exc.line, "", message))
    for suffix, body in parts.items():
        name = renderer.variant(step.template, suffix, locale)
        if suffix == "html":
            for url in unsafe_links(body):
                file, line = _written_at(renderer, name, url)
                add(
                    Problem(
                        f"{folder}/{file}",
                        line,
                        "",
                        f"the link {url!r} may not go out: only http, https, mailto and tel "
                        "links are allowed",
                    )
                )
        shown = htmllib.unescape(body) if suffix == "html" else body
        address = project.config.shop.address
        if address not in shown:
            add(
                Problem(
                    f"{folder}/{name}",
                    None,
                    "",
                    f"the footer must show the shop's postal address ({address})",
                )
            )
        if campaign.kind == MessageKind.MARKETING and context["unsubscribe_url"] not in shown:
            add(
                Problem(
                    f"{folder}/{name}",
                    None,
                    "",
                    "a marketing email must carry the unsubscribe link ({{ unsubscribe_url }})",
                )
            )


def _written_at(renderer: Renderer, name: str, url: str) -> tuple[str, int | None]:
    """The template file and line where `url` is written: `name`, else another HTML
    file of the folder (its layout, an include); `name` without a line when the
    URL came from the data."""
    names = [name, *sorted(p.name for p in renderer.templates_dir.glob("*.html"))]
    for candidate in dict.fromkeys(names):
        try:
            source = renderer._read(candidate)
        except RenderError:
            continue
        for number, text in enumerate(source.splitlines(), 1):
            if url in text or url in htmllib.unescape(text):
                return candidate, number
    return name, None


def _text_key(text: dict[str, str], locale: str) -> str:
    language = locale.split("_")[0]
    for key in (locale, language, "en"):
        if key in text:
            return key
    return next(iter(text))
