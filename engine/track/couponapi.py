"""The shop's checkout asks about a coupon code, and redeems it with an order.

Both routes need `Authorization: Bearer <LIFECYCLE_API_KEY>` (401 without it).
`{code}` is the code as the customer typed it (spaces around it dropped, upper
case: see `engine.intake.coupons`).

- `GET /api/coupons/{code}` changes nothing and answers 200 with the coupon
  (`status` `valid`; `percent_off`, `amount_off` and `min_order` as decimal
  strings or null, `expires_at` ISO 8601 UTC or null, `customer` {id, email}
  or null: who it was made for), 404 for an unknown code (`status`
  `unknown`), 409 for a used one (`used`, with `used_order`), 410 for an
  expired one (`expired`, with `expires_at`). Every refusal has an `error`.
- A customer's referral code (`engine.intake.referrals`) answers the same way
  with `kind` `referral`: 200 `valid` with the friend's first-order discount
  (config.yaml's `referrals.friend_coupon`; all null without one),
  `first_order_only` true, `expires_at` and `customer` null, and `referrer`
  {id}. With `?email=` (the customer at the checkout) it is checked for them:
  409 `self_referral` (the referrer's own address), `not_first_order` (they
  have an order not cancelled) or `already_referred`; a bad address is a 422
  naming `email`. Redeeming a referral code is a 409 `referral`: the order
  carries it as `referral_code` instead.
- `POST /api/coupons/{code}/redeem` with {"order_id": the shop's order id,
  "total"?: "123.45", "customer_id"?: the shop's customer id} marks the coupon
  used by that order: 200 with the coupon, `status` `redeemed`, `order_id` and
  `redeemed_at`; the same body again for the same order (idempotent). A
  refusal changes nothing: 404, 409, 410 as above, or 422 naming the `field`
  that keeps the coupon off this order (`total` below `min_order` or missing
  while the coupon has one, `customer_id` of another customer). Without
  `total` or `customer_id`, the order's as the engine stored it, if it has it.
  A body that is not JSON is a 400, one larger than `MAX_BODY` bytes a 413, a
  missing, unknown or bad field a 422 naming it.

A database that does not answer is a 503. The reads and writes run in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StoreError
from ..intake import (
    CouponView,
    Outcome,
    Presentation,
    Redemption,
    ReferralCheck,
    check_coupon,
    check_referral_code,
    normalise_code,
    redeem_coupon,
)
from ..project import Project, Referrals, parse_email
from ..store import CENT, session_scope, to_money
from .bodies import read_capped

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes of a redeem request's body
MAX_ID = 64  # characters of an order, customer or coupon id
MAX_TOTAL = Decimal("10000000.00")  # as the events API: no order of this shop comes close
MAX_EMAIL = 254
KeyCheck = Callable[[Request], Response | None]  # None: the key is right; else the answer
_STATUS = {
    Outcome.REDEEMED: 200,
    Outcome.UNKNOWN: 404,
    Outcome.USED: 409,
    Outcome.EXPIRED: 410,
    Outcome.RELEASED: 409,
    Outcome.OTHER_CUSTOMER: 422,
    Outcome.TOTAL_MISSING: 422,
    Outcome.BELOW_MINIMUM: 422,
}
_FIELD = {
    Outcome.OTHER_CUSTOMER: "customer_id",
    Outcome.TOTAL_MISSING: "total",
    Outcome.BELOW_MINIMUM: "total",
}
_UNAVAILABLE = {"error": "the database is unavailable; retry later"}


def coupon_routes(
    engine: Engine,
    get_project: Callable[[], Project],
    clock: Callable[[], datetime],
    check_key: KeyCheck,
) -> list[BaseRoute]:
    """The checkout's coupon routes of the tracking app."""

    async def show(request: Request) -> Response:
        denied = check_key(request)
        if denied is not None:
            return denied
        code = normalise_code(request.path_params["code"])
        if not 0 < len(code) <= MAX_ID:
            return _refused(code, *_no_such_code(code), None)
        try:
            email = _email(request.query_params.get("email"))
            coupon, refusal, referral = await run_in_threadpool(
                _check, engine, code, email, clock()
            )
        except _BadBody as exc:
            return JSONResponse(exc.answer, status_code=exc.status)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("coupons: the database failed: %s", exc)
            return JSONResponse(_UNAVAILABLE, status_code=503)
        if referral is not None:
            return _referral_answer(referral, get_project().config.referrals)
        if refusal is not None:
            return _refused(code, *refusal, coupon)
        assert coupon is not None  # a coupon nothing refuses
        return JSONResponse({**_described(coupon), "status": "valid"})

    async def redeem(request: Request) -> Response:
        denied = check_key(request)
        if denied is not None:
            return denied
        body = await read_capped(request, MAX_BODY)
        if body is None:
            error = f"the body is larger than {MAX_BODY} bytes"
            return JSONResponse({"error": error}, status_code=413)
        code = normalise_code(request.path_params["code"])
        try:
            presentation = _presentation(code, body, clock())
            if not 0 < len(code) <= MAX_ID:
                return _refused(code, *_no_such_code(code), None)
            redemption, referral = await run_in_threadpool(_redeem, engine, presentation)
        except _BadBody as exc:
            return JSONResponse(exc.answer, status_code=exc.status)
        except (SQLAlchemyError, StoreError) as exc:
            log.error("coupons: the database failed: %s", exc)
            return JSONResponse(_UNAVAILABLE, status_code=503)
        if referral:
            return _not_redeemed(redemption.code)
        return _answer(redemption)

    return [
        Route("/api/coupons/{code}", show, methods=["GET"]),
        Route("/api/coupons/{code}/redeem", redeem, methods=["POST"]),
    ]


