"""`lifecycle check`: every problem in the project, not just the first."""

from __future__ import annotations

import os
from collections.abc import Callable

from .errors import Problem
from .loader import Project, load_partial


def check_project(
    path: str | os.PathLike[str] | None = None,
) -> tuple[Project | None, list[Problem]]:
    """Load the project and run every checker; return it (if loadable) and all problems."""
    project, problems = load_partial(path)
    if project is not None:
        for checker in _checkers():
            problems.extend(checker(project))
    return project, list(dict.fromkeys(problems))


def _checkers() -> list[Callable[[Project], list[Problem]]]:
    """Checks beyond the files' own shape, each owned by the module it protects."""
    from .calendar import check_holidays
    from .segments import check_segments
    from .templatecheck import check_templates

    return [check_segments, check_holidays, check_templates]
