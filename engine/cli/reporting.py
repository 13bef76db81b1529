"""`lifecycle report`: what the campaigns did and how loyal the customers are.

Prints `build_report` as JSON (`--json`), as CSV tables (`--csv`, here) or as
terminal tables (`reporttables`); with `--customers`, one row per customer
(`customer_summaries`) as CSV or JSON, written as the rows are read.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import IO, Any

import click
from click.core import ParameterSource

from ..report import (
    ACTIVITY_DAYS,
    CUSTOMER_COLUMNS,
    build_report,
    customer_summaries,
    observation_day,
    period,
    to_json,
)
from .app import App
from .base import Day, main, print_json, with_app
from .reporttables import show

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
    "repeat_customers",
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
COUPON_COLUMNS = ["issued", "redeemed", "redemption_rate", "expired", "revenue"]
CREDIT_COLUMNS = [
    "outstanding_at_start",
    "issued",
    "redeemed",
    "taken_back",
    "expired",
    "outstanding",
]
TIER_COLUMNS = ["name", "in_file", "customers", "up", "down", "left"]
REFERRAL_COLUMNS = ["referred", "pending", "counted", "reversed", "refused"]
REWARD_COLUMNS = ["paid", "credit", "coupons"]
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
# The customers' columns holding the shop's own text, which may look like a formula.
_CUSTOMER_TEXT = [CUSTOMER_COLUMNS.index(name) for name in ("external_id", "email")]
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
    type=click.IntRange(min=1, max=3660),
    default=ACTIVITY_DAYS,
    help="A customer is active while their last order is at most this many days old "
    "[default: reports.activity_days in config.yaml, or a calendar year].",
)
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print every figure as CSV.")
@click.option(
    "--customers",
    is_flag=True,
    help="Instead, one row per customer for lifetime-value models (frequency, recency, T, "
    "monetary value) up to the end of --to, of the customers whose first order is on or "
    "after --from; with --csv or --json.",
)
@with_app
def report(
    app: App,
    first: datetime | None,
    last: datetime | None,
    by: str,
    activity_days: int | None,
    as_json: bool,
    as_csv: bool,
    customers: bool,
) -> None:
    """Campaign results and retention metrics; by default the last 30 days up to now.

    Dates are days in the shop's timezone; --to is included. --customers prints the
    customers instead (by default all of them, up to now).
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if customers:
        _check_customer_options(as_json, as_csv)
    now = datetime.now(UTC)
    project = app.project
    start, end = period(
        first.date() if first else None,
        last.date() if last else None,
        now,
        project.config.shop.timezone,
    )
    if customers:
        cohort = start if first else None
        write = write_customers_json if as_json else write_customers_csv
        write(app, end, cohort, now, sys.stdout)
        return
    data = build_report(app.engine, project, start, end, by, now, activity_days=activity_days)
    if as_json:
        print_json(to_json(data))
    elif as_csv:
        write_csv(data, sys.stdout)
    else:
        show(data)


def _check_customer_options(as_json: bool, as_csv: bool) -> None:
    """Refuse what --customers cannot do: terminal tables, buckets, an activity window."""
    if not (as_json or as_csv):
        raise click.UsageError(
            "--customers prints one row per customer: add --csv or --json "
            "(and redirect it to a file)"
        )
    context = click.get_current_context()
    for name, option in (("by", "--by"), ("activity_days", "--activity-days")):
        if context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT):
            raise click.UsageError(f"{option} does not apply to --customers")


