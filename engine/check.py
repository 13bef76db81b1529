"""`lifecycle check`: every problem in the project, not just the first."""

from __future__ import annotations

import os

from .errors import ConfigError, Problem
from .loader import Project, load_project


def check_project(
    path: str | os.PathLike[str] | None = None,
) -> tuple[Project | None, list[Problem]]:
    """Load the project and run every checker; return it (if loadable) and all problems."""
    try:
        project = load_project(path)
    except ConfigError as exc:
        return None, exc.problems
    problems: list[Problem] = []
    for checker in _checkers():
        problems.extend(checker(project))
    return project, problems


def _checkers() -> list:  # type: ignore[type-arg]
    """Checks beyond the files' own shape, each owned by the module it protects."""
    from .calendar import check_holidays
    from .render import check_templates
    from .segments import check_segments

    return [check_segments, check_holidays, check_templates]
