"""Rendering: what a customer's email says, from the shop's templates and data.

`context` builds, for a batch of messages, the plain data each template sees
(`contextload` reads it with one query per table, `contextparts` shapes it,
`formatting` formats money, dates and numbers for the customer's locale;
`samplecontext` is the made-up data `lifecycle check` renders with). `renderer`
renders a template in Jinja's sandbox (`sandbox`) under hard limits (`limits`),
loading only files inside the templates folder (`templatefiles`), with the CSS
inlined ahead by `inlining`; `links` points an email's links at the click
tracker; `templateerrors` words a template's mistakes for the marketer;
`templatecheck` is what `lifecycle check` says about the templates.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`,
`engine.project`, `engine.intake`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `context`: `ContextError`, `load_contexts`, `message_step`
- `contextparts`: `holiday_name`
- `formatting`: `money`, `round_money`
- `links`: `track_links`
- `renderer`: `RenderedEmail`, `Renderer`
- `templatecheck`: `check_templates`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .context import ContextError, load_contexts, message_step
    from .contextparts import holiday_name
    from .formatting import money, round_money
    from .links import track_links
    from .renderer import RenderedEmail, Renderer
    from .templatecheck import check_templates

__all__ = [
    "ContextError",
    "RenderedEmail",
    "Renderer",
    "check_templates",
    "holiday_name",
    "load_contexts",
    "message_step",
    "money",
    "round_money",
    "track_links",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "ContextError": ".context",
    "RenderedEmail": ".renderer",
    "Renderer": ".renderer",
    "check_templates": ".templatecheck",
    "holiday_name": ".contextparts",
    "load_contexts": ".context",
    "message_step": ".context",
    "money": ".formatting",
    "round_money": ".formatting",
    "track_links": ".links",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
