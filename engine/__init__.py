"""lifecycle: email lifecycle campaigns for small online shops.

One subpackage per stage of the flow (store, project, intake, plan, deliver,
report, track), imports running only down it: docs/architecture.md is the map.
"""

__version__ = "0.1.0"
