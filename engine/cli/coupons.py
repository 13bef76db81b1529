"""`lifecycle coupons export`: the coupons still usable, for a shop platform to import.

Active means not used and not expired now: first the coupons stored one by one
(soonest to expire first), then the emails' coupons not redeemed yet, whose codes
are derived from their messages (by email). `--csv` writes one row per coupon
with WooCommerce's coupon fields (`EXPORT_COLUMNS`): `discount_type` percent
or fixed_cart, `amount` and `minimum_amount` exact, `expiry_date` the day it
expires in the shop's timezone (WooCommerce ends a coupon at the start of
that day), `customer_email` the one address that may use it, `usage_limit` 1.
Without `--csv`, a table for the terminal.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.table import Table
from sqlmodel import Session

from ..intake import CouponView, active_coupons
from .app import App
from .base import console, main, with_app
from .reporting import csv_cell

EXPORT_COLUMNS = [
    "code",
    "discount_type",
    "amount",
    "minimum_amount",
    "expiry_date",
    "customer_email",
    "usage_limit",
]


@main.group()
def coupons() -> None:
    """The coupons the campaigns' emails hand out."""


@coupons.command("export")
@click.option("--csv", "as_csv", is_flag=True, help="Write CSV with WooCommerce's coupon fields.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the CSV to this file instead of the terminal (implies --csv).",
)
@with_app
def export(app: App, as_csv: bool, output: str | None) -> None:
    """List the coupons not used and not expired, for the shop platform to import."""
    zone = ZoneInfo(app.project.config.shop.timezone)
    now = datetime.now(UTC)
    with Session(app.engine) as session:
        rows = export_rows(active_coupons(session, now), zone)
        if output is not None:
            with Path(output).open("w", encoding="utf-8", newline="") as out:
                count = write_csv(rows, out)
            click.echo(f"{output}: {count} active coupon{'' if count == 1 else 's'}", err=True)
        elif as_csv:
            write_csv(rows, sys.stdout)
        else:
            _show(list(rows))


def export_rows(coupons: Iterable[CouponView], zone: ZoneInfo) -> Iterator[list[Any]]:
    """One row per coupon, in the order of `EXPORT_COLUMNS`."""
    for coupon in coupons:
        percent = coupon.percent_off is not None
        expires = coupon.expires_at
        yield [
            coupon.code,
            "percent" if percent else "fixed_cart",
            coupon.percent_off if percent else coupon.amount_off,
            coupon.min_order,
            "" if expires is None else expires.astimezone(zone).date().isoformat(),
            coupon.customer_email or "",
            1,
        ]


def write_csv(rows: Iterable[list[Any]], out: IO[str]) -> int:
    """The header and the rows; returns how many rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        count += 1
    return count


def _show(rows: list[list[Any]]) -> None:
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(rows)} active coupons")
    for column in ("code", "type", "amount", "minimum", "expires", "for"):
        right = column in ("amount", "minimum")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row[:-1]))
    console.print(table)
