"""Survey pages over real HTTP: a scanner's fetch of every link records nothing, the button
records the answer, a change within 7 days replaces it and a later one is refused, a forged
or foreign token is a 404 and a bad score a 422 with nothing recorded, and the page speaks
the customer's language. The answer then counts in `lifecycle report --json`'s NPS."""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.cli import main
from engine.deliver.tokens import Signer
from engine.intake.shop import upsert_customer
from engine.project.loader import Project, Secrets, load_project
from engine.store.db import session_scope
from engine.store.models import Message, MessageStatus, SurveyAnswer
from engine.track.app import create_app
from tests.conftest import BOTH_DIALECTS
from tests.tracking_server import serving

SECRET = "survey-secret-0123456789abcdef"
SIGNER = Signer(SECRET)
FORM = {"content-type": "application/x-www-form-urlencoded"}
# What mail providers' link scanners send when they fetch every link of an email.
SCANNERS = [
    "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36 (Microsoft Defender for Office 365 Safe Links)",
    "Mimecast-URL-Protect/1.0",
    "python-requests/2.31.0",
]


@dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Shop:
    """The tracking app served over loopback, its store and its clock."""

    url: str
    db: Engine
    clock: Clock
    made: list[int] = field(default_factory=list)

    def message(self, email: str = "rahim@example.com", locale: str = "en") -> int:
        """A survey email sent to the customer with `email` (made once) an hour ago."""
        now = self.clock.at
        with session_scope(self.db) as session:
            customer = upsert_customer(
                session, external_id=email.split("@")[0], email=email, name="Rahim",
                locale=locale, marketing_consent=True, now=now - timedelta(days=9),
            )  # fmt: skip
            message = Message(
                dedupe_key=f"survey_after_delivery:{customer.id}:{len(self.made)}",
                campaign="survey_after_delivery",
                customer_id=customer.id,
                occurrence=f"order-{len(self.made)}",
                status=MessageStatus.SENT,
                created_at=now - timedelta(hours=2),
                send_after=now - timedelta(hours=2),
                sent_at=now - timedelta(hours=1),
            )
            session.add(message)
            session.flush()
            self.made.append(int(message.id))
            return int(message.id)

    def answers(self) -> list[SurveyAnswer]:
        with Session(self.db) as session:
            return list(session.execute(select(SurveyAnswer).order_by(SurveyAnswer.id)).scalars())


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def shop(db: Engine, project: Project, now: datetime) -> Iterator[Shop]:
    clock = Clock(now)
    app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=clock)
    with serving(app) as url:
        yield Shop(url, db, clock)


def page(message_id: int, score: int | str | None = None) -> str:
    token = SIGNER.survey_token(message_id)
    return f"/s/{token}" if score is None else f"/s/{token}?score={score}"


def post(shop: Shop, path: str, body: str, **headers: str) -> httpx.Response:
    return httpx.post(shop.url + path, content=body, headers=FORM | headers, timeout=10)


def get(shop: Shop, path: str, **headers: str) -> httpx.Response:
    return httpx.get(shop.url + path, headers=headers, timeout=10)


