"""Webhooks of the sending services: `POST /webhooks/{ses,sendgrid,mailgun,postmark,brevo}`.

Each route validates, has its service's module (`ses`, `sendgrid`, `mailgun`,
`postmark`, `brevo`) check and parse the request, applies the events, and answers:

- 404 when the service is not configured (`Service.missing`);
- 413 for a body over `MAX_BODY_BYTES`, before it is read whole;
- 401 for a missing, forged or wrong-key signature or password, or a signature
  timestamped more than 5 minutes from now: nothing is recorded, and the log says
  so at most once a minute per service;
- 400 for a body that is not what the service sends;
- 503 when the database fails or the engine cannot check the request: the service
  sends it again later, and what was already applied is not recorded twice;
- 200 otherwise, with the count of each outcome (`hard bounce`, `soft bounce`,
  `complaint`, `unsubscribed`, `already recorded`, `ignored`, `unmatched`).

The checking and the applying run in a worker thread, never on the event loop.
Each event is applied in its own short transaction: a bounce or complaint by
`engine.feedback.apply_report`, which checks the token's signature, records the
event on its message and suppresses the address when it must; an unsubscribe as
the email's own link does (`unsubscribe.unsubscribe`). An event that names no
message of ours (no token, a forged one, a message that is gone) is counted
`unmatched` and changes nothing. The same request taken twice, or the same event
in two requests, records nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ..deliver import InvalidToken, Signer
from ..errors import StoreError, UnknownRecord
from ..feedback import Outcome, apply_report
from ..project import Bounces, Project, Secrets
from ..store import session_scope
from .bodies import read_capped
from .brevo import Brevo
from .lockwait import short_lock_wait
from .mailgun import Mailgun
from .postmark import Postmark
from .sendgrid import SendGrid
from .sendingservice import (
    Delivery,
    Event,
    Malformed,
    Refused,
    Service,
    Unavailable,
    Unsubscribe,
)
from .ses import Ses
from .unsubscribe import unsubscribe
from .webhooks import _Warnings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # SES notifications are under 256 KB; SendGrid batches fit
UNSUBSCRIBED = "unsubscribed"


class ServiceHooks:
    """The sending services' webhook routes."""

    def __init__(
        self,
        engine: Engine,
        get_project: Callable[[], Project],
        secrets: Secrets,
        signer: Signer,
        clock: Callable[[], datetime],
    ):
        self.engine, self.get_project, self.secrets = engine, get_project, secrets
        self.signer, self.clock = signer, clock
        self.warn = _Warnings()
        services: list[Service] = [Ses(), SendGrid(), Mailgun(), Postmark(), Brevo()]
        self.routes: list[BaseRoute] = [
            Route(f"/webhooks/{s.name}", self._handler(s), methods=["POST"], name=f"{s.name}_hook")
            for s in services
        ]

    def _handler(self, service: Service) -> Callable[[Request], Any]:
        async def webhook(request: Request) -> Response:
            return await self.take(service, request)

        return webhook

    async def take(self, service: Service, request: Request) -> Response:
        project = self.get_project()
        missing = service.missing(project, self.secrets)
        if missing:
            return PlainTextResponse(f"the {service.name} webhook is off: set {missing}\n", 404)
        body = await read_capped(request, MAX_BODY_BYTES)
        if body is None:
            return _error(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        delivery = Delivery(request.headers, body, project, self.secrets, self.clock())
        try:
            counts = await run_in_threadpool(self.handle, service, delivery)
        except Refused as exc:
            self.warn(service.name, "%s: a request refused: %s", service.name, exc)
            return _error(f"not from {service.name}: {exc}", 401)
        except Malformed as exc:
            return _error(str(exc), 400)
        except Unavailable as exc:
            log.error("%s: %s", service.name, exc)
            return _error("the webhook cannot be checked now; retry later", 503)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("%s: the database failed: %s", service.name, exc)
            return _error("the database is unavailable; retry later", 503)
        return JSONResponse({"ok": True, "events": sum(counts.values()), "outcomes": counts})

    def handle(self, service: Service, delivery: Delivery) -> dict[str, int]:
        """Check and apply one delivery (in a worker thread): the count of each outcome."""
        events = service.take(delivery)
        policy = delivery.project.config.bounces
        counts: dict[str, int] = {}
        for event in events:
            outcome = self.apply(event, policy, delivery.now, service.name)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def apply(self, event: Event, policy: Bounces, now: datetime, source: str) -> str:
        """Record one event; its outcome. Database errors raise."""
        if isinstance(event, Unsubscribe):
            return self._unsubscribe(event, now, source)
        with session_scope(self.engine) as session, short_lock_wait(session.connection()):
            applied = apply_report(session, event, self.signer, policy, now)
        if applied.suppressed:
            log.info(
                "%s: %s for message %s suppressed %s",
                source,
                applied.outcome,
                applied.message_id,
                applied.suppressed,
            )
        elif applied.outcome is Outcome.UNMATCHED:
            log.debug("%s: an event of no message of ours: %s", source, applied.why)
        return applied.outcome.value

    def _unsubscribe(self, event: Unsubscribe, now: datetime, source: str) -> str:
        message_id = self._message_of(event.tokens)
        if message_id is None:
            return Outcome.UNMATCHED.value
        try:
            unsubscribe(self.engine, message_id, now=now)
        except UnknownRecord:
            return Outcome.UNMATCHED.value
        log.info("%s: the recipient of message %s unsubscribed", source, message_id)
        return UNSUBSCRIBED

    def _message_of(self, tokens: tuple[str, ...]) -> int | None:
        for token in tokens:
            try:
                return self.signer.verify_bounce(token)
            except InvalidToken:
                continue
        return None


def _error(message: str, status: int) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)
