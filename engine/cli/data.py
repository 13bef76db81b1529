"""`lifecycle import customers|products|orders|wanted FILE.csv`: the shop's data from CSV.

Exit codes: 0 imported (with --skip-bad, also when bad rows were skipped: they
are listed on stderr as warnings and under "skipped" in --json); 2 nothing
imported because the file or some rows are bad; 1 the database failed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..intake import KINDS, BadRow, CsvFormatError, ImportRejected, ImportResult, import_csv
from ..intake import Progress as ProgressCallback
from .app import App
from .base import console, errors, main, print_json, with_app

PROGRESS_FROM_BYTES = 512 * 1024  # smaller files finish before a bar is worth drawing
SHOWN_BAD_ROWS = 100

_HELP = {
    "customers": "Columns: id,email (required), name, locale, timezone, city, birthday, "
    "tags (a;b or a|b), marketing_consent (true/false, yes/no, 1/0), consent_source, "
    "created_at.",
    "products": "Columns: sku, name, price (required), name_bn, category, stock. A changed "
    "price is recorded in the price history.",
    "orders": "One row per order line. Columns: order_id, customer_id, placed_at, sku, "
    "quantity (required), delivered_at, status (placed/delivered/cancelled), unit_price "
    "(default: the product's current price), cart_id (the checkout the order completed), "
    "coupon_code (a code from an email: marked used by the order, or its refusal recorded; "
    "the same on every line of an order), referral_code (another customer's referral code: "
    "the referral recorded, pending or refused with its reason; the same on every line). "
    "Naive times are in the shop's timezone.",
    "wanted": "Products customers asked to hear about when back in stock. Columns: "
    "customer_id, sku (required), at (when they asked; default: now). A pair already "
    "recorded changes nothing.",
}


@main.group("import")
def import_group() -> None:
    """Import customers, products, orders or wanted products from CSV (UTF-8, header on line 1).

    Rows are matched by the shop's own ids, so importing a file again changes
    nothing; an empty cell keeps the stored value. A file with bad rows is not
    imported at all (exit 2) unless --skip-bad is given.
    """


def _command(kind: str) -> None:
    @import_group.command(kind, help=f"Import {kind} from FILE (CSV). {_HELP[kind]}")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option(
        "--skip-bad",
        is_flag=True,
        help="Import the good rows and list the bad ones as warnings (exit 0), "
        "instead of importing nothing (exit 2).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @with_app
    def command(app: App, file: str, skip_bad: bool, as_json: bool) -> None:
        run_import(app, kind, file, skip_bad=skip_bad, as_json=as_json)


for _kind in KINDS:
    _command(_kind)


def run_import(app: App, kind: str, file: str, *, skip_bad: bool, as_json: bool) -> None:
    """Import one file and report; exits 2 when nothing was imported because of bad input."""
    now = datetime.now(UTC)
    timezone = app.project.config.shop.timezone
    engine = app.engine
    try:
        with _progress_bar(Path(file), enabled=not as_json) as progress:
            result = import_csv(
                engine,
                kind,
                file,
                now=now,
                shop_timezone=timezone,
                skip_bad=skip_bad,
                progress=progress,
            )
    except ImportRejected as exc:
        _rejected(exc, kind, as_json)
        sys.exit(2)
    except CsvFormatError as exc:
        if as_json:
            print_json(
                {"ok": False, "imported": False, "kind": kind, "file": file, "error": str(exc)}
            )
        else:
            errors.print(f"error: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    if as_json:
        print_json({"ok": True, "imported": True, **result.as_dict()})
        return
    console.print(_summary(result), markup=False, soft_wrap=True)
    if result.skipped:
        _list_bad(result.skipped, result.skipped_count, "warning: skipped")


def _rejected(exc: ImportRejected, kind: str, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "ok": False,
                "imported": False,
                "kind": kind,
                "file": exc.file,
                "rows": exc.rows,
                "bad_rows": exc.count,
                "errors": [bad.as_dict() for bad in exc.bad],
            }
        )
        return
    _list_bad(exc.bad, exc.count, "error:")
    errors.print(
        f"{exc}; fix these rows, or use --skip-bad to import the others",
        markup=False,
        soft_wrap=True,
    )


def _list_bad(bad: list[BadRow], count: int, prefix: str) -> None:
    """The first bad rows, then how many more there are (`count` is all of them;
    --json lists the first thousand)."""
    for row in bad[:SHOWN_BAD_ROWS]:
        errors.print(f"{prefix} {row}", markup=False, soft_wrap=True)
    if count > SHOWN_BAD_ROWS:
        errors.print(f"… and {count - SHOWN_BAD_ROWS} more bad rows (see --json)")


def _summary(result: ImportResult) -> str:
    if result.kind == "orders":
        counts = (
            f"{_count(result.created, 'order')} created, {result.updated} marked delivered, "
            f"{result.cancelled} cancelled, {result.unchanged} already imported"
        )
    elif result.kind == "wanted":
        counts = f"{result.created} recorded, {result.unchanged} already recorded"
    else:
        counts = f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged"
    skipped = f", {_count(result.skipped_count, 'bad row')} skipped" if result.skipped_count else ""
    return f"{result.file}: {_count(result.rows, 'row')}: {counts}{skipped}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@contextmanager
def _progress_bar(path: Path, *, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing on stderr, for large files on a terminal only."""
    if not enabled or not errors.is_terminal or path.stat().st_size < PROGRESS_FROM_BYTES:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=errors, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(f"{path.name}: {step}", total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update
