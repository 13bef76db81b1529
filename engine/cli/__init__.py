"""The `lifecycle` command line.

It builds the real collaborators (project, database, mailer) and hands them in.
May import: every stage, through its package's public names.
Public names: `main`, the `lifecycle` console script.
"""

from __future__ import annotations

# Each module adds its commands to `main` when imported.
from . import (
    core,  # noqa: F401
    coupons,  # noqa: F401
    daemon,  # noqa: F401
    data,  # noqa: F401
    delivery,  # noqa: F401
    demo,  # noqa: F401
    planning,  # noqa: F401
    preview,  # noqa: F401
    reporting,  # noqa: F401
)
from .base import main

__all__ = ["main"]
