"""Amazon SES bounce and complaint notifications, delivered by Amazon SNS.

SES publishes to an SNS topic (`webhooks.ses.topic_arn`), which POSTs each message
to `/webhooks/ses` as a JSON document (Content-Type text/plain). A message counts
only when its `TopicArn` is the configured one and its `Signature` verifies against
the configured certificate (`webhooks.ses.certificate`, the PEM at the messages'
`SigningCertURL`): SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA, over the
string SNS documents: for a `Notification` the fields Message, MessageId, Subject
(when present), Timestamp, TopicArn and Type; for a `SubscriptionConfirmation` or
`UnsubscribeConfirmation` Message, MessageId, SubscribeURL, Timestamp, Token,
TopicArn and Type; each as its name, a newline, its value, a newline. SNS retries a
message with its first Timestamp and signature, so no age is imposed: a message
taken twice records nothing twice.

A `SubscriptionConfirmation` is never fetched by the engine: its SubscribeURL is
logged for the operator to open, and the request answered 200.

A `Notification`'s Message is the SES notification (`notificationType`, or
`eventType` for a configuration set's event publishing):

- `Bounce`: `bounceType` Permanent is a hard bounce, Transient and Undetermined soft;
  status and diagnostic from the first failed recipient (`status`, `diagnosticCode`);
- `Complaint`: a complaint of its `complaintFeedbackType` (abuse when none); a
  `not-spam` report is ignored;
- anything else (Delivery, Send, Open…) is ignored.

The message is named by the `X-Lifecycle-ID` header in `mail.headers` (SES includes
the original headers when "include original headers" is on), the `lifecycle-id` tag
in `mail.tags` (`X-SES-MESSAGE-TAGS`, with a configuration set), or the VERP
envelope sender in `mail.source`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..feedback import VerpPattern
from ..project import Project, Secrets
from .sendingservice import (
    METADATA_KEY,
    Delivery,
    Event,
    Malformed,
    Refused,
    Unavailable,
    bounce,
    complaint,
    field,
    ignored,
    json_body,
    json_object,
    text,
    tokens,
)

log = logging.getLogger(__name__)

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
CONFIRMATIONS = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# Where SNS keeps its signing certificates; only such an address is ever logged.
CERT_URL = re.compile(
    r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/SimpleNotificationService-[0-9a-f]{1,64}\.pem"
)
SUBSCRIBE_URL = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?\S{1,2000}")


class Ses:
    name = "ses"

    def __init__(self) -> None:
        self._certificates: dict[tuple[Path, int, int], list[rsa.RSAPublicKey]] = {}

    def missing(self, project: Project, secrets: Secrets) -> str | None:
        if project.config.webhooks.ses is None:
            return "webhooks.ses (topic_arn, certificate) in config.yaml"
        return None

    def take(self, delivery: Delivery) -> list[Event]:
        config = delivery.project.config.webhooks.ses
        assert config is not None  # `missing` said so
        envelope = json_object(delivery.body)
        kind = text(envelope, "Type")
        if envelope.get("TopicArn") != config.topic_arn:
            raise Refused(f"a message of another topic: {text(envelope, 'TopicArn')[:200]!r}")
        self._verify(envelope, delivery.project.root / config.certificate)
        if kind in CONFIRMATIONS:
            _confirmation(envelope)
            return []
        if kind != "Notification":
            return [ignored(f"an SNS message of type {kind[:40]!r}")]
        return [_notification(envelope, delivery.project)]

    def _verify(self, envelope: dict[str, Any], certificate: Path) -> None:
        algorithm = HASHES.get(text(envelope, "SignatureVersion"))
        if algorithm is None:
            raise Refused("an unknown SignatureVersion")
        try:
            signature = base64.b64decode(text(envelope, "Signature"), validate=True)
        except binascii.Error as exc:
            raise Refused("the Signature is not base64") from exc
        signed = canonical(envelope)
        for key in self._keys(certificate):
            try:
                key.verify(signature, signed, padding.PKCS1v15(), algorithm())
            except InvalidSignature:
                continue
            return
        url = text(envelope, "SigningCertURL")
        signed_with = f"; it was signed with {url}" if CERT_URL.fullmatch(url) else ""
        raise Refused(f"the signature does not verify with the certificate configured{signed_with}")

    def _keys(self, path: Path) -> list[rsa.RSAPublicKey]:
        """The RSA keys of the certificates in `path`, read again when the file changes."""
        try:
            stat = path.stat()
            key = (path, stat.st_mtime_ns, stat.st_size)
            if key not in self._certificates:
                certificates = x509.load_pem_x509_certificates(path.read_bytes())
                keys = [c.public_key() for c in certificates]
                self._certificates = {key: [k for k in keys if isinstance(k, rsa.RSAPublicKey)]}
        except (OSError, ValueError) as exc:
            raise Unavailable(f"the SNS certificate {path} cannot be read: {exc}") from exc
        if not self._certificates[key]:
            raise Unavailable(f"the SNS certificate {path} holds no RSA key")
        return self._certificates[key]


def canonical(envelope: dict[str, Any]) -> bytes:
    """The string SNS signs: `name\\nvalue\\n` for each of the type's fields, in order
    (a Notification's Subject only when present). Refused when a field is missing."""
    names = CONFIRMATION_FIELDS if envelope.get("Type") in CONFIRMATIONS else NOTIFICATION_FIELDS
    lines = []
    for name in names:
        value = envelope.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise Refused(f"the message has no {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def _confirmation(envelope: dict[str, Any]) -> None:
    url = text(envelope, "SubscribeURL")
    shown = url if SUBSCRIBE_URL.fullmatch(url) else "(not an SNS address: not shown)"
    if envelope["Type"] == "SubscriptionConfirmation":
        log.warning(
            "ses: SNS asks to confirm the subscription of this server to %s; "
            "to confirm it, open (the engine never does): %s",
            envelope["TopicArn"],
            shown,
        )
    else:
        log.warning("ses: SNS confirms this server is unsubscribed from %s", envelope["TopicArn"])


def _notification(envelope: dict[str, Any], project: Project) -> Event:
    try:
        notification = json_body(text(envelope, "Message").encode("utf-8"))
    except Malformed:
        notification = None
    kind = text(notification, "notificationType") or text(notification, "eventType")
    if not kind:  # a message published to the topic by hand, say
        return ignored("an SNS notification that is not from SES")
    mail = field(notification, "mail")
    found = _tokens(mail, project)
    if kind == "Bounce":
        return _bounce(field(notification, "bounce"), found)
    if kind == "Complaint":
        details = field(notification, "complaint")
        feedback = text(details, "complaintFeedbackType") or "abuse"
        if feedback == "not-spam":
            return ignored("a not-spam feedback report", found)
        return complaint(
            found,
            feedback_type=feedback,
            recipient=_first_address(field(details, "complainedRecipients")),
            report_id=text(details, "feedbackId"),
        )
    return ignored(f"an SES {kind[:40]} notification", found)


def _bounce(details: object, found: tuple[str, ...]) -> Event:
    recipients = field(details, "bouncedRecipients")
    listed = [r for r in recipients if isinstance(r, dict)] if isinstance(recipients, list) else []
    failed = [r for r in listed if r.get("action", "failed") == "failed"] or listed
    first = failed[0] if failed else {}
    kind, subtype = text(details, "bounceType"), text(details, "bounceSubType")
    return bounce(
        found,
        hard=kind == "Permanent",
        status=text(first, "status") or None,
        diagnostic=text(first, "diagnosticCode") or f"SES: {kind} bounce ({subtype})",
        recipient=text(first, "emailAddress"),
        report_id=text(details, "feedbackId"),
    )


def _tokens(mail: object, project: Project) -> tuple[str, ...]:
    headers = field(mail, "headers")
    named = [
        h.get("value")
        for h in (headers if isinstance(headers, list) else [])
        if isinstance(h, dict) and str(h.get("name", "")).lower() == "x-lifecycle-id"
    ]
    tagged = field(mail, "tags", METADATA_KEY)
    address = project.config.sending.bounce_address
    verp = VerpPattern(address).find(text(mail, "source")) if address else []
    return tokens([*named, tagged, *verp])


def _first_address(listed: object) -> str:
    first = listed[0] if isinstance(listed, list) and listed else {}
    return text(first, "emailAddress")
