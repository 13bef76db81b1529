"""lifecycle: email lifecycle campaigns for small online shops.

One subpackage per stage of the flow (store, project, intake, plan, deliver,
report, track), imports running only down it: docs/architecture.md is the map.
"""

__version__ = "0.1.0"


def console() -> None:
    """The `lifecycle` console script. No garbage is collected while the command line
    and the command's modules load (a tenth of a second of every command's start,
    for objects that live as long as the process); the command group turns it back
    on, those objects set aside, before any command runs."""
    import gc

    gc.disable()
    from .cli import main

    main()
