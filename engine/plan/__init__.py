"""Planning: every tick, which customer is due which email.

`planner.plan` runs one `CampaignPass` (`campaignpass`) per enabled campaign: the
trigger's module selects candidate (customer, occurrence) pairs (`ordertriggers`,
`announcements`, `refunds`), the segment (`segments`), consent, suppression and the
frequency cap filter them, and one INSERT ... SELECT queues what is left, inside each
customer's send window (`sendwindow`). `calendar` knows the holidays; `plansql` holds
the SQL pieces the steps share.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`, `engine.project`,
`engine.intake`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `broadcasts`: `BroadcastEntry`, `broadcast_campaign`, `cancel_broadcast`,
  `list_broadcasts`, `parse_local_at`, `set_broadcast`
- `calendar`: `check_holidays`, `check_offers`, `holiday_dates`
- `planner`: `PlanReport`, `plan`
- `segments`: `check_segments`
- `referrals`: `mint_referral_codes`
- `tiers`: `recompute_tiers`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .broadcasts import (
        BroadcastEntry,
        broadcast_campaign,
        cancel_broadcast,
        list_broadcasts,
        parse_local_at,
        set_broadcast,
    )
    from .calendar import check_holidays, check_offers, holiday_dates
    from .planner import PlanReport, plan
    from .referrals import mint_referral_codes
    from .segments import check_segments
    from .tiers import recompute_tiers

__all__ = [
    "BroadcastEntry",
    "PlanReport",
    "broadcast_campaign",
    "cancel_broadcast",
    "check_holidays",
    "check_offers",
    "check_segments",
    "holiday_dates",
    "list_broadcasts",
    "mint_referral_codes",
    "parse_local_at",
    "plan",
    "recompute_tiers",
    "set_broadcast",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "BroadcastEntry": ".broadcasts",
    "PlanReport": ".planner",
    "broadcast_campaign": ".broadcasts",
    "cancel_broadcast": ".broadcasts",
    "check_holidays": ".calendar",
    "check_offers": ".calendar",
    "check_segments": ".segments",
    "holiday_dates": ".calendar",
    "list_broadcasts": ".broadcasts",
    "parse_local_at": ".broadcasts",
    "mint_referral_codes": ".referrals",
    "plan": ".planner",
    "recompute_tiers": ".tiers",
    "set_broadcast": ".broadcasts",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
