"""Help texts and date errors speak the marketer's YYYY-MM-DD, never strftime's %Y-%m-%d."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from engine.cli import main


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


@pytest.mark.parametrize("path", list(commands(main)), ids=" ".join)
def test_no_help_text_shows_a_strftime_format(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "%" not in result.output


def test_report_help_shows_dates_as_yyyy_mm_dd() -> None:
    output = CliRunner().invoke(main, ["report", "--help"]).output
    assert "--from YYYY-MM-DD" in output and "--to YYYY-MM-DD" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["report", "--from", "2026-13-01"],
            "Error: Invalid value for '--from': expected a date written YYYY-MM-DD, "
            "like 2026-12-05, got '2026-13-01'",
            id="report",
        ),
        pytest.param(
            ["holiday", "set", "flash_sale", "5 Dec"],
            "Error: Invalid value for 'DATE': expected a date written YYYY-MM-DD, "
            "like 2026-12-05, got '5 Dec'",
            id="holiday-set",
        ),
    ],
)
def test_a_bad_date_is_answered_in_the_same_words(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
