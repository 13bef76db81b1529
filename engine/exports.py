"""The public names of a stage's package, imported from their module when first asked for.

Each stage's `__init__.py` lists its public names and the module of each, and takes
its `__getattr__` from `public_names`: importing one module of a stage imports no
other, and a name replaced on its module (as a test may do) is the one every other
stage gets.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from importlib import import_module
from typing import Any


def public_names(
    package: str, public: Mapping[str, str], modules: Collection[str] = ()
) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `public` maps each name to its module
    (relative, e.g. `".planner"`); a name in `modules` is that module itself.
    Any other name raises AttributeError, as a plain module would."""

    def __getattr__(name: str) -> Any:
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(public[name], package)
        return module if name in modules else getattr(module, name)

    return __getattr__
