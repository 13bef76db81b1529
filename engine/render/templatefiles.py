"""The files a template may load: only those inside the project's templates folder.

A template names the files it extends, includes and imports. `FolderLoader`
turns such a name into a file only when it is a plain relative path (no leading
`/`, no `..`, no backslash or drive) and its real path, symlinks resolved, lies
inside the folder; anything else is refused with `TemplateOutsideFolder`. Files
over `MAX_TEMPLATE_CHARS` are refused too: a rendering's memory bounds assume
a template's own text is small. `FolderLoader.refused` finds, without
rendering, each `{% extends %}`, `{% include %}` and `{% import %}` of a
template that names a file it may not load, with its line.

`HeldLoader` is the same, over the project's `TemplateSources` (the templates
as the project was loaded and checked) instead of the files: what is on disk
now does not matter to it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path

from jinja2 import BaseLoader, Environment, nodes
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError

from ..project import MAX_TEMPLATE_CHARS, TemplateSources


class TemplateOutsideFolder(SecurityError):
    """A template named a file outside the templates folder (or one too large)."""


def outside_reason(name: str) -> str | None:
    """Why `name` may not be loaded as a template, from its spelling alone (None: it may)."""
    if not name:
        return "an empty template name"
    if "\\" in name or "\x00" in name:
        return f"{name!r} is not a plain path inside the templates folder"
    if name.startswith("/") or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return f"{name!r} is an absolute path; templates may only use files in their own folder"
    if ".." in name.split("/"):
        return f"{name!r} goes up with '..'; templates may only use files in their own folder"
    return None


class FolderLoader(BaseLoader):
    """Loads templates from one folder and nothing outside it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        """The file `name` names; raises TemplateOutsideFolder or TemplateNotFound."""
        reason = outside_reason(name)
        if reason is not None:
            raise TemplateOutsideFolder(reason)
        root = self.folder.resolve()
        try:
            real = (root / name).resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # missing, or a symlink loop
            raise TemplateNotFound(name) from exc
        if not real.is_relative_to(root):
            raise TemplateOutsideFolder(
                f"{name!r} leads outside the templates folder (to {real}); "
                "templates may only use files in their own folder"
            )
        if not real.is_file():
            raise TemplateNotFound(name)
        return real

    def read(self, name: str) -> tuple[str, Path]:
        """The text of template `name` and its real path."""
        path = self.path(name)
        try:
            size = path.stat().st_size
            if size > MAX_TEMPLATE_CHARS * 4:  # UTF-8: at most 4 bytes a character
                raise TemplateOutsideFolder(f"{name!r} is {size:,} bytes, too large a template")
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateNotFound(name) from exc
        if len(text) > MAX_TEMPLATE_CHARS:
            raise TemplateOutsideFolder(
                f"{name!r} has {len(text):,} characters; a template may have at most "
                f"{MAX_TEMPLATE_CHARS:,}"
            )
        return text, path

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            text, _ = self.read(template)
        except UnicodeDecodeError as exc:
            raise TemplateOutsideFolder(f"{template!r} is not UTF-8 text: {exc}") from exc
        named = self.folder / template
        mtime = named.stat().st_mtime_ns

        def uptodate() -> bool:  # one stat, as Jinja's own loader: it runs on every include
            try:
                return named.stat().st_mtime_ns == mtime
            except OSError:
                return False

        # The name as written inside the folder, not the resolved path: errors
        # then name the file the marketer knows.
        return text, str(named), uptodate

    def list_templates(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file()
        )

    def exists(self, name: str) -> bool:
        """Whether template `name` is there to load."""
        return (self.folder / name).is_file()

    def stamp(self, name: str) -> int:
        """What changes when template `name` does (-1: not there to load)."""
        try:
            return self.path(name).stat().st_mtime_ns
        except (OSError, TemplateNotFound, SecurityError):
            return -1

    def refused(self, env: Environment, source: str, name: str) -> list[tuple[int, str]]:
        """(line, why) of each extends, include or import in `source` (template `name`)
        naming a file outside the folder. A source that does not parse has none:
        its syntax error is reported where it is compiled."""
        try:
            tree = env.parse(source, name)
        except (TemplateSyntaxError, RecursionError):
            return []
        found = []
        for node in tree.find_all(_LOADS):
            loaded: nodes.Expr = node.template  # type: ignore[attr-defined]  # every one of _LOADS
            for target in _literal_names(loaded):
                try:
                    self.path(target)
                except TemplateOutsideFolder as exc:
                    tag = _TAGS[type(node)]
                    found.append((node.lineno, f"{{% {tag} %}} refused: {exc}"))
                except TemplateNotFound:
                    pass  # missing: reported when rendered
        return found


_TAGS: dict[type[nodes.Node], str] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
}
_LOADS = tuple(_TAGS)


def _literal_names(node: nodes.Node) -> list[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return [n for item in node.items for n in _literal_names(item)]
    return []


class HeldLoader(FolderLoader):
    """`FolderLoader` over the templates held in memory (`TemplateSources`): the
    same names load and are refused, and nothing is read from disk."""

    def __init__(self, sources: TemplateSources):
        super().__init__(sources.folder)
        self.sources = sources

    def _name(self, name: str) -> str:
        reason = outside_reason(name)
        if reason is not None:
            raise TemplateOutsideFolder(reason)
        return posixpath.normpath(name)

    def path(self, name: str) -> Path:
        held = self._name(name)
        why = self.sources.refused.get(held)
        if why is not None:
            raise TemplateOutsideFolder(why)
        if held not in self.sources.files:
            raise TemplateNotFound(name)
        return self.folder / held

    def read(self, name: str) -> tuple[str, Path]:
        path = self.path(name)
        return self.sources.files[self._name(name)], path

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        text, _ = self.read(template)
        return text, str(self.folder / template), lambda: True  # held: never out of date

    def list_templates(self) -> list[str]:
        return sorted(self.sources.files)

    def exists(self, name: str) -> bool:
        try:
            self.path(name)
        except (TemplateNotFound, SecurityError):
            return False
        return True

    def stamp(self, name: str) -> int:
        return 0 if self.exists(name) else -1
