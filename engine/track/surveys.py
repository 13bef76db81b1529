"""Survey answers: the page a survey link opens, and the answer a customer sends from it.

- `GET /s/<token>?score=N` shows the page (`surveypages`), in the language of the
  customer the message went to, with N ticked, the 0–10 choice, an optional comment
  and a button. It records nothing: mail providers' link scanners fetch every link
  of an email, all eleven scores included, and a fetch is not an answer. It waits at
  most `PAGE_WAIT` seconds for the customer's language, then asks in the browser's.
- `POST /s/<token>` (form: `score`, `comment` up to 2,000 characters) is the
  customer pressing the button: it records the answer, or, within 7 days of the
  first answer, replaces it (`changed_at`); later, the change is refused (409) and
  the answer stays. The token in the path is the capability: it names the message.

A token that is forged, altered or made for another purpose (a click's) is a 404
and records nothing; so is one for a message that does not exist. A score that is
not a whole number from 0 to 10 is a 422 with the page saying what came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ..deliver import InvalidToken, Purpose, Signer
from ..errors import StoreError, UnknownRecord
from ..project import Project
from . import surveypages as pages
from .surveyanswers import BadAnswer, Outcome, asked, clean_comment, parse_score, record_answer

PAGE_WAIT = 2.0  # seconds the page waits for the customer's language
MAX_FORM_BYTES = 32_768  # 2,000 Bengali characters percent-encoded are 18,000 bytes
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


@dataclass
class SurveyPages:
    """The two survey handlers and what they share."""

    engine: Engine
    get_project: Callable[[], Project]
    signer: Signer
    clock: Callable[[], datetime]

    def _message(self, request: Request) -> int | None:
        try:
            return self.signer.verify(request.path_params["token"], Purpose.SURVEY).message_id
        except InvalidToken:
            return None

    async def page(self, request: Request) -> Response:
        message_id = self._message(request)
        if message_id is None:
            return _not_found()
        try:
            person = await self._asked(request, message_id)
        except UnknownRecord:
            return _not_found()
        config = self.get_project().config
        if person.answered is not None and not person.changeable:
            page = pages.too_late_page(person.locale, person.answered, config.shop.support_email)
            return _html(page)
        given = request.query_params.getlist("score")
        try:
            chosen = parse_score(given) if given else None
        except BadAnswer as exc:
            trouble = pages.problem(person.locale, exc.key, **exc.values)
            page = pages.ask_page(person, config.shop.name, None, trouble=trouble)
            return _html(page, 422)
        return _html(pages.ask_page(person, config.shop.name, chosen))

    async def answer(self, request: Request) -> Response:
        message_id = self._message(request)
        if message_id is None:
            return _not_found()
        shop = self.get_project().config.shop
        form = Form()
        try:
            form = await read_form(request)
            score, comment = parse_score(form.scores), clean_comment(form.comments)
        except BadAnswer as exc:
            return await self._refused(request, message_id, exc, form)
        try:
            done = await run_in_threadpool(
                record_answer, self.engine, message_id, score, comment, now=self.clock()
            )
        except UnknownRecord:
            return _not_found()
        except (SQLAlchemyError, StoreError):
            return _html(pages.busy_page(_browser_language(request)), 503)
        locale = done.locale or shop.locale
        if done.outcome is Outcome.TOO_LATE:
            return _html(pages.too_late_page(locale, done.score, shop.support_email), 409)
        changed = done.outcome is Outcome.CHANGED
        return _html(pages.done_page(locale, shop.name, done.score, changed=changed))

    async def _refused(
        self, request: Request, message_id: int, exc: BadAnswer, form: Form
    ) -> Response:
        """The page again, saying what was wrong, with what was sent (413 or 422)."""
        try:
            person = await self._asked(request, message_id)
        except UnknownRecord:
            return _not_found()
        trouble = pages.problem(person.locale, exc.key, **exc.values)
        comment = "\n".join(form.comments)[: pages.MAX_COMMENT * 2]
        shop = self.get_project().config.shop.name
        page = pages.ask_page(person, shop, _chosen(form.scores), comment=comment, trouble=trouble)
        return _html(page, 413 if exc.key == "big_form" else 422)

    async def _asked(self, request: Request, message_id: int) -> pages.Asked:
        """The customer's language and answer, or after `PAGE_WAIT` seconds (or a database
        error) the browser's language and no answer. Raises UnknownRecord."""
        lookup = asyncio.ensure_future(
            run_in_threadpool(asked, self.engine, message_id, self.clock())
        )
        lookup.add_done_callback(_retrieved)  # it may end after the page was answered
        try:
            person = await asyncio.wait_for(asyncio.shield(lookup), PAGE_WAIT)
        except (SQLAlchemyError, StoreError, TimeoutError):
            return pages.Asked(_browser_language(request))
        if not person.locale:
            return replace(person, locale=self.get_project().config.shop.locale)
        return person


def routes(
    engine: Engine,
    get_project: Callable[[], Project],
    signer: Signer,
    clock: Callable[[], datetime],
) -> list[BaseRoute]:
    """`GET /s/<token>` (the page) and `POST /s/<token>` (the answer)."""
    survey = SurveyPages(engine, get_project, signer, clock)
    return [
        Route("/s/{token}", survey.page, methods=["GET"]),
        Route("/s/{token}", survey.answer, methods=["POST"]),
    ]


@dataclass(frozen=True)
class Form:
    """The scores and comments a form sent (normally one of each)."""

    scores: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


async def read_form(request: Request) -> Form:
    """The fields of a form-encoded body; BadAnswer for a body over `MAX_FORM_BYTES` or
    one that is not form-encoded UTF-8."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise BadAnswer("big_form")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise BadAnswer("big_form")
        chunks.append(chunk)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise BadAnswer("bad_form")
    try:
        body = b"".join(chunks).decode("ascii")
        fields = parse_qsl(body, keep_blank_values=True, errors="strict")
    except ValueError as exc:  # UnicodeDecodeError is one
        raise BadAnswer("bad_form") from exc
    return Form(
        [value for name, value in fields if name == "score"],
        [value for name, value in fields if name == "comment"],
    )


def _chosen(scores: list[str]) -> int | None:
    """The score to tick again on a refused form: the one sent, if it is one."""
    try:
        return parse_score(scores[:1]) if scores else None
    except BadAnswer:
        return None


def _browser_language(request: Request) -> str:
    """`bn` when the browser prefers Bengali, else `en` (when the customer is not known)."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return "bn" if first.startswith("bn") else "en"


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _html(page: str, status: int = 200) -> Response:
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def _not_found() -> Response:
    return PlainTextResponse("not found\n", status_code=404)
