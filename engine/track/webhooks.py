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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StoreError
from ..intake import (
    MAX_BODY_BYTES,
    SHOPIFY_TOPICS,
    WOOCOMMERCE_TOPICS,
    signature_matches,
    take_shopify_delivery,
    take_woocommerce_delivery,
)
from ..project import Project, Secrets
from .bodies import read_capped

log = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between two warnings about forged deliveries of one source
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
    take: Callable[..., Any]


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
        take_woocommerce_delivery,
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
        take_shopify_delivery,
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


def webhook_routes(
    engine: Engine,
    get_project: Callable[[], Project],
    secrets: Secrets,
    clock: Callable[[], datetime],
) -> list[BaseRoute]:
    warn = _Warnings()

    def handler(platform: Platform) -> Callable[[Request], Any]:
        async def webhook(request: Request) -> Response:
            secret = platform.secret(secrets)
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
                warn(
                    f"{platform.name} {source}",
                    "%s: a delivery from %s with a wrong or no signature",
                    platform.name,
                    source,
                )
                return _error(f"missing or wrong {platform.signature}", 401)
            if topic not in platform.topics:
                return JSONResponse({"ok": True, "ignored": topic})
            delivery_id = request.headers.get(platform.delivery, "").strip()
            if not delivery_id:
                return _error(f"{platform.delivery} is missing", 400)
            try:
                delivery = await run_in_threadpool(
                    platform.take,
                    engine,
                    topic,
                    delivery_id[:64],
                    body,
                    now=clock(),
                    holidays=get_project().config.holidays,
                )
            except (SQLAlchemyError, StoreError) as exc:
                log.error("%s: the database failed: %s", platform.name, exc)
                return _error("the database is unavailable; retry later", 503)
            for problem in delivery.problems:
                log.warning("%s %s %s: %s", platform.name, topic, delivery_id, problem)
            return JSONResponse({"ok": True, **delivery.as_dict()})

        return webhook

    return [
        Route(f"/webhooks/{p.name}", handler(p), methods=["POST"], name=f"{p.name}_webhook")
        for p in PLATFORMS
    ]


def _error(message: str, status: int) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)
