"""Shared pieces of the command line: the group, --config, error reporting."""

from __future__ import annotations

import functools
import gc
import importlib
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console

from ..errors import ConfigError, EngineError
from .app import App

F = TypeVar("F", bound=Callable[..., Any])

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


# Each command and the module that defines it. A module is imported when one of its
# commands runs (or the help lists them all): `lifecycle report` does not load the
# sending, rendering and planning code, which takes most of a second to import.
COMMANDS = {
    "broadcast": "planning",
    "bounces": "bounces",
    "check": "core",
    "coupons": "coupons",
    "db": "core",
    "demo": "demo",
    "doctor": "doctor",
    "holiday": "planning",
    "import": "data",
    "plan": "planning",
    "preview": "preview",
    "report": "reporting",
    "resume": "delivery",
    "run": "daemon",
    "send": "delivery",
    "send-test": "delivery",
    "sink": "delivery",
    "tick": "delivery",
}


class Commands(click.Group):
    """The `lifecycle` group, importing a command's module when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"{__package__}.{module}")
        return super().get_command(ctx, cmd_name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lifecycle")
def main() -> None:
    """Email lifecycle campaigns for small online shops."""
    if not gc.isenabled():  # started by `engine.console()`: the modules are loaded now
        gc.freeze()
        gc.enable()


def with_app(func: F) -> F:
    """Add --config to a command and hand it an App; turn engine errors into exit codes.

    ConfigError → exit 2 with every problem listed; any other EngineError → exit 1.
    """

    @click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        envvar="LIFECYCLE_CONFIG",
        default="config.yaml",
        show_default=True,
        help="The shop's config.yaml (campaigns/, segments/ and templates/ sit beside it).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, config: str, **kwargs: Any) -> Any:
        app = App.from_option(config)
        try:
            return func(app, *args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                errors.print(str(problem), markup=False)
            sys.exit(2)
        except EngineError as exc:
            errors.print(f"error: {exc}", markup=False)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


class Day(click.ParamType):
    """A calendar day written YYYY-MM-DD, as a datetime at midnight (naive)."""

    name = "YYYY-MM-DD"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "YYYY-MM-DD"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.strptime(str(value).strip(), "%Y-%m-%d")
        except ValueError:
            self.fail(
                f"expected a date written YYYY-MM-DD, like 2026-12-05, got {value!r}", param, ctx
            )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
