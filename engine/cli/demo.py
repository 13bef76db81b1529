"""`lifecycle demo`: fill the database with the Nakshi Ghor demo shop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from ..demo import DEFAULT_CUSTOMERS, MAX_CUSTOMERS, MIN_CUSTOMERS, place_in_tiers, seed_demo
from ..store import session_scope
from .app import App
from .base import console, main, with_app


class Instant(click.ParamType):
    """An ISO 8601 time with its offset, like 2026-11-22T06:00Z, as aware UTC."""

    name = "ISO-TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"expected a time like 2026-11-22T06:00Z, got {value!r}", param, ctx)
        if parsed.tzinfo is None:
            self.fail(
                f"expected a time with its offset (Z or +06:00), like 2026-11-22T06:00Z, got {value!r}",
                param,
                ctx,
            )
        return parsed.astimezone(UTC)


@main.command()
@click.option("--at", "at", type=Instant(), help="Seed as if it were this time (default: now).")
@click.option(
    "--customers",
    type=click.IntRange(min=MIN_CUSTOMERS, max=MAX_CUSTOMERS),
    default=DEFAULT_CUSTOMERS,
    show_default=True,
    help="How many customers the demo shop has (enough for every scenario).",
)
@with_app
def demo(app: App, at: datetime | None, customers: int) -> None:
    """Fill the database with a demo shop whose data gives every campaign an email to send.

    Running it again adds only what is missing, so it is safe to repeat. It also makes
    the demo's secret, .lifecycle-secret beside config.yaml, which the other commands
    use when LIFECYCLE_SECRET is not set.
    """
    from ..daemon import demo_secret

    now = at or datetime.now(UTC)
    demo_secret(app.config_file.parent)
    with session_scope(app.engine) as session:
        summary = seed_demo(session, now=now, customers=customers)
    lines = summary.lines()
    placement = place_in_tiers(app.engine, app.project, now)
    if placement is not None:
        lines.append(placement.line())
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
