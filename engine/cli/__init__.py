"""The `lifecycle` command line."""

from __future__ import annotations

# Each module adds its commands to `main` when imported.
from . import (
    core,  # noqa: F401
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
