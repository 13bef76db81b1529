"""`GET /api/customers/{id}/credit`: a customer's store credit, for the shop's system.

`{id}` is the shop's own customer id. With `Authorization: Bearer
<LIFECYCLE_API_KEY>` it answers

    {"customer": "C-900", "balance": "123.45", "currency": "BDT",
     "entries": [{"at", "amount", "reason", "expires_at", "order_id"}, ...],
     "more": false}

with the balance now (credits not expired, less what was redeemed from them;
see `engine.intake.wallet`), the entries newest first, at most
500 of them (`engine.intake.wallet.MAX_ENTRIES`) (`more` says there are older ones), amounts as
decimal strings, times ISO 8601 UTC. An unknown customer is a 404, a wrong key
a 401, a database that does not answer a 503. The reads run in a worker
thread, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StoreError, UnknownRecord
from ..intake import statement
from ..project import Project

log = logging.getLogger(__name__)

KeyCheck = Callable[[Request], Response | None]  # None: the key is right; else the answer


def credit_routes(
    engine: Engine,
    get_project: Callable[[], Project],
    clock: Callable[[], datetime],
    check_key: KeyCheck,
) -> list[BaseRoute]:
    """The store-credit routes of the tracking app."""

    async def credit(request: Request) -> Response:
        denied = check_key(request)
        if denied is not None:
            return denied
        external_id = request.path_params["id"]
        try:
            currency = get_project().config.shop.currency
            answer = await run_in_threadpool(_answer, engine, external_id, clock(), currency)
        except UnknownRecord:
            return JSONResponse({"error": f"unknown customer {external_id!r}"}, status_code=404)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("credit: the database failed: %s", exc)
            return JSONResponse(
                {"error": "the database is unavailable; retry later"}, status_code=503
            )
        return JSONResponse(answer)

    # `path`: the shop's ids may hold a "/" (sent as %2F).
    return [Route("/api/customers/{id:path}/credit", credit, methods=["GET"])]


def _answer(engine: Engine, external_id: str, now: datetime, currency: str) -> dict[str, Any]:
    """The answer's body; UnknownRecord for an unknown customer."""
    with Session(engine) as session:
        wallet = statement(session, external_id, now)
    return {
        "customer": wallet.customer,
        "balance": f"{wallet.balance:.2f}",
        "currency": currency,
        "entries": [
            {
                "at": entry.at.isoformat(),
                "amount": f"{entry.amount:.2f}",
                "reason": entry.reason,
                "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
                "order_id": entry.order_id,
            }
            for entry in wallet.entries
        ],
        "more": wallet.more,
    }
