"""Webhooks of shop platforms: `POST /webhooks/woocommerce`.

Each answers what the platform needs to stop retrying or to warn its owner:

- 503 while the connector is off (no secret in the environment): the platform
  retries later, and the shop sees why in its webhook log;
- 401 for a missing or wrong signature: nothing is read or recorded, and the
  log says so at most once a minute per source (a flood of forgeries does not
  flood the log);
- 413 for a body over `MAX_BODY_BYTES`;
- 200 for WooCommerce's creation ping (`webhook_id=N`) and for a topic the
  engine does not take (the platform would retry any other status for days);
- 200 with `applied`, `duplicates` and `problems` for a delivery: a payload the
  engine can only partly use is applied as far as it can be, and what it could
  not use is logged and answered (WooCommerce keeps the answer in its log);
- 503 when the database fails: the platform retries.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StoreError
from ..intake import (
    MAX_BODY_BYTES,
    WOOCOMMERCE_TOPICS,
    take_woocommerce_delivery,
    woocommerce_signed,
)
from ..project import Project, Secrets
from .bodies import read_capped

log = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between two warnings about forged deliveries of one source
PING = re.compile(rb"webhook_id=\d+")


class _Warnings:
    """Log a warning at most once per `WARN_EVERY` seconds per source."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def __call__(self, source: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last.get(source, -WARN_EVERY) >= WARN_EVERY:
            self.last[source] = now
            log.warning(message, *args)


def webhook_routes(
    engine: Engine,
    get_project: Callable[[], Project],
    secrets: Secrets,
    clock: Callable[[], datetime],
) -> list[BaseRoute]:
    warn = _Warnings()

    async def woocommerce_webhook(request: Request) -> Response:
        secret = secrets.woocommerce_secret
        if not secret:
            return _error("the WooCommerce connector is off: set LIFECYCLE_WOOCOMMERCE_SECRET", 503)
        body = await read_capped(request, MAX_BODY_BYTES)
        if body is None:
            return _error(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        topic = request.headers.get("x-wc-webhook-topic", "")
        if not topic and PING.fullmatch(body.strip()):
            return JSONResponse({"ok": True, "ping": True})
        signature = request.headers.get("x-wc-webhook-signature", "")
        if not signature or not woocommerce_signed(body, secret, signature):
            source = request.headers.get("x-wc-webhook-source", "") or "(no source)"
            warn(source, "woocommerce: a delivery from %s with a wrong or no signature", source)
            return _error("missing or wrong X-WC-Webhook-Signature", 401)
        if topic not in WOOCOMMERCE_TOPICS:
            return JSONResponse({"ok": True, "ignored": topic})
        delivery_id = request.headers.get("x-wc-webhook-delivery-id", "").strip()
        if not delivery_id:
            return _error("X-WC-Webhook-Delivery-ID is missing", 400)
        try:
            delivery = await run_in_threadpool(
                take_woocommerce_delivery,
                engine,
                topic,
                delivery_id[:64],
                body,
                now=clock(),
                holidays=get_project().config.holidays,
            )
        except (SQLAlchemyError, StoreError) as exc:
            log.error("woocommerce: the database failed: %s", exc)
            return _error("the database is unavailable; retry later", 503)
        for problem in delivery.problems:
            log.warning("woocommerce %s %s: %s", topic, delivery_id, problem)
        return JSONResponse({"ok": True, **delivery.as_dict()})

    return [Route("/webhooks/woocommerce", woocommerce_webhook, methods=["POST"])]


def _error(message: str, status: int) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)
