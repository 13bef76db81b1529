"""`GET /api/customers/{id}/tier`: a customer's loyalty tier, for the shop's checkout.

`{id}` is the shop's own customer id. With `Authorization: Bearer
<LIFECYCLE_API_KEY>` it answers

    {"customer": "C-900", "program": {"en": "Nakshi Club", ...},
     "tier": "gold", "name": {"en": "Gold", "bn": "সোনালি"}, "since": "…",
     "discount": "5.00",
     "history": [{"at", "from", "to", "direction"}, ...]}

`tier` is None (and `name`, `since`, `discount` too) for a customer in no tier;
`discount` is the tier's standing discount in percent, a decimal string, for the
checkout to take off every order. The history is the latest `HISTORY` moves,
newest first. A tier id no longer in tiers.yaml answers as it is stored, with
`name` None. An unknown customer is a 404, a wrong key a 401, a database that
does not answer a 503. The reads run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StoreError, UnknownRecord
from ..project import Project
from ..store import Customer, TierChange

log = logging.getLogger(__name__)

KeyCheck = Callable[[Request], Response | None]  # None: the key is right; else the answer

# The most tier moves an answer lists.
HISTORY = 20


def tier_routes(
    engine: Engine, get_project: Callable[[], Project], check_key: KeyCheck
) -> list[BaseRoute]:
    """The loyalty-tier route of the tracking app."""

    async def tier(request: Request) -> Response:
        denied = check_key(request)
        if denied is not None:
            return denied
        external_id = request.path_params["id"]
        try:
            answer = await run_in_threadpool(_answer, engine, get_project(), external_id)
        except UnknownRecord:
            return JSONResponse({"error": f"unknown customer {external_id!r}"}, status_code=404)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("tier: the database failed: %s", exc)
            return JSONResponse(
                {"error": "the database is unavailable; retry later"}, status_code=503
            )
        return JSONResponse(answer)

    # `path`: the shop's ids may hold a "/" (sent as %2F).
    return [Route("/api/customers/{id:path}/tier", tier, methods=["GET"])]


def _answer(engine: Engine, project: Project, external_id: str) -> dict[str, Any]:
    """The answer's body; UnknownRecord for an unknown customer."""
    with Session(engine) as session:
        row = session.execute(
            select(col(Customer.id), col(Customer.tier), col(Customer.tier_since)).where(
                col(Customer.external_id) == external_id
            )
        ).first()
        if row is None:
            raise UnknownRecord(f"unknown customer {external_id!r}")
        moves = session.execute(
            select(TierChange)
            .where(col(TierChange.customer_id) == row.id)
            .order_by(col(TierChange.at).desc(), col(TierChange.id).desc())
            .limit(HISTORY)
        ).scalars()
        history = [
            {
                "at": move.at.isoformat(),
                "from": move.from_tier,
                "to": move.to_tier,
                "direction": move.direction,
            }
            for move in moves
        ]
    tiers = project.tiers
    tier = tiers.get(row.tier) if tiers is not None else None
    return {
        "customer": external_id,
        "program": _texts(tiers.program) if tiers is not None else None,
        "tier": row.tier,
        "name": _texts(tier.name) if tier is not None else None,
        "since": row.tier_since.isoformat() if row.tier and row.tier_since else None,
        "discount": f"{tier.discount:.2f}" if tier is not None and tier.discount else None,
        "history": history,
    }


def _texts(text: str | dict[str, str]) -> dict[str, str]:
    return dict(text) if isinstance(text, dict) else {"en": text}
