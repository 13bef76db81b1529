"""The dashboard's rewards page: coupons, store credit, tiers and referrals.

`rewards_tables` lays the `rewards` part of `build_report` out as the figure
tables of `web/rewards.html` (the `figure_table` macro of `web/_figures.html`):
each table's columns as (figure, heading, kind), its rows as (key, label,
figures) and its footer, so that every cell carries the figure as
`lifecycle report --json` writes it. Nothing here computes a figure.
"""

from __future__ import annotations

from typing import Any

Column = tuple[str, str, str]

COUPON_COLUMNS: list[Column] = [
    ("issued", "Issued", "count"),
    ("redeemed", "Redeemed", "count"),
    ("redemption_rate", "Redemption rate %", "rate"),
    ("expired", "Expired unused", "count"),
    ("revenue", "Revenue of redeeming orders", "money"),
]
CREDIT_COLUMNS: list[Column] = [
    ("outstanding_at_start", "Outstanding at start", "money"),
    ("issued", "Issued", "money"),
    ("redeemed", "Redeemed", "money"),
    ("taken_back", "Taken back", "money"),
    ("expired", "Expired unused", "money"),
    ("outstanding", "Outstanding at end", "money"),
]
TIER_COLUMNS: list[Column] = [
    ("customers", "Customers now", "count"),
    ("up", "Moved up into", "count"),
    ("down", "Moved down into", "count"),
    ("left", "Moved out", "count"),
]
REFERRAL_COLUMNS: list[Column] = [
    ("referred", "Referred orders", "count"),
    ("pending", "Pending", "count"),
    ("counted", "Counted", "count"),
    ("reversed", "Reversed", "count"),
    ("refused", "Refused", "count"),
]
REASON_COLUMNS: list[Column] = [("referrals", "Referrals", "count")]
REWARD_COLUMNS: list[Column] = [
    ("paid", "Rewards paid", "count"),
    ("credit", "Store credit", "money"),
    ("coupons", "Coupons", "count"),
]


def rewards_tables(rewards: dict[str, Any]) -> dict[str, Any]:
    """The rows of each table of the rewards page, by the name the template uses."""
    referrals = rewards["referrals"]
    paid = referrals["rewards"]
    return {
        "coupon_columns": COUPON_COLUMNS,
        "coupon_rows": [(k, k, row) for k, row in rewards["coupons"]["campaigns"].items()],
        "credit_columns": CREDIT_COLUMNS,
        "credit_rows": [("period", "Period", rewards["credit"])],
        "tier_columns": TIER_COLUMNS,
        "tier_rows": [(k, row["name"], row) for k, row in rewards["tiers"]["tiers"].items()],
        "referral_columns": REFERRAL_COLUMNS,
        "referral_rows": [("period", "Period", referrals)],
        "reason_columns": REASON_COLUMNS,
        "reason_rows": [
            (reason, reason, {"referrals": n})
            for reason, n in referrals["refused_by_reason"].items()
        ],
        "reasons_total": {"referrals": referrals["refused"]},
        "reward_columns": REWARD_COLUMNS,
        "reward_rows": [(n, f"at {n}", row) for n, row in paid["thresholds"].items()],
    }
