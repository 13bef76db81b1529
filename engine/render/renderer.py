"""Render emails from the shop's Jinja templates, safely and fast.

Templates run in Jinja's immutable sandbox with StrictUndefined and see only
plain values and the filters registered here (`money`, `date`, `percent`,
`number`). HTML is autoescaped; text parts and subjects are not.

The CSS of an HTML template is inlined by premailer once per template version
(file path + mtime of the template and its layout), with the Jinja syntax
stashed away during inlining, so each email costs only the Jinja render. A
template whose CSS depends on the expanded output (sibling combinators over
repeated rows, `class="{{ … }}"`) cannot be inlined ahead; it is inlined per
email instead, and `lifecycle check` says so.

Errors name the template file and line: `RenderError` for one email,
`Problem`s (`templatecheck`) for the project.

A renderer made `for_project` renders the templates the project holds in
memory (as they were when it was loaded and checked: its last good version),
never files edited since; one made from a folder alone reads the files.

Templates load only files inside the templates folder (`templatefiles`), and a
template cannot run away with the machine: each rendering runs under the
`limits.Limits` of the renderer (time, loop steps, characters built, nesting),
enforced while it runs (`sandbox`); going past one ends that email with a
`RenderError` naming the template and line.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jinja2 import Environment, Template, TemplateError, pass_context
from jinja2.exceptions import (
    SecurityError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.runtime import Context

from ..errors import RenderError
from ..project import Project, TemplateSources
from . import formatting
from .inlining import NotFlat, Precompiled, flatten_marked, inline_css, inlining_notes, precompile
from .limits import Limits, check_value
from .sandbox import Sandbox, bounded_render, make_environment
from .templateerrors import MissingValue, unclosed_block, undefined_message, unknown_name
from .templatefiles import FolderLoader, HeldLoader

log = logging.getLogger(__name__)

# What one rendering may raise and the email fail with (a RecursionError is a
# RuntimeError; Jinja's own errors are TemplateErrors).
RENDER_ERRORS = (
    TemplateError,
    ArithmeticError,
    ValueError,
    TypeError,
    LookupError,
    RecursionError,
    MemoryError,
)


# ---------------------------------------------------------------- filters


def _fmt(ctx: Context) -> tuple[str, str, str, str]:
    shop = ctx.get("shop") or {}
    locale = ctx.get("locale") or "en"
    return (
        locale,
        ctx.get("timezone") or shop.get("timezone") or "UTC",
        ctx.get("currency") or shop.get("currency") or "BDT",
        shop.get("locale") or locale,
    )


@pass_context
def _money(ctx: Context, amount: Any) -> str:
    check_value(amount, "money")
    locale, _, currency, shop_locale = _fmt(ctx)
    return formatting.money(amount, currency=currency, locale=locale, symbol_locale=shop_locale)


@pass_context
def _date(ctx: Context, value: Any, format: str = "long") -> str:
    check_value(value, "date")
    locale, timezone, _, _ = _fmt(ctx)
    return formatting.format_day(value, locale=locale, timezone=timezone, format=format)


@pass_context
def _percent(ctx: Context, value: Any) -> str:
    check_value(value, "percent")
    return formatting.percent(value, locale=_fmt(ctx)[0])


@pass_context
def _number(ctx: Context, value: Any) -> str:
    check_value(value, "number")
    return formatting.number(value, locale=_fmt(ctx)[0])


# Each checks its own value and makes a short text: they run unwrapped (see sandbox).
FILTERS: dict[str, Callable[..., str]] = {
    "money": _money,
    "date": _date,
    "percent": _percent,
    "number": _number,
}


# ---------------------------------------------------------------- errors


def locate(exc: BaseException, templates_dir: Path | None = None) -> tuple[str | None, int | None]:
    """The template file (relative to `templates_dir`) and line where `exc` happened."""
    if isinstance(exc, TemplateSyntaxError):
        unclosed = unclosed_block(exc, _lex)
        line = unclosed[1] if unclosed else exc.lineno
        return _shown(exc.filename or exc.name, templates_dir), line
    if isinstance(exc, TemplateNotFound):
        return str(exc.name), None
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename == "<template>" or f.filename.endswith((".html", ".txt"))
    ]
    if not frames:
        return None, None
    last = frames[-1]
    file = None if last.filename == "<template>" else _shown(last.filename, templates_dir)
    return file, last.lineno


def _shown(filename: str | None, templates_dir: Path | None) -> str | None:
    if filename is None or templates_dir is None:
        return filename
    try:
        return str(Path(filename).resolve().relative_to(templates_dir.resolve()))
    except ValueError:
        return filename


def describe(exc: BaseException) -> str:
    """What went wrong, with the kind of error when it matters (SecurityError)."""
    if isinstance(exc, RecursionError):
        return "RecursionError: macros, includes or expressions nest too deeply"
    if isinstance(exc, MemoryError):
        return "MemoryError: the rendering ran out of memory"
    if isinstance(exc, TemplateSyntaxError):
        unclosed = unclosed_block(exc, _lex)
        if unclosed is not None:
            return unclosed[0]
    if isinstance(exc, TemplateError):
        unknown = unknown_name(str(exc), tuple(FILTERS))
        if unknown is not None:
            return unknown
    kind = "SecurityError" if isinstance(exc, SecurityError) else type(exc).__name__
    text = str(exc) or kind
    plain = isinstance(exc, (UndefinedError, TemplateSyntaxError)) and kind != "SecurityError"
    return text if plain else f"{kind}: {text}"


def _lex(source: str) -> Any:
    """The tokens of a template's source (for the line an unclosed tag was opened on)."""
    return _lexer().lex(source)


