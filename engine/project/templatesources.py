"""The templates of a project, read into memory when the project is loaded.

A `Project` carries its `TemplateSources`: the text of every file in the
templates folder as it was when the project was loaded and checked. The
renderer renders from them, never from the files, so an edit made since (a
template broken while the daemon runs, a file removed) changes nothing until
a reload has checked and accepted it.

A snapshot is bounded: each file by `MAX_TEMPLATE_CHARS` (a rendering's memory
bounds assume a template's own text is small), the folder by
`MAX_TEMPLATES_CHARS` and `MAX_TEMPLATE_FILES`. A file that may not be
loaded (too large, not UTF-8, a symlink leading outside the folder) is kept
as the reason it is refused, so it fails as it would from disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_TEMPLATE_CHARS = 200_000  # one template file
MAX_TEMPLATES_CHARS = 8_000_000  # the whole templates folder, held in memory
MAX_TEMPLATE_FILES = 2_000


@dataclass(frozen=True)
class TemplateSources:
    """The templates folder's files (name relative to it, `/`-separated → text)."""

    folder: Path
    files: Mapping[str, str] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)  # name → why it may not load

    @property
    def chars(self) -> int:
        return sum(len(text) for text in self.files.values())


class TooManyTemplates(ValueError):
    """The templates folder is larger than a project may hold in memory."""


def read_template_sources(folder: Path) -> TemplateSources:
    """Every file under `folder` (dot-files aside); raises TooManyTemplates past the bounds.

    A missing folder reads as empty (the loader reports it).
    """
    files: dict[str, str] = {}
    refused: dict[str, str] = {}
    if not folder.is_dir():
        return TemplateSources(folder)
    root = folder.resolve()
    total = 0
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in name.split("/")) or path.is_dir():
            continue
        if len(files) + len(refused) >= MAX_TEMPLATE_FILES:
            raise TooManyTemplates(f"holds more than {MAX_TEMPLATE_FILES:,} files")
        text, why = _read_one(root, path, name)
        if why is not None:
            refused[name] = why
            continue
        if text is None:
            continue  # vanished while we looked
        total += len(text)
        if total > MAX_TEMPLATES_CHARS:
            raise TooManyTemplates(
                f"holds more than {MAX_TEMPLATES_CHARS:,} characters of templates"
            )
        files[name] = text
    return TemplateSources(folder, files, refused)


def _read_one(root: Path, path: Path, name: str) -> tuple[str | None, str | None]:
    """(text, None), (None, why it may not be loaded), or (None, None) if it is gone."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None, None  # gone, or a symlink loop: not found when asked for
    if not real.is_relative_to(root):
        return None, (
            f"{name!r} leads outside the templates folder (to {real}); "
            "templates may only use files in their own folder"
        )
    try:
        size = real.stat().st_size
        if size > MAX_TEMPLATE_CHARS * 4:  # UTF-8: at most 4 bytes a character
            return None, f"{name!r} is {size:,} bytes, too large a template"
        text = real.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{name!r} is not UTF-8 text: {exc}"
    except OSError:
        return None, None
    if len(text) > MAX_TEMPLATE_CHARS:
        return None, (
            f"{name!r} has {len(text):,} characters; a template may have at most "
            f"{MAX_TEMPLATE_CHARS:,}"
        )
    return text, None
