"""Mailgun's webhooks.

Mailgun POSTs one JSON object: `signature` (`timestamp`, `token`, `signature`) and
`event-data`. The signature is the hex HMAC-SHA256 of the timestamp followed by the
token, keyed with the domain's webhook signing key (LIFECYCLE_MAILGUN_SIGNING_KEY);
a timestamp more than 5 minutes from now is refused.

What each event does (the message is named by the `lifecycle-id` variable the
email's `X-Mailgun-Variables` header carried, in `event-data.user-variables`):

- `failed` with `severity` permanent (Mailgun will not try again): a hard bounce,
  or a soft one when the last answer was a temporary refusal (a 4xx code: Mailgun
  gave up retrying); status and diagnostic from `delivery-status`;
- `failed` with `severity` temporary is ignored like a delay warning: Mailgun
  retries it, and a failure it gives up on comes again as permanent;
- `complained`: a complaint;
- `unsubscribed`: an unsubscribe;
- anything else (accepted, delivered, opened…) is ignored.
"""

from __future__ import annotations

import hashlib
import hmac

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
    json_object,
    same,
    text,
    tokens,
)


class Mailgun:
    name = "mailgun"

    def missing(self, project: Project, secrets: Secrets) -> str | None:
        return None if secrets.mailgun_signing_key else "LIFECYCLE_MAILGUN_SIGNING_KEY"

    def take(self, delivery: Delivery) -> list[Event]:
        key = delivery.secrets.mailgun_signing_key
        assert key is not None  # `missing` said so
        payload = json_object(delivery.body)
        timestamp = text(payload, "signature", "timestamp")
        token = text(payload, "signature", "token")
        signature = text(payload, "signature", "signature")
        if not (timestamp and token and signature):
            raise Refused("no signature (timestamp, token, signature)")
        expected = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
        if not same(signature, expected.hexdigest()):
            raise Refused("a wrong signature")
        check_age(timestamp, delivery.now)
        data = field(payload, "event-data")
        if not isinstance(data, dict):
            raise Malformed("no event-data")
        return [_event(data)]


def _event(data: dict[str, object]) -> Event:
    kind = text(data, "event")
    found = tokens([field(data, "user-variables", METADATA_KEY)])
    recipient = text(data, "recipient")
    report_id = text(data, "id")
    if kind == "failed":
        if text(data, "severity") != "permanent":
            return ignored("a temporary failure: Mailgun retries it", found)
        code = text(data, "delivery-status", "code")
        words = text(data, "delivery-status", "message") or text(
            data, "delivery-status", "description"
        )
        return bounce(
            found,
            hard=not code.startswith("4"),
            diagnostic=f"{code} {words}".strip() or f"Mailgun: {text(data, 'reason')}",
            recipient=recipient,
            report_id=report_id,
        )
    if kind == "complained":
        return complaint(found, recipient=recipient, report_id=report_id)
    if kind == "unsubscribed":
        return Unsubscribe(found, recipient.lower() or None)
    return ignored(f"a Mailgun {kind[:40]} event", found)
