"""The demo's visitors: a few customers answer their survey email through the real pages.

`lifecycle run --demo` calls a `SurveyVisitor` after each tick's sends. It reads the
emails the tick left in the outbox (MIME, as a mail program does), takes from each
survey email the link of a score (`…/s/<token>?score=N`, the email's own signed
link), fetches the page from the running tracking server over HTTP and sends its form
as a person pressing the button would: a detractor with a comment first (so the
daemon forwards it to the shop's support address), then a promoter and a passive,
`len(VISITS)` answers in all per run. Each recorded answer is one log line; then the
net promoter score and how many answers it counts.

It only reads the database (whose email it was, and whether the answer is there):
the answers are written by the tracking server, like a customer's. Only links to
this machine (loopback) are followed, each request within `TIMEOUT` seconds, and
never more than `MAX_PAGE_BYTES` of a page read. Emails already in the outbox when
the daemon started are not answered again.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from ..project import Project
from ..store import Customer, Message, Order, SurveyAnswer

log = logging.getLogger("engine.demo")

TIMEOUT = 5.0  # seconds for each request
MAX_PAGE_BYTES = 200_000
# A survey email's links to the page with a score chosen, in its HTML part.
_SCORE_LINK = re.compile(
    r"""href=["'](https?://[^"'\s]+/s/[A-Za-z0-9._~-]+\?score=(10|[0-9]))["']"""
)


@dataclass(frozen=True)
class Visit:
    """One customer's answer: the score they pick and what they write, per language."""

    score: int
    comment: dict[str, str] = field(default_factory=dict)


VISITS = (
    Visit(
        3,
        {
            "en": "The parcel came four days late and the box was crushed.",
            "bn": "পার্সেল চার দিন দেরিতে এসেছে, বাক্সটাও দুমড়ানো ছিল।",
        },
    ),
    Visit(10),
    Visit(8),
)


@dataclass(frozen=True)
class SurveyEmail:
    """A survey email in the outbox: its file, its Message-ID and its link per score."""

    path: Path
    message_id: str
    links: dict[int, str]


def read_survey_email(path: Path) -> SurveyEmail | None:
    """The survey links of an .eml file, as a mail program decodes it; None when it has
    none (another campaign's email) or cannot be read."""
    try:
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    except OSError:
        return None
    if not isinstance(parsed, EmailMessage):
        return None
    html = parsed.get_body(("html",))
    if html is None:
        return None
    links = {int(score): link.replace("&amp;", "&") for link, score in _SCORE_LINK.findall(str(html.get_content()))}  # fmt: skip
    if not links:
        return None
    return SurveyEmail(path, str(parsed.get("Message-ID", "")).strip(), links)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SurveyForm(HTMLParser):
    """What a person sees on the page: its language, the form, its scores, the comment box."""

    def __init__(self) -> None:
        super().__init__()
        self.lang = "en"
        self.post_form = False
        self.scores: set[str] = set()
        self.ticked: str | None = None
        self.comment_box = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html" and found.get("lang"):
            self.lang = str(found["lang"])
        elif tag == "form" and (found.get("method") or "").lower() == "post":
            self.post_form = True
        elif tag == "input" and found.get("name") == "score" and found.get("value"):
            self.scores.add(str(found["value"]))
            if "checked" in found:
                self.ticked = found["value"]
        elif tag == "textarea" and found.get("name") == "comment":
            self.comment_box = True


class PageTrouble(Exception):
    """The page or the answer did not come as a person would see it."""


def _request(opener: Any, request: urllib.request.Request) -> tuple[int, str]:
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, response.read(MAX_PAGE_BYTES).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(MAX_PAGE_BYTES).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise PageTrouble(f"{request.get_method()} {_shown(request.full_url)}: {exc}") from exc


