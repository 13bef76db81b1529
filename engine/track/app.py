"""The tracking server: pixel, clicks, unsubscribes, the shop's events, health.

`create_app` builds the Starlette app. Every handler validates, calls one
function and answers:

- `GET /o/<token>.gif` queues an open and always answers a 1×1 GIF, even for a
  bad token (which records nothing) or a database that is down.
- `GET /c/<token>` queues a click and redirects (302) to the URL signed into
  the token, nowhere else; a bad token is a 404.
- `GET /u/<token>` shows the unsubscribe page (changes nothing: link scanners
  fetch GETs); `POST /u/<token>` (RFC 8058 one-click) unsubscribes,
  idempotently, without a redirect: the request is journaled first
  (`unsubscribe.PendingUnsubscribes`), then applied; 200 when that took under
  `UNSUBSCRIBE_WAIT` seconds, else 202 (accepted: applied as soon as the
  database lets it, never lost).
- `GET /s/<token>?score=N` shows the survey page (records nothing); `POST
  /s/<token>` records the answer or changes it for 7 days (`surveys`).
- `POST /api/events` takes the shop's events (see `engine.intake.events`) with
  `Authorization: Bearer <LIFECYCLE_API_KEY>`.
- `GET /api/customers/{id}/credit`: a customer's store-credit balance and
  entries, with the same key (`creditapi`).
- `GET /api/coupons/{code}` and `POST /api/coupons/{code}/redeem`: the shop's
  checkout asks about a coupon and redeems it, with the same key (`couponapi`).
- `POST /webhooks/woocommerce` and `POST /webhooks/shopify`: the platforms'
  webhooks, signed with LIFECYCLE_WOOCOMMERCE_SECRET or LIFECYCLE_SHOPIFY_SECRET
  (`webhooks`; the mapping in `engine.intake.woocommerce` and `.shopify`).
- `POST /webhooks/ses`, `/webhooks/sendgrid`, `/webhooks/mailgun`,
  `/webhooks/postmark` and `/webhooks/brevo`: the sending services' bounces,
  complaints and unsubscribes, each checked as its service signs or authenticates
  it (`servicehooks`); 404 for a service that is not configured.
- `GET /healthz` answers `ok` when the database answers, else 503.
- `/dashboard` is the reports dashboard when LIFECYCLE_DASHBOARD_PASSWORD is
  set, else a 404 saying it is disabled.

No handler waits on the database for long: the pixel and the click answer
from the token alone, the unsubscribe page falls back to a generic question
after `PAGE_WAIT` seconds. Anything longer than 8 KB of URL gets 414 before routing, and the pixel is
answered there too (`FrontDoor`, plain ASGI: it is the hot path). Opens and
clicks go through a `HitBuffer`, written in batches by a background task the
app's lifespan runs (and flushes once more on shutdown).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..deliver import InvalidToken, Purpose, Signer
from ..errors import EngineError, StoreError, UnknownRecord
from ..intake import MAX_BODY_BYTES, Applied, EventsRejected, apply_events, parse_events
from ..project import Project, Secrets
from ..store import EventKind
from . import surveys
from . import unsubscribe as unsub
from .bodies import read_capped
from .couponapi import coupon_routes
from .creditapi import credit_routes
from .opens import Hit, HitBuffer
from .servicehooks import ServiceHooks
from .tierapi import tier_routes
from .webhooks import Webhooks

log = logging.getLogger(__name__)

MAX_URL_BYTES = 8192
UNSUBSCRIBE_WAIT = 1.0  # seconds a one-click POST waits to be applied before answering 202
PAGE_WAIT = 2.0  # seconds the unsubscribe page waits for the recipient's address
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
DASHBOARD_OFF = (
    "The dashboard is disabled. Set LIFECYCLE_DASHBOARD_PASSWORD and restart to turn it on.\n"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Tracker:
    """What the handlers share: the store, the current project, the signer, the buffer."""

    engine: Engine
    get_project: Callable[[], Project]
    secrets: Secrets
    signer: Signer
    hits: HitBuffer
    clock: Callable[[], datetime]
    unsubscribes: unsub.PendingUnsubscribes

    def claim(self, token: str, purpose: Purpose) -> int | None:
        """The message id a valid token names, or None."""
        try:
            return self.signer.verify(token, purpose).message_id
        except InvalidToken:
            return None

    # ------------------------------------------------------------ handlers

    def open(self, token: str, user_agent: str | None, *, head: bool) -> None:
        """Queue an open for a valid pixel token; a bad one records nothing. Never raises."""
        message_id = self.claim(token, Purpose.OPEN)
        if message_id is None:
            return
        try:
            self.hits.record(Hit(EventKind.OPEN, message_id, self.clock(), user_agent, head=head))
        except Exception:  # the pixel answers whatever happens
            log.exception("tracking: could not queue an open of message %s", message_id)

    async def click(self, request: Request) -> Response:
        try:
            claim = self.signer.verify(request.path_params["token"], Purpose.CLICK)
        except InvalidToken:
            return _not_found()
        url = claim.url or ""
        if not url.lower().startswith(("http://", "https://")):
            return _not_found()
        self.hits.record(
            Hit(
                EventKind.CLICK,
                claim.message_id,
                self.clock(),
                request.headers.get("user-agent"),
                url=url,
                head=request.method == "HEAD",
            )
        )
        return RedirectResponse(url, status_code=302, headers=NO_CACHE)

    async def unsubscribe_page(self, request: Request) -> Response:
        message_id = self.claim(request.path_params["token"], Purpose.UNSUBSCRIBE)
        if message_id is None:
            return _not_found()
        shop = self.get_project().config.shop.name
        lookup = asyncio.ensure_future(run_in_threadpool(unsub.recipient, self.engine, message_id))
        lookup.add_done_callback(_retrieved)  # it may end after the page was answered
        try:
            person = await asyncio.wait_for(asyncio.shield(lookup), PAGE_WAIT)
        except UnknownRecord:
            return _not_found()
        except (SQLAlchemyError, StoreError, TimeoutError):  # ask without naming the address
            person = unsub.Recipient("", _language(request), True)
        return HTMLResponse(unsub.ask_page(person, shop), headers=NO_CACHE)

    async def unsubscribe(self, request: Request) -> Response:
        message_id = self.claim(request.path_params["token"], Purpose.UNSUBSCRIBE)
        if message_id is None:
            return _not_found()
        wanted = unsub.Wanted(message_id, self.clock(), request.headers.get("user-agent"))
        await run_in_threadpool(self.unsubscribes.accept, wanted)
        outcome = await self.unsubscribes.settle(message_id, UNSUBSCRIBE_WAIT)
        shop = self.get_project().config.shop.name
        if outcome is unsub.UNKNOWN:
            return _not_found()
        if isinstance(outcome, unsub.Recipient):
            return HTMLResponse(unsub.done_page(outcome, shop), headers=NO_CACHE)
        page = unsub.queued_page(_language(request), shop)
        return HTMLResponse(page, status_code=202, headers=NO_CACHE)

    async def events(self, request: Request) -> Response:
        denied = self._check_key(request)
        if denied is not None:
            return denied
        body = await read_capped(request, MAX_BODY_BYTES)
        if body is None:
            return JSONResponse(
                {"error": f"the body is larger than {MAX_BODY_BYTES} bytes; send smaller batches"},
                status_code=413,
            )
        try:
            applied = await run_in_threadpool(self._take_events, body)
        except EventsRejected as exc:
            return JSONResponse(exc.as_dict(), status_code=400 if exc.malformed else 422)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("events: the database failed: %s", exc)
            return JSONResponse(
                {"error": "the database is unavailable; retry later"}, status_code=503
            )
        return JSONResponse(
            {
                "applied": sum(a.status == "applied" for a in applied),
                "duplicates": sum(a.status == "duplicate" for a in applied),
                "events": [{"id": a.id, "status": a.status} for a in applied],
            }
        )

    def _take_events(self, body: bytes) -> list[Applied]:
        """Validate and apply a body of events (in a worker thread: both take time)."""
        events = parse_events(body)
        holidays = self.get_project().config.holidays
        return apply_events(self.engine, events, now=self.clock(), holidays=holidays)

    def _check_key(self, request: Request) -> Response | None:
        key = self.secrets.api_key
        if not key:
            return JSONResponse(
                {"error": "the events API is off: set LIFECYCLE_API_KEY and restart"},
                status_code=503,
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), key.encode()
        ):
            return JSONResponse(
                {"error": "missing or wrong API key (Authorization: Bearer <key>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    async def health(self, request: Request) -> Response:
        try:
            await run_in_threadpool(_ping, self.engine)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("healthz: the database does not answer: %s", exc)
            return PlainTextResponse("database unavailable\n", status_code=503)
        return PlainTextResponse("ok\n")


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _language(request: Request) -> str:
    """`bn` when the browser prefers Bengali, else `en` (for pages that know no customer)."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return "bn" if first.startswith("bn") else "en"


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _not_found() -> Response:
    return PlainTextResponse("not found\n", status_code=404)


