"""Inline a template's CSS ahead of rendering, with its Jinja syntax kept intact.

`flatten` splices a template's layout and includes into one source;
`inlining_notes` says why the CSS of a source only becomes known once it is
rendered; `precompile` runs premailer over the source with the Jinja syntax
stashed away. `inline_css` is the same premailer pass over one rendered email,
for templates that cannot be inlined ahead. Premailer's failures surface as
`RenderError`, the error of one email that could not be rendered.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import lxml.etree
import premailer

from .errors import RenderError

_PREMAILER = {
    "cssutils_logging_level": logging.CRITICAL,
    "allow_network": False,
    "disable_validation": True,
    # @media rules stay in <style> and must keep !important to beat the inlined styles.
    "strip_important": False,
}


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
