"""Help texts and date errors speak the marketer's YYYY-MM-DD, never strftime's %Y-%m-%d."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from engine.cli import main


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_every_command_module_is_named_in_the_lazy_table() -> None:
    """A command added to a module but not to `COMMANDS` would be missing from
    `lifecycle --help` until some other command imported its module."""
    import importlib
    import pkgutil

    import engine.cli
    from engine.cli.base import COMMANDS

    for module in pkgutil.iter_modules(engine.cli.__path__):
        importlib.import_module(f"engine.cli.{module.name}")
    defined = {
        name: command.callback.__module__.rsplit(".", 1)[1]
        for name, command in main.commands.items()
        if command.callback is not None
    }
    assert defined == COMMANDS


def test_report_does_not_load_the_sending_code() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from engine.cli import main\n"
        "try: main(['report', '--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('engine.deliver', 'engine.cli.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = out.strip().splitlines()[-1]
    assert "engine.cli.reporting" in loaded and "engine.deliver" not in loaded


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