def _unavailable() -> Response:
    return PlainTextResponse("temporarily unavailable, please try again\n", status_code=503)


_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    *((name.lower().encode(), value.encode()) for name, value in NO_CACHE.items()),
]


class FrontDoor:
    """Before any routing: 414 for a URL longer than `MAX_URL_BYTES`, and the pixel.

    The pixel is the hot path (every opened email fetches it), so it is answered
    here in plain ASGI, without Starlette's request and response objects.
    """

    def __init__(self, app: ASGIApp, tracker: Tracker):
        self.app = app
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(scope.get("raw_path") or path.encode()) + len(scope["query_string"]) > MAX_URL_BYTES:
            await PlainTextResponse("URL too long\n", status_code=414)(scope, receive, send)
        elif (
            path.startswith("/o/") and path.endswith(".gif") and scope["method"] in ("GET", "HEAD")
        ):
            agent = next((v for k, v in scope["headers"] if k == b"user-agent"), None)
            head = scope["method"] == "HEAD"
            self.tracker.open(path[3:-4], agent and agent.decode("latin-1"), head=head)
            await send({"type": "http.response.start", "status": 200, "headers": _PIXEL_HEADERS})
            await send({"type": "http.response.body", "body": b"" if head else PIXEL})
        else:
            await self.app(scope, receive, send)


