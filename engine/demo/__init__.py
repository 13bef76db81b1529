"""The demo shop, Nakshi Ghor, whose data gives every campaign work.

`tables` holds the shop's fixed facts (products, price drops, cities, names);
`customers` plans its customers and their orders as plain data, the same for the same
arguments; `seed` writes what is missing through `engine.intake`; `club` places them in
the loyalty program's tiers as of three days before. `visitor` is what the
demo's customers do once `lifecycle run --demo` has sent them email: a few answer their
survey through the tracking server's pages, over HTTP.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`, `engine.project`,
`engine.intake`, `engine.plan`, `engine.deliver`, `engine.report`, `engine.track`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `club`: `place_in_tiers`
- `customers`: `DEFAULT_CUSTOMERS`, `MAX_CUSTOMERS`
- `seed`: `seed_demo`
- `tables`: `MIN_CUSTOMERS`
- `visitor`: `SurveyVisitor`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .club import place_in_tiers
    from .customers import DEFAULT_CUSTOMERS, MAX_CUSTOMERS
    from .seed import seed_demo
    from .tables import MIN_CUSTOMERS
    from .visitor import SurveyVisitor

__all__ = [
    "DEFAULT_CUSTOMERS",
    "MAX_CUSTOMERS",
    "MIN_CUSTOMERS",
    "SurveyVisitor",
    "place_in_tiers",
    "seed_demo",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "DEFAULT_CUSTOMERS": ".customers",
    "MAX_CUSTOMERS": ".customers",
    "MIN_CUSTOMERS": ".tables",
    "SurveyVisitor": ".visitor",
    "place_in_tiers": ".club",
    "seed_demo": ".seed",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
