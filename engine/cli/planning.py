"""Commands about planning: plan, holiday list, holiday set."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime

import click
from rich.table import Table

from ..intake import add_holiday
from ..plan import PlanReport, holiday_dates, plan
from ..project import pick_text
from ..store import session_scope
from .app import App
from .base import Day, console, errors, main, print_json, with_app


def _moment(value: str | None) -> datetime:
    """--at as an aware UTC datetime; the clock is read here, once, when it is absent."""
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"expected an ISO 8601 time, got {value!r}", param_hint="--at"
        ) from exc
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"give the time with its offset, e.g. {value}Z or {value}+06:00", param_hint="--at"
        )
    return moment.astimezone(UTC)


@main.command("plan")
@click.option("--at", "at", metavar="ISO-8601", help="Plan as of this moment (default: now).")
@click.option("--dry-run", is_flag=True, help="Report what would be queued; write nothing.")
@click.option(
    "--full",
    is_flag=True,
    help="Look at each trigger's whole lookback, not only what fell due since the last pass.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_app
def plan_command(app: App, at: str | None, dry_run: bool, full: bool, as_json: bool) -> None:
    """Queue every email due now (one planning pass); exit 1 if a campaign failed."""
    now = _moment(at)
    report = plan(app.engine, app.project, now, dry_run=dry_run, rescan=full)
    if as_json:
        print_json(report.as_dict())
    else:
        _print_report(report, dry_run)
    if any(result.error for result in report.campaigns.values()):
        sys.exit(1)


def _print_report(report: PlanReport, dry_run: bool) -> None:
    title = f"Plan at {report.at.isoformat()}" + (" (dry run: nothing written)" if dry_run else "")
    table = Table(title=title)
    table.add_column("campaign")
    for heading in ("queued", "no consent", "suppressed", "capped"):
        table.add_column(heading, justify="right")
    for name, result in report.campaigns.items():
        table.add_row(
            name,
            str(result.queued),
            str(result.skipped_consent),
            str(result.skipped_suppressed),
            str(result.skipped_cap),
        )
    console.print(table)
    for name, result in report.campaigns.items():
        if result.error:
            errors.print(f"error: campaign {name}: {result.error}", markup=False)


@main.group()
def holiday() -> None:
    """The holiday calendar: the country's holidays and the shop's own occasions."""


@holiday.command("list")
@click.option("--year", type=int, help="The year to list (default: this year).")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@with_app
def holiday_list(app: App, year: int | None, as_json: bool) -> None:
    """Every holiday with its id, names, date and source (package, config or shop)."""
    year = year or datetime.now(UTC).year
    dates = holiday_dates(app.project, [year], app.engine)
    if as_json:
        print_json(
            [
                {
                    "id": h.id,
                    "name": h.name,
                    "date": h.date.isoformat(),
                    "source": h.source,
                    "estimated": h.estimated,
                }
                for h in dates
            ]
        )
        return
    table = Table(title=f"Holidays in {year}")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("বাংলা")
    table.add_column("date", no_wrap=True)
    table.add_column("source")
    for h in dates:
        source = h.source + (" (estimate)" if h.estimated else "")
        table.add_row(
            h.id, pick_text(h.name, "en"), pick_text(h.name, "bn"), h.date.isoformat(), source
        )
    console.print(table)


@holiday.command("set")
@click.argument("holiday_id", metavar="ID")
@click.argument("day", metavar="DATE", type=Day())
@click.option("--name", help="The English name (default: the name in config.yaml).")
@click.option("--name-bn", help="The Bengali name (default: the name in config.yaml).")
@with_app
def holiday_set(
    app: App, holiday_id: str, day: datetime, name: str | None, name_bn: str | None
) -> None:
    """Date (or move) one of the shop's own occasions declared under holidays.extra."""
    declared = {extra.id: extra for extra in app.project.config.holidays.extra}
    if holiday_id not in declared:
        known = ", ".join(sorted(declared)) or "none"
        raise click.BadParameter(
            f"{holiday_id!r} is not declared under holidays.extra in config.yaml (declared: {known})",
            param_hint="ID",
        )
    configured = declared[holiday_id].name
    chosen: date = day.date()
    with session_scope(app.engine) as session:
        add_holiday(
            session,
            holiday_id=holiday_id,
            day=chosen,
            name=name or pick_text(configured, "en"),
            name_bn=name_bn or (configured.get("bn") if isinstance(configured, dict) else None),
            now=datetime.now(UTC),
        )
    console.print(f"{holiday_id} is on {chosen.isoformat()}")
