"""Tracking: the one HTTP app, for opens, clicks, unsubscribes and the shop's events.

`app.create_app` answers the open pixel, click redirects and unsubscribes (RFC 8058)
from signed tokens, buffers opens and clicks (`opens`), records unsubscribes
(`unsubscribe`), takes the shop's events through `engine.intake`, and mounts the reports
dashboard, which is why it sits above `engine.report`. `httpserver` is uvicorn writing
each response in one socket write.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`, `engine.project`,
`engine.intake`, `engine.plan`, `engine.deliver`, `engine.report`, `engine.feedback`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `app`: `create_app`
- `httpserver`: `serve_in_thread`, `server_config`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .app import create_app
    from .httpserver import serve_in_thread, server_config

__all__ = ["create_app", "serve_in_thread", "server_config"]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {"create_app": ".app", "serve_in_thread": ".httpserver", "server_config": ".httpserver"}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
