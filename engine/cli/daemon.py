"""`lifecycle run`: the engine in the background (scheduler and tracking server)."""

from __future__ import annotations

import sys

import click

from ..check import check_project
from ..daemon import configure_logging, run_daemon
from .app import App
from .base import errors, main, with_app


@main.command()
@click.option(
    "--demo",
    is_flag=True,
    help="Development mode: a secret kept in .lifecycle-secret and a mail sink writing "
    "every email into outbox/ beside config.yaml.",
)
@with_app
def run(app: App, demo: bool) -> None:
    """Plan and send every tick_seconds, and serve opens, clicks, unsubscribes and events.

    Needs LIFECYCLE_SECRET (it signs the tracking links), except with --demo.
    SIGTERM or Ctrl-C stops it gracefully.
    """
    secret = app.environment.secret  # never the demo's file, unless --demo
    if not demo and (not secret or len(secret) < 16):
        errors.print(
            "error: LIFECYCLE_SECRET is not set (or shorter than 16 characters). It signs the "
            "open, click and unsubscribe links; set it to a long random value and keep it "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or try `lifecycle run --demo`.",
            markup=False,
        )
        sys.exit(2)
    configure_logging()
    project, problems = check_project(app.config_file)
    if project is None or problems:
        for problem in problems:
            errors.print(str(problem), markup=False)
        errors.print("not starting: fix the problems above (lifecycle check lists them)")
        sys.exit(2)
    secrets = app.secrets if demo else app.environment
    sys.exit(run_daemon(app.config_file.resolve(), project, app.engine, secrets, demo=demo))
