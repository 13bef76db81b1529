"""Sending commands: send, tick, send-test, sink, resume.

Exit codes: 0 done, 1 sending paused (the circuit breaker, or the server is
unreachable) or another engine error, 2 config errors.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlmodel import Session

from ..deliver import (
    POOL_FROM,
    Composer,
    DispatchReport,
    Mailer,
    Outcome,
    SmtpMailer,
    count_due,
    dispatch,
    rehearse,
    resume_campaign,
    serve_sink,
    start_compose_pool,
)
from ..errors import DataError, EngineError
from ..project import EMAIL
from ..tick import TickReport, tick
from .app import App
from .base import console, errors, main, print_json, with_app
from .demo import Instant
from .preview import find_customer


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar fed by the dispatcher, or None when not on a terminal."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("sending", total=None)

        def update(done: int, due: int) -> None:
            bar.update(task, completed=done, total=max(due, done) or None)

        yield update


def _with_mailer(app: App, run: Callable[[Mailer], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        mailer = SmtpMailer.from_project(app.project, app.secrets, app.engine)
        try:
            return await run(mailer)
        finally:
            await mailer.close()

    return asyncio.run(go())


def _print_report(report: DispatchReport) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    if report.dry_run:
        console.print(f"dry run, nothing sent or written; would be: {counts or 'nothing due'}")
    else:
        console.print(f"sent: {counts or 'nothing was due'}", markup=False)
    for name, per in sorted(report.campaigns.items()):
        console.print(f"  {name}: " + ", ".join(f"{n} {s}" for s, n in sorted(per.items())))
    if report.swept_in_doubt or report.swept_resend or report.swept_requeued:
        console.print(
            f"expired leases: {report.swept_in_doubt} in doubt (not resent), "
            f"{report.swept_resend} to resend, {report.swept_requeued} never handed over "
            "(queued again)"
        )
    for line in report.errors[:20]:
        errors.print(line, markup=False)
    if report.paused:
        errors.print(f"sending paused: {report.pause_reason}", markup=False)


def _show(report: DispatchReport, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        print_json(extra or report.as_dict())
    else:
        _print_report(report)
    sys.exit(1 if report.paused else 0)


@main.command()
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--dry-run", is_flag=True, help="Check and compose what is due; send and write nothing."
)
@click.option("--at", "at", type=Instant(), help="Send what is due at this time (default: now).")
@click.option(
    "--compose-processes",
    type=click.IntRange(min=0),
    help="Processes that compose emails beside the sending loop "
    f"(default: 1 when more than {POOL_FROM} are due, else 0: compose in the loop).",
)
@with_app
def send(
    app: App,
    limit: int | None,
    as_json: bool,
    dry_run: bool,
    at: datetime | None,
    compose_processes: int | None,
) -> None:
    """Send every queued message that is due now."""
    now = at or datetime.now(UTC)
    composer = Composer(app.project, app.secrets)  # no secret: fail before claiming any
    if dry_run:
        rehearsal = rehearse(
            app.engine, app.project, app.secrets, now, limit=limit, composer=composer
        )
        report = asyncio.run(rehearsal)
        _show(report, as_json)
    if compose_processes is None:
        due = count_due(app.engine, now)
        compose_processes = 1 if min(due, limit or due) > POOL_FROM else 0
    pool = (
        start_compose_pool(app.engine, app.project, app.secrets, compose_processes)
        if compose_processes
        else None
    )
    try:
        with progress_bar(not as_json and sys.stdout.isatty()) as progress:
            report = _with_mailer(
                app,
                lambda mailer: dispatch(
                    app.engine, app.project, app.secrets, mailer, now,
                    limit=limit, progress=progress, compose_pool=pool,
                    composer=None if pool else composer,
                ),
            )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    _show(report, as_json)


@main.command("tick")
@click.option("--at", "at", type=Instant(), help="Run as if it were this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_app
def tick_command(app: App, at: datetime | None, as_json: bool) -> None:
    """Plan what is due, then send it: one step of `lifecycle run`.

    Without a usable LIFECYCLE_SECRET (or the demo's .lifecycle-secret) it stops
    before planning: nothing is queued that could not be sent.
    """
    now = at or datetime.now(UTC)
    composer = Composer(app.project, app.secrets)
    with progress_bar(not as_json and sys.stdout.isatty()) as progress:
        report: TickReport = _with_mailer(
            app,
            lambda mailer: tick(
                app.engine,
                app.project,
                app.secrets,
                mailer,
                now,
                progress=progress,
                composer=composer,
            ),
        )
    if not as_json and report.plan is not None:
        planned = report.plan.as_dict()
        console.print(f"planned at {now.isoformat()}: {_plan_line(planned)}", markup=False)
    _show(report.dispatch, as_json, report.as_dict() if as_json else None)


def _plan_line(planned: dict[str, Any]) -> str:
    queued = planned.get("queued")
    if isinstance(queued, int):
        return f"{queued} queued"
    campaigns = planned.get("campaigns")
    if isinstance(campaigns, list | dict):
        items = campaigns.values() if isinstance(campaigns, dict) else campaigns
        total = sum(int(c.get("queued", 0)) for c in items if isinstance(c, dict))
        return f"{total} queued"
    return "done"


@main.command("send-test")
@click.argument("campaign")
@click.option("--to", "address", required=True, help="Send the test email to this address.")
@click.option(
    "--customer",
    metavar="ID|EMAIL",
    help="Render it for this customer (shop id, email or row id); default: one it fits.",
)
@with_app
def send_test(app: App, campaign: str, address: str, customer: str | None) -> None:
    """Render CAMPAIGN for a customer and send it to ADDRESS (nothing is recorded)."""
    address = address.strip()
    if not EMAIL.match(address):
        raise DataError(f"--to must be an email address, got {address!r}")
    now = datetime.now(UTC)
    composer = Composer(app.project, app.secrets)
    with Session(app.engine) as session:
        customer_id = find_customer(session, app.project, campaign, customer)
        shown = composer.preview(session, campaign, customer_id, now=now, to=address)
        session.rollback()
    data = shown.data
    sender = app.project.config.sending.sender.email
    result = _with_mailer(app, lambda mailer: mailer.send(sender, address, data))
    if result.outcome is not Outcome.SENT:
        errors.print(
            f"not sent ({result.outcome}): {result.describe()}", markup=False, soft_wrap=True
        )
        if result.unreachable:
            errors.print(SINK_HINT, markup=False, soft_wrap=True)
        sys.exit(1)
    console.print(
        f"sent {campaign} (as for customer {customer_id}) to {address}: {shown.subject}",
        markup=False,
    )


SINK_HINT = (
    "to try emails without a real mail server, run `lifecycle sink` in another terminal: "
    "a local one on 127.0.0.1:8025 that keeps each message as a file "
    "(sending.smtp in config.yaml says which server is used)"
)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--dir",
    "directory",
    default="outbox",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder to keep each message in, as an .eml file.",
)
def sink(host: str, port: int, directory: str) -> None:
    """A development SMTP server that keeps every message it gets as a file."""
    try:
        asyncio.run(serve_sink(host, port, directory))
    except KeyboardInterrupt:
        console.print("mail sink stopped")
    except EngineError as exc:
        errors.print(f"error: {exc}", markup=False)
        sys.exit(1)


@main.command()
@click.argument("campaign")
@with_app
def resume(app: App, campaign: str) -> None:
    """Send the rest of CAMPAIGN's big send that its canary paused (and any held since)."""
    if campaign not in app.project.campaigns:
        raise DataError(
            f"no campaign named {campaign!r} (campaigns: {', '.join(sorted(app.project.campaigns))})"
        )
    resumed = resume_campaign(app.engine, campaign, datetime.now(UTC))
    if not resumed:
        console.print(f"{campaign}: nothing waits for a canary or a pause", markup=False)
        return
    console.print(
        f"{campaign}: resumed; its waiting emails go out from the next tick", markup=False
    )
