"""Webhooks of shop platforms: `POST /webhooks/woocommerce` and `POST /webhooks/shopify`.

Each answers what the platform needs to stop retrying or to warn its owner:

- 503 while the connector is off (no secret in the environment): the platform
  retries later, and the shop sees why in its webhook log;
- 401 for a missing or wrong signature: nothing is read or recorded, and the
  log says so at most once a minute per source (a flood of forgeries does not
  flood the log);
- 413 for a body over `MAX_BODY_BYTES`;
- 200 for WooCommerce's creation ping (`webhook_id=N`) and for a topic the
  engine does not take (the platforms retry any other status for days);
- 200 once a delivery is kept in the inbox (`engine.intake.inbox`), or was kept
  before (`duplicate`): the platform's retry of a delivery already kept changes
  nothing. Many requests' deliveries are written in one transaction (`Inbox`),
  each request answered when its own is committed, so nothing answered 200 is
  lost to a crash;
- 503 when the database fails: the platform retries.

`Webhooks.run` applies the kept deliveries in the order they came, as soon as
they are kept (and every `APPLY_EVERY` seconds, for any left by a restart or a
database that was down); what a delivery could not give is logged and kept on
its row, which the dashboard's queue page lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StoreError
from ..intake import (
    MAX_BODY_BYTES,
    SHOPIFY_TOPICS,
    WOOCOMMERCE_TOPICS,
    Received,
    apply_pending,
    keep_deliveries,
    signature_matches,
)
from ..project import Project, Secrets
from .bodies import read_capped

log = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between two warnings about forged deliveries of one source
APPLY_EVERY = 5.0  # seconds between two looks at the inbox when nothing wakes the applier
QUIET = 0.05  # seconds without a new delivery before the applier starts
# Deliveries applied at a time; between two slices the applier steps back for new
# deliveries (taking them in comes first: it shares the process), except for the first
# `APPLY_AT_LEAST` seconds of a round, so a steady stream still gets applied.
APPLY_SLICE = 20
APPLY_AT_LEAST = 0.5
PING = re.compile(rb"webhook_id=\d+")


@dataclass(frozen=True)
class Platform:
    """How one platform names its secret, headers and topics, and who applies them."""

    name: str
    secret_variable: str
    secret: Callable[[Secrets], str | None]
    signature: str
    topic: str
    delivery: str
    source: str
    topics: frozenset[str]


PLATFORMS = (
    Platform(
        "woocommerce",
        "LIFECYCLE_WOOCOMMERCE_SECRET",
        lambda s: s.woocommerce_secret,
        "x-wc-webhook-signature",
        "x-wc-webhook-topic",
        "x-wc-webhook-delivery-id",
        "x-wc-webhook-source",
        WOOCOMMERCE_TOPICS,
    ),
    Platform(
        "shopify",
        "LIFECYCLE_SHOPIFY_SECRET",
        lambda s: s.shopify_secret,
        "x-shopify-hmac-sha256",
        "x-shopify-topic",
        "x-shopify-webhook-id",
        "x-shopify-shop-domain",
        SHOPIFY_TOPICS,
    ),
)


class _Warnings:
    """Log a warning at most once per `WARN_EVERY` seconds per source."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def __call__(self, source: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last.get(source, -WARN_EVERY) >= WARN_EVERY:
            self.last[source] = now
            log.warning(message, *args)


class Inbox:
    """Writes deliveries in groups: while one group commits, the next gathers, and each
    request waits for the commit of its own delivery. The groups are written one after
    the other on a connection of their own, kept open between them (a connection from
    the pool, pinged first, costs PostgreSQL a round trip a group). One found broken (the
    server restarted, or ended an idle session) is replaced and the group written again
    on the new one, once; one that fails otherwise is closed, and the next group opens a
    new one."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.waiting: list[tuple[Received, asyncio.Future[bool]]] = []
        self.writer: asyncio.Task[None] | None = None
        self.conn: Connection | None = None

    def _keep_group(self, received: list[Received]) -> list[bool]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = self.engine.connect()
            try:
                return keep_deliveries(self.conn, received)
            except DBAPIError as exc:
                self.close()
                if not exc.connection_invalidated or attempt == 2:
                    raise
            except Exception:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Give the writer's connection back (the app's shutdown)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    async def keep(self, received: Received) -> bool:
        """True when the delivery is new, False when it was kept before."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((received, future))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting, []
            try:
                kept = await run_in_threadpool(self._keep_group, [r for r, _ in group])
            except Exception as exc:  # every request of the group answers 503
                for _, future in group:
                    future.set_exception(exc)
                continue
            for (_, future), new in zip(group, kept, strict=True):
                future.set_result(new)


