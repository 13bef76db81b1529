"""`lifecycle check`: every problem in the project, not just the first."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from .errors import Problem
from .project import Project, load_partial

log = logging.getLogger(__name__)


def check_project(
    path: str | os.PathLike[str] | None = None, *, strict: bool = False
) -> tuple[Project | None, list[Problem]]:
    """Load the project and run every checker; return it (if loadable) and all problems.

    A problem of the shop's data rather than its files (an offer of a SKU the
    database lacks) is returned only when `strict` (`lifecycle check`); otherwise
    (`lifecycle run`, a reload) it is logged as a warning, so a new shop with an
    empty database can start.
    """
    project, problems = load_partial(path)
    if project is not None:
        for checker in _checkers():
            problems.extend(checker(project))
        for checker in _data_checkers():
            for problem in checker(project):
                if strict:
                    problems.append(problem)
                else:
                    log.warning("%s", problem)
    return project, list(dict.fromkeys(problems))


def _checkers() -> list[Callable[[Project], list[Problem]]]:
    """Checks beyond the files' own shape, each owned by the module it protects."""
    from .plan import check_holidays, check_segments
    from .render import check_templates

    return [check_segments, check_holidays, check_templates]


def _data_checkers() -> list[Callable[[Project], list[Problem]]]:
    """Checks of the files against the shop's data in the database."""
    from .plan import check_offers

    return [check_offers]
