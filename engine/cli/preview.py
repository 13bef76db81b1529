"""`lifecycle preview`: an email exactly as one customer would get it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import select
from sqlmodel import Session, col

from ..deliver import Composer
from ..errors import UnknownRecord
from ..project import FirstOrder, HolidayTrigger, Project
from ..store import Customer, Order
from .app import App
from .base import console, main, with_app


@main.command()
@click.argument("campaign")
@click.option(
    "--customer",
    "customer",
    metavar="ID|EMAIL",
    help="The customer: the shop's customer id, the email address, or the row id. "
    "Default: a customer the campaign fits (one with an order), else the first customer.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the HTML part to this file instead of printing it.",
)
@click.option(
    "--step",
    "step",
    metavar="ID",
    help="The step of the flow to show, by its id in the campaign file (default: the first).",
)
@click.option("--text", "as_text", is_flag=True, help="Print the plain-text part instead.")
@with_app
def preview(
    app: App,
    campaign: str,
    customer: str | None,
    step: str | None,
    out: str | None,
    as_text: bool,
) -> None:
    """Render CAMPAIGN for one customer, as it would be sent (nothing is written)."""
    project = app.project
    composer = Composer(project, app.secrets)  # says so when LIFECYCLE_SECRET is missing
    now = datetime.now(UTC)
    with Session(app.engine) as session:
        customer_id = find_customer(session, project, campaign, customer)
        shown = composer.preview(session, campaign, customer_id, now=now, step=step)
        session.rollback()
    if as_text:
        click.echo(f"Subject: {shown.subject}\n")
        click.echo(shown.text)
    elif out:
        Path(out).write_text(shown.html, encoding="utf-8")
        which = f"{campaign}, step {step}," if step else campaign
        console.print(f"wrote {out} ({which} for customer {customer_id}): {shown.subject}")
    else:
        click.echo(shown.html)


def find_customer(session: Session, project: Project, campaign: str, given: str | None) -> int:
    """The row id of the customer named by `given`, or of one `campaign` fits."""
    if given:
        by = col(Customer.email) if "@" in given else col(Customer.external_id)
        value = given.strip().lower() if "@" in given else given.strip()
        found = session.execute(select(col(Customer.id)).where(by == value)).scalar()
        if found is None and given.strip().isdigit():
            found = session.execute(
                select(col(Customer.id)).where(col(Customer.id) == int(given))
            ).scalar()
        if found is None:
            raise UnknownRecord(f"no customer with id or email {given!r}")
        return int(found)
    chosen = project.campaigns.get(campaign)
    if chosen is not None and not isinstance(chosen.trigger, HolidayTrigger):
        first = isinstance(chosen.trigger, FirstOrder)
        placed = col(Order.placed_at)
        found = session.execute(
            select(col(Order.customer_id)).order_by(placed if first else placed.desc()).limit(1)
        ).scalar()
        if found is not None:
            return int(found)
    found = session.execute(select(col(Customer.id)).order_by(col(Customer.id)).limit(1)).scalar()
    if found is None:
        raise UnknownRecord("there are no customers yet: import some first")
    return int(found)
