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

A template cannot run away with the machine: one rendering stops with an
error once its output passes `max_output` characters or it has run for
`MAX_RENDER_SECONDS`; `range()` yields at most `MAX_LOOP_STEPS` items per
rendering over all its loops; and repeating a string or list (`*`) or raising
a number to a power (`**`) beyond those sizes is refused before it is tried.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, pass_context
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from . import formatting
from .errors import RenderError
from .inlining import NotFlat, flatten, inline_css, inlining_notes, precompile

log = logging.getLogger(__name__)

MAX_OUTPUT = 1_000_000  # characters of one rendered part; beyond this the email fails
MAX_RENDER_SECONDS = 2.0  # one rendering of one part
MAX_LOOP_STEPS = 100_000  # range() items one rendering may loop over, all loops together
MAX_POWER_BITS = 100_000  # the size of the largest number `**` may make

# What is left of the current rendering's MAX_LOOP_STEPS (None outside a rendering).
_LOOP_BUDGET: ContextVar[list[int] | None] = ContextVar("loop_budget", default=None)


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
    locale, _, currency, shop_locale = _fmt(ctx)
    return formatting.money(amount, currency=currency, locale=locale, symbol_locale=shop_locale)


@pass_context
def _date(ctx: Context, value: Any, format: str = "long") -> str:
    locale, timezone, _, _ = _fmt(ctx)
    return formatting.format_day(value, locale=locale, timezone=timezone, format=format)


@pass_context
def _percent(ctx: Context, value: Any) -> str:
    return formatting.percent(value, locale=_fmt(ctx)[0])


@pass_context
def _number(ctx: Context, value: Any) -> str:
    return formatting.number(value, locale=_fmt(ctx)[0])