def answer_survey(link: str, visit: Visit) -> str:
    """GET the page of `link`, then POST its form with the visit's score and comment.
    Returns the language of the page; PageTrouble when either does not go as it should."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    status, page = _request(opener, urllib.request.Request(link))
    if status != 200:
        raise PageTrouble(f"GET {_shown(link)} answered {status}")
    form = _SurveyForm()
    form.feed(page)
    chosen = str(visit.score)
    if not (form.post_form and chosen in form.scores and form.comment_box):
        raise PageTrouble(f"GET {_shown(link)}: the page has no survey form to fill in")
    if form.ticked != chosen:
        raise PageTrouble(f"GET {_shown(link)}: the page did not tick {chosen}, the score clicked")
    comment = visit.comment.get(form.lang.split("-")[0].split("_")[0], "")
    body = urlencode({"score": chosen, "comment": comment}).encode("ascii")
    sent = urllib.request.Request(link, data=body, method="POST")
    sent.add_header("Content-Type", "application/x-www-form-urlencoded")
    status, _ = _request(opener, sent)
    if status != 200:
        raise PageTrouble(f"POST {_shown(link)} answered {status}")
    return form.lang


def _shown(link: str) -> str:
    """A link without most of its token (it is the customer's capability)."""
    parts = urlsplit(link)
    token = parts.path.rsplit("/", 1)[-1]
    return f"{parts.scheme}://{parts.netloc}/s/{token[:8]}…"


@dataclass
class SurveyVisitor:
    """Answers up to `len(VISITS)` survey emails that land in `outbox` after it was made."""

    outbox: Path
    started: float = field(default_factory=time.time)
    visits: tuple[Visit, ...] = VISITS
    done: int = 0
    seen: set[Path] = field(default_factory=set)
    said_remote: bool = False

    async def __call__(self, engine: Engine, project: Project, now: datetime) -> None:
        """After a tick: answer the new survey emails, while visits are left. Never raises."""
        if self.done >= len(self.visits):
            return
        try:
            await asyncio.to_thread(self.visit, engine)
        except Exception:  # the demo's visitor never stops the daemon
            log.exception("survey page: answering the demo's survey emails failed")

    def visit(self, engine: Engine) -> None:
        answered = 0
        for survey in self._new_survey_emails():
            if self.done >= len(self.visits):
                break
            if self._answer(engine, survey, self.visits[self.done]):
                self.done += 1
                answered += 1
        if answered:
            score, count = net_promoter_score(engine)
            log.info(
                "survey page: NPS %s from %d answers (%d of them just now, through the page)",
                score,
                count,
                answered,
            )

    def _new_survey_emails(self) -> list[SurveyEmail]:
        found = []
        for path in sorted(self.outbox.glob("*.eml")):
            if path in self.seen:
                continue
            self.seen.add(path)
            try:
                if path.stat().st_mtime < self.started:
                    continue  # from an earlier run
            except OSError:
                continue
            survey = read_survey_email(path)
            if survey is not None:
                found.append(survey)
        return found

    def _answer(self, engine: Engine, survey: SurveyEmail, visit: Visit) -> bool:
        link = survey.links.get(visit.score)
        if link is None:
            return False
        if not is_loopback(link):
            if not self.said_remote:
                log.info(
                    "survey page: the survey links point at %s, not this machine: none is answered",
                    urlsplit(link).netloc,
                )
                self.said_remote = True
            return False
        try:
            lang = answer_survey(link, visit)
        except PageTrouble as exc:
            log.warning("survey page: the email %s was not answered: %s", survey.path.name, exc)
            return False
        whose = _recorded(engine, survey.message_id, visit.score)
        if whose is None:
            log.warning(
                "survey page: the email %s was answered %d, but no answer is recorded for it",
                survey.path.name,
                visit.score,
            )
            return False
        with_comment = " with a comment" if visit.comment else ""
        log.info(
            "survey page: customer %s answered about order %s: %d%s, in %s (POST %s, from %s)",
            whose[0],
            whose[1],
            visit.score,
            with_comment,
            "Bengali" if lang.startswith("bn") else "English",
            _shown(link),
            survey.path.name,
        )
        return True


def _recorded(engine: Engine, message_id: str, score: int) -> tuple[str, str] | None:
    """(customer, order) of the survey message sent with `message_id` when its answer on
    record has `score`, else None."""
    query = (
        select(col(Customer.external_id), col(Order.external_id))
        .select_from(Message)
        .join(Customer, col(Customer.id) == col(Message.customer_id))
        .join(SurveyAnswer, col(SurveyAnswer.message_id) == col(Message.id))
        .outerjoin(Order, col(Order.id) == col(Message.order_id))
        .where(col(Message.message_id) == message_id, col(SurveyAnswer.score) == score)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else (str(row[0]), str(row[1] or "-"))


def net_promoter_score(engine: Engine) -> tuple[int | None, int]:
    """(promoters − detractors) per hundred answers, of every answer; and how many."""
    score = col(SurveyAnswer.score)
    query = select(
        func.count(),
        func.coalesce(func.sum(case((score >= 9, 1), else_=0)), 0),
        func.coalesce(func.sum(case((score <= 6, 1), else_=0)), 0),
    ).select_from(SurveyAnswer)
    with engine.connect() as conn:
        count, promoters, detractors = (int(v) for v in conn.execute(query).one())
    if not count:
        return None, 0
    return round(100 * (promoters - detractors) / count), count
