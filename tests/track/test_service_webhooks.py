"""The sending services' webhooks over real HTTP, on SQLite and PostgreSQL.

The payloads are tests/fixtures/webhooks/<service> (written from each service's
published examples; their README says where each comes from), with `TOKEN-ALICE`,
`TOKEN-BINA` and `TOKEN-CHANDRA` where the token an email carried is echoed back.
Each request is signed or authenticated here as its service does it, with keys made
for the test: an RSA certificate for Amazon SNS, an ECDSA P-256 key for SendGrid, an
HMAC key for Mailgun, basic auth for Postmark, a bearer token for Brevo.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.deliver.tokens import Signer
from engine.project.loader import Project, Secrets, load_partial, load_project
from engine.store.models import Customer, Message, MessageEvent, Suppression
from engine.track.app import create_app
from tests import store_fixtures
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
SECRET = "service-webhook-test-secret-0123456789"
SIGNER = Signer(SECRET)
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
MAILGUN_KEY = "mailgun-signing-key-0123456789abcdef"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark-hooks", "postmark-password-0123456789"
BREVO_TOKEN = "brevo-webhook-token-0123456789abcdef"
PEOPLE = ("alice", "bina", "chandra")


# ---------------------------------------------------------------- keys and the shop


@dataclass(frozen=True)
class Keys:
    sns: rsa.RSAPrivateKey
    sns_certificate: bytes  # PEM
    stranger: rsa.RSAPrivateKey  # signs like SNS, but is not the configured certificate's
    sendgrid: ec.EllipticCurvePrivateKey
    other_sendgrid: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    sns = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-west-2.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(sns.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(sns, hashes.SHA256())
    )
    return Keys(
        sns,
        certificate.public_bytes(serialization.Encoding.PEM),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )


def der_base64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture
def project(project_dir: Path, keys: Keys) -> Project:
    """The shipped project with every sending service's webhook configured."""
    (project_dir / "sns.pem").write_bytes(keys.sns_certificate)
    config = project_dir / "config.yaml"
    text = config.read_text(encoding="utf-8").replace(
        "\nsending:\n", "\nsending:\n  bounce_address: bounce@bounces.nakshighor.example\n", 1
    )
    text += (
        "\nwebhooks:\n"
        f"  ses: {{topic_arn: '{TOPIC}', certificate: sns.pem}}\n"
        f"  sendgrid: {{public_key: '{der_base64(keys.sendgrid)}'}}\n"
        f"  postmark: {{username: {POSTMARK_USER}}}\n"
    )
    config.write_text(text, encoding="utf-8")
    return load_project(config)


@dataclass(frozen=True)
class Shop:
    url: str
    engine: Engine
    messages: dict[str, int]  # each customer's one email

    def token(self, who: str) -> str:
        return SIGNER.bounce_token(self.messages[who])


def seed(engine: Engine) -> dict[str, int]:
    """Three subscribed customers, one sent email each."""
    messages = {}
    with Session(engine) as session:
        for number, who in enumerate(PEOPLE, 1):
            customer = Customer(
                external_id=f"c{number}",
                email=f"{who}@example.com",
                name=who.title(),
                marketing_consent=True,
                created_at=NOW,
                updated_at=NOW,
            )
            session.add(customer)
            session.flush()
            message = Message(
                dedupe_key=f"welcome:{customer.id}:first",
                campaign="welcome",
                customer_id=customer.id or 0,
                occurrence="first",
                status="sent",
                created_at=NOW,
                send_after=NOW,
            )
            session.add(message)
            session.flush()
            messages[who] = message.id or 0
        session.commit()
    return messages


def all_secrets() -> Secrets:
    return Secrets(
        secret=SECRET,
        mailgun_signing_key=MAILGUN_KEY,
        postmark_webhook_password=POSTMARK_PASSWORD,
        brevo_webhook_token=BREVO_TOKEN,
    )


@pytest.fixture
def shop(fresh_store: Engine, project: Project) -> Iterator[Shop]:
    messages = seed(fresh_store)
    app = create_app(fresh_store, lambda: project, all_secrets(), clock=lambda: NOW)
    with serving(app) as url:
        yield Shop(url, fresh_store, messages)