def create_app(
    engine: Engine,
    get_project: Callable[[], Project],
    secrets: Secrets,
    *,
    hits: HitBuffer | None = None,
    clock: Callable[[], datetime] = _utcnow,
    extra_routes: list[BaseRoute] | None = None,
    unsubscribe_journal: Path | None = None,
) -> Starlette:
    """The tracking app. Raises EngineError without a tracking secret.

    Unsubscribes not yet applied are journaled in `unsubscribe_journal`
    (default: `.lifecycle-unsubscribes` beside config.yaml).
    """
    if not secrets.secret:
        raise EngineError("the tracking server needs LIFECYCLE_SECRET (it signs the links)")
    buffer = hits or HitBuffer(engine, lambda: get_project().config.tracking.machine_open_window)
    journal = unsubscribe_journal or get_project().root / unsub.JOURNAL
    unsubscribes = unsub.PendingUnsubscribes(engine, journal)
    signer = Signer(secrets.secret)
    tracker = Tracker(engine, get_project, secrets, signer, buffer, clock, unsubscribes)
    webhooks = Webhooks(engine, get_project, secrets, clock)
    service_hooks = ServiceHooks(engine, get_project, secrets, signer, clock)
    routes: list[BaseRoute] = [
        Route("/c/{token}", tracker.click, methods=["GET"]),
        Route("/u/{token}", tracker.unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", tracker.unsubscribe, methods=["POST"]),
        *surveys.routes(engine, get_project, signer, clock),
        Route("/api/events", tracker.events, methods=["POST"]),
        *credit_routes(engine, get_project, clock, tracker._check_key),
        *coupon_routes(engine, get_project, clock, tracker._check_key),
        *tier_routes(engine, get_project, tracker._check_key),
        *webhooks.routes,
        *service_hooks.routes,
        Route("/healthz", tracker.health, methods=["GET"]),
        *(extra_routes or []),
        *_dashboard_routes(engine, get_project, secrets),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        flusher = asyncio.create_task(buffer.run(stop))
        applier = asyncio.create_task(unsubscribes.run(stop))
        deliveries = asyncio.create_task(webhooks.run(stop))
        try:
            yield
        finally:
            stop.set()
            webhooks.wake.set()
            await flusher
            await applier
            await deliveries
            if webhooks.inbox.writer is not None:
                await asyncio.gather(webhooks.inbox.writer, return_exceptions=True)
            webhooks.inbox.close()
            if not await buffer.flush():
                log.error("tracking: %d hits could not be written at shutdown", buffer.pending)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.tracker = tracker
    app.state.webhooks = webhooks
    app.add_middleware(FrontDoor, tracker=tracker)
    return app


def _dashboard_routes(
    engine: Engine, get_project: Callable[[], Project], secrets: Secrets
) -> list[BaseRoute]:
    if secrets.dashboard_password:
        from ..report import dashboard_app

        return [Mount("/dashboard", app=dashboard_app(engine, get_project, secrets))]

    async def disabled(request: Request) -> Response:
        return PlainTextResponse(DASHBOARD_OFF, status_code=404)

    return [Route("/dashboard", disabled), Route("/dashboard/{rest:path}", disabled)]


def tracker_of(app: Any) -> Tracker:
    """The `Tracker` behind an app made by `create_app` (for tests and the daemon)."""
    tracker: Tracker = app.state.tracker
    return tracker