@functools.cache
def _lexer() -> Environment:
    return Environment()


# ---------------------------------------------------------------- compiled templates


@dataclass(frozen=True)
class HtmlTemplate:
    """One HTML template compiled for sending."""

    name: str
    template: Template  # CSS already inlined, unless inline_per_email
    inline_per_email: bool
    notes: tuple[str, ...] = ()
    precompiled: Precompiled | None = None  # where the lines of `template` came from

    def render(self, context: Mapping[str, Any]) -> str:
        html = bounded_render(self.template, context)
        if not self.inline_per_email:
            return html
        most = self.template.environment.limits.inlined  # type: ignore[attr-defined]
        if len(html) > most:
            raise RenderError(
                f"{self.name}: SecurityError: the email is {len(html):,} characters of HTML; "
                f"one whose CSS is inlined per email may have at most {most:,}",
                file=self.name,
            )
        return inline_css(html)


@dataclass
class _Entry:
    stamp: tuple[tuple[str, int], ...]
    value: Any
    checked: int  # the generation in which the files were last looked at


def _referenced(env: Sandbox, name: str) -> list[str]:
    """The templates `name` extends or includes by a literal name (for cache stamps)."""
    from jinja2 import meta

    source = env.loader.get_source(env, name)[0] if env.loader else ""
    return [t for t in meta.find_referenced_templates(env.parse(source)) if t]


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def text_part(text: str) -> str:
    """An email's text part from its rendered template: the last line of just `--`
    made the signature separator `-- ` (RFC 3676 4.3: mail programs show what follows
    as the signature, the footer, and leave it out of a reply; editors strip the
    space), and one newline at the end (Jinja drops the template's own)."""
    lines = text.rstrip("\n").split("\n")
    for number in reversed(range(len(lines))):
        if lines[number].rstrip(" \t") == "--":
            lines[number] = "-- "
            break
    return "\n".join(lines) + "\n"