def payload(shop: Shop, name: str) -> str:
    """A fixture's text with the tokens of the shop's emails in it."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    for who in PEOPLE:
        text = text.replace(f"TOKEN-{who.upper()}", shop.token(who))
    return text


# ---------------------------------------------------------------- what was recorded


def events(shop: Shop) -> list[tuple[str, str, str | None]]:
    """(whose email, kind, detail) of every message event."""
    whose = {mid: who for who, mid in shop.messages.items()}
    with Session(shop.engine) as session:
        rows = session.exec(select(MessageEvent).order_by(MessageEvent.id)).all()  # type: ignore[arg-type]
        return [(whose[e.message_id], str(e.kind), e.detail) for e in rows]


def suppressed(shop: Shop) -> dict[str, str]:
    with Session(shop.engine) as session:
        return {s.email: s.reason for s in session.exec(select(Suppression)).all()}


def subscribed(shop: Shop) -> dict[str, bool]:
    with Session(shop.engine) as session:
        rows = session.exec(select(Customer)).all()
        return {c.email.split("@")[0]: c.marketing_consent for c in rows}


def nothing_recorded(shop: Shop) -> bool:
    return events(shop) == [] and suppressed(shop) == {} and all(subscribed(shop).values())


def outcomes(answer: httpx.Response) -> dict[str, int]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True and body["events"] == sum(body["outcomes"].values())
    return dict(body["outcomes"])


# ---------------------------------------------------------------- how each service signs


def sns_canonical(envelope: dict[str, Any]) -> bytes:
    """The string SNS signs, as its documentation spells it out."""
    if envelope["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{envelope[n]}\n" for n in names if n in envelope).encode()


def sns_signed(envelope: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> bytes:
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    envelope = envelope | {"SignatureVersion": version}
    signature = key.sign(sns_canonical(envelope), padding.PKCS1v15(), digest)
    return json.dumps(envelope | {"Signature": base64.b64encode(signature).decode()}).encode()


def sns_notification(shop: Shop, name: str, **changes: Any) -> dict[str, Any]:
    """The SNS notification example carrying the SES notification `name`."""
    envelope = json.loads((FIXTURES / "ses" / "sns_notification.json").read_text())
    return envelope | {"Message": payload(shop, f"ses/{name}")} | changes


def post_sns(shop: Shop, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "any"}
    return httpx.post(shop.url + "/webhooks/ses", content=body, headers=headers, timeout=10)


def post_sendgrid(
    shop: Shop,
    body: bytes,
    key: ec.EllipticCurvePrivateKey,
    *,
    at: datetime = NOW,
    **headers: str,
) -> httpx.Response:
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    sent = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    } | headers
    return httpx.post(shop.url + "/webhooks/sendgrid", content=body, headers=sent, timeout=10)


def mailgun_signed(text: str, *, key: str = MAILGUN_KEY, at: datetime = NOW) -> bytes:
    data = json.loads(text)
    timestamp, token = str(int(at.timestamp())), hashlib.sha256(text.encode()).hexdigest()[:50]
    mac = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    data["signature"] = {"timestamp": timestamp, "token": token, "signature": mac}
    return json.dumps(data).encode()


def post_json(shop: Shop, service: str, body: bytes | str, **headers: str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    sent = {"Content-Type": "application/json"} | headers
    return httpx.post(f"{shop.url}/webhooks/{service}", content=content, headers=sent, timeout=10)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


POSTMARK_AUTH = {"Authorization": basic(POSTMARK_USER, POSTMARK_PASSWORD)}
BREVO_AUTH = {"Authorization": f"Bearer {BREVO_TOKEN}"}


# ---------------------------------------------------------------- Amazon SES through SNS


def test_an_ses_hard_bounce_is_recorded_once_and_suppresses_the_address(
    shop: Shop, keys: Keys
) -> None:
    body = sns_signed(sns_notification(shop, "bounce_permanent.json"), keys.sns)
    assert outcomes(post_sns(shop, body)) == {"hard bounce": 1}
    detail = "hard 5.1.1: smtp; 550 5.1.1 <jane@example.com>... User"
    assert events(shop) == [("alice", "bounce", detail)]
    assert suppressed(shop)["alice@example.com"].startswith("hard bounce 5.1.1: smtp; 550")
    # SNS retries with the same signed message: nothing is recorded twice
    assert outcomes(post_sns(shop, body)) == {"already recorded": 1}
    assert events(shop) == [("alice", "bounce", detail)]


def test_ses_signature_version_2_complaints_soft_bounces_and_other_notifications(
    shop: Shop, keys: Keys
) -> None:
    # a transient bounce named by the VERP envelope sender only: soft, no suppression
    transient = sns_notification(shop, "bounce_transient.json", MessageId="m-1")
    assert outcomes(post_sns(shop, sns_signed(transient, keys.sns, "2"))) == {"soft bounce": 1}
    assert suppressed(shop) == {}
    # a complaint from a configuration set's event publishing, named by its tag
    complaint = sns_notification(shop, "complaint_event_publishing.json", MessageId="m-2")
    assert outcomes(post_sns(shop, sns_signed(complaint, keys.sns, "2"))) == {"complaint": 1}
    assert suppressed(shop) == {"alice@example.com": "complaint: marked as spam (abuse report)"}
    delivery = sns_notification(shop, "delivery.json", MessageId="m-3")
    hello = json.loads((FIXTURES / "ses" / "sns_notification.json").read_text())  # no Message
    for message in (delivery, hello):
        assert outcomes(post_sns(shop, sns_signed(message, keys.sns, "2"))) == {"ignored": 1}
    assert [(who, kind) for who, kind, _ in events(shop)] == [
        ("alice", "bounce"),
        ("alice", "complaint"),
    ]


def test_an_sns_subscription_confirmation_is_logged_for_the_operator_never_fetched(
    shop: Shop, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    confirmation = json.loads((FIXTURES / "ses" / "sns_subscription_confirmation.json").read_text())
    with caplog.at_level(logging.WARNING, logger="engine.track.ses"):
        answer = post_sns(shop, sns_signed(confirmation, keys.sns))
    assert outcomes(answer) == {}
    assert confirmation["SubscribeURL"] in caplog.text
    # a confirmation whose address the engine could fetch: nobody comes to fetch it
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    here = f"http://127.0.0.1:{listener.getsockname()[1]}/?Action=ConfirmSubscription"
    with listener:
        answer = post_sns(shop, sns_signed(confirmation | {"SubscribeURL": here}, keys.sns))
        assert outcomes(answer) == {}
        with pytest.raises(TimeoutError):
            listener.accept()
    assert here not in caplog.text  # not an SNS address: not shown to the operator either
    assert nothing_recorded(shop)


def test_unsigned_forged_and_foreign_sns_messages_are_refused(shop: Shop, keys: Keys) -> None:
    message = sns_notification(shop, "bounce_permanent.json")
    signed = json.loads(sns_signed(message, keys.sns))
    refused = {
        "another key": sns_signed(message, keys.stranger),
        "unsigned": json.dumps({k: v for k, v in signed.items() if k != "Signature"}).encode(),
        "tampered": json.dumps(signed | {"Message": signed["Message"].replace("5.1.1", "5.1.2")}),
        "another topic": sns_signed(message | {"TopicArn": TOPIC + "2"}, keys.sns),
        "unknown version": json.dumps(signed | {"SignatureVersion": "3"}),
    }
    for case, body in refused.items():
        answer = post_sns(shop, body if isinstance(body, bytes) else body.encode())
        assert answer.status_code == 401, case
    assert nothing_recorded(shop)


# ---------------------------------------------------------------- SendGrid


def test_a_sendgrid_batch_records_each_event_once(shop: Shop, keys: Keys) -> None:
    body = payload(shop, "sendgrid/events.json").encode()
    expected = {
        "ignored": 2,  # processed, and an open
        "hard bounce": 1,
        "soft bounce": 1,  # blocked
        "complaint": 1,
        "unsubscribed": 2,  # unsubscribe and group_unsubscribe of one email
        "unmatched": 1,  # dropped, for an email that is not ours
    }
    assert outcomes(post_sendgrid(shop, body, keys.sendgrid)) == expected
    recorded = [(who, kind) for who, kind, _ in events(shop)]
    assert recorded == [
        ("alice", "bounce"),
        ("bina", "bounce"),
        ("bina", "complaint"),
        ("chandra", "unsubscribe"),
    ]
    assert events(shop)[1][2] == (
        "soft 4.2.2: 452 4.2.2 The email account that you tried to reach is over quota"
    )
    assert sorted(suppressed(shop)) == ["alice@example.com", "bina@example.com"]
    assert subscribed(shop)["chandra"] is False
    # the same signed request again records nothing twice
    again = outcomes(post_sendgrid(shop, body, keys.sendgrid))
    assert again == {"ignored": 2, "already recorded": 3, "unsubscribed": 2, "unmatched": 1}
    assert [(who, kind) for who, kind, _ in events(shop)] == recorded


def test_unsigned_forged_and_stale_sendgrid_requests_are_refused(shop: Shop, keys: Keys) -> None:
    body = payload(shop, "sendgrid/events.json").encode()
    good = post_sendgrid  # signed with the configured key, at NOW
    assert good(shop, body, keys.other_sendgrid).status_code == 401
    unsigned = post_json(shop, "sendgrid", body)
    assert unsigned.status_code == 401
    signature = good(shop, b"[]", keys.sendgrid).request.headers
    swapped = {  # a signature of another body
        "X-Twilio-Email-Event-Webhook-Signature": signature[
            "X-Twilio-Email-Event-Webhook-Signature"
        ]
    }
    assert good(shop, body, keys.sendgrid, **swapped).status_code == 401
    stale = good(shop, body, keys.sendgrid, at=NOW - timedelta(minutes=6))
    assert stale.status_code == 401 and "5 minutes" in stale.json()["error"]
    assert nothing_recorded(shop)


# ---------------------------------------------------------------- Mailgun


def test_mailgun_failures_complaints_and_unsubscribes(shop: Shop) -> None:
    failed = mailgun_signed(payload(shop, "mailgun/failed_permanent.json"))
    assert outcomes(post_json(shop, "mailgun", failed)) == {"hard bounce": 1}
    temporary = mailgun_signed(payload(shop, "mailgun/failed_temporary.json"))
    assert outcomes(post_json(shop, "mailgun", temporary)) == {"ignored": 1}  # Mailgun retries
    complained = mailgun_signed(payload(shop, "mailgun/complained.json"))
    assert outcomes(post_json(shop, "mailgun", complained)) == {"complaint": 1}
    unsubscribed = mailgun_signed(payload(shop, "mailgun/unsubscribed.json"))
    assert outcomes(post_json(shop, "mailgun", unsubscribed)) == {"unsubscribed": 1}
    assert outcomes(post_json(shop, "mailgun", failed)) == {"already recorded": 1}
    assert events(shop) == [
        ("alice", "bounce", "hard 5.1.1: 550 5.1.1 The email account that you tried to reach "
         "does not exist. Please try 5.1.1 double-checking the recipient's email address for typos"),
        ("bina", "complaint", "abuse report"),
        ("chandra", "unsubscribe", None),
    ]  # fmt: skip
    assert sorted(suppressed(shop)) == ["alice@example.com", "bina@example.com"]
    assert subscribed(shop) == {"alice": True, "bina": True, "chandra": False}


def test_unsigned_forged_and_stale_mailgun_requests_are_refused(shop: Shop) -> None:
    text = payload(shop, "mailgun/failed_permanent.json")
    for body in (
        mailgun_signed(text, key="another-key-0123456789"),
        mailgun_signed(text, at=NOW - timedelta(minutes=10)),
        text.encode(),  # the example's own signature, made with Mailgun's key
        json.dumps({k: v for k, v in json.loads(text).items() if k != "signature"}).encode(),
    ):
        assert post_json(shop, "mailgun", body).status_code == 401
    assert nothing_recorded(shop)


# ---------------------------------------------------------------- Postmark


def test_postmark_bounces_complaints_and_subscription_changes(shop: Shop) -> None:
    for name, outcome in (
        ("bounce_hard.json", "hard bounce"),
        ("bounce_soft.json", "soft bounce"),
        ("spam_complaint.json", "complaint"),
        ("subscription_change.json", "unsubscribed"),
        ("delivery.json", "ignored"),
        ("bounce_hard.json", "already recorded"),  # Postmark's retry
    ):
        answer = post_json(shop, "postmark", payload(shop, f"postmark/{name}"), **POSTMARK_AUTH)
        assert outcomes(answer) == {outcome: 1}, name
    assert events(shop) == [
        ("alice", "bounce", "hard 5.1.1: smtp;550 5.1.1 The email account that you tried to reach "
         "does not exist."),
        ("bina", "bounce", "soft 5.2.2: smtp;552 5.2.2 Mailbox full"),
        ("bina", "complaint", "abuse report"),
        ("chandra", "unsubscribe", None),
    ]  # fmt: skip
    assert sorted(suppressed(shop)) == ["alice@example.com", "bina@example.com"]
    assert subscribed(shop)["chandra"] is False


def test_postmark_requests_without_the_right_credentials_are_refused(shop: Shop) -> None:
    body = payload(shop, "postmark/bounce_hard.json")
    for authorization in (
        None,
        basic(POSTMARK_USER, "guess"),
        basic("someone", POSTMARK_PASSWORD),
        f"Bearer {POSTMARK_PASSWORD}",
        "Basic not-base64!",
    ):
        headers = {"Authorization": authorization} if authorization else {}
        assert post_json(shop, "postmark", body, **headers).status_code == 401
    assert nothing_recorded(shop)


# ---------------------------------------------------------------- Brevo


def test_brevo_events_with_a_bearer_token_or_basic_auth(shop: Shop) -> None:
    hard = payload(shop, "brevo/hard_bounce.json")
    assert outcomes(post_json(shop, "brevo", hard, **BREVO_AUTH)) == {"hard bounce": 1}
    spam = payload(shop, "brevo/spam.json")
    in_url = {"Authorization": basic("brevo", BREVO_TOKEN)}  # https://brevo:<token>@…
    assert outcomes(post_json(shop, "brevo", spam, **in_url)) == {"complaint": 1}
    batch = f"[{payload(shop, 'brevo/soft_bounce.json')}, {payload(shop, 'brevo/blocked.json')}]"
    assert outcomes(post_json(shop, "brevo", batch, **BREVO_AUTH)) == {"soft bounce": 2}
    unsubscribed = payload(shop, "brevo/unsubscribed.json")
    assert outcomes(post_json(shop, "brevo", unsubscribed, **BREVO_AUTH)) == {"unsubscribed": 1}
    assert outcomes(post_json(shop, "brevo", hard, **BREVO_AUTH)) == {"already recorded": 1}
    assert events(shop) == [
        ("alice", "bounce", "hard 5.1.1: 550 5.1.1 <example@domain.com>: Recipient address "
         "rejected: User unknown"),
        ("bina", "complaint", "abuse report"),
        ("bina", "bounce", "soft 4.2.2: 452 4.2.2 Mailbox full"),
        ("bina", "bounce", "soft -: blocked by Brevo: blocked : due to blacklist user"),
        ("chandra", "unsubscribe", None),
    ]  # fmt: skip
    assert sorted(suppressed(shop)) == ["alice@example.com", "bina@example.com"]


def test_brevo_requests_without_the_token_are_refused(shop: Shop) -> None:
    body = payload(shop, "brevo/hard_bounce.json")
    for authorization in (None, "Bearer guess", basic("brevo", "guess"), f"Token {BREVO_TOKEN}"):
        headers = {"Authorization": authorization} if authorization else {}
        assert post_json(shop, "brevo", body, **headers).status_code == 401
    assert nothing_recorded(shop)


# ---------------------------------------------------------------- every service


def test_malformed_bodies_are_400_and_huge_ones_413(shop: Shop, keys: Keys) -> None:
    broken = b'{"event": "bounce",'
    answers = {
        "ses": post_sns(shop, broken),
        "sendgrid": post_sendgrid(shop, broken, keys.sendgrid),
        "sendgrid object": post_sendgrid(shop, b'{"event": "bounce"}', keys.sendgrid),
        "mailgun": post_json(shop, "mailgun", broken),
        "postmark": post_json(shop, "postmark", broken, **POSTMARK_AUTH),
        "brevo": post_json(shop, "brevo", broken, **BREVO_AUTH),
    }
    assert {case: a.status_code for case, a in answers.items()} == dict.fromkeys(answers, 400)
    huge = b"[" + b" " * 2_000_000 + b"]"
    for service in ("ses", "sendgrid", "mailgun", "postmark", "brevo"):
        answer = post_json(shop, service, huge, **POSTMARK_AUTH)
        assert answer.status_code == 413, service
    assert nothing_recorded(shop)


def test_events_of_unknown_messages_or_without_a_token_are_counted_and_change_nothing(
    shop: Shop,
) -> None:
    hard = json.loads(payload(shop, "postmark/bounce_hard.json"))
    for metadata in (
        {"lifecycle-id": SIGNER.bounce_token(999)},  # signed, but no such email
        {"lifecycle-id": f"{shop.messages['alice']}-aaaaaaaaaaaaaaaa"},  # forged
        {"lifecycle-id": Signer("another-shop-secret-0123456789").bounce_token(1)},
        {},  # an email sent by something else through the same account
    ):
        body = json.dumps(hard | {"Metadata": metadata})
        assert outcomes(post_json(shop, "postmark", body, **POSTMARK_AUTH)) == {"unmatched": 1}
    unsubscribe = json.loads(payload(shop, "postmark/subscription_change.json"))
    body = json.dumps(unsubscribe | {"Metadata": {"lifecycle-id": SIGNER.bounce_token(999)}})
    assert outcomes(post_json(shop, "postmark", body, **POSTMARK_AUTH)) == {"unmatched": 1}
    assert nothing_recorded(shop)


def test_a_service_that_is_not_configured_has_no_route(
    fresh_store: Engine, project_dir: Path
) -> None:
    plain = load_project(project_dir / "config.yaml")
    app = create_app(fresh_store, lambda: plain, Secrets(secret=SECRET), clock=lambda: NOW)
    with serving(app) as url:
        answers = {
            service: httpx.post(f"{url}/webhooks/{service}", content=b"[]", timeout=10)
            for service in ("ses", "sendgrid", "mailgun", "postmark", "brevo")
        }
    assert {s: a.status_code for s, a in answers.items()} == dict.fromkeys(answers, 404)
    assert "LIFECYCLE_MAILGUN_SIGNING_KEY" in answers["mailgun"].text
    assert "webhooks.ses" in answers["ses"].text


def test_a_wrong_sendgrid_key_or_a_missing_sns_certificate_is_a_config_problem(
    project_dir: Path, keys: Keys
) -> None:
    rsa_key = keys.stranger.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    config = project_dir / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + "\nwebhooks:\n"
        + f"  ses: {{topic_arn: '{TOPIC}', certificate: missing.pem}}\n"
        + f"  sendgrid: {{public_key: '{base64.b64encode(rsa_key).decode()}'}}\n"
        + "  postmark: {username: 'has a space'}\n",
        encoding="utf-8",
    )
    _, problems = load_partial(config)
    found = {p.key: p.message for p in problems}
    assert "ECDSA P-256" in found["webhooks.sendgrid"]
    assert "webhooks.postmark.username" in found
    assert found.get("webhooks.ses.certificate") is None  # checked once the rest is valid
    config.write_text(
        config.read_text(encoding="utf-8")
        .replace(base64.b64encode(rsa_key).decode(), der_base64(keys.sendgrid))
        .replace("'has a space'", "postmark"),
        encoding="utf-8",
    )
    _, problems = load_partial(config)
    assert [(p.key, p.message) for p in problems] == [
        ("webhooks.ses.certificate", "certificate file missing.pem not found")
    ]
