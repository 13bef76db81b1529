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
`Problem`s (`check_templates`) for the project.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lxml.etree
import premailer
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, pass_context
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from . import formatting
from .config import Campaign, pick_text
from .errors import DeliveryError, Problem
from .loader import Project
from .models import MessageKind

log = logging.getLogger(__name__)

MAX_OUTPUT = 1_000_000  # characters of one rendered part; beyond this the email fails
_PREMAILER = {
    "cssutils_logging_level": logging.CRITICAL,
    "allow_network": False,
    "disable_validation": True,
    # @media rules stay in <style> and must keep !important to beat the inlined styles.
    "strip_important": False,
}


class RenderError(DeliveryError):
    """One email could not be rendered; the message says which template, line and why."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        super().__init__(message)


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
    """The immutable sandbox, where `order.items` means the key, not `dict.items`."""

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
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    return env


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


# ---------------------------------------------------------------- CSS inlining

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_RESTORE = re.compile(r"<!--JSTMT(\d+)-->|JEXPR(\d+)X")
_EXTENDS = re.compile(r"""\{%-?\s*extends\s+["']([^"']+)["']\s*-?%\}""")
_BLOCK = re.compile(
    r"(\{%-?\s*block\s+(\w+)\s*-?%\})(.*?)(\{%-?\s*endblock(?:\s+\w+)?\s*-?%\})", re.S
)
_BLOCK_OPEN = re.compile(r"\{%-?\s*block\s")
_INCLUDE = re.compile(r"""\{%-?\s*include\s+["']([^"']+)["'][^%]*?-?%\}""")
_MACRO = re.compile(r"\{%-?\s*(?:import|from|macro|call)\s")
_SUPER = re.compile(r"\bsuper\(\)")
_STATEMENT = re.compile(r"\{%.*?%\}", re.S)
_LEADING_STATEMENTS = re.compile(r"(?:\s*(?:\{%.*?%\}|\{#.*?#\}))+\s*", re.S)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
_DYNAMIC_ATTR = re.compile(
    r"""\b(class|id)\s*=\s*("[^"]*(?:\{\{|\{%)[^"]*"|'[^']*(?:\{\{|\{%)[^']*')"""
)
_TAG_STATEMENT = re.compile(r"<[a-zA-Z][^<>]*?\{%")


def _line(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


class NotFlat(Exception):
    """A template whose layout and includes cannot be spliced into one source."""


def flatten(name: str, read: Callable[[str], str], _depth: int = 0) -> tuple[str, list[str]]:
    """The source of `name` with its includes and `{% extends %}` layout spliced in.

    Returns the single source (what Jinja would render, block tags dropped) and
    the files it came from. Raises NotFlat, naming the file and line, for what
    only rendering can resolve (macros, `super()`, nested blocks); such a
    template is rendered by Jinja's own inheritance and inlined per email.
    """
    if _depth > 10:
        raise NotFlat(f"{name}: layouts and includes nest more than 10 deep")
    source = read(name)
    files = [name]
    for pattern, what in ((_MACRO, "a macro"), (_SUPER, "super()")):
        found = pattern.search(source)
        if found:
            raise NotFlat(
                f"{name}:{_line(source, found.start())}: {what} is only known once rendered"
            )

    def include(m: re.Match[str]) -> str:
        body, used = flatten(m.group(1), read, _depth + 1)
        files.extend(used)
        return body

    source = _INCLUDE.sub(include, source)
    match = _EXTENDS.search(source)
    if match is None:
        return source, files
    parent, used = flatten(match.group(1), read, _depth + 1)
    files.extend(used)
    blocks = {m.group(2): m.group(3) for m in _blocks(name, source)}
    _blocks(match.group(1), parent)
    # Jinja runs a child's top-level statements ({% set %}) but prints nothing else.
    leftover = _BLOCK.sub("", source).replace(match.group(0), "")
    statements = "".join(_STATEMENT.findall(leftover))
    spliced = _BLOCK.sub(lambda m: blocks.get(m.group(2), m.group(3)), parent)
    return statements + spliced, files


def _blocks(name: str, source: str) -> list[re.Match[str]]:
    found = list(_BLOCK.finditer(source))
    for m in found:
        inner = _BLOCK_OPEN.search(m.group(3))
        if inner:
            line = _line(source, m.start(3) + inner.start())
            raise NotFlat(f"{name}:{line}: a block inside a block is only known once rendered")
    return found


def inlining_notes(name: str, source: str) -> list[str]:
    """Why the CSS of `source` (file `name`) cannot be inlined before rendering."""
    notes = []
    for style in _STYLE.finditer(source):
        css = re.sub(r"/\*.*?\*/", "", style.group(1), flags=re.S)
        for selector, offset in _top_level_selectors(css):
            bare = re.sub(r"\[[^\]]*\]|\([^)]*\)", "", selector)
            if "+" in bare or "~" in bare:
                line = _line(source, style.start(1) + offset)
                notes.append(
                    f"{name}:{line}: CSS selector {selector.strip()!r} uses a sibling "
                    "combinator, which only matches once rows are rendered"
                )
    for m in _DYNAMIC_ATTR.finditer(source):
        notes.append(
            f"{name}:{_line(source, m.start())}: {m.group(1)}= is built from a template "
            "expression, so its CSS is only known once rendered"
        )
    for m in _TAG_STATEMENT.finditer(source):
        notes.append(f"{name}:{_line(source, m.start())}: a {{% … %}} statement inside an HTML tag")
    return notes


def _top_level_selectors(css: str) -> list[tuple[str, int]]:
    """(selector text, offset) of each rule outside at-rules such as @media."""
    out: list[tuple[str, int]] = []
    depth = 0
    start = 0
    for i, char in enumerate(css):
        if char == "{":
            prelude = css[start:i]
            if depth == 0 and not prelude.strip().startswith("@"):
                offset = start
                for part in prelude.split(","):
                    out.append((part, offset + len(part) - len(part.lstrip())))
                    offset += len(part) + 1
            depth += 1
            start = i + 1
        elif char == "}":
            depth = max(depth - 1, 0)
            start = i + 1
        elif char == ";" and depth == 0:
            start = i + 1
    return out


# What premailer (and lxml and cssutils under it) raise on input it cannot take;
# an empty document surfaces as an AttributeError from inside premailer.
_PREMAILER_ERRORS = (
    premailer.premailer.PremailerError,
    lxml.etree.LxmlError,
    ValueError,
    LookupError,
    AttributeError,
)


def inline_css(html: str) -> str:
    """premailer over an HTML document; raise RenderError if it cannot be inlined."""
    try:
        return str(premailer.Premailer(html, **_PREMAILER).transform())
    except _PREMAILER_ERRORS as exc:
        raise RenderError(f"the CSS could not be inlined: {type(exc).__name__}: {exc}") from exc


def precompile(source: str) -> str | None:
    """Inline the CSS of a template source with its Jinja syntax protected (perf B1).

    Returns None when the Jinja syntax did not survive inlining intact.
    """
    saved: list[str] = []

    def stash(m: re.Match[str]) -> str:
        saved.append(m.group(0))
        i = len(saved) - 1
        return f"<!--JSTMT{i}-->" if m.group(0)[1] in "%#" else f"JEXPR{i}X"

    # Statements before the document ({% set %}) would be dropped by the HTML
    # parser as comments outside <html>: keep them aside as they are.
    lead = _LEADING_STATEMENTS.match(source)
    prefix = lead.group(0) if lead else ""
    protected = _JINJA.sub(stash, source[len(prefix) :])
    inlined = inline_css(protected)
    seen: list[int] = []

    def restore(m: re.Match[str]) -> str:
        i = int(m.group(1) or m.group(2))
        seen.append(i)
        return saved[i] if i < len(saved) else m.group(0)

    out = _RESTORE.sub(restore, inlined)
    if sorted(seen) != list(range(len(saved))):
        return None
    return prefix + out


# ---------------------------------------------------------------- compiled templates


@dataclass(frozen=True)
class HtmlTemplate:
    """One HTML template compiled for sending."""

    name: str
    template: Template  # CSS already inlined, unless inline_per_email
    inline_per_email: bool
    notes: tuple[str, ...] = ()

    def render(self, context: Mapping[str, Any]) -> str:
        html = self.template.render(context)
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
            return self.string_template(source).render(context)
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
                out = self.html_template(name).render(context)
            else:
                out = self.text_template(name).render(context)
        except RenderError:
            raise
        except (TemplateError, ArithmeticError, ValueError, TypeError, LookupError) as exc:
            raise self._runtime_error(exc, name, context, is_html) from exc
        if len(out) > self.max_output:
            raise RenderError(
                f"{name}: rendered output is {len(out):,} characters, over the "
                f"{self.max_output:,} limit",
                file=name,
            )
        return out

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


# ---------------------------------------------------------------- link tracking

_ANCHOR = re.compile(r"<a\s[^>]*>", re.I)
_HREF = re.compile(r"""(\shref\s*=\s*)(["'])(https?://[^"']*)\2""", re.I)
_NO_TRACK = re.compile(r"""\s+data-track\s*=\s*(["'])no\1""", re.I)


def track_links(html: str, tracked: Callable[[str], str], *, keep: tuple[str, ...] = ()) -> str:
    """Point every `<a href="http…">` at `tracked(original URL)`, in one regex pass.

    Links marked `data-track="no"` keep their URL (the attribute is removed);
    URLs starting with one of `keep` (the unsubscribe link) are left alone.
    """

    links: dict[str, str] = {}  # URL → its tracked link, escaped, for this email

    def anchor(m: re.Match[str]) -> str:
        tag = m.group(0)
        key = (tag, keep)
        found = _TAGS.get(key)
        if found is None:
            found = _parse_anchor(tag, keep)
            if len(_TAGS) >= _TAGS_MAX:
                _TAGS.clear()
            _TAGS[key] = found
        if isinstance(found, str):
            return found
        head, url, tail = found
        new = links.get(url)
        if new is None:
            new = links[url] = htmllib.escape(tracked(url), quote=True)
        return f"{head}{new}{tail}"

    return _ANCHOR.sub(anchor, html)


# An email's anchors repeat from one email to the next: each tag is parsed once.
_TAGS: dict[tuple[str, tuple[str, ...]], str | tuple[str, str, str]] = {}
_TAGS_MAX = 4096


def _parse_anchor(tag: str, keep: tuple[str, ...]) -> str | tuple[str, str, str]:
    """The tag as it is to be sent, or (before the URL, the URL unescaped, after it)."""
    if _NO_TRACK.search(tag):
        return _NO_TRACK.sub("", tag)
    href = _HREF.search(tag)
    if href is None:
        return tag
    url = htmllib.unescape(href.group(3))
    if url.startswith(keep):
        return tag
    return tag[: href.start(3)], url, tag[href.end(3) :]


# ---------------------------------------------------------------- lifecycle check

ACCEPT_PER_EMAIL = "lifecycle: inline-per-email"
CHECK_LOCALES = ("en", "bn_BD")


def check_templates(project: Project) -> list[Problem]:
    """Test-render every campaign's templates and subject in every language variant.

    Reports, with file and line: syntax errors, undefined variables, sandbox
    escapes (SecurityError), a footer without the postal address or (for
    marketing) without the unsubscribe link, and CSS that cannot be inlined
    before rendering (accept that with a `{# lifecycle: inline-per-email #}`
    comment in the template).
    """
    from .context import sample_context

    renderer = Renderer(project.templates_dir)
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
        for locale in _locales(project, campaign.template):
            context = sample_context(project, campaign, locale)
            _check_campaign(project, renderer, campaign, locale, context, folder, add)
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
        env.get_template(name)
    except TemplateError as exc:
        file, line = locate(exc, renderer.templates_dir)
        add(Problem(f"{folder}/{file or name}", line, "", describe(exc)))
        return
    if name.endswith(".html"):
        source = renderer._read(name)
        if ACCEPT_PER_EMAIL not in source:
            notes = inlining_notes(name, source)
            if not notes:
                try:
                    compiled = renderer.html_template(name)
                except RenderError as exc:
                    add(Problem(f"{folder}/{exc.file or name}", exc.line, "", str(exc)))
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


def _check_campaign(
    project: Project,
    renderer: Renderer,
    campaign: Campaign,
    locale: str,
    context: dict[str, Any],
    folder: str,
    add: Callable[[Problem], None],
) -> None:
    file = project.campaign_files.get(campaign.name, f"{campaign.name}.yaml")
    for key, text in (("preheader", campaign.preheader), ("subject", campaign.subject)):
        path: tuple[str | int, ...] = (
            (key,) if isinstance(text, str) else (key, _text_key(text, locale))
        )
        try:
            context[key] = renderer.render_string(pick_text(text, locale), context, key).strip()
        except RenderError as exc:
            add(Problem(file, project.where(file, path), ".".join(map(str, path)), str(exc)))
            context[key] = ""
    parts = {}
    for suffix in ("html", "txt"):
        name = renderer.variant(campaign.template, suffix, locale)
        try:
            parts[suffix] = renderer.render_file(name, context)
        except RenderError as exc:
            message = str(exc).split(": ", 1)[-1] if exc.line else str(exc)
            add(Problem(f"{folder}/{exc.file or name}", exc.line, "", message))
    for suffix, body in parts.items():
        name = renderer.variant(campaign.template, suffix, locale)
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


def _text_key(text: dict[str, str], locale: str) -> str:
    language = locale.split("_")[0]
    for key in (locale, language, "en"):
        if key in text:
            return key
    return next(iter(text))