def write_customers_csv(
    app: App, end: datetime, cohort: datetime | None, now: datetime, out: IO[str]
) -> None:
    """The customers' rows as one CSV table, written as they are read (docs/metrics.md,
    "Customers (RFM)")."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CUSTOMER_COLUMNS)
    timezone = app.project.config.shop.timezone
    values = attrgetter(*CUSTOMER_COLUMNS)
    for row in customer_summaries(app.engine, end, timezone, first_order_from=cohort):
        cells = list(values(row))
        for i in _CUSTOMER_TEXT:  # numbers and dates are left as they are by csv_cell too
            cells[i] = csv_cell(cells[i])
        writer.writerow(cells)


def write_customers_json(
    app: App, end: datetime, cohort: datetime | None, now: datetime, out: IO[str]
) -> None:
    """One JSON object, `period` and `customers` (a list, one customer a line), written
    as the rows are read. Decimals are strings and dates ISO 8601, as in the report."""
    timezone = app.project.config.shop.timezone
    info = {
        "end": end,
        "last_day": observation_day(end, timezone),
        "first_order_from": cohort,
        "timezone": timezone,
        "now": now,
    }
    out.write(f'{{"period": {json.dumps(to_json(info))}, "customers": [')
    separator = "\n"
    values = attrgetter(*CUSTOMER_COLUMNS)
    for row in customer_summaries(app.engine, end, timezone, first_order_from=cohort):
        fields = dict(zip(CUSTOMER_COLUMNS, values(row), strict=True))
        out.write(separator + json.dumps(fields, ensure_ascii=False, default=str))
        separator = ",\n"
    out.write("\n]}\n")


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: formula-like text gets a leading `'`.

    Plain numbers (such as a negative rate, "-5.00") are left as they are.
    """
    text = "" if value is None else str(to_json(value))
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def write_csv(data: dict[str, Any], out: IO[str]) -> None:
    """The report as tables separated by a blank line: campaigns, retention, recent
    errors, then coupons, store credit, tiers, referred orders, refused referrals by
    reason and referral rewards (docs/metrics.md, "CSV")."""
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
        [
            "bucket",
            "start",
            "end",
            "partial",
            *RETENTION_COLUMNS,
            *(f"nps_{k}" for k in NPS_COLUMNS),
        ],
        (
            [
                b["label"],
                b["start"],
                b["end"],
                ("true" if b["partial"] else "false") if "partial" in b else "",
                *(b[k] for k in RETENTION_COLUMNS),
                *(b["nps"][k] for k in NPS_COLUMNS),
            ]
            for b in slices
        ),
    )
    rows(ERROR_COLUMNS, ([e[k] for k in ERROR_COLUMNS] for e in data["queue"]["recent_errors"]))
    for header, body in _rewards_csv(data["rewards"]):
        rows(header, body)


def _rewards_csv(rewards: dict[str, Any]) -> list[tuple[list[str], list[list[Any]]]]:
    """(header, rows) of each rewards table, in the order the CSV holds them."""
    coupons = [
        *rewards["coupons"]["campaigns"].items(),
        ("all campaigns", rewards["coupons"]["total"]),
    ]
    tiers = rewards["tiers"]
    referrals = rewards["referrals"]
    paid = referrals["rewards"]
    return [
        (
            ["campaign", *COUPON_COLUMNS],
            [[name, *(row[k] for k in COUPON_COLUMNS)] for name, row in coupons],
        ),
        (CREDIT_COLUMNS, [[rewards["credit"][k] for k in CREDIT_COLUMNS]]),
        (
            ["tier", *TIER_COLUMNS],
            [
                *([key, *(row[k] for k in TIER_COLUMNS)] for key, row in tiers["tiers"].items()),
                ["all customers", *(tiers["total"].get(k) for k in TIER_COLUMNS)],
            ],
        ),
        (REFERRAL_COLUMNS, [[referrals[k] for k in REFERRAL_COLUMNS]]),
        (["reason", "referrals"], [list(pair) for pair in referrals["refused_by_reason"].items()]),
        (
            ["threshold", *REWARD_COLUMNS],
            [
                [n, *(row[k] for k in REWARD_COLUMNS)]
                for n, row in [*paid["thresholds"].items(), ("all", paid["total"])]
            ],
        ),
    ]
