"""The reports dashboard: campaigns, retention, rewards, the queue and a live email preview.

`dashboard_app` builds a Starlette app the tracking server mounts at
`/dashboard`. Every figure on it comes from `engine.report.reports.build_report`, the
same function behind `lifecycle report --json`.

Its parts: the pages here; who may see them in `dashauth` (the login form, its
sessions, the throttle on wrong passwords, the same-origin and CSRF checks); the email
preview, served in a sandboxed iframe with a policy of its own, in `dashpreview`; the
rewards page's tables in `dashrewards`.

Pages are rendered by an autoescaping Jinja environment, so names, user agents and SMTP
replies are shown as text. Every page is sent with a Content-Security-Policy that allows
no script at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..errors import EngineError, StoreError
from ..project import Project, Secrets
from ..render import money
from . import charts
from .campaigns import BENCHMARKS
from .dashauth import Sessions, base
from .dashpreview import Previews
from .dashrewards import rewards_tables
from .reports import build_report, period, to_json
from .retention import ReportError, bucket_label, rounded

PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Each table's columns: (figure, heading, kind); a kind says how a value is shown.
# The figures of a page are split into tables of related columns, so each fits a
# 1280 px screen without a sideways scroll.
Column = tuple[str, str, str]
CAMPAIGN_TABLES: list[tuple[str, str, list[Column]]] = [
    (
        "delivery",
        "Delivery",
        [
            ("sent", "Sent", "count"),
            ("queued", "Queued", "count"),
            ("retrying", "Retrying", "count"),
            ("failed", "Failed", "count"),
            ("expired", "Expired", "count"),
            ("in_doubt", "In doubt", "count"),
            ("suppressed", "Suppressed", "count"),
        ],
    ),
    (
        "response",
        "Opens, clicks and money",
        [
            ("unique_human_opens", "Human opens", "count"),
            ("human_open_rate", "Open rate %", "rate"),
            ("reference_open_rate", "Reference %", "rate"),
            ("machine_opens", "Machine opens", "count"),
            ("unique_clicks", "Unique clicks", "count"),
            ("total_clicks", "All clicks", "count"),
            ("click_rate", "Click rate %", "rate"),
            ("unsubscribes", "Unsub\u00adscribes", "count"),
            ("store_credit", "Store credit", "credit"),
            ("attributed_orders", "Orders after", "count"),
            ("attributed_revenue", "Revenue after", "money"),
        ],
    ),
]
RETENTION_TABLES: list[tuple[str, str, list[Column]]] = [
    (
        "customers",
        "Customers",
        [
            ("customers_at_start", "Active at start", "count"),
            ("customers_at_end", "Active at end", "count"),
            ("new_customers", "New", "count"),
            ("lost_customers", "Lost", "count"),
            ("returning_customers", "Returning", "count"),
            ("ordering_customers", "Ordering", "count"),
            ("repeat_customers", "Repeat (2+ orders)", "count"),
            ("retention_rate", "Retention rate %", "rate"),
            ("churn_rate", "Churn rate %", "rate"),
            ("repeat_customer_rate", "Repeat customers %", "rate"),
        ],
    ),
    (
        "value",
        "Orders and value",
        [
            ("orders", "Orders", "count"),
            ("revenue", "Revenue", "money"),
            ("purchase_frequency", "Orders per customer", "count"),
            ("average_order_value", "Average order", "money"),
            ("purchases_per_year", "Orders per year", "count"),
            ("customer_lifetime_value", "Lifetime value", "money"),
            ("nps_score", "NPS", "count"),
            ("nps_answers", "NPS answers", "count"),
        ],
    ),
]
NO_DATA = "no data"
NO_CREDIT = "\u2014"  # store credit of a campaign that gives none: not "no data"
NO_CREDIT_TITLE = "this campaign gives no store credit"


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
    sessions, previews = board.sessions, board.previews
    private = sessions.private
    routes = [
        Route("/login", sessions.login_page, methods=["GET"]),
        Route("/login", sessions.login, methods=["POST"]),
        Route("/logout", private(sessions.logout), methods=["POST"]),
        Route("/dashboard.css", board.stylesheet, methods=["GET"]),
        Route("/", private(board.overview), methods=["GET"]),
        Route("/retention", private(board.retention), methods=["GET"]),
        Route("/rewards", private(board.rewards), methods=["GET"]),
        Route("/queue", private(board.queue), methods=["GET"]),
        Route("/preview", private(previews.preview), methods=["GET"]),
        Route("/preview/email", private(previews.preview_email), methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _figure(value: Any) -> str:
    """A figure as the page shows it: None is 'no data', Decimals half-up to two places."""
    if value is None:
        return NO_DATA
    return str(rounded(value)) if isinstance(value, Decimal) else str(value)


def _raw(value: Any) -> str:
    """A figure as `lifecycle report --json` writes it ('' for null), for data-value."""
    return "" if value is None else str(to_json(value))


def _shown(project: Project) -> Callable[[Any, str], str]:
    """How a figure of `kind` reads on the page: amounts with the shop's currency sign,
    None as 'no data' (or a dash for a campaign that gives no store credit), 0 as 0."""
    shop = project.config.shop

    def shown(value: Any, kind: str) -> str:
        if value is None:
            return NO_CREDIT if kind == "credit" else NO_DATA
        if kind in ("money", "credit"):
            return money(
                rounded(value), currency=shop.currency, locale="en", symbol_locale=shop.locale
            )
        return _figure(value)

    return shown


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
        self.templates = Environment(
            loader=PackageLoader("engine.report", "web"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["figure"] = _figure
        self.templates.filters["raw"] = _raw
        self.templates.globals["NO_CREDIT_TITLE"] = NO_CREDIT_TITLE
        self.sessions = Sessions(self, failure_delay, max_failures, lockout)
        self.previews = Previews(self, SECURITY_HEADERS)

    # -- rendering

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        project = self.get_project()
        session = getattr(request.state, "session", None)
        html = self.templates.get_template(template).render(
            base=base(request),
            shop=project.config.shop.name,
            csrf=self.sessions.csrf(session) if session else "",
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
            tables=CAMPAIGN_TABLES,
            rows=[(name, name, row) for name, row in report["campaigns"].items()],
            steps={name: row["steps"] for name, row in report["campaigns"].items()},
            shown=_shown(self.get_project()),
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
        labels = [b["label"] + (" (partial)" if b["partial"] else "") for b in slices]
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
            tables=RETENTION_TABLES,
            rows=[(b["label"], bucket_label(b), b) for b in slices],
            shown=_shown(self.get_project()),
            local=_local(self.get_project()),
            trend_chart=trend,
            trend_legend=charts.legend(list(series)),
        )

    async def rewards(self, request: Request) -> Response:
        report, error, chosen = await self._report(request, "rewards")
        return self.page(
            request,
            "rewards.html",
            _status(error),
            error=error,
            chosen=chosen,
            report=report,
            shown=_shown(self.get_project()),
            local=_local(self.get_project()),
            **(rewards_tables(report["rewards"]) if report else {}),
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


def _status(error: EngineError | None) -> int:
    if error is None:
        return 200
    return 503 if isinstance(error, StoreError) else 400


def _date(name: str, text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ReportError(f"{name} must be a date like 2026-11-01, got: {text!r}") from exc


def _local(project: Project) -> Callable[[datetime | None], str]:
    """A time in the shop's timezone with its UTC offset: "2026-11-22 09:00 +06"."""
    zone = ZoneInfo(project.config.shop.timezone)

    def local(value: datetime | None) -> str:
        if value is None:
            return ""
        moment = value.astimezone(zone)
        return f"{moment:%Y-%m-%d %H:%M} {_offset(moment)}"

    return local


def _offset(moment: datetime) -> str:
    """The UTC offset as "+06", "+05:30" or "-03"; "+00" for UTC."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}" + (f":{rest:02d}" if rest else "")


def _read_css() -> bytes:
    from importlib.resources import files

    return files("engine.report").joinpath("web/dashboard.css").read_bytes()
