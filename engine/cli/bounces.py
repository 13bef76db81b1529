"""`lifecycle bounces`: read the bounce mailbox once.

Each report in the mailbox (`bounces.maildir` or `bounces.imap` in config.yaml, or
`--maildir`) is applied once and moved aside; see `engine.feedback`. The daemon
does the same every `bounces.every` when a mailbox is configured.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..feedback import Processor, read_mailbox, read_maildir
from .app import App
from .base import console, main, print_json, with_app


@main.command()
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, exists=True),
    help="Read this Maildir instead of the mailbox config.yaml names.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@with_app
def bounces(app: App, maildir: str | None, as_json: bool) -> None:
    """Read the bounce mailbox once: record bounces and complaints, suppress bad addresses."""
    processor = Processor.for_project(app.engine, app.project, app.secrets)
    if maildir:
        tally = read_maildir(processor, Path(maildir))
    else:
        tally = read_mailbox(processor, app.project, app.secrets)
    if as_json:
        print_json({"read": tally.read, **tally.counts, "suppressed": tally.suppressed})
        return
    console.print(tally.summary(), markup=False)
    for address in tally.suppressed:
        console.print(f"  suppressed {address}", markup=False)
