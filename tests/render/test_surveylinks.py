"""`survey` in a template: eleven signed links to the answer page, not click-tracked, that
name the message they went out in; a score outside 0–10 is a template error."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.compose import Composer, Outgoing
from engine.deliver.tokens import InvalidToken, Purpose, Signer
from engine.errors import Problem
from engine.project.loader import Project, Secrets, load_project
from engine.render.samplecontext import sample_context
from engine.render.surveylinks import SCORES, SurveyLinks
from engine.render.templatecheck import check_templates
from tests.render.test_context import NOW, fill_shop, queue

SECRET = "a-test-secret-of-32-characters!!"
BASE = "http://127.0.0.1:8000"
CAMPAIGN = "survey_after_delivery"


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def session(sqlite_store: Engine) -> Iterator[Session]:
    with Session(sqlite_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


def parts(data: bytes) -> tuple[str, str]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


@pytest.mark.parametrize(
    ("customer", "digits"),
    [
        pytest.param("rahima", "০১২৩৪৫৬৭৮৯১০", id="bengali"),
        pytest.param("sam", "012345678910", id="english"),
    ],
)
def test_a_survey_email_links_each_score_to_the_page_signed_for_its_message(
    project: Project, session: Session, customer: str, digits: str
) -> None:
    data = fill_shop(session)
    order = data.order_bn if customer == "rahima" else data.order_en
    message = queue(session, CAMPAIGN, getattr(data, customer), order_id=order)
    [outgoing] = Composer(project, Secrets(secret=SECRET)).prepare(session, [message], now=NOW)
    assert isinstance(outgoing, Outgoing), outgoing
    html, text = parts(outgoing.data)

    found = re.findall(rf'href="{BASE}/s/([A-Za-z0-9_\-.]+)\?score=(\d+)"[^>]*>(\S+?)</a>', html)
    assert [int(score) for _, score, _ in found] == list(range(11))
    assert "".join(shown for _, _, shown in found) == digits
    signer = Signer(SECRET)
    tokens = {token for token, _, _ in found}
    assert len(tokens) == 1  # one token names the message; the score rides beside it
    [token] = tokens
    assert signer.verify(token, Purpose.SURVEY).message_id == message.id
    with pytest.raises(InvalidToken, match="another purpose"):
        signer.verify(token, Purpose.CLICK)
    assert "/c/" not in "".join(re.findall(r'href="([^"]*/s/[^"]*)"', html))  # not click-tracked
    assert f"{BASE}/s/{token}\n" in text  # the text part: the page, no score chosen


def test_the_sample_context_gives_check_a_survey_to_render(project: Project) -> None:
    campaign = project.campaigns[CAMPAIGN]
    survey = sample_context(project, campaign, "bn_BD")["survey"]
    assert survey.scores == SCORES == tuple(range(11))
    assert survey.url == f"{BASE}/s/SAMPLE-SURVEY-TOKEN"
    assert survey.link(9) == f"{BASE}/s/SAMPLE-SURVEY-TOKEN?score=9"
    assert not [p for p in check_templates(project) if "survey" in p.file]


@pytest.mark.parametrize("score", [11, -1, True, "9", 9.0])
def test_a_link_for_a_score_outside_0_to_10_is_refused(score: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"from 0 to 10, got: {score!r}")):
        SurveyLinks(f"{BASE}/s/T").link(score)  # type: ignore[arg-type]


def test_check_names_the_line_of_a_score_outside_0_to_10(project_dir: Path) -> None:
    template = project_dir / "templates" / "emails" / "survey.txt"
    lines = template.read_text(encoding="utf-8").splitlines()
    lines[5] = "{{ survey.link(11) }}"
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = check_templates(load_project(project_dir / "config.yaml"))
    expected = Problem(
        "templates/emails/survey.txt",
        6,
        "",
        "ValueError: survey.link takes a score from 0 to 10, got: 11",
    )
    assert expected in problems, [str(p) for p in problems]
