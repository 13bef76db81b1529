"""docs/segments.md, the marketers' guide to segment rules, against the compiler."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from engine.plan.segments import CONDITIONS, compile_segment
from engine.project.loader import Segment

DOC = Path(__file__).resolve().parents[2] / "docs" / "segments.md"
ROW = re.compile(r"^\| `(\w+)` \| [^|]+ \| `([^`]+)` \|$", re.MULTILINE)
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def documented() -> dict[str, str]:
    return dict(ROW.findall(DOC.read_text(encoding="utf-8")))


def test_every_rule_key_the_compiler_accepts_is_documented_and_no_other() -> None:
    assert set(documented()) == {*CONDITIONS, "all", "any", "not"}


@pytest.mark.parametrize(("key", "example"), sorted(documented().items()))
def test_each_documented_example_compiles(key: str, example: str) -> None:
    rules = yaml.safe_load(example)
    assert list(rules) == [key]
    compile_segment(Segment(name="example", rules=rules), NOW)  # raises ConfigError if wrong


def test_the_larger_example_compiles() -> None:
    block = DOC.read_text(encoding="utf-8").split("## A larger example", 1)[1]
    text = block.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(text)
    compile_segment(Segment(name=data["name"], rules=data["rules"]), NOW)
