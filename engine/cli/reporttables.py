"""`lifecycle report` in a terminal: the report's figures as Rich tables.

One table per group of related figures, in the order of the report: sending,
opens and clicks, credit and orders per campaign; retention; coupons, store
credit, tiers and referrals. A figure that is None ("no data") shows as "–".
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from rich import box
from rich.table import Table

from ..report import rounded
from .base import console


def _shown(value: Any) -> str:
    """A figure for a person: "–" for no data, Decimals half-up to two places."""
    if value is None:
        return "–"
    return str(rounded(value)) if isinstance(value, Decimal) else str(value)


def show(data: dict[str, Any]) -> None:
    """Rich tables for a terminal."""
    info = data["period"]
    zone = ZoneInfo(info["timezone"])
    first, last = info["start"].astimezone(zone), info["end"].astimezone(zone)
    console.print(
        f"[bold]{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M}[/bold] ({info['timezone']}); "
        f"an order counts for a campaign when placed within {info['attribution_days']} days "
        "after a human open or click",
        markup=True,
    )
    rows = [*data["campaigns"].items(), ("all campaigns", data["totals"])]
    statuses = ["sent", "queued", "retrying", "failed", "expired", "in_doubt", "suppressed"]
    sending = _table("Sending", ["sent", "queued", "retry", "failed", "expired", "doubt", "suppr."])
    opens = _table(
        "Opens (human) and clicks",
        ["opens", "open %", "ref. %", "machine", "clicks", "click %", "unsub"],
    )
    money = _table("Credit and orders", ["store credit", "orders", "revenue"])
    for name, row in rows:
        sending.add_row(name, *(str(row[k]) for k in statuses))
        opens.add_row(
            name,
            str(row["unique_human_opens"]),
            _shown(row["human_open_rate"]),
            _shown(row["reference_open_rate"]),
            str(row["machine_opens"]),
            f"{row['unique_clicks']}/{row['total_clicks']}",
            _shown(row["click_rate"]),
            str(row["unsubscribes"]),
        )
        money.add_row(
            name,
            _shown(row["store_credit"]),
            str(row["attributed_orders"]),
            _shown(row["attributed_revenue"]),
        )
    for table in (
        sending,
        opens,
        money,
        *_retention_tables(data["retention"]),
        *_rewards_tables(data["rewards"]),
    ):
        console.print(table)


def _table(title: str, columns: list[str], first: str = "campaign") -> Table:
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column(first, no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    return table


def _retention_tables(retention: dict[str, Any]) -> list[Table]:
    title = f"Retention (active = ordered within {retention['activity_window']})"
    counts = _table(
        title, ["at start", "at end", "new", "lost", "returning", "repeat", "orders"], "period"
    )
    rates = _table(
        "Retention rates",
        ["CRR %", "churn %", "repeat %", "frequency", "AOV", "CLV", "NPS", "answers"],
        "period",
    )
    buckets = retention["buckets"]
    slices = [*((_mark(b), b) for b in buckets), ("total", retention["total"])]
    notes = _notes(buckets)
    if notes:
        rates.caption = notes
        rates.caption_justify = "left"
    for label, b in slices:
        counts.add_row(
            label,
            *(
                str(b[k])
                for k in (
                    "customers_at_start",
                    "customers_at_end",
                    "new_customers",
                    "lost_customers",
                    "returning_customers",
                    "repeat_customers",
                    "orders",
                )
            ),
        )
        rates.add_row(
            label,
            _shown(b["retention_rate"]),
            _shown(b["churn_rate"]),
            _shown(b["repeat_customer_rate"]),
            _shown(b["purchase_frequency"]),
            _shown(b["average_order_value"]),
            _shown(b["customer_lifetime_value"]),
            _shown(b["nps"]["score"]),
            str(b["nps"]["answers"]),
        )
    return [counts, rates]


def _mark(bucket: dict[str, Any]) -> str:
    """A bucket's label, starred when the period cuts it (the tables stay narrow)."""
    return bucket["label"] + ("*" if bucket["partial"] else "")


def _notes(buckets: list[dict[str, Any]]) -> str:
    """What the stars mean, and the buckets nobody ordered in (their rates read so)."""
    notes = []
    if any(b["partial"] for b in buckets):
        notes.append("* partial: the period starts or ends inside it")
    empty = [b["label"] for b in buckets if not b["orders"]]
    if empty:
        notes.append(f"no orders in {', '.join(empty)}")
    return "; ".join(notes)


def _rewards_tables(rewards: dict[str, Any]) -> list[Table]:
    coupons = _table(
        "Coupons issued in the period", ["issued", "redeemed", "rate %", "expired", "revenue"]
    )
    rows = [
        *rewards["coupons"]["campaigns"].items(),
        ("all campaigns", rewards["coupons"]["total"]),
    ]
    for name, row in rows:
        coupons.add_row(
            name,
            str(row["issued"]),
            str(row["redeemed"]),
            _shown(row["redemption_rate"]),
            str(row["expired"]),
            str(row["revenue"]),
        )
    wallet = rewards["credit"]
    credit = _table(
        "Store credit",
        ["at start", "issued", "redeemed", "taken back", "expired", "outstanding"],
        "period",
    )
    credit.add_row(
        "period",
        *(
            str(wallet[k])
            for k in ("outstanding_at_start", "issued", "redeemed", "taken_back", "expired")
        ),
        str(wallet["outstanding"]),
    )
    return [coupons, credit, *_loyalty_tables(rewards["tiers"], rewards["referrals"])]


def _loyalty_tables(tiers: dict[str, Any], referrals: dict[str, Any]) -> list[Table]:
    levels = _table(
        "Loyalty tiers (customers now; moves in the period)",
        ["customers", "moved up in", "moved down in", "moved out"],
        "tier",
    )
    for key, row in tiers["tiers"].items():
        label = row["name"] if row["in_file"] else f"{key} (not in tiers file)"
        levels.add_row(label, *(str(row[k]) for k in ("customers", "up", "down", "left")))
    total = tiers["total"]
    levels.add_row("all customers", *(str(total[k]) for k in ("customers", "up", "down", "left")))
    statuses = ("referred", "pending", "counted", "reversed", "refused")
    referred = _table("Referred orders", list(statuses), "period")
    referred.add_row("period", *(str(referrals[k]) for k in statuses))
    refused = _table("Refused referrals", ["referrals"], "reason")
    for reason, count in referrals["refused_by_reason"].items():
        refused.add_row(reason, str(count))
    paid = _table("Referral rewards paid", ["paid", "credit", "coupons"], "threshold")
    rewards = referrals["rewards"]
    for label, row in [*rewards["thresholds"].items(), ("all", rewards["total"])]:
        paid.add_row(str(label), str(row["paid"]), str(row["credit"]), str(row["coupons"]))
    return [levels, referred, refused, paid]
