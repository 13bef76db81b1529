"""The reports dashboard: campaigns, retention, the queue and a live email preview.

`dashboard_app` builds a Starlette app the tracking server mounts at
`/dashboard`. Every figure on it comes from `engine.report.reports.build_report`, the
same function behind `lifecycle report --json`.

Security:
- A login form checks LIFECYCLE_DASHBOARD_PASSWORD in constant time and sets
  a session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) naming a
  session the server keeps, signed with HMAC-SHA256 under a key derived from
  LIFECYCLE_SECRET and the password. Logging out ends the session on the
  server: the cookie is refused from then on, wherever it was copied to.
  Sessions live in the process, so a restart logs everyone out.
- A wrong password costs `failure_delay` seconds; after `max_failures` wrong
  ones from one address within `lockout`, that address gets 429 until the
  window passes. The address is the connection's peer; `X-Forwarded-For` is
  believed only when that peer is one of `tracking.trusted_proxies` (then the
  nearest address in it that is not a trusted proxy is the client's).
- POSTs must come from this origin (Origin or Referer header) and logout
  carries a CSRF token bound to the session.
- Pages are rendered by an autoescaping Jinja environment, so names, user
  agents and SMTP replies are shown as text. Every page is sent with a
  Content-Security-Policy that allows no script at all.
- The email preview is served from its own URL inside a sandboxed iframe,
  with a policy of its own: no scripts, no forms, no plugins.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import secrets as random_tokens
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import EngineError, StoreError
from ..project import Project, Secrets
from ..store import Customer
from . import charts
from .campaigns import BENCHMARKS
from .reports import build_report, period
from .retention import ReportError

COOKIE = "lifecycle_dashboard"
SESSION_HOURS = 12
MAX_TRACKED = 10_000  # addresses with recent wrong passwords kept in memory
MAX_SESSIONS = 1_000  # open sessions kept; beyond that the oldest end
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
EMAIL_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "font-src https: data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Handler = Callable[[Request], Awaitable[Response]]
CAMPAIGN_COLUMNS = [
    ("sent", "Sent"),
    ("queued", "Queued"),
    ("retrying", "Retrying"),
    ("failed", "Failed"),
    ("expired", "Expired"),
    ("in_doubt", "In doubt"),
    ("suppressed", "Suppressed"),
    ("unique_human_opens", "Human opens"),
    ("human_open_rate", "Open rate %"),
    ("reference_open_rate", "Reference %"),
    ("machine_opens", "Machine opens"),
    ("unique_clicks", "Unique clicks"),
    ("total_clicks", "All clicks"),
    ("click_rate", "Click rate %"),
    ("unsubscribes", "Unsubscribes"),
    ("store_credit", "Store credit"),
    ("attributed_orders", "Orders after"),
    ("attributed_revenue", "Revenue after"),
]
RETENTION_COLUMNS = [
    ("customers_at_start", "Active at start"),
    ("customers_at_end", "Active at end"),
    ("new_customers", "New"),
    ("lost_customers", "Lost"),
    ("returning_customers", "Returning"),
    ("ordering_customers", "Ordering"),
    ("orders", "Orders"),
    ("revenue", "Revenue"),
    ("retention_rate", "Retention rate %"),
    ("churn_rate", "Churn rate %"),
    ("repeat_customer_rate", "Repeat customers %"),
    ("purchase_frequency", "Orders per customer"),
    ("average_order_value", "Average order"),
    ("purchases_per_year", "Orders per year"),
    ("customer_lifetime_value", "Lifetime value"),
]


def dashboard_app(
    engine: Engine,
    get_project: Callable[[], Project],
    secrets: Secrets,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    failure_delay: float = 1.0,
    max_failures: int = 5,
    lockout: timedelta = timedelta(minutes=15),
) -> Starlette:
    """The dashboard; raises EngineError when LIFECYCLE_DASHBOARD_PASSWORD is not set."""
    if not secrets.dashboard_password:
        raise EngineError("the dashboard needs LIFECYCLE_DASHBOARD_PASSWORD")
    board = Dashboard(engine, get_project, secrets, clock, failure_delay, max_failures, lockout)
    private = board.private
    routes = [
        Route("/login", board.login_page, methods=["GET"]),
        Route("/login", board.login, methods=["POST"]),
        Route("/logout", private(board.logout), methods=["POST"]),
        Route("/dashboard.css", board.stylesheet, methods=["GET"]),
        Route("/", private(board.overview), methods=["GET"]),
        Route("/retention", private(board.retention), methods=["GET"]),
        Route("/queue", private(board.queue), methods=["GET"]),
        Route("/preview", private(board.preview), methods=["GET"]),
        Route("/preview/email", private(board.preview_email), methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _figure(value: Any) -> str:
    """A figure as the page shows it: None is 'no data', Decimals keep their two places."""
    if value is None:
        return "no data"
    return str(value)


class Dashboard:
    def __init__(
        self,
        engine: Engine,
        get_project: Callable[[], Project],
        secrets: Secrets,
        clock: Callable[[], datetime],
        failure_delay: float,
        max_failures: int,
        lockout: timedelta,
    ):
        self.engine = engine
        self.secrets = secrets
        self.get_project = get_project
        self.clock = clock
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.lockout = lockout.total_seconds()
        self.password = (secrets.dashboard_password or "").encode()
        secret = (secrets.secret or "").encode() or os.urandom(32)
        self.key = hashlib.sha256(
            b"lifecycle-dashboard\x00" + secret + b"\x00" + self.password
        ).digest()
        self.failures: dict[str, list[float]] = {}
        self.sessions: dict[str, int] = {}  # open session id -> when it expires (epoch seconds)
        self.composer: tuple[Project, Any] | None = None
        self.templates = Environment(
            loader=PackageLoader("engine.report", "web"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["figure"] = _figure

    # -- sessions

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def _session(self, request: Request) -> str | None:
        """The valid session cookie of the request, or None."""
        value = request.cookies.get(COOKIE, "")
        expires, session_id, signature = [*value.split("."), "", ""][:3]
        if not expires.isdigit() or not hmac.compare_digest(
            self._sign(f"session:{expires}:{session_id}"), signature
        ):
            return None
        if int(expires) <= self.clock().timestamp() or session_id not in self.sessions:
            return None
        return value

    def _open_session(self) -> tuple[str, int]:
        """A new session: its cookie value and when it expires."""
        now = int(self.clock().timestamp())
        if len(self.sessions) >= MAX_SESSIONS:
            live = sorted((e, s) for s, e in self.sessions.items() if e > now)
            self.sessions = {s: e for e, s in live[-(MAX_SESSIONS - 1) :]}
        session_id = random_tokens.token_urlsafe(16)
        expires = now + SESSION_HOURS * 3600
        self.sessions[session_id] = expires
        return f"{expires}.{session_id}.{self._sign(f'session:{expires}:{session_id}')}", expires

    def csrf(self, session: str) -> str:
        return self._sign(f"csrf:{session}")

    def private(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            session = self._session(request)
            if session is None:
                return RedirectResponse(f"{_base(request)}/login", status_code=303)
            request.state.session = session
            return await handler(request)

        return guarded

    def _same_origin(self, request: Request) -> bool:
        """True when the Origin (or Referer) names this host; behind a TLS proxy the
        scheme may differ, the host may not."""
        claimed = request.headers.get("origin") or request.headers.get("referer") or ""
        host = urlsplit(claimed).netloc
        return bool(host) and hmac.compare_digest(host.lower(), request.url.netloc.lower())

    # -- rendering

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        project = self.get_project()
        session = getattr(request.state, "session", None)
        html = self.templates.get_template(template).render(
            base=_base(request),
            shop=project.config.shop.name,
            csrf=self.csrf(session) if session else "",
            logged_in=session is not None,
            query=f"?{request.url.query}" if request.url.query else "",
            **values,
        )
        return HTMLResponse(
            html, status, headers={**SECURITY_HEADERS, "Content-Security-Policy": PAGE_POLICY}
        )

    async def stylesheet(self, request: Request) -> Response:
        css = await run_in_threadpool(_read_css)
        headers = {**SECURITY_HEADERS, "Cache-Control": "max-age=300"}
        return Response(css, media_type="text/css", headers=headers)

    # -- login

    async def login_page(self, request: Request) -> Response:
        if self._session(request) is not None:
            return RedirectResponse(f"{_base(request)}/", status_code=303)
        return self.page(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return self.page(
                request, "login.html", 403, error="This form must be sent from this page."
            )
        proxies = self.get_project().config.tracking.trusted_proxies
        client = client_address(request, proxies)
        now = time.monotonic()
        if len(self.failures) > MAX_TRACKED:
            self.failures = {k: v for k, v in self.failures.items() if now - v[-1] < self.lockout}
        recent = [t for t in self.failures.get(client, []) if now - t < self.lockout]
        self.failures[client] = recent
        if len(recent) >= self.max_failures:
            wait = int(self.lockout - (now - recent[0])) + 1
            message = f"Too many wrong passwords. Try again in {wait // 60 + 1} minutes."
            response = self.page(request, "login.html", 429, error=message)
            response.headers["Retry-After"] = str(wait)
            return response
        form = await request.form()
        given = str(form.get("password", "")).encode()
        if not hmac.compare_digest(
            hashlib.sha256(given).digest(), hashlib.sha256(self.password).digest()
        ):
            recent.append(now)
            await asyncio.sleep(self.failure_delay)
            return self.page(request, "login.html", 401, error="Wrong password.")
        self.failures.pop(client, None)
        cookie, _ = self._open_session()
        response = RedirectResponse(f"{_base(request)}/", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_HOURS * 3600,
            path=f"{_base(request)}/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("csrf", ""))
        if not self._same_origin(request) or not hmac.compare_digest(
            token, self.csrf(request.state.session)
        ):
            return Response("Forbidden: this form must be sent from the dashboard.", 403)
        self.sessions.pop(request.state.session.split(".")[1], None)
        response = RedirectResponse(f"{_base(request)}/login", status_code=303)
        response.delete_cookie(COOKIE, path=f"{_base(request)}/")
        return response

    # -- report pages

    async def _report(
        self, request: Request, *sections: str
    ) -> tuple[dict[str, Any] | None, EngineError | None, dict[str, str]]:
        """build_report for the page's ?from=&to=&by=, or an error message."""
        chosen = {k: request.query_params.get(k, "") for k in ("from", "to", "by")}
        chosen["by"] = chosen["by"] or "month"
        project = self.get_project()
        now = self.clock()
        try:
            first, last = _date("from", chosen["from"]), _date("to", chosen["to"])
            if chosen["by"] not in ("month", "year"):
                raise ReportError(f"by must be month or year, got: {chosen['by']!r}")
            start, end = period(first, last, now, project.config.shop.timezone)
            report = await run_in_threadpool(
                partial(build_report, sections=sections),
                self.engine,
                project,
                start,
                end,
                chosen["by"],
                now,
            )
        except EngineError as exc:  # a bad period, or the database is not answering
            return None, exc, chosen
        return report, None, chosen

    async def overview(self, request: Request) -> Response:
        report, error, chosen = await self._report(request, "campaigns", "activity")
        if report is None:
            return self.page(
                request, "overview.html", _status(error), error=error, chosen=chosen, report=None
            )
        points = report["activity"]["points"]
        labels = [p["label"] for p in points]
        sends = charts.bar_chart("Emails sent", labels, [p["sent"] for p in points])
        opens = charts.line_chart(
            "Human open rate",
            labels,
            {"open rate": [p["human_open_rate"] for p in points]},
            unit="%",
            references={
                "e-commerce": BENCHMARKS["ecommerce"],
                "all email": BENCHMARKS["email_overall"],
            },
        )
        return self.page(
            request,
            "overview.html",
            error=None,
            chosen=chosen,
            report=report,
            columns=CAMPAIGN_COLUMNS,
            local=_local(self.get_project()),
            sends_chart=sends,
            opens_chart=opens,
        )

    async def retention(self, request: Request) -> Response:
        report, error, chosen = await self._report(request, "retention")
        if report is None:
            return self.page(
                request, "retention.html", _status(error), error=error, chosen=chosen, report=None
            )
        slices = report["retention"]["buckets"]
        labels = [b["label"] for b in slices]
        series = {
            "retention rate": [b["retention_rate"] for b in slices],
            "churn rate": [b["churn_rate"] for b in slices],
            "repeat customer rate": [b["repeat_customer_rate"] for b in slices],
        }
        trend = charts.line_chart("Retention, churn and repeat customers", labels, series, unit="%")
        return self.page(
            request,
            "retention.html",
            error=None,
            chosen=chosen,
            report=report,
            columns=RETENTION_COLUMNS,
            local=_local(self.get_project()),
            trend_chart=trend,
            trend_legend=charts.legend(list(series)),
        )

    async def queue(self, request: Request) -> Response:
        report, error, chosen = await self._report(request, "queue")
        return self.page(
            request,
            "queue.html",
            _status(error),
            error=error,
            chosen=chosen,
            report=report,
            local=_local(self.get_project()),
        )

    # -- preview

    def _composer(self, project: Project) -> Any:
        from ..deliver import Composer  # the renderer is only needed for previews

        if self.composer is None or self.composer[0] is not project:
            self.composer = (project, Composer(project, self.secrets))
        return self.composer[1]

    def _render_preview(self, campaign: str, customer: str) -> Any:
        project = self.get_project()
        composer = self._composer(project)
        with Session(self.engine) as session:
            customer_id = _find_customer(session, customer)
            shown = composer.preview(session, campaign, customer_id, now=self.clock())
            session.rollback()
        return shown

    async def preview(self, request: Request) -> Response:
        project = self.get_project()
        campaign = request.query_params.get("campaign", "")
        customer = request.query_params.get("customer", "").strip()
        shown, error = None, None
        if campaign and customer:
            try:
                shown = await run_in_threadpool(self._render_preview, campaign, customer)
            except EngineError as exc:
                error = str(exc)
        return self.page(
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
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": EMAIL_POLICY}
        return HTMLResponse(shown.html, headers=headers)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: Request, trusted_proxies: Sequence[Network]) -> str:
    """The address a request comes from: its peer, unless the peer is a trusted proxy;
    then the nearest `X-Forwarded-For` entry that is not a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, trusted_proxies):
            return hop[:64]
    return peer


def _trusted(address: str, trusted_proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted_proxies)


def _status(error: EngineError | None) -> int:
    if error is None:
        return 200
    return 503 if isinstance(error, StoreError) else 400


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _date(name: str, text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ReportError(f"{name} must be a date like 2026-11-01, got: {text!r}") from exc


def _local(project: Project) -> Callable[[datetime | None], str]:
    zone = ZoneInfo(project.config.shop.timezone)

    def local(value: datetime | None) -> str:
        return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return local


def _find_customer(session: Session, given: str) -> int:
    """The row id of the customer with this shop id or email address."""
    from ..errors import UnknownRecord

    column = col(Customer.email) if "@" in given else col(Customer.external_id)
    value = given.lower() if "@" in given else given
    found = session.execute(select(col(Customer.id)).where(column == value)).scalar()
    if found is None:
        raise UnknownRecord(f"no customer with id or email {given!r}")
    return int(found)


def _read_css() -> bytes:
    from importlib.resources import files

    return files("engine.report").joinpath("web/dashboard.css").read_bytes()
