"""Hot reload: pick up edits to config.yaml, campaigns, segments and templates.

`ProjectWatcher.poll()` is called between ticks. It compares the files'
modification times and sizes with the last look (a few `stat` calls: cheap,
no extra dependency). When something changed it re-validates the whole
project with `engine.check.check_project`; a valid project is returned and
becomes current, an invalid one is refused: each problem is logged with its
file and line, once per change, and the last good project stays in force.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from .check import check_project
from .errors import Problem
from .loader import Project

log = logging.getLogger(__name__)

Snapshot = dict[str, tuple[int, int]]
Check = Callable[[Path], tuple[Project | None, list[Problem]]]


def _check(path: Path) -> tuple[Project | None, list[Problem]]:
    return check_project(path)


def snapshot(project: Project, config_file: Path) -> Snapshot:
    """(mtime_ns, size) of every file the project is made of."""
    folders = (
        project.root / project.config.paths.campaigns,
        project.root / project.config.paths.segments,
        project.templates_dir,
    )
    files = [config_file]
    for folder in folders:
        if folder.is_dir():
            files.extend(p for p in folder.rglob("*") if not p.name.startswith("."))
    seen: Snapshot = {}
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue  # removed while we looked: the next poll sees it gone
        if not path.is_dir():
            seen[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return seen


class ProjectWatcher:
    """Holds the current (last good) project and swaps it when the files change."""

    def __init__(
        self, project: Project, config_file: str | os.PathLike[str], *, check: Check = _check
    ):
        self.project = project
        self.config_file = Path(config_file).resolve()
        self.check = check
        self._seen = snapshot(project, self.config_file)
        self.refused = 0

    def current(self) -> Project:
        return self.project

    def poll(self) -> Project | None:
        """The new project if the files changed and are valid, else None."""
        now = snapshot(self.project, self.config_file)
        if now == self._seen:
            return None
        changed = _changed(self._seen, now)
        self._seen = now
        project, problems = self.check(self.config_file)
        if project is None or problems:
            self.refused += 1
            log.error(
                "reload refused: %d problem%s; still running the last good version",
                len(problems),
                "" if len(problems) == 1 else "s",
            )
            for problem in problems:
                log.error("reload: %s", problem)
            return None
        self.project = project
        self._seen = snapshot(project, self.config_file)  # a new config may watch new folders
        log.info("reloaded the project%s", f" ({', '.join(changed)})" if changed else "")
        return project


def _changed(before: Snapshot, after: Snapshot) -> list[str]:
    names = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return sorted(Path(name).name for name in names)[:5]
