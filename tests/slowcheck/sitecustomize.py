"""On the PYTHONPATH of a `lifecycle run` under test (tests.daemon_fixtures.slow_check_env):
a template holding $SLOW_CHECK_MARK makes the project check hang in every process, as a
template that runs away would."""

from __future__ import annotations

import os
import time
from typing import Any

import engine.render.templatecheck

_check_templates = engine.render.templatecheck.check_templates


def _slow_check_templates(project: Any) -> Any:
    mark = os.environ["SLOW_CHECK_MARK"]
    if any(mark in path.read_text() for path in project.templates_dir.glob("*.*")):
        time.sleep(600)
    return _check_templates(project)


if os.environ.get("SLOW_CHECK_MARK"):
    engine.render.templatecheck.check_templates = _slow_check_templates
