"""Reporting: what the campaigns did, for `lifecycle report` and the dashboard.

`reports.build_report` is the one source of every figure (docs/metrics.md); `retention`
computes the retention metrics from the orders (in one scan of them, `orderscan`); `rewards` the coupons and store credit,
`loyalty` the tiers and referrals; `customers` one row per customer for lifetime-value
models (`lifecycle report --customers`); `dashboard` is the Starlette app the tracking
server mounts at /dashboard (its login in `dashauth`, its email preview in `dashpreview`,
its rewards tables in `dashrewards`), with server-drawn SVG `charts` and its templates and
CSS in `web/`.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`, `engine.project`,
`engine.intake`, `engine.plan`, `engine.deliver`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `customers`: `CUSTOMER_COLUMNS`, `customer_summaries`, `observation_day`
- `dashboard`: `dashboard_app`
- `reports`: `build_report`, `period`, `to_json`
- `retention`: `ACTIVITY_DAYS`, `bucket_label`, `rounded`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .customers import CUSTOMER_COLUMNS, customer_summaries, observation_day
    from .dashboard import dashboard_app
    from .reports import build_report, period, to_json
    from .retention import ACTIVITY_DAYS, bucket_label, rounded

__all__ = [
    "ACTIVITY_DAYS",
    "CUSTOMER_COLUMNS",
    "bucket_label",
    "build_report",
    "customer_summaries",
    "dashboard_app",
    "observation_day",
    "period",
    "rounded",
    "to_json",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "ACTIVITY_DAYS": ".retention",
    "CUSTOMER_COLUMNS": ".customers",
    "bucket_label": ".retention",
    "build_report": ".reports",
    "customer_summaries": ".customers",
    "dashboard_app": ".dashboard",
    "observation_day": ".customers",
    "period": ".reports",
    "rounded": ".retention",
    "to_json": ".reports",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
