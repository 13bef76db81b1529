"""Detractors' comments, forwarded to the shop's support address by the daemon.

A survey answer from 0 to 6 with a comment is a customer who would not recommend
the shop and said why. `forward_detractors` sends each such answer once, as a
plain-text email to `shop.support_email` (Reply-To: the customer, so support can
answer straight away) with the score, the comment, the customer, the order and the
email they answered, and sets its `forwarded_at`. An answer is claimed (its
`forwarded_at` set where still empty) before it is sent, so two daemons never both
forward it; a send refused or not reached is released and tried again at the next
tick. An answer changed after it was forwarded is not forwarded again.

Without `shop.support_email` nothing is sent: the answers wait, and
`DetractorForwarder`, the daemon's step, says so once until an address is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import col

from ..project import Project
from ..store import Customer, Message, Order, SurveyAnswer
from .headers import base64_body, mailbox, message_id_for, unstructured, valid_address
from .mailer import Mailer, Outcome

log = logging.getLogger(__name__)

DETRACTOR_MAX = 6  # 0 to 6 would not recommend the shop (the net promoter score's detractors)
BATCH = 50  # answers forwarded per tick at most

_PENDING = (
    col(SurveyAnswer.score) <= DETRACTOR_MAX,
    col(SurveyAnswer.comment).is_not(None),
    col(SurveyAnswer.comment) != "",
    col(SurveyAnswer.forwarded_at).is_(None),
)


@dataclass(frozen=True)
class Detractor:
    """One answer to forward, with who gave it and about what."""

    id: int
    score: int
    comment: str
    at: datetime
    changed_at: datetime | None
    name: str
    email: str
    shop_id: str
    locale: str
    campaign: str | None
    message_id: int | None
    order: str | None


@dataclass
class Forwarded:
    """What one pass did: answers sent, failures (one line each), answers waiting for
    `shop.support_email`."""

    sent: int = 0
    failed: list[str] = field(default_factory=list)
    unaddressed: int = 0


async def forward_detractors(
    engine: Engine, project: Project, mailer: Mailer, now: datetime, *, limit: int = BATCH
) -> Forwarded:
    """Forward up to `limit` detractors' comments not yet forwarded to `shop.support_email`."""
    support = project.config.shop.support_email
    if not support:
        return Forwarded(unaddressed=await asyncio.to_thread(count_waiting, engine))
    done = Forwarded()
    sender = project.config.sending.sender.email
    for answer in await asyncio.to_thread(claim, engine, now, limit):
        data = forward_email(project, answer, support, now)
        result = await mailer.send(sender, support, data)
        if result.outcome in (Outcome.SENT, Outcome.IN_DOUBT):  # in doubt: it may be there
            done.sent += 1
            continue
        await asyncio.to_thread(release, engine, answer.id)
        done.failed.append(
            f"survey answer {answer.id}: forwarding to {support} failed, tried again at the "
            f"next tick: {result.describe()}"
        )
    return done


def count_waiting(engine: Engine) -> int:
    """Detractors' comments not yet forwarded."""
    with engine.connect() as connection:
        query = select(func.count()).select_from(SurveyAnswer).where(*_PENDING)
        return int(connection.execute(query).scalar_one())


def claim(engine: Engine, now: datetime, limit: int) -> list[Detractor]:
    """Mark up to `limit` waiting answers forwarded at `now` and return them; an answer
    another daemon claimed first is left to it."""
    with engine.begin() as connection:
        waiting = connection.execute(
            select(col(SurveyAnswer.id))
            .where(*_PENDING)
            .order_by(col(SurveyAnswer.id))
            .limit(limit)
        ).scalars()
        claimed = [
            answer_id
            for answer_id in list(waiting)
            if connection.execute(
                update(SurveyAnswer)
                .where(col(SurveyAnswer.id) == answer_id, col(SurveyAnswer.forwarded_at).is_(None))
                .values(forwarded_at=now)
            ).rowcount
            == 1
        ]
        if not claimed:
            return []
        rows: Sequence[Any] = connection.execute(
            select(
                col(SurveyAnswer.id),
                col(SurveyAnswer.score),
                col(SurveyAnswer.comment),
                col(SurveyAnswer.at),
                col(SurveyAnswer.changed_at),
                col(Customer.name),
                col(Customer.email),
                col(Customer.external_id),
                col(Customer.locale),
                col(Message.campaign),
                col(Message.id),
                col(Order.external_id),
            )
            .join(Customer, col(Customer.id) == col(SurveyAnswer.customer_id))
            .outerjoin(Message, col(Message.id) == col(SurveyAnswer.message_id))
            .outerjoin(Order, col(Order.id) == col(Message.order_id))
            .where(col(SurveyAnswer.id).in_(claimed))
            .order_by(col(SurveyAnswer.id))
        ).all()
        return [Detractor(*row) for row in rows]