def _no_such_code(code: str) -> tuple[Outcome, str]:
    if not code:
        return Outcome.UNKNOWN, "no coupon has an empty code"
    return Outcome.UNKNOWN, f"no coupon has a code longer than {MAX_ID} characters"


def _check(
    engine: Engine, code: str, email: str | None, now: datetime
) -> tuple[CouponView | None, tuple[Outcome, str] | None, ReferralCheck | None]:
    """The coupon with the code and why it is refused; else the referral code, if it is one."""
    with Session(engine) as session:
        coupon, refusal = check_coupon(session, code, now)
        if coupon is not None:
            return coupon, refusal, None
        return coupon, refusal, check_referral_code(session, code, email)


def _redeem(engine: Engine, presentation: Presentation) -> tuple[Redemption, bool]:
    """Redeem in one transaction; a refusal writes nothing (the order may not exist yet).
    True beside an unknown code that is a referral code."""
    with session_scope(engine) as session:
        redemption = redeem_coupon(session, presentation, record_refusals=False)
        unknown = redemption.outcome is Outcome.UNKNOWN
        return redemption, unknown and check_referral_code(
            session, redemption.code, None
        ) is not None


def _email(given: str | None) -> str | None:
    """The `?email=` of a referral check, lower case; _BadBody naming `email` if bad."""
    if given is None:
        return None
    shown = given[:60]
    if len(given) > MAX_EMAIL:
        raise _BadBody("email", f"must be at most {MAX_EMAIL} characters, got {len(given)}")
    try:
        return parse_email(given).lower()
    except ValueError:
        raise _BadBody("email", f"expected an email address, got {shown!r}") from None


def _referral_answer(referral: ReferralCheck, program: Referrals) -> Response:
    """A referral code: valid with the friend's discount, or why it would not count."""
    body: dict[str, Any] = {"code": referral.code, "kind": "referral"}
    if referral.refusal is not None:
        body |= {"status": referral.refusal.value, "error": referral.reason}
        body["referrer"] = {"id": referral.referrer.external_id}
        return JSONResponse(body, status_code=409)
    friend = program.friend_coupon

    def cents(value: Decimal | None) -> str | None:  # as a stored coupon's: "10.00"
        return None if value is None else _amount(value.quantize(CENT))

    body |= {
        "percent_off": cents(friend.percent if friend else None),
        "amount_off": cents(friend.amount if friend else None),
        "min_order": cents(friend.min_order if friend else None),
        "expires_at": None,
        "customer": None,
        "first_order_only": True,
        "referrer": {"id": referral.referrer.external_id},
        "status": "valid",
    }
    return JSONResponse(body)


