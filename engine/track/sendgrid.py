"""SendGrid's Signed Event Webhook.

SendGrid POSTs a JSON array of events, signed with ECDSA (P-256, SHA-256) over the
`X-Twilio-Email-Event-Webhook-Timestamp` header's value followed by the raw body;
the base64 signature is in `X-Twilio-Email-Event-Webhook-Signature`, and the
verification key SendGrid shows is `webhooks.sendgrid.public_key` (base64 DER). A
timestamp more than 5 minutes from now is refused.

What each event does (the message is named by the `lifecycle-id` unique argument
the email's `X-SMTPAPI` header carried, which SendGrid adds to each event):

- `bounce`: `type` bounce (SendGrid's permanent failure) is a hard bounce, `blocked`
  (a temporary refusal) a soft one; status and diagnostic from `status` and `reason`;
- `dropped` (SendGrid did not send it): `Bounced Address` and `Invalid` are hard
  bounces, `Spam Reporting Address` a complaint, `Unsubscribed Address` an
  unsubscribe; other reasons say nothing of the address and are ignored;
- `spamreport`: a complaint;
- `unsubscribe`, `group_unsubscribe`: an unsubscribe;
- anything else (processed, delivered, deferred, open…) is ignored.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..project import Project, Secrets
from .sendingservice import (
    METADATA_KEY,
    Delivery,
    Event,
    Malformed,
    Refused,
    Unsubscribe,
    bounce,
    check_age,
    complaint,
    field,
    ignored,
    json_body,
    text,
    tokens,
)

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
HARD_DROPS = ("bounced address", "invalid")


class SendGrid:
    name = "sendgrid"

    def __init__(self) -> None:
        self._key: tuple[str, ec.EllipticCurvePublicKey] | None = None

    def missing(self, project: Project, secrets: Secrets) -> str | None:
        if project.config.webhooks.sendgrid is None:
            return "webhooks.sendgrid.public_key in config.yaml"
        return None

    def take(self, delivery: Delivery) -> list[Event]:
        config = delivery.project.config.webhooks.sendgrid
        assert config is not None  # `missing` said so
        signature = delivery.headers.get(SIGNATURE, "")
        timestamp = delivery.headers.get(TIMESTAMP, "")
        if not signature or not timestamp:
            raise Refused(f"no {SIGNATURE} or {TIMESTAMP}")
        try:
            self._public_key(config.public_key).verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode("utf-8") + delivery.body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (binascii.Error, InvalidSignature) as exc:
            raise Refused(f"a wrong {SIGNATURE}") from exc
        check_age(timestamp, delivery.now)
        events = json_body(delivery.body)
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise Malformed("the body is not a JSON array of events")
        return [_event(e) for e in events]

    def _public_key(self, encoded: str) -> ec.EllipticCurvePublicKey:
        if self._key is None or self._key[0] != encoded:
            key = load_der_public_key(base64.b64decode("".join(encoded.split())))
            assert isinstance(key, ec.EllipticCurvePublicKey)  # checked when config.yaml loaded
            self._key = (encoded, key)
        return self._key[1]


def _event(event: dict[str, object]) -> Event:
    kind = text(event, "event")
    found = tokens([field(event, METADATA_KEY), field(event, "unique_args", METADATA_KEY)])
    recipient = text(event, "email")
    report_id = text(event, "sg_event_id")
    if kind == "bounce":
        return bounce(
            found,
            hard=text(event, "type") != "blocked",
            status=text(event, "status") or None,
            diagnostic=text(event, "reason") or "SendGrid: bounce",
            recipient=recipient,
            report_id=report_id,
        )
    if kind == "dropped":
        return _dropped(event, found)
    if kind == "spamreport":
        return complaint(found, recipient=recipient, report_id=report_id)
    if kind in ("unsubscribe", "group_unsubscribe"):
        return Unsubscribe(found, recipient.lower() or None)
    return ignored(f"a SendGrid {kind[:40]} event", found)


def _dropped(event: dict[str, object], found: tuple[str, ...]) -> Event:
    reason = text(event, "reason")
    recipient = text(event, "email")
    if reason.lower() in HARD_DROPS:
        return bounce(
            found,
            hard=True,
            status=text(event, "status") or None,
            diagnostic=f"dropped by SendGrid: {reason}",
            recipient=recipient,
            report_id=text(event, "sg_event_id"),
        )
    if reason.lower() == "spam reporting address":
        return complaint(found, recipient=recipient, report_id=text(event, "sg_event_id"))
    if reason.lower() == "unsubscribed address":
        return Unsubscribe(found, recipient.lower() or None)
    return ignored(f"dropped by SendGrid: {reason[:100]}", found)