@dataclass
class Renderer:
    """Compiles each template once per version and renders emails from plain dicts.

    Every rendering keeps to `limits`; `max_output`, when given, replaces
    `limits.output`. With `sources`, templates come from them, not from the files.
    """

    templates_dir: Path
    max_output: int | None = None
    limits: Limits = field(default_factory=Limits)
    sources: TemplateSources | None = None
    _html_env: Sandbox = field(init=False, repr=False)
    _text_env: Sandbox = field(init=False, repr=False)
    _files: FolderLoader = field(init=False, repr=False)
    _cache: dict[str, _Entry] = field(default_factory=dict, init=False, repr=False)
    _strings: dict[tuple[str, bool], Template] = field(default_factory=dict, init=False, repr=False)
    # A subject or preheader text with no Jinja syntax at all → what it renders to.
    _constants: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _variants: dict[tuple[str, str, str], str] = field(default_factory=dict, init=False, repr=False)
    _generation: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_output is not None:
            self.limits = replace(self.limits, output=self.max_output)
        self._files = (
            FolderLoader(self.templates_dir) if self.sources is None else HeldLoader(self.sources)
        )
        self._html_env = make_environment(
            self._files, autoescape=True, limits=self.limits, own_filters=FILTERS
        )
        self._text_env = make_environment(
            self._files, autoescape=False, limits=self.limits, own_filters=FILTERS
        )

    @classmethod
    def for_project(cls, project: Project, **options: Any) -> Renderer:
        """A renderer of the templates `project` holds (read when it was loaded)."""
        return cls(project.templates_dir, sources=project.templates, **options)

    # -- finding files

    def revalidate(self) -> None:
        """Look at the files again on next use (once per batch, not once per email)."""
        self._generation += 1
        self._variants.clear()

    def variant(self, name: str, suffix: str, locale: str) -> str:
        """`name.bn.html` for a `bn…` locale when that file exists, else `name.html`."""
        key = (name, suffix, locale)
        found = self._variants.get(key)
        if found is None:
            language = locale.split("_")[0].split("-")[0].lower()
            found = f"{name}.{language}.{suffix}"
            if not self._files.exists(found):
                found = f"{name}.{suffix}"
            self._variants[key] = found
        return found

    def _read(self, name: str) -> str:
        try:
            return self._files.read(name)[0]
        except (TemplateError, OSError, UnicodeDecodeError) as exc:
            message = str(exc) if isinstance(exc, SecurityError) else f"cannot read it: {exc}"
            raise RenderError(f"template {name}: {message}", file=name) from exc

    def _read_html(self, name: str) -> str:
        """`_read`, refusing a file that names one outside the folder, with its line
        (these files are spliced together before Jinja ever loads the names)."""
        source = self._read(name)
        for line, why in self._files.refused(self._html_env, source, name):
            raise RenderError(f"{name}:{line}: SecurityError: {why}", file=name, line=line)
        return source

    def _stamp(self, names: list[str]) -> tuple[tuple[str, int], ...]:
        return tuple((name, self._files.stamp(name)) for name in names)

    def _cached(self, key: str, build: Callable[[], tuple[list[str], Any]]) -> Any:
        entry = self._cache.get(key)
        if entry is not None and entry.checked == self._generation:
            return entry.value
        if entry is not None and self._stamp([n for n, _ in entry.stamp]) == entry.stamp:
            entry.checked = self._generation
            return entry.value
        files, value = build()
        self._cache[key] = _Entry(self._stamp(files), value, self._generation)
        return value

    # -- compiling

    def html_template(self, name: str) -> HtmlTemplate:
        """The compiled HTML template `name` (a file name such as `welcome.bn.html`)."""
        return self._cached("html:" + name, lambda: self._compile_html(name))

    def text_template(self, name: str) -> Template:
        return self._cached("text:" + name, lambda: ([name], self._load(self._text_env, name)))

    def _load(self, env: Sandbox, name: str) -> Template:
        try:
            return env.get_template(name)
        except TemplateError as exc:
            raise self._error(exc, name) from exc

    def _compile_html(self, name: str) -> tuple[list[str], HtmlTemplate]:
        own = self._load(self._html_env, name)  # syntax errors reported against the real file
        try:
            source, files, origins = flatten_marked(name, self._read_html)
        except NotFlat as exc:
            log.info("template %s: CSS inlined per email (%s)", name, exc)
            files = [name, *(str(t) for t in _referenced(self._html_env, name))]
            return files, HtmlTemplate(name, own, True, (str(exc),))
        notes = [note for f in files for note in inlining_notes(f, self._read(f))]
        compiled = None if notes else precompile(source, origins)
        if compiled is None:
            if not notes:
                notes.append(f"{name}: template syntax did not survive CSS inlining")
            log.info("template %s: CSS inlined per email (%s)", name, "; ".join(notes))
            return files, HtmlTemplate(name, own, True, tuple(notes))
        try:
            code = self._html_env.compile(compiled.source, name=name, filename=None)
        except TemplateError as exc:
            raise self._error(exc, name) from exc
        template = self._html_env.template_class.from_code(
            self._html_env, code, self._html_env.make_globals(None), None
        )
        return files, HtmlTemplate(name, template, False, (), compiled)

    def string_template(self, source: str, *, html: bool = False) -> Template:
        """A subject or preheader template, compiled once per text."""
        key = (source, html)
        template = self._strings.get(key)
        if template is None:
            env = self._html_env if html else self._text_env
            try:
                template = env.from_string(source)
            except TemplateError as exc:
                _, line = locate(exc)
                raise RenderError(f"line {line}: {describe(exc)}", line=line) from exc
            if len(self._strings) > 1000:
                self._strings.clear()
            self._strings[key] = template
        return template

    # -- rendering

    def render_string(self, source: str, context: Mapping[str, Any], what: str) -> str:
        try:
            if "{" not in source:  # no tag can start: the output cannot depend on the context
                constant = self._constants.get(source)
                if constant is None:
                    constant = self.string_template(source).render({})
                    if len(self._constants) > 1000:
                        self._constants.clear()
                    self._constants[source] = constant
                return constant
            return bounded_render(self.string_template(source), context)
        except RenderError as exc:
            raise RenderError(f"{what}: {exc}", line=exc.line) from exc
        except RENDER_ERRORS as exc:
            _, line = locate(exc)
            message = self._described(exc, source, line, context)
            raise RenderError(f"{what}: {message}", line=line) from exc

    def render_file(self, name: str, context: Mapping[str, Any]) -> str:
        """Render template file `name` (html or txt); raise RenderError naming file and line."""
        compiled: HtmlTemplate | None = None
        try:
            if name.endswith(".html"):
                compiled = self.html_template(name)
                return compiled.render(context)
            return bounded_render(self.text_template(name), context)
        except RenderError:
            raise
        except RENDER_ERRORS as exc:
            raise self._error(exc, name, compiled, context) from exc

    def _error(
        self,
        exc: BaseException,
        name: str,
        compiled: HtmlTemplate | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> RenderError:
        file, line = locate(exc, self.templates_dir)
        if file is None and line is not None and compiled and compiled.precompiled:
            # The compiled template's lines are those of the inlined source: point
            # at the file and line the marketer wrote.
            origin = compiled.precompiled.origin(line)
            file, line = origin if origin else (None, line)
        file = file or name
        where = f"{file}:{line}" if line else file
        message = self._described(exc, None, line, context, file)
        return RenderError(f"{where}: {message}", file=file, line=line)

    def _described(
        self,
        exc: BaseException,
        source: str | None,
        line: int | None,
        context: Mapping[str, Any] | None,
        file: str | None = None,
    ) -> str:
        """`describe(exc)`; an undefined value named as the template wrote it, with
        what `context` (or the mapping it was looked up in) has instead."""
        if not isinstance(exc, MissingValue):
            return describe(exc)
        if source is None and file is not None:
            try:
                source = self._files.read(file)[0]
            except (TemplateError, OSError, UnicodeDecodeError):
                source = None
        return undefined_message(exc, source, line, self._text_env.parse, context or ())

    def render_email(
        self,
        template: str,
        locale: str,
        context: dict[str, Any],
        *,
        subject: str,
        preheader: str = "",
        origin: str = "",
    ) -> RenderedEmail:
        """Subject, HTML and text of one email; `subject`/`preheader` are template texts
        from `origin` (the campaign file, named in errors). The text is the text part as
        sent (`text_part`)."""
        where = f"{origin}: " if origin else ""
        context["preheader"] = self.render_string(preheader, context, f"{where}preheader").strip()
        rendered_subject = self.render_string(subject, context, f"{where}subject").strip()
        context["subject"] = rendered_subject
        html = self.render_file(self.variant(template, "html", locale), context)
        text = text_part(self.render_file(self.variant(template, "txt", locale), context))
        return RenderedEmail(rendered_subject, html, text)