class Webhooks:
    """The platforms' webhook routes, their inbox and the task that applies it."""

    def __init__(
        self,
        engine: Engine,
        get_project: Callable[[], Project],
        secrets: Secrets,
        clock: Callable[[], datetime],
    ):
        self.engine, self.get_project, self.secrets, self.clock = (
            engine,
            get_project,
            secrets,
            clock,
        )
        self.inbox = Inbox(engine)
        self.wake = asyncio.Event()
        self.warn = _Warnings()
        self.routes: list[BaseRoute] = [
            Route(
                f"/webhooks/{p.name}", self._handler(p), methods=["POST"], name=f"{p.name}_webhook"
            )
            for p in PLATFORMS
        ]

    def _handler(self, platform: Platform) -> Callable[[Request], Any]:
        async def webhook(request: Request) -> Response:
            return await self.take(platform, request)

        return webhook

    async def take(self, platform: Platform, request: Request) -> Response:
        secret = platform.secret(self.secrets)
        if not secret:
            return _error(
                f"the {platform.name} connector is off: set {platform.secret_variable}", 503
            )
        body = await read_capped(request, MAX_BODY_BYTES)
        if body is None:
            return _error(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        topic = request.headers.get(platform.topic, "")
        if not topic and PING.fullmatch(body.strip()):
            return JSONResponse({"ok": True, "ping": True})  # WooCommerce's, unsigned
        signature = request.headers.get(platform.signature, "")
        if not signature or not signature_matches(body, secret, signature):
            source = request.headers.get(platform.source, "") or "(no source)"
            self.warn(
                f"{platform.name} {source}",
                "%s: a delivery from %s with a wrong or no signature",
                platform.name,
                source,
            )
            return _error(f"missing or wrong {platform.signature}", 401)
        if topic not in platform.topics:
            return JSONResponse({"ok": True, "ignored": topic})
        delivery_id = request.headers.get(platform.delivery, "").strip()[:64]
        if not delivery_id:
            return _error(f"{platform.delivery} is missing", 400)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error("the body is not UTF-8", 400)
        received = Received(platform.name, delivery_id, topic[:64], text, self.clock())
        try:
            new = await self.inbox.keep(received)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("%s: the database failed: %s", platform.name, exc)
            return _error("the database is unavailable; retry later", 503)
        if new:
            self.wake.set()
        return JSONResponse({"ok": True, "kept": new, "duplicate": not new})

    async def run(self, stop: asyncio.Event) -> None:
        """Apply kept deliveries until `stop`: once deliveries stop arriving for a moment
        (taking them in comes first: they are answered only when kept), at the latest
        `APPLY_EVERY` seconds after the first one waiting, and now and then anyway."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), APPLY_EVERY)
            first = time.monotonic()
            while self.wake.is_set() and not stop.is_set():
                self.wake.clear()
                await asyncio.sleep(QUIET)
                if time.monotonic() - first > APPLY_EVERY:
                    break
            self.wake.clear()
            await self.apply_all()

    async def apply_all(self) -> None:
        """Apply what the inbox holds, a slice at a time, until it is empty or (after
        `APPLY_AT_LEAST`) new deliveries come in; a failing database leaves it for the
        next round."""
        holidays = self.get_project().config.holidays
        started = time.monotonic()
        try:
            while await run_in_threadpool(
                apply_pending, self.engine, now=self.clock(), holidays=holidays, limit=APPLY_SLICE
            ):
                if self.wake.is_set() and time.monotonic() - started > APPLY_AT_LEAST:
                    return  # more are coming in: `run` comes back once they pause
        except StoreError as exc:
            log.error("webhooks: the inbox could not be applied: %s", exc)


def _error(message: str, status: int) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)