def release(engine: Engine, answer_id: int) -> None:
    """Make an answer whose forward failed wait again."""
    with engine.begin() as connection:
        connection.execute(
            update(SurveyAnswer).where(col(SurveyAnswer.id) == answer_id).values(forwarded_at=None)
        )


def forward_email(project: Project, answer: Detractor, support: str, now: datetime) -> bytes:
    """The plain-text email to support about `answer`, as bytes for SMTP."""
    sending = project.config.sending
    reachable = valid_address(answer.email) is None
    subject = f"Survey: {answer.score} of 10, with a comment"
    headers = [
        mailbox("From", sending.sender.name, sending.sender.email),
        f"To: <{support}>",
        unstructured("Subject", subject + (f" from {answer.email}" if reachable else "")),
        f"Date: {format_datetime(now.astimezone(UTC))}",
        "Message-ID: "
        + message_id_for(f"survey-answer:{answer.id}", sending.sender.email.rsplit("@", 1)[1]),
        *([f"Reply-To: <{answer.email}>"] if reachable else []),
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
    ]
    text = forward_text(project, answer).replace("\n", "\r\n")
    return "\r\n".join(headers).encode("ascii") + b"\r\n\r\n" + base64_body(text)


def forward_text(project: Project, answer: Detractor) -> str:
    """The body: the score, the comment as written, who, about which order and email, when."""
    zone = ZoneInfo(project.config.shop.timezone)

    def when(at: datetime) -> str:
        return f"{at.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"

    answered = when(answer.at)
    if answer.changed_at is not None:
        answered += f" (changed {when(answer.changed_at)})"
    who = f"{answer.name} <{answer.email}>" if answer.name else f"<{answer.email}>"
    email = f"{answer.campaign}, message {answer.message_id}" if answer.campaign else "(none)"
    lines = [
        f"A customer who would not recommend {project.config.shop.name} left a comment "
        "on the survey.",
        "",
        f"Score:    {answer.score} of 10 (0 to {DETRACTOR_MAX}: would not recommend)",
        "Comment:",
        "",
        answer.comment,
        "",
        f"Customer: {who}, shop id {answer.shop_id}, language {answer.locale or 'not set'}",
        f"Order:    {answer.order or '(none)'}",
        f"Email:    {email}",
        f"Answered: {answered}",
        "",
        "Reply to this email to write to the customer.",
    ]
    return "\n".join(lines) + "\n"


class DetractorForwarder:
    """The daemon's step after each tick: `forward_detractors`, its outcome logged, and
    a missing `shop.support_email` said once (again only after one was set)."""

    def __init__(self) -> None:
        self._said_unaddressed = False

    async def __call__(
        self, engine: Engine, project: Project, mailer: Mailer, now: datetime
    ) -> Forwarded:
        try:
            done = await forward_detractors(engine, project, mailer, now)
        except Exception:  # one failing step never fails the tick
            log.exception("could not forward survey comments; the next tick tries again")
            return Forwarded()
        if done.sent:
            log.info(
                "survey: forwarded %d detractors' comments to %s", done.sent, _support(project)
            )
        for line in done.failed:
            log.error(line)
        if done.unaddressed and not self._said_unaddressed:
            log.warning(
                "survey: %d detractors' comments are not forwarded: shop.support_email is not "
                "set in config.yaml",
                done.unaddressed,
            )
        self._said_unaddressed = bool(done.unaddressed)
        return done


def _support(project: Project) -> str:
    return project.config.shop.support_email or ""
