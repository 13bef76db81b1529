"""The dashboard's live email preview: one campaign's email as one customer would get it.

`/preview` is a dashboard page with a form (campaign, customer's shop id or email address)
and the email's subject and text; the email's HTML is served from its own URL,
`/preview/email`, shown in a sandboxed iframe with a Content-Security-Policy of its own
(`EMAIL_POLICY`): no scripts, no forms, no plugins. Rendering a preview writes nothing:
its database session is rolled back. An EngineError while rendering (an unknown campaign
or customer, a template that fails) is a 400 with its message.

Without a customer, the page previews one who would really get the campaign's email
(`preview_customer`); `find` searches customers by name, email address or shop id.
What the preview makes up is labelled sample data on the page. A preview records
nothing when it is looked at or its links are followed: the open pixel is left out,
tracked links point straight at where they lead, and the unsubscribe link at nothing.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import case, func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..errors import EngineError
from ..project import Project
from ..store import Customer
from .dashauth import Board

EMAIL_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "font-src https: data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
SEARCH_LIMIT = 20  # customers a search lists at most
MAX_SEARCH = 200  # characters of a search kept
UNSUBSCRIBE_SHOWN = "(the customer's own unsubscribe link)"


class PreviewBoard(Board, Protocol):
    """The dashboard as the preview uses it: also the database the customers are read from."""

    engine: Engine


@dataclass(frozen=True)
class Shown:
    """A preview as the page shows it: without anything that would record a hit."""

    subject: str
    html: str
    text: str
    sample: str | None  # what the preview made up, if anything


@dataclass(frozen=True)
class Found:
    """One customer a search found."""

    external_id: str
    name: str
    email: str


class Previews:
    """The preview page and the email it frames."""

    def __init__(self, board: PreviewBoard, headers: Mapping[str, str]):
        self.board = board
        self.headers = {**headers, "Content-Security-Policy": EMAIL_POLICY}
        self.composer: tuple[Project, Any, Untracked] | None = None

    def _composer(self, project: Project) -> tuple[Any, Untracked]:
        from ..deliver import Composer, Signer  # the renderer is only needed for previews

        if self.composer is None or self.composer[0] is not project:
            composer = Composer(project, self.board.secrets)
            untracked = Untracked(composer.base_url, Signer(self.board.secrets.secret or ""))
            self.composer = (project, composer, untracked)
        return self.composer[1], self.composer[2]

    def _render_preview(self, campaign: str, customer: str) -> Shown:
        from ..deliver import preview_sample

        project = self.board.get_project()
        composer, untracked = self._composer(project)
        with Session(self.board.engine) as session:
            customer_id = _find_customer(session, customer)
            shown = composer.preview(session, campaign, customer_id, now=self.board.clock())
            sample = preview_sample(session, project, campaign, customer_id)
            session.rollback()
        return Shown(shown.subject, untracked.html(shown.html), untracked.text(shown.text), sample)

    def _default_customer(self, campaign: str) -> tuple[str | None, str | None]:
        """A customer to preview `campaign` for, and a note when they would not get it."""
        from ..deliver import preview_customer

        project = self.board.get_project()
        with Session(self.board.engine) as session:
            customer_id = preview_customer(session, project, campaign)
            note = None
            if customer_id is None:
                customer_id = _any_customer(session)
                note = f"nobody has been sent {campaign} yet: this customer's data is sample data"
            found = None if customer_id is None else session.get(Customer, customer_id)
            return (None, None) if found is None else (found.external_id, note)

    def _search(self, given: str) -> tuple[list[Found], bool]:
        with Session(self.board.engine) as session:
            found = find_customers(session, given, SEARCH_LIMIT + 1)
        return found[:SEARCH_LIMIT], len(found) > SEARCH_LIMIT

    async def preview(self, request: Request) -> Response:
        project = self.board.get_project()
        campaign = request.query_params.get("campaign", "")
        customer = request.query_params.get("customer", "").strip()
        find = request.query_params.get("find", "").strip()[:MAX_SEARCH]
        shown, error, chosen, note, found, more = None, None, False, None, None, False
        if find:
            found, more = await run_in_threadpool(self._search, find)
        if campaign and not customer and not find:
            default, note = await run_in_threadpool(self._default_customer, campaign)
            if default is None:
                error = "there are no customers yet to preview an email for"
            customer, chosen = default or "", default is not None
        if campaign and customer:
            try:
                shown = await run_in_threadpool(self._render_preview, campaign, customer)
            except EngineError as exc:
                error = str(exc)
        return self.board.page(
            request,
            "preview.html",
            200 if error is None else 400,
            campaigns=sorted(project.campaigns),
            campaign=campaign,
            customer=customer,
            chosen=chosen,
            note=note,
            find=find,
            found=found,
            more=more,
            shown=shown,
            error=error,
        )

    async def preview_email(self, request: Request) -> Response:
        campaign = request.query_params.get("campaign", "")
        customer = request.query_params.get("customer", "").strip()
        try:
            shown = await run_in_threadpool(self._render_preview, campaign, customer)
        except EngineError as exc:
            return Response(f"No preview: {exc}", 400, media_type="text/plain")
        return HTMLResponse(shown.html, headers=self.headers)


class Untracked:
    """Takes out of a rendered email every link to the tracker, which would record a hit.

    The open pixel goes; a tracked link points at the URL signed into it; the
    unsubscribe link points at nothing (it is made when the email is sent).
    """

    _TOKEN = r"[A-Za-z0-9_\-.]+"

    def __init__(self, base_url: str, signer: Any):
        from ..deliver import InvalidToken, Purpose

        self.signer, self.purpose, self.invalid = signer, Purpose, InvalidToken
        base = re.escape(base_url.rstrip("/"))
        self._pixel = re.compile(
            rf"""<img\b[^>]*?\ssrc\s*=\s*(["']){base}/o/[^"']*\1[^>]*>""", re.I
        )
        self._open = re.compile(rf"{base}/o/{self._TOKEN}")  # a pixel not in an <img>
        self._click = re.compile(rf"{base}/c/({self._TOKEN})")
        self._unsubscribe = re.compile(rf"{base}/u/{self._TOKEN}")

    def html(self, html: str) -> str:
        html = self._open.sub("data:,", self._pixel.sub("", html))
        html = self._click.sub(lambda m: htmllib.escape(self._target(m.group(1)), quote=True), html)
        return self._unsubscribe.sub("#unsubscribe", html)

    def text(self, text: str) -> str:
        text = self._open.sub("", text)
        text = self._click.sub(lambda m: self._target(m.group(1)), text)
        return self._unsubscribe.sub(UNSUBSCRIBE_SHOWN, text)

    def _target(self, token: str) -> str:
        try:
            return str(self.signer.verify(token, self.purpose.CLICK).url)
        except self.invalid:
            return "#"


def find_customers(session: Session, given: str, limit: int) -> list[Found]:
    """Customers whose name, email address or shop id contains `given`, any case;
    exact shop ids and addresses first, then by name. At most `limit`."""
    wanted = given.strip().lower()
    if not wanted:
        return []
    pattern = "%" + wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    columns = (col(Customer.name), col(Customer.email), col(Customer.external_id))
    exact = or_(func.lower(col(Customer.external_id)) == wanted, col(Customer.email) == wanted)
    rows = session.execute(
        select(col(Customer.external_id), col(Customer.name), col(Customer.email))
        .where(or_(*(func.lower(c).like(pattern, escape="\\") for c in columns)))
        .order_by(case((exact, 0), else_=1), col(Customer.name), col(Customer.id))
        .limit(limit)
    ).all()
    return [Found(external_id, name, email) for external_id, name, email in rows]


def _any_customer(session: Session) -> int | None:
    """The customer of the latest order, else the first customer, else None."""
    from ..store import Order

    latest = session.execute(
        select(col(Order.customer_id)).order_by(col(Order.placed_at).desc()).limit(1)
    ).scalar()
    if latest is None:
        latest = session.execute(select(func.min(col(Customer.id)))).scalar()
    return None if latest is None else int(latest)


def _find_customer(session: Session, given: str) -> int:
    """The row id of the customer with this shop id or email address."""
    from ..errors import UnknownRecord

    column = col(Customer.email) if "@" in given else col(Customer.external_id)
    value = given.lower() if "@" in given else given
    found = session.execute(select(col(Customer.id)).where(column == value)).scalar()
    if found is None:
        raise UnknownRecord(f"no customer with id or email {given!r}")
    return int(found)
