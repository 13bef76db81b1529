"""`lifecycle report`: what the campaigns did and how loyal the customers are."""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.table import Table

from ..report import ACTIVITY_DAYS, build_report, period, to_json
from .app import App
from .base import Day, console, main, print_json, with_app

CAMPAIGN_COLUMNS = [
    "trigger",
    "enabled",
    "messages",
    "queued",
    "retrying",
    "sent",
    "delivered",
    "failed",
    "expired",
    "in_doubt",
    "suppressed",
    "unique_human_opens",
    "machine_opens",
    "human_open_rate",
    "reference_open_rate",
    "unique_clicks",
    "total_clicks",
    "click_rate",
    "unsubscribes",
    "unsubscribe_rate",
    "bounces",
    "complaints",
    "store_credit",
    "attributed_orders",
    "attributed_revenue",
]
RETENTION_COLUMNS = [
    "customers_at_start",
    "customers_at_end",
    "new_customers",
    "retained_customers",
    "lost_customers",
    "ordering_customers",
    "returning_customers",
    "orders",
    "revenue",
    "retention_rate",
    "churn_rate",
    "repeat_customer_rate",
    "purchase_frequency",
    "average_order_value",
    "purchases_per_year",
    "customer_lifetime_value",
]
NPS_COLUMNS = ["answers", "promoters", "passives", "detractors", "score"]
ERROR_COLUMNS = [
    "message_id",
    "campaign",
    "status",
    "attempts",
    "smtp_code",
    "last_error",
    "created_at",
    "customer_name",
    "customer_email",
]
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@main.command()
@click.option("--from", "first", type=Day(), help="First day.")
@click.option("--to", "last", type=Day(), help="Last day, included.")
@click.option(
    "--by",
    type=click.Choice(["month", "year"]),
    default="month",
    show_default=True,
    help="Retention buckets.",
)
@click.option(
    "--activity-days",
    type=click.IntRange(min=1),
    default=ACTIVITY_DAYS,
    show_default=True,
    help="A customer is active while their last order is at most this many days old.",
)
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print every figure as CSV.")
@with_app
def report(
    app: App,
    first: datetime | None,
    last: datetime | None,
    by: str,
    activity_days: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Campaign results and retention metrics; by default the last 30 days up to now.

    Dates are days in the shop's timezone; --to is included.
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    now = datetime.now(UTC)
    project = app.project
    start, end = period(
        first.date() if first else None,
        last.date() if last else None,
        now,
        project.config.shop.timezone,
    )
    data = build_report(app.engine, project, start, end, by, now, activity_days=activity_days)
    if as_json:
        print_json(to_json(data))
    elif as_csv:
        write_csv(data, sys.stdout)
    else:
        show(data)


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: formula-like text gets a leading `'`.

    Plain numbers (such as a negative rate, "-5.00") are left as they are.
    """
    text = "" if value is None else str(to_json(value))
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def write_csv(data: dict[str, Any], out: IO[str]) -> None:
    """Campaigns, retention and recent errors as three tables separated by a blank line."""
    writer = csv.writer(out, lineterminator="\n")

    def rows(header: list[str], body: Iterable[list[Any]]) -> None:
        writer.writerow([csv_cell(h) for h in header])
        writer.writerows([csv_cell(v) for v in row] for row in body)
        writer.writerow([])

    campaigns = [
        [name, *(row.get(k) for k in CAMPAIGN_COLUMNS)] for name, row in data["campaigns"].items()
    ]
    campaigns.append(["all campaigns", *(data["totals"].get(k) for k in CAMPAIGN_COLUMNS)])
    rows(["campaign", *CAMPAIGN_COLUMNS], campaigns)
    retention = data["retention"]
    slices = [*retention["buckets"], {"label": "total", **retention["total"]}]
    rows(
        ["bucket", "start", "end", *RETENTION_COLUMNS, *(f"nps_{k}" for k in NPS_COLUMNS)],
        (
            [
                b["label"],
                b["start"],
                b["end"],
                *(b[k] for k in RETENTION_COLUMNS),
                *(b["nps"][k] for k in NPS_COLUMNS),
            ]
            for b in slices
        ),
    )
    rows(ERROR_COLUMNS, ([e[k] for k in ERROR_COLUMNS] for e in data["queue"]["recent_errors"]))


def _shown(value: Any) -> str:
    return "–" if value is None else str(value)


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
    for table in (sending, opens, money, *_retention_tables(data["retention"])):
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
    title = f"Retention (active = ordered within {retention['activity_days']} days)"
    counts = _table(title, ["at start", "at end", "new", "lost", "returning", "orders"], "period")
    rates = _table(
        "Retention rates",
        ["CRR %", "churn %", "repeat %", "frequency", "AOV", "CLV", "NPS"],
        "period",
    )
    slices = [*((b["label"], b) for b in retention["buckets"]), ("total", retention["total"])]
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
        )
    return [counts, rates]
