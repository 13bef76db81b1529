"""Inline a template's CSS ahead of rendering, with its Jinja syntax kept intact.

`flatten` splices a template's layout and includes into one source;
`inlining_notes` says why the CSS of a source only becomes known once it is
rendered; `precompile` runs premailer over the source with the Jinja syntax
stashed away. `inline_css` is the same premailer pass over one rendered email,
for templates that cannot be inlined ahead. Each Jinja tag keeps its origin
through splicing and inlining (a marker before it while the text is worked
on), so `Precompiled.origin` names the file and line an error came from. Premailer's failures surface as
`RenderError`, the error of one email that could not be rendered.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import lxml.etree
import premailer

from ..errors import RenderError

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
# A tag's origin travels just before it as \ue000<index into the origins>\ue001.
_MARK = "(?:\ue000\\d+\ue001)"
_MARKER = re.compile(_MARK)
_MARKED_JINJA = re.compile(f"({_MARK}*)(\\{{\\{{.*?\\}}\\}}|\\{{%.*?%\\}}|\\{{#.*?#\\}})", re.S)
_STATEMENT = re.compile(f"{_MARK}?\\{{%.*?%\\}}", re.S)
_LEADING_STATEMENTS = re.compile(
    f"(?:\\s*{_MARK}*(?:\\{{%.*?%\\}}|\\{{#.*?#\\}}))+\\s*{_MARK}*", re.S
)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
_DYNAMIC_ATTR = re.compile(
    r"""\b(class|id)\s*=\s*("[^"]*(?:\{\{|\{%)[^"]*"|'[^']*(?:\{\{|\{%)[^']*')"""
)
_TAG_STATEMENT = re.compile(r"<[a-zA-Z][^<>]*?\{%")


def _line(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


class NotFlat(Exception):
    """A template whose layout and includes cannot be spliced into one source."""


Origin = tuple[str, int]  # a file and a line in it


def flatten(name: str, read: Callable[[str], str]) -> tuple[str, list[str]]:
    """The source of `name` with its includes and `{% extends %}` layout spliced in.

    Returns the single source (what Jinja would render, block tags dropped) and
    the files it came from. Raises NotFlat, naming the file and line, for what
    only rendering can resolve (macros, `super()`, nested blocks); such a
    template is rendered by Jinja's own inheritance and inlined per email.
    """
    source, files, _ = flatten_marked(name, read)
    return _MARKER.sub("", source), files


def flatten_marked(name: str, read: Callable[[str], str]) -> tuple[str, list[str], list[Origin]]:
    """`flatten`, each Jinja tag still preceded by the marker of its origin
    (for `precompile`), with the list the markers index."""
    origins: list[Origin] = []
    source, files = _flatten(name, read, origins, 0)
    return source, files, origins


def _mark(name: str, source: str, origins: list[Origin]) -> str:
    out: list[str] = []
    line, last = 1, 0
    for m in _JINJA.finditer(source):
        line += source.count("\n", last, m.start())
        out.append(source[last : m.start()])
        out.append(f"\ue000{len(origins)}\ue001")
        origins.append((name, line))
        last = m.start()
    out.append(source[last:])
    return "".join(out)


def _flatten(
    name: str, read: Callable[[str], str], origins: list[Origin], depth: int
) -> tuple[str, list[str]]:
    if depth > 10:
        raise NotFlat(f"{name}: layouts and includes nest more than 10 deep")
    source = read(name)
    files = [name]
    for pattern, what in ((_MACRO, "a macro"), (_SUPER, "super()")):
        found = pattern.search(source)
        if found:
            raise NotFlat(
                f"{name}:{_line(source, found.start())}: {what} is only known once rendered"
            )
    source = _mark(name, source, origins)

    def include(m: re.Match[str]) -> str:
        body, used = _flatten(m.group(1), read, origins, depth + 1)
        files.extend(used)
        return body

    source = _INCLUDE.sub(include, source)
    match = _EXTENDS.search(source)
    if match is None:
        return source, files
    parent, used = _flatten(match.group(1), read, origins, depth + 1)
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
    """premailer over an HTML document; raise RenderError if it cannot be inlined.

    The result depends on `html` alone, so the latest `INLINED_KEPT` are kept: a check
    of the project (at each edit, and `lifecycle check`) inlines the same layouts again,
    and premailer is most of a template's compilation."""
    try:
        return _inlined(html)
    except _PREMAILER_ERRORS as exc:
        raise RenderError(f"the CSS could not be inlined: {type(exc).__name__}: {exc}") from exc


INLINED_KEPT = 256  # documents: a shop's templates in each language, with room to spare


@functools.lru_cache(maxsize=INLINED_KEPT)
def _inlined(html: str) -> str:
    return str(premailer.Premailer(html, **_PREMAILER).transform())


@dataclass(frozen=True)
class Precompiled:
    """A template source with its CSS inlined, and where each of its lines came from."""

    source: str
    origins: tuple[Origin | None, ...]  # by line of `source`, from 1

    def origin(self, line: int) -> Origin | None:
        """The file and line that line `line` of the source came from."""
        for i in range(min(line, len(self.origins)) - 1, -1, -1):
            found = self.origins[i]
            if found is not None:
                return found[0], found[1] + line - 1 - i
        return None


def precompile(source: str, origins: list[Origin] | None = None) -> Precompiled | None:
    """Inline the CSS of a template source with its Jinja syntax protected (perf B1).

    `source` may carry the origin markers of `flatten_marked` (`origins` is then
    the list they index). Returns None when the Jinja syntax did not survive
    inlining intact.
    """
    known = origins or []
    saved: list[str] = []
    saved_from: list[Origin | None] = []

    def stash(m: re.Match[str]) -> str:
        marks = _MARKER.findall(m.group(1))
        saved.append(m.group(2))
        saved_from.append(known[int(marks[-1][1:-1])] if marks else None)
        i = len(saved) - 1
        return f"<!--JSTMT{i}-->" if m.group(2)[1] in "%#" else f"JEXPR{i}X"

    # Statements before the document ({% set %}) would be dropped by the HTML
    # parser as comments outside <html>: keep them aside as they are.
    lead = _LEADING_STATEMENTS.match(source)
    prefix = lead.group(0) if lead else ""
    protected = _MARKER.sub("", _MARKED_JINJA.sub(stash, source[len(prefix) :]))
    inlined = inline_css(protected)
    lines: list[Origin | None] = []
    head = _restore_prefix(prefix, known, lines)
    pieces: list[str] = [head]
    seen: list[int] = []
    line, last = head.count("\n") + 1, 0
    for m in _RESTORE.finditer(inlined):
        i = int(m.group(1) or m.group(2))
        line += inlined.count("\n", last, m.start())
        pieces.append(inlined[last : m.start()])
        last = m.end()
        if i >= len(saved):
            pieces.append(m.group(0))
            continue
        seen.append(i)
        pieces.append(saved[i])
        _note(lines, line, saved[i], saved_from[i])
        line += saved[i].count("\n")
    pieces.append(inlined[last:])
    if sorted(seen) != list(range(len(saved))):
        return None
    return Precompiled("".join(pieces), tuple(lines))


def _restore_prefix(prefix: str, known: list[Origin], lines: list[Origin | None]) -> str:
    """The leading statements without their markers, their origins noted in `lines`."""
    out: list[str] = []
    line, last = 1, 0
    for m in _MARKED_JINJA.finditer(prefix):
        text = _MARKER.sub("", prefix[last : m.start()])
        line += text.count("\n")
        out.append(text)
        marks = _MARKER.findall(m.group(1))
        _note(lines, line, m.group(2), known[int(marks[-1][1:-1])] if marks else None)
        out.append(m.group(2))
        line += m.group(2).count("\n")
        last = m.end()
    out.append(_MARKER.sub("", prefix[last:]))
    return "".join(out)


def _note(lines: list[Origin | None], line: int, token: str, origin: Origin | None) -> None:
    """Lines `line`… of the output, where `token` now is, came from `origin`."""
    if origin is None:
        return
    span = token.count("\n") + 1
    while len(lines) < line - 1 + span:
        lines.append(None)
    for k in range(span):
        if lines[line - 1 + k] is None:
            lines[line - 1 + k] = (origin[0], origin[1] + k)