FILTERS: dict[str, Callable[..., str]] = {
    "money": _money,
    "date": _date,
    "percent": _percent,
    "number": _number,
}


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, where `order.items` means the key, not `dict.items`,
    and where `*` and `**` cannot build something enormous."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                if (
                    isinstance(items, (str, list, tuple))
                    and isinstance(times, int)
                    and len(items) * times > MAX_OUTPUT
                ):
                    raise SecurityError(
                        f"repeating {len(items):,} items {times:,} times is too much"
                    )
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and right * max(abs(left).bit_length() - 1, 0) > MAX_POWER_BITS
        ):
            raise SecurityError(f"{left} ** {right} is too large a number")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict rather than Jinja's ChainMap over ours.

        Every render copies them (twice), and a dict copies several times faster
        than a ChainMap iterates. The environment's own globals do not change
        after `make_environment`, so nothing a ChainMap would reflect is lost.
        """
        return {**self.globals, **(d or {})}


def make_environment(templates_dir: Path, *, autoescape: bool) -> ImmutableSandboxedEnvironment:
    """A sandboxed environment over `templates_dir` with our filters and no extra globals."""
    env = _Sandbox(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=autoescape,
        undefined=StrictUndefined,
        auto_reload=True,
        keep_trailing_newline=False,
    )
    env.filters.update(FILTERS)
    env.globals["range"] = _budgeted_range
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    return env


def _budgeted_range(*args: int) -> range:
    """The sandbox's `range`, counted against the rendering's MAX_LOOP_STEPS."""
    numbers = safe_range(*args)
    budget = _LOOP_BUDGET.get()
    if budget is not None:
        budget[0] -= len(numbers)
        if budget[0] < 0:
            raise SecurityError(
                f"the loops over range() would take more than {MAX_LOOP_STEPS:,} steps"
            )
    return numbers


def bounded_render(template: Template, context: Mapping[str, Any], limit: int) -> str:
    """`template.render(context)`, stopped with a SecurityError once the output
    passes `limit` characters or the rendering passes MAX_RENDER_SECONDS.

    Written as Jinja's own `Template.render` is, reading the output in blocks.
    """
    budget = _LOOP_BUDGET.set([MAX_LOOP_STEPS])
    try:
        chunks = template.root_render_func(template.new_context(dict(context)))
        parts: list[str] = []
        size = 0
        deadline = time.monotonic() + MAX_RENDER_SECONDS
        while block := list(islice(chunks, 1024)):
            size += sum(map(len, block))
            if size > limit:
                raise SecurityError(f"rendered output is over the {limit:,} limit")
            if time.monotonic() > deadline:
                raise SecurityError(f"rendering took more than {MAX_RENDER_SECONDS:g} s")
            parts.extend(block)
        return "".join(parts)
    except Exception:
        template.environment.handle_exception()  # re-raised with the template's lines
        raise  # not reached: handle_exception always raises
    finally:
        _LOOP_BUDGET.reset(budget)


# ---------------------------------------------------------------- errors


def locate(exc: BaseException, templates_dir: Path | None = None) -> tuple[str | None, int | None]:
    """The template file (relative to `templates_dir`) and line where `exc` happened."""
    if isinstance(exc, TemplateSyntaxError):
        return _shown(exc.filename or exc.name, templates_dir), exc.lineno
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
    kind = type(exc).__name__
    text = str(exc) or kind
    return text if kind in {"UndefinedError", "TemplateSyntaxError"} else f"{kind}: {text}"


# ---------------------------------------------------------------- compiled templates


@dataclass(frozen=True)
class HtmlTemplate:
    """One HTML template compiled for sending."""

    name: str
    template: Template  # CSS already inlined, unless inline_per_email
    inline_per_email: bool
    notes: tuple[str, ...] = ()

    def render(self, context: Mapping[str, Any], limit: int = MAX_OUTPUT) -> str:
        html = bounded_render(self.template, context, limit)
        return inline_css(html) if self.inline_per_email else html


@dataclass
class _Entry:
    stamp: tuple[tuple[str, int], ...]
    value: Any
    checked: int  # the generation in which the files were last looked at


def _referenced(env: ImmutableSandboxedEnvironment, name: str) -> list[str]:
    """The templates `name` extends or includes by a literal name (for cache stamps)."""
    from jinja2 import meta

    source = env.loader.get_source(env, name)[0] if env.loader else ""
    return [t for t in meta.find_referenced_templates(env.parse(source)) if t]


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@dataclass
class Renderer:
    """Compiles each template once per version and renders emails from plain dicts."""

    templates_dir: Path
    max_output: int = MAX_OUTPUT
    _html_env: ImmutableSandboxedEnvironment = field(init=False, repr=False)
    _text_env: ImmutableSandboxedEnvironment = field(init=False, repr=False)
    _cache: dict[str, _Entry] = field(default_factory=dict, init=False, repr=False)
    _strings: dict[tuple[str, bool], Template] = field(default_factory=dict, init=False, repr=False)
    # A subject or preheader text with no Jinja syntax at all → what it renders to.
    _constants: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _variants: dict[tuple[str, str, str], str] = field(default_factory=dict, init=False, repr=False)
    _generation: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._html_env = make_environment(self.templates_dir, autoescape=True)
        self._text_env = make_environment(self.templates_dir, autoescape=False)

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
            if not (self.templates_dir / found).is_file():
                found = f"{name}.{suffix}"
            self._variants[key] = found
        return found

    def _read(self, name: str) -> str:
        path = self.templates_dir / name
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RenderError(f"cannot read template {name}: {exc}", file=name) from exc

    def _stamp(self, names: list[str]) -> tuple[tuple[str, int], ...]:
        out = []
        for name in names:
            try:
                out.append((name, (self.templates_dir / name).stat().st_mtime_ns))
            except OSError:
                out.append((name, -1))
        return tuple(out)

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

    def _load(self, env: ImmutableSandboxedEnvironment, name: str) -> Template:
        try:
            return env.get_template(name)
        except TemplateError as exc:
            raise self._error(exc, name) from exc

    def _compile_html(self, name: str) -> tuple[list[str], HtmlTemplate]:
        own = self._load(self._html_env, name)  # syntax errors reported against the real file
        try:
            source, files = flatten(name, self._read)
        except NotFlat as exc:
            log.info("template %s: CSS inlined per email (%s)", name, exc)
            files = [name, *(str(t) for t in _referenced(self._html_env, name))]
            return files, HtmlTemplate(name, own, True, (str(exc),))
        notes = [note for f in files for note in inlining_notes(f, self._read(f))]
        compiled = None if notes else precompile(source)
        if compiled is None:
            if not notes:
                notes.append(f"{name}: template syntax did not survive CSS inlining")
            log.info("template %s: CSS inlined per email (%s)", name, "; ".join(notes))
            return files, HtmlTemplate(name, own, True, tuple(notes))
        try:
            code = self._html_env.compile(compiled, name=name, filename=None)
        except TemplateError as exc:
            raise self._error(exc, name) from exc
        template = self._html_env.template_class.from_code(
            self._html_env, code, self._html_env.make_globals(None), None
        )
        return files, HtmlTemplate(name, template, False)

    def string_template(self, source: str, *, html: bool = False) -> Template:
        """A subject or preheader template, compiled once per text."""
        key = (source, html)
        template = self._strings.get(key)
        if template is None:
            env = self._html_env if html else self._text_env
            try:
                template = env.from_string(source)
            except TemplateError as exc:
                line = getattr(exc, "lineno", None)
                raise RenderError(f"line {line}: {describe(exc)}", line=line) from exc
            if len(self._strings) > 1000:
                self._strings.clear()
            self._strings[key] = template
        return template

    # -- rendering

    def render_string(self, source: str, context: Mapping[str, Any], what: str) -> str:
        if "{" not in source:  # no tag can start: the output cannot depend on the context
            constant = self._constants.get(source)
            if constant is None:
                constant = self.string_template(source).render({})
                if len(self._constants) > 1000:
                    self._constants.clear()
                self._constants[source] = constant
            return constant
        try:
            return bounded_render(self.string_template(source), context, self.max_output)
        except RenderError as exc:
            raise RenderError(f"{what}: {exc}", line=exc.line) from exc
        except (TemplateError, ArithmeticError, ValueError, TypeError, LookupError) as exc:
            _, line = locate(exc)
            raise RenderError(f"{what}: {describe(exc)}", line=line) from exc

    def render_file(self, name: str, context: Mapping[str, Any]) -> str:
        """Render template file `name` (html or txt); raise RenderError naming file and line."""
        is_html = name.endswith(".html")
        try:
            if is_html:
                return self.html_template(name).render(context, self.max_output)
            return bounded_render(self.text_template(name), context, self.max_output)
        except RenderError:
            raise
        except SecurityError as exc:  # a limit: rendering again to find the line would hit it too
            raise self._error(exc, name) from exc
        except (TemplateError, ArithmeticError, ValueError, TypeError, LookupError) as exc:
            raise self._runtime_error(exc, name, context, is_html) from exc

    def _runtime_error(
        self, exc: BaseException, name: str, context: Mapping[str, Any], is_html: bool
    ) -> RenderError:
        if is_html and not self.html_template(name).inline_per_email:
            # The compiled template's lines are those of the inlined source: render the
            # file itself again to point at the line the marketer wrote.
            try:
                self._html_env.get_template(name).render(context)
            except (TemplateError, ArithmeticError, ValueError, TypeError, LookupError) as real:
                return self._error(real, name)
        return self._error(exc, name)

    def _error(self, exc: BaseException, name: str) -> RenderError:
        file, line = locate(exc, self.templates_dir)
        file = file or name
        where = f"{file}:{line}" if line else file
        return RenderError(f"{where}: {describe(exc)}", file=file, line=line)

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
        from `origin` (the campaign file, named in errors)."""
        where = f"{origin}: " if origin else ""
        context["preheader"] = self.render_string(preheader, context, f"{where}preheader").strip()
        rendered_subject = self.render_string(subject, context, f"{where}subject").strip()
        context["subject"] = rendered_subject
        html = self.render_file(self.variant(template, "html", locale), context)
        text = self.render_file(self.variant(template, "txt", locale), context)
        return RenderedEmail(rendered_subject, html, text)
