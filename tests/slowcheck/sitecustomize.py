"""Put on PYTHONPATH of a `lifecycle run` under test: a template carrying SLOW_MARK makes
the project check hang, as a template that runs away would (every process, every check)."""

from __future__ import annotations

import time
from typing import Any

import engine.templatecheck

SLOW_MARK = "{# check me slowly #}"

_check_templates = engine.templatecheck.check_templates


def _slow_check_templates(project: Any) -> Any:
    for path in project.templates_dir.glob("*.*"):
        if SLOW_MARK in path.read_text():
            time.sleep(600)
    return _check_templates(project)


engine.templatecheck.check_templates = _slow_check_templates
