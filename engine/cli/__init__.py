"""The `lifecycle` command line.

It builds the real collaborators (project, database, mailer) and hands them in.
May import: every stage, through its package's public names.
Public names: `main`, the `lifecycle` console script.
"""

from __future__ import annotations

# Each command's module adds it to `main` when the command is asked for (`base.COMMANDS`).
from .base import main

__all__ = ["main"]