def _not_redeemed(code: str) -> Response:
    error = (
        "a referral code is not redeemed: send it with the order as referral_code "
        "(order.placed, or the orders CSV)"
    )
    body = {"code": code, "kind": "referral", "status": "referral", "error": error}
    return JSONResponse(body, status_code=409)


def _answer(redemption: Redemption) -> Response:
    coupon = redemption.coupon
    if not redemption.redeemed or coupon is None:
        return _refused(redemption.code, redemption.outcome, redemption.reason, coupon)
    return JSONResponse(
        {
            **_described(coupon),
            "status": Outcome.REDEEMED.value,
            "order_id": coupon.used_order,
            "redeemed_at": _iso(coupon.used_at),
        }
    )


def _refused(code: str, outcome: Outcome, reason: str, coupon: CouponView | None) -> Response:
    shown = code if len(code) <= MAX_ID else f"{code[:MAX_ID]}…"
    body: dict[str, Any] = {"code": shown, "status": outcome.value, "error": reason}
    if coupon is not None:
        body["code"] = coupon.code
        if outcome is Outcome.USED:
            body["used_order"] = coupon.used_order
        elif outcome is Outcome.EXPIRED:
            body["expires_at"] = _iso(coupon.expires_at)
        elif outcome in _FIELD:
            body |= {"field": _FIELD[outcome], "min_order": _amount(coupon.min_order)}
    return JSONResponse(body, status_code=_STATUS[outcome])


def _described(coupon: CouponView) -> dict[str, Any]:
    customer = None
    if coupon.customer_ref is not None:
        customer = {"id": coupon.customer_ref, "email": coupon.customer_email}
    return {
        "code": coupon.code,
        "percent_off": _amount(coupon.percent_off),
        "amount_off": _amount(coupon.amount_off),
        "min_order": _amount(coupon.min_order),
        "expires_at": _iso(coupon.expires_at),
        "customer": customer,
    }


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _BadBody(Exception):
    """The request's body is not a redeem request: the answer says where and what."""

    def __init__(self, field: str, error: str, status: int = 422):
        super().__init__(error)
        self.status = status
        self.answer = {"field": field, "error": error} if field else {"error": error}


def _presentation(code: str, body: bytes, now: datetime) -> Presentation:
    """The redeem request's body, checked; raises _BadBody naming the field."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise _BadBody("", f"the body is not valid JSON: {exc}", 400) from exc
    if not isinstance(data, dict):
        raise _BadBody("", 'expected a JSON object like {"order_id": "O-1001"}')
    for name in data:
        if name not in ("order_id", "total", "customer_id"):
            raise _BadBody(str(name)[:100], "unknown field; expected order_id, total, customer_id")
    order_id = _id(data, "order_id")
    if order_id is None:
        raise _BadBody("order_id", "required field is missing")
    total = None if data.get("total") is None else _total(data["total"])
    return Presentation(code, order_id, now, total, _id(data, "customer_id"), "checkout api")


def _total(value: Any) -> Decimal:
    number = isinstance(value, (int, Decimal)) and not isinstance(value, bool)
    shown = (str(value) if number else json.dumps(value, default=str))[:60]
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            raise TypeError(value)
        amount = to_money(value)
    except (TypeError, ValueError, ArithmeticError):
        raise _BadBody("total", f"expected an amount like 120.50, got {shown}") from None
    if amount < 0:
        raise _BadBody("total", f"must not be negative, got {shown}")
    if amount > MAX_TOTAL:
        raise _BadBody("total", f"must be at most {MAX_TOTAL}, got {shown}")
    if amount != amount.quantize(CENT):
        raise _BadBody("total", f"has more than two decimal places, got {shown}")
    return amount.quantize(CENT)


def _id(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_ID:
        raise _BadBody(field, f"expected a text of 1 to {MAX_ID} characters, got {value!r}")
    if not value.isprintable():
        raise _BadBody(field, f"must be one line of printable text, got {value!r}")
    return value.strip()
