"""Commands about planning: plan, broadcast, holiday list, holiday set."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime

import click
from rich.table import Table

from ..errors import DataError
from ..intake import add_holiday
from ..plan import (
    BroadcastEntry,
    PlanReport,
    broadcast_campaign,
    cancel_broadcast,
    holiday_dates,
    list_broadcasts,
    parse_local_at,
    plan,
    set_broadcast,
)
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


# Why a candidate was held back, as the plan table words it.
HELD_BACK = {
    "skipped_consent": "no consent",
    "skipped_suppressed": "suppressed",
    "skipped_cap": "capped",
    "skipped_passed": "passed",  # already had a later step of the flow
}


def _print_report(report: PlanReport, dry_run: bool) -> None:
    """One row per campaign and, for a campaign with steps, one under it per step."""
    title = f"Plan at {report.at.isoformat()}" + (" (dry run: nothing written)" if dry_run else "")
    table = Table(title=title)
    # Names are what the reader looks for: never cut short (the reasons wrap first).
    longest = max((len(n) for n in report.campaigns), default=8)
    table.add_column("campaign / step", no_wrap=True, min_width=longest)
    table.add_column("queued", justify="right")
    table.add_column("held back")
    table.add_column("exited")
    for name, result in report.campaigns.items():
        steps = result.steps
        held: Counter[str] = Counter()
        exits: Counter[str] = Counter()
        for step in steps.values():
            held.update({HELD_BACK[f]: getattr(step, f) for f in HELD_BACK})
            exits.update(step.exited)
        if not steps:  # a campaign that failed before its steps ran
            held.update({HELD_BACK[f]: getattr(result, f, 0) for f in HELD_BACK})
        table.add_row(name, str(result.queued), _counts(held), _counts(exits))
        if list(steps) == ["email"]:  # a campaign without steps: its row says it all
            continue
        for number, (label, step) in enumerate(steps.items(), start=1):
            reasons = {HELD_BACK[f]: getattr(step, f) for f in HELD_BACK}
            table.add_row(
                f"  {number}. {label}",
                str(step.queued),
                _counts(reasons),
                _counts(step.exited),
                style="dim",
            )
    console.print(table)
    for name, result in report.campaigns.items():
        if result.error:
            errors.print(f"error: campaign {name}: {result.error}", markup=False)


def _counts(reasons: Mapping[str, int]) -> str:
    """'no consent 2, capped 1' (in the order given, zeros left out), or 0 for none."""
    return ", ".join(f"{reason} {count}" for reason, count in reasons.items() if count) or "0"


# ---------------------------------------------------------------- broadcast

NEXT = "next"  # --cancel without a time: the one broadcast still to go


@main.command("broadcast")
@click.argument("campaign")
@click.option(
    "--at",
    "at",
    metavar='"YYYY-MM-DD HH:MM"',
    help="Send the campaign at this date and time, on each customer's own clock.",
)
@click.option(
    "--cancel",
    "cancel",
    is_flag=False,
    flag_value=NEXT,
    default=None,
    metavar="[AT]",
    help="Cancel the broadcast at AT (default: the one still to go), unless it has started.",
)
@click.option("--list", "as_list", is_flag=True, help="List the campaign's broadcast times.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_app
def broadcast_command(
    app: App, campaign: str, at: str | None, cancel: str | None, as_list: bool, as_json: bool
) -> None:
    """Set, cancel or list the times a broadcast campaign goes out.

    A time is a date and a time on each customer's clock, like "2026-12-10 10:00":
    a customer in Dhaka gets it at 10:00 in Dhaka, one in London at 10:00 in London.
    """
    given = {"--at": at is not None, "--cancel": cancel is not None, "--list": as_list}
    chosen = [option for option, present in given.items() if present]
    if len(chosen) > 1:
        raise click.UsageError(f"give one of --at, --cancel or --list, not {' and '.join(chosen)}")
    project = app.project
    broadcast_campaign(project, campaign)  # an unknown name fails before the database opens
    now = datetime.now(UTC)
    with session_scope(app.engine) as session:
        if at is not None:
            entry, new = set_broadcast(session, project, campaign, _local_at(at, "--at"), now=now)
            again = "" if new else " (already set)"
            text = f"{campaign} goes out at {entry.local_at} on each customer's clock{again}"
            _said(as_json, entry, text)
        elif cancel is not None:
            when = None if cancel == NEXT else _local_at(cancel, "--cancel")
            done = cancel_broadcast(session, project, campaign, when, now=now)
            emails = f"{done.expired} queued email{'s' if done.expired != 1 else ''} expired"
            text = f"cancelled the broadcast of {campaign} at {done.entry.local_at}: {emails}"
            _said(as_json, done.entry, text, expired=done.expired)
        else:
            _print_broadcasts(list_broadcasts(session, project, campaign), campaign, as_json)
    if campaign not in project.config.campaigns and not as_json:
        note = f"note: {campaign} is not listed under campaigns: in config.yaml: it sends nothing"
        errors.print(f"{note} until it is", markup=False)


def _local_at(value: str, option: str) -> str:
    """The date and time as written, checked here so a typo is a usage error (exit 2)."""
    try:
        return parse_local_at(value)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _said(as_json: bool, entry: BroadcastEntry, text: str, **extra: int) -> None:
    if as_json:
        print_json({**entry.as_dict(), **extra})
    else:
        console.print(text, markup=False)


def _print_broadcasts(entries: list[BroadcastEntry], campaign: str, as_json: bool) -> None:
    if as_json:
        print_json([entry.as_dict() for entry in entries])
        return
    if not entries:
        console.print(
            f"{campaign} has no broadcast time: set one with "
            f'lifecycle broadcast {campaign} --at "YYYY-MM-DD HH:MM"',
            markup=False,
        )
        return
    table = Table(title=f"Broadcasts of {campaign} (times on each customer's clock)")
    for heading in ("at", "from", "state", "queued", "sent", "cancelled at"):
        table.add_column(heading, justify="right" if heading in ("queued", "sent") else "left")
    for e in entries:
        waiting = sum(e.messages.get(s, 0) for s in ("queued", "retry", "sending"))
        table.add_row(
            e.local_at,
            _source(e),
            e.state,
            str(waiting),
            str(e.messages.get("sent", 0)),
            e.cancelled_at.isoformat(timespec="minutes") if e.cancelled_at else "",
        )
    console.print(table)


def _source(entry: BroadcastEntry) -> str:
    if entry.in_file or entry.set_at is None:
        return "campaign file"
    return f"set {entry.set_at.isoformat(timespec='minutes')}"


# ---------------------------------------------------------------- holidays


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
