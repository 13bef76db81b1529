"""Survey answers in the store, and what a customer sends checked before it gets there.

`record_answer` keeps one answer per survey message: the first is recorded, a
change within `WINDOW` of it replaces its score and comment (`changed_at`), a later
change is refused (`Outcome.TOO_LATE`) and the answer stays; the same answer sent
again changes nothing. `asked` reads, for the
page, the customer's locale and the answer so far. `parse_score` and
`clean_comment` turn the form's fields into a score from 0 to 10 and a comment of at
most 2,000 characters, or a `BadAnswer` that the page words for the customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from ..errors import DataError, UnknownRecord
from ..store import Customer, Message, SurveyAnswer, session_scope
from .lockwait import short_lock_wait
from .surveypages import MAX_COMMENT, WINDOW_DAYS, Asked

WINDOW = timedelta(days=WINDOW_DAYS)  # an answer may be changed this long after the first
_SCORE = re.compile(r"(?:10|[0-9])")


class BadAnswer(DataError):
    """What was sent is not an answer: `key` is the page's wording of why, with `values`."""

    def __init__(self, key: str, **values: Any):
        super().__init__(f"{key}: {values}")
        self.key = key
        self.values = values


class Outcome(StrEnum):
    RECORDED = "recorded"
    CHANGED = "changed"
    TOO_LATE = "too_late"


@dataclass(frozen=True)
class Answered:
    """What sending an answer did; `score` is the one on record afterwards."""

    outcome: Outcome
    score: int
    locale: str


def parse_score(values: list[str]) -> int:
    """The one score sent, 0 to 10 in ASCII digits; BadAnswer otherwise."""
    if not values:
        raise BadAnswer("no_score")
    if len(values) > 1:
        raise BadAnswer("many_scores", count=len(values))
    given = values[0].strip()
    if not _SCORE.fullmatch(given):
        raise BadAnswer("bad_score", given=repr(given[:40]))
    return int(given)


def clean_comment(values: list[str]) -> str | None:
    """The comment with line ends made `\\n` and control characters dropped; None when
    blank. BadAnswer when longer than 2,000 characters."""
    text = "\n".join(values).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(c for c in text if c in "\n\t" or not (c < " " or "\x7f" <= c < "\xa0"))
    text = text.strip()
    if len(text) > MAX_COMMENT:
        raise BadAnswer("long_comment", count=len(text))
    return text or None


def asked(engine: Engine, message_id: int, now: datetime) -> Asked:
    """The customer's locale and answer so far for `message_id`; UnknownRecord if none."""
    query = (
        select(col(Customer.locale), col(SurveyAnswer.score), col(SurveyAnswer.at))
        .select_from(Message)
        .join(Customer, col(Customer.id) == col(Message.customer_id))
        .outerjoin(SurveyAnswer, col(SurveyAnswer.message_id) == col(Message.id))
        .where(col(Message.id) == message_id)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        raise UnknownRecord(f"unknown message {message_id}")
    locale, score, at = row
    return Asked(locale or "", score, at is None or now - at <= WINDOW)


def record_answer(
    engine: Engine, message_id: int, score: int, comment: str | None, *, now: datetime
) -> Answered:
    """Record the answer to `message_id`, or change it within `WINDOW` of the first.

    Waits at most `lockwait.WRITE_WAIT_SECONDS` for a lock. Raises UnknownRecord
    when there is no such message.
    """
    try:
        return _record(engine, message_id, score, comment, now)
    except IntegrityError:  # answered at the same moment in another request: now a change
        return _record(engine, message_id, score, comment, now)


def _record(
    engine: Engine, message_id: int, score: int, comment: str | None, now: datetime
) -> Answered:
    with session_scope(engine) as session, short_lock_wait(session.connection()):
        row = session.execute(
            select(col(Message.customer_id), col(Customer.locale))
            .join(Customer, col(Customer.id) == col(Message.customer_id))
            .where(col(Message.id) == message_id)
        ).first()
        if row is None:
            raise UnknownRecord(f"unknown message {message_id}")
        customer_id, locale = row
        answer = session.execute(
            select(SurveyAnswer).where(col(SurveyAnswer.message_id) == message_id).with_for_update()
        ).scalar_one_or_none()
        if answer is None:
            session.add(
                SurveyAnswer(
                    customer_id=customer_id,
                    message_id=message_id,
                    score=score,
                    at=now,
                    comment=comment,
                )
            )
            session.flush()
            return Answered(Outcome.RECORDED, score, locale or "")
        if (answer.score, answer.comment) == (score, comment):  # the button pressed twice
            return Answered(Outcome.RECORDED, score, locale or "")
        if now - answer.at > WINDOW:
            return Answered(Outcome.TOO_LATE, answer.score, locale or "")
        answer.score, answer.comment, answer.changed_at = score, comment, now
        return Answered(Outcome.CHANGED, score, locale or "")
