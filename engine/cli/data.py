"""`lifecycle import customers|products|orders|wanted FILE.csv`: the shop's data from CSV;
`lifecycle import woocommerce --url …`: a WooCommerce shop's, from its REST API.

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

from ..intake import (
    KINDS,
    STATE_FILE_NAME,
    BadRow,
    CsvFormatError,
    ImportRejected,
    ImportResult,
    ImportStateError,
    ImportTally,
    PageDone,
    ShopApiError,
    ShopKeyRefused,
    ShopUrlRefused,
    WooCommerceApi,
    WooCommerceImport,
    import_csv,
    import_woocommerce,
)
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


# ---------------------------------------------------------------- WooCommerce backfill


@import_group.command("woocommerce")
@click.option(
    "--url",
    required=True,
    help="The shop's address, like https://shop.example (plain http only for this machine).",
)
@click.option(
    "--key",
    envvar="LIFECYCLE_WOOCOMMERCE_KEY",
    required=True,
    help="The REST API key's consumer key, ck_… (default: LIFECYCLE_WOOCOMMERCE_KEY).",
)
@click.option(
    "--secret",
    envvar="LIFECYCLE_WOOCOMMERCE_API_SECRET",
    required=True,
    help="Its consumer secret, cs_… (default: LIFECYCLE_WOOCOMMERCE_API_SECRET, which keeps "
    "it out of the shell's history).",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The file that keeps the progress (default: {STATE_FILE_NAME} beside the SQLite "
    "database, else beside config.yaml).",
)
@click.option("--restart", is_flag=True, help="Start from the first page, whatever was done.")
@click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=30,
    show_default=True,
    help="Seconds a page may take.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_app
def woocommerce_import(
    app: App,
    url: str,
    key: str,
    secret: str,
    state_file: Path | None,
    restart: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Import a WooCommerce shop's customers, products and orders through its REST API.

    Each is applied as its webhook would be; one imported before and unchanged since is
    left alone, so running it again is safe. Progress is kept after each page: a run that
    stopped continues after the last page done (--restart starts over). Exit codes: 0
    imported (what could not be used is listed as warnings); 2 the key was refused or
    --url is not usable; 1 the shop, the state file or the database failed.
    """
    try:
        api = WooCommerceApi(url, key, secret, timeout=timeout)
        result = import_woocommerce(
            app.engine,
            api,
            state_file or _state_beside(app),
            now=datetime.now(UTC),
            holidays=app.project.config.holidays,
            restart=restart,
            progress=None if as_json else _show_page,
        )
    except (ShopUrlRefused, ShopKeyRefused) as exc:
        _import_failed(url, str(exc), as_json)
        sys.exit(2)
    except ShopApiError as exc:
        _import_failed(url, f"{exc}; the pages before are imported: run again to go on", as_json)
        sys.exit(1)
    except ImportStateError as exc:
        _import_failed(url, str(exc), as_json)
        sys.exit(1)
    if as_json:
        print_json({"ok": True, "imported": True, **result.as_dict()})
        return
    console.print(_shop_summary(result), markup=False, soft_wrap=True)
    for problem in result.problems:
        errors.print(f"warning: {problem}", markup=False, soft_wrap=True)
    if result.problem_count > len(result.problems):
        errors.print(f"… and {_count(result.problem_count - len(result.problems), 'more problem')}")


def _state_beside(app: App) -> Path:
    """The default state file: beside the SQLite database file, else beside config.yaml."""
    database = app.engine.url
    if database.get_backend_name() == "sqlite" and database.database not in (None, "", ":memory:"):
        return Path(str(database.database)).parent / STATE_FILE_NAME
    return app.project.root / STATE_FILE_NAME


def _show_page(done: PageDone) -> None:
    of = f" of {done.total_pages}" if done.total_pages is not None else ""
    errors.print(f"{done.kind} page {done.page}{of}: {_tally(done.tally)}", markup=False)


def _import_failed(url: str, message: str, as_json: bool) -> None:
    if as_json:
        print_json({"ok": False, "url": url, "error": message})
    else:
        errors.print(f"error: {message}", markup=False, soft_wrap=True)


def _shop_summary(result: WooCommerceImport) -> str:
    resumed, went_on = result.resumed_after, ""
    if resumed:
        went_on = f", continuing after {resumed.kind} page {resumed.page}"
        went_on = went_on if resumed.page else f", continuing from the {resumed.kind}"
    lines = [f"{result.url}: {_count(result.pages, 'page')} imported{went_on}"]
    lines += [f"{kind}: {_tally(tally)}" for kind, tally in result.tallies.items()]
    lines.append(_count(result.problem_count, "problem"))
    return "\n".join(lines)


def _tally(tally: ImportTally) -> str:
    text = f"{tally.applied} applied, {tally.duplicates} already imported"
    if tally.nothing_to_apply:
        text += f", {tally.nothing_to_apply} with nothing to apply"
    return text
