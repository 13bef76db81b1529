"""The dashboard's live email preview: one campaign's email as one customer would get it.

`/preview` is a dashboard page with a form (campaign, customer's shop id or email address)
and the email's subject and text; the email's HTML is served from its own URL,
`/preview/email`, shown in a sandboxed iframe with a Content-Security-Policy of its own
(`EMAIL_POLICY`): no scripts, no forms, no plugins. Rendering a preview writes nothing:
its database session is rolled back. An EngineError while rendering (an unknown campaign
or customer, a template that fails) is a 400 with its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import select
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


class PreviewBoard(Board, Protocol):
    """The dashboard as the preview uses it: also the database the customers are read from."""

    engine: Engine


class Previews:
    """The preview page and the email it frames."""

    def __init__(self, board: PreviewBoard, headers: Mapping[str, str]):
        self.board = board
        self.headers = {**headers, "Content-Security-Policy": EMAIL_POLICY}
        self.composer: tuple[Project, Any] | None = None

    def _composer(self, project: Project) -> Any:
        from ..deliver import Composer  # the renderer is only needed for previews

        if self.composer is None or self.composer[0] is not project:
            self.composer = (project, Composer(project, self.board.secrets))
        return self.composer[1]

    def _render_preview(self, campaign: str, customer: str) -> Any:
        project = self.board.get_project()
        composer = self._composer(project)
        with Session(self.board.engine) as session:
            customer_id = _find_customer(session, customer)
            shown = composer.preview(session, campaign, customer_id, now=self.board.clock())
            session.rollback()
        return shown

    async def preview(self, request: Request) -> Response:
        project = self.board.get_project()
        campaign = request.query_params.get("campaign", "")
        customer = request.query_params.get("customer", "").strip()
        shown, error = None, None
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


def _find_customer(session: Session, given: str) -> int:
    """The row id of the customer with this shop id or email address."""
    from ..errors import UnknownRecord

    column = col(Customer.email) if "@" in given else col(Customer.external_id)
    value = given.lower() if "@" in given else given
    found = session.execute(select(col(Customer.id)).where(column == value)).scalar()
    if found is None:
        raise UnknownRecord(f"no customer with id or email {given!r}")
    return int(found)