def said(response: httpx.Response) -> str:
    """The page's text without its tags."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text)).strip())


# ---------------------------------------------------------------- a scanner, then a person


@BOTH_DIALECTS
def test_a_scanner_fetching_every_link_records_nothing(shop: Shop) -> None:
    message_id = shop.message()
    links = [page(message_id, n) for n in range(11)] + [page(message_id)]
    for agent in SCANNERS:
        for link in links:
            for method in ("HEAD", "GET"):
                response = httpx.request(
                    method, shop.url + link, headers={"user-agent": agent}, timeout=10
                )
                assert response.status_code == 200, (method, link, response.text)
    assert shop.answers() == []
    shown = get(shop, page(message_id, 7))
    assert '<input type="radio" name="score" value="7" checked>' in shown.text
    assert shown.text.count(" checked>") == 1
    assert '<form method="post">' in shown.text
    assert "You chose 7. Nothing is saved until you press “Send my answer”." in said(shown)
    assert shown.headers["cache-control"] == "no-store"
    assert shown.headers["referrer-policy"] == "no-referrer"


@BOTH_DIALECTS
def test_pressing_the_button_records_the_answer(shop: Shop, now: datetime) -> None:
    message_id = shop.message()
    response = post(shop, page(message_id, 9), "score=9&comment=Lovely+tea%2C+slow+courier")
    assert response.status_code == 200
    assert "Your answer is saved: 9 out of 10." in said(response)
    [answer] = shop.answers()
    assert (answer.message_id, answer.score, answer.comment) == (
        message_id, 9, "Lovely tea, slow courier",
    )  # fmt: skip
    assert (answer.at, answer.changed_at, answer.forwarded_at) == (now, None, None)
    again = get(shop, page(message_id, 9))
    assert "Your answer so far is 9." in said(again)
    shop.clock.at = now + timedelta(minutes=1)  # the button pressed twice: nothing changes
    twice = post(shop, page(message_id, 9), "score=9&comment=Lovely+tea%2C+slow+courier")
    assert (twice.status_code, "Your answer is saved: 9 out of 10." in said(twice)) == (200, True)
    assert [(a.score, a.changed_at) for a in shop.answers()] == [(9, None)]


@BOTH_DIALECTS
@pytest.mark.parametrize(
    ("later", "status", "score_kept"),
    [
        pytest.param(timedelta(days=7), 200, 3, id="on-the-seventh-day"),
        pytest.param(timedelta(days=7, seconds=1), 409, 8, id="a-second-too-late"),
    ],
)
def test_a_change_within_7_days_replaces_the_answer_and_a_later_one_is_refused(
    shop: Shop, now: datetime, later: timedelta, status: int, score_kept: int
) -> None:
    message_id = shop.message()
    assert post(shop, page(message_id), "score=9&comment=").status_code == 200
    shop.clock.at = now + timedelta(days=2)
    assert post(shop, page(message_id), "score=8").status_code == 200
    shop.clock.at = now + later
    response = post(shop, page(message_id), "score=3&comment=Broken+on+arrival")
    assert response.status_code == status
    [answer] = shop.answers()
    assert (answer.score, answer.at) == (score_kept, now)
    if status == 200:
        assert "Your answer is changed: 3 out of 10." in said(response)
        assert (answer.comment, answer.changed_at) == ("Broken on arrival", now + later)
    else:
        assert said(response).startswith("This answer can no longer be changed")
        assert "Your answer, 8 out of 10, was given more than 7 days ago" in said(response)
        assert "please write to help@nakshighor.example" in said(response)
        assert answer.changed_at == now + timedelta(days=2)
        closed = get(shop, page(message_id, 3))
        assert closed.status_code == 200 and "<form" not in closed.text


@BOTH_DIALECTS
def test_two_presses_at_once_keep_one_answer(shop: Shop) -> None:
    message_id = shop.message()
    statuses: list[int] = []

    def press(score: int) -> None:
        statuses.append(post(shop, page(message_id), f"score={score}").status_code)

    threads = [threading.Thread(target=press, args=(n,)) for n in (4, 5, 6, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert statuses == [200] * 4
    [answer] = shop.answers()
    assert answer.score in (4, 5, 6, 7)


# ---------------------------------------------------------------- bad tokens, bad input


def forged_tokens(message_id: int) -> dict[str, str]:
    token = SIGNER.survey_token(message_id)
    body, signature = token.split(".")
    return {
        "another secret": Signer("another-secret-0123456789").survey_token(message_id),
        "altered": f"{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
        "a click token": SIGNER.click_token(message_id, "https://nakshighor.example/"),
        "an unsubscribe token": SIGNER.unsubscribe_token(message_id),
        "no such message": SIGNER.survey_token(message_id + 1000),
        "garbage": "not-a-token",
    }


@BOTH_DIALECTS
@pytest.mark.parametrize(
    "kind",
    ["another secret", "altered", "a click token", "an unsubscribe token", "no such message",
     "garbage"],
)  # fmt: skip
def test_a_forged_or_foreign_token_is_404_and_records_nothing(shop: Shop, kind: str) -> None:
    message_id = shop.message()
    token = forged_tokens(message_id)[kind]
    assert get(shop, f"/s/{token}?score=9").status_code == 404
    for body in ("score=9", "score=11"):
        response = post(shop, f"/s/{token}", body)
        assert (response.status_code, response.text) == (404, "not found\n")
    assert shop.answers() == []


@BOTH_DIALECTS
@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("score=11", "The score must be a whole number from 0 to 10; we got: '11'.",
                     id="eleven"),
        pytest.param("score=x", "The score must be a whole number from 0 to 10; we got: 'x'.",
                     id="x"),
        pytest.param("score=-1", "The score must be a whole number from 0 to 10; we got: '-1'.",
                     id="minus-one"),
        pytest.param("score=%E0%A7%AF", "The score must be a whole number from 0 to 10; "
                     "we got: '৯'.", id="bengali-digit"),
        pytest.param("score=", "The score must be a whole number from 0 to 10; we got: ''.",
                     id="empty"),
        pytest.param("comment=hello", "Please choose a score from 0 to 10.", id="no-score"),
        pytest.param("score=3&score=4", "Please send one score; we got 2.", id="two-scores"),
        pytest.param("score=%FF", "The form could not be read. Please send it again from this "
                     "page.", id="not-utf-8"),
    ],
)  # fmt: skip
def test_a_bad_score_is_422_saying_what_came_and_records_nothing(
    shop: Shop, body: str, message: str
) -> None:
    message_id = shop.message()
    response = post(shop, page(message_id), body)
    assert response.status_code == 422
    assert '<p class="problem" role="alert">' in response.text
    assert message in said(response)
    assert '<form method="post">' in response.text  # the customer can try again
    assert shop.answers() == []


@BOTH_DIALECTS
def test_a_bad_score_in_the_link_is_422_and_a_long_comment_is_refused(shop: Shop) -> None:
    message_id = shop.message()
    for score in ("11", "x"):
        response = get(shop, page(message_id, score))
        assert response.status_code == 422
        assert f"we got: '{score}'." in said(response)
        assert " checked>" not in response.text
    long = "<b>" + "x" * 1998
    response = post(shop, page(message_id), f"score=2&comment={long}")
    assert response.status_code == 422
    assert "Your comment is 2001 characters long; at most 2000 fit." in said(response)
    assert "&lt;b&gt;xxx" in response.text and "<b>xxx" not in response.text  # shown, escaped
    assert '<input type="radio" name="score" value="2" checked>' in response.text
    assert shop.answers() == []
    bengali = "ভালো" * 500  # 2,000 characters, 18,000 bytes percent-encoded
    body = httpx.QueryParams({"score": "2", "comment": bengali})
    assert post(shop, page(message_id), str(body)).status_code == 200
    [answer] = shop.answers()
    assert answer.comment == bengali


@BOTH_DIALECTS
def test_a_bengali_customer_gets_the_page_in_bengali(shop: Shop) -> None:
    message_id = shop.message("rahima@example.com", locale="bn_BD")
    shown = get(shop, page(message_id, 10))
    assert '<html lang="bn">' in shown.text
    assert "বন্ধু বা আত্মীয়কে Nakshi Ghor-এর কথা বলার সম্ভাবনা কতটা?" in said(shown)
    assert "আপনি ১০ বেছে নিয়েছেন। “উত্তর পাঠান” চাপার আগে কিছুই জমা হয় না।" in said(shown)
    assert '<input type="radio" name="score" value="10" checked><span>১০</span>' in shown.text
    done = post(shop, page(message_id), "score=10&comment=%E0%A6%A7%E0%A6%A8%E0%A7%8D%E0%A6%AF")
    assert done.status_code == 200
    assert "আপনার উত্তর জমা হয়েছে: ১০-এর মধ্যে ১০।" in said(done)
    refused = post(shop, page(message_id), "score=x")
    assert "স্কোর ০ থেকে ১০-এর মধ্যে একটি পূর্ণ সংখ্যা হতে হবে; পেয়েছি: 'x'।" in said(refused)
    assert [a.comment for a in shop.answers()] == ["ধন্য"]


# ---------------------------------------------------------------- the answer in the report


def report_json(db: Engine, config: Path, at: datetime) -> dict:
    url = db.url.render_as_string(hide_password=False)
    with freeze_time(at + timedelta(days=1)):
        result = CliRunner().invoke(
            main,
            ["report", "--config", str(config), "--from", "2026-11-01", "--to", "2026-11-30",
             "--json"],
            env={"LIFECYCLE_DATABASE_URL": url},
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@BOTH_DIALECTS
def test_an_answer_sent_from_the_page_counts_in_the_reports_nps(
    db: Engine, project: Project, project_dir: Path, now: datetime
) -> None:
    config = project_dir / "config.yaml"
    assert report_json(db, config, now)["retention"]["total"]["nps"]["answers"] == 0
    app = create_app(db, lambda: project, Secrets(secret=SECRET), clock=Clock(now))
    with serving(app) as url:  # stopped before the report: freezegun would stall its loop
        shop = Shop(url, db, Clock(now))
        for email, score in (("a@example.com", 10), ("b@example.com", 9), ("c@example.com", 3)):
            message_id = shop.message(email)
            assert post(shop, page(message_id), f"score={score}").status_code == 200
    assert report_json(db, config, now)["retention"]["total"]["nps"] == {
        "answers": 3, "promoters": 2, "passives": 0, "detractors": 1, "score": "33.33333333333333333333333333",
    }  # fmt: skip
