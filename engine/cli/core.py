"""Commands about the project itself: check, db."""

from __future__ import annotations

import sys

import click

from ..check import check_project
from ..store import current_revision, make_engine, upgrade
from .app import App
from .base import console, errors, main, print_json, with_app


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_app
def check(app: App, as_json: bool) -> None:
    """Validate config, campaigns, segments and templates; exit 2 listing every problem."""
    _, problems = check_project(app.config_file, strict=True)
    if as_json:
        print_json({"ok": not problems, "errors": [p.as_dict() for p in problems]})
    elif problems:
        for problem in problems:
            # One line per problem, however long: editors and CI jump to file:line.
            errors.print(str(problem), markup=False, soft_wrap=True)
        errors.print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found")
    else:
        console.print("ok: config, campaigns, segments and templates are valid")
    sys.exit(2 if problems else 0)


@main.group()
def db() -> None:
    """Create or upgrade the database schema."""


@db.command("upgrade")
@with_app
def db_upgrade(app: App) -> None:
    """Create the schema, or upgrade it to this version of the engine (keeps all data)."""
    engine = make_engine(app.project.database_url(app.environment))
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if before == after:
        console.print(f"database is up to date (revision {after})")
    else:
        console.print(f"database upgraded from {before or 'empty'} to revision {after}")
