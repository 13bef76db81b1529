"""The headers that name an email to its sending service, and that every email carries them."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.deliver.compose import Composer, Outgoing
from engine.deliver.servicetags import service_headers
from engine.deliver.tokens import Signer
from engine.project.loader import Secrets, load_project
from engine.render.renderer import Renderer
from tests.render.test_context import NOW, fill_shop, queue

REPO = Path(__file__).resolve().parents[2]
SECRET = "a-test-secret-of-32-characters!!"
TOKEN = Signer(SECRET).bounce_token(12)


@pytest.mark.parametrize(
    ("service", "extra"),
    [
        pytest.param(None, [], id="none"),
        pytest.param("none", [], id="none-named"),
        pytest.param("ses", [f"X-SES-MESSAGE-TAGS: lifecycle-id={TOKEN}"], id="ses"),
        pytest.param(
            "sendgrid",
            [f'X-SMTPAPI: {{"unique_args": {{"lifecycle-id": "{TOKEN}"}}}}'],
            id="sendgrid",
        ),
        pytest.param(
            "mailgun", [f'X-Mailgun-Variables: {{"lifecycle-id": "{TOKEN}"}}'], id="mailgun"
        ),
        pytest.param("postmark", [f"X-PM-Metadata-lifecycle-id: {TOKEN}"], id="postmark"),
        pytest.param("brevo", [f'X-Mailin-custom: {{"lifecycle-id": "{TOKEN}"}}'], id="brevo"),
    ],
)
def test_each_service_gets_the_lifecycle_id_and_its_own_metadata_header(
    service: str | None, extra: list[str]
) -> None:
    lines = service_headers(service, TOKEN)
    assert lines == [f"X-Lifecycle-ID: {TOKEN}", *extra]
    assert all(line.isascii() and "\r" not in line and "\n" not in line for line in lines)


def test_the_json_headers_are_json_the_services_read_back() -> None:
    [_, smtpapi] = service_headers("sendgrid", TOKEN)
    assert json.loads(smtpapi.split(": ", 1)[1]) == {"unique_args": {"lifecycle-id": TOKEN}}
    for service in ("mailgun", "brevo"):
        [_, header] = service_headers(service, TOKEN)
        assert json.loads(header.split(": ", 1)[1]) == {"lifecycle-id": TOKEN}


@pytest.mark.parametrize(
    ("service", "token"),
    [
        pytest.param("sparkpost", TOKEN, id="unknown-service"),
        pytest.param("ses", TOKEN + "\r\nBcc: someone@example.com", id="line-break"),
        pytest.param("mailgun", '1-abc", "x": "y', id="quote"),
        pytest.param("none", "", id="empty"),
    ],
)
def test_an_unknown_service_or_a_token_that_is_not_one_is_refused(service: str, token: str) -> None:
    with pytest.raises(ValueError):
        service_headers(service, token)


def test_a_composed_email_carries_its_token_for_the_configured_service(
    project_dir: Path, sqlite_store: Engine
) -> None:
    config = project_dir / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("\nsending:\n", "\nsending:\n  service: postmark\n", 1))
    project = load_project(config)
    composer = Composer(
        project, Secrets(secret=SECRET), renderer=Renderer(REPO / "templates" / "emails")
    )
    with Session(sqlite_store, expire_on_commit=False) as session:
        data = fill_shop(session)
        message = queue(session, "welcome", data.sam, order_id=data.order_en)
        [outgoing] = composer.prepare(session, [message], now=NOW)
    assert isinstance(outgoing, Outgoing)
    parsed = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    token = Signer(SECRET).bounce_token(message.id or 0)
    assert parsed["X-Lifecycle-ID"] == token
    assert parsed["X-PM-Metadata-lifecycle-id"] == token
