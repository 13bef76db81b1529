"""Brevo's (formerly Sendinblue's) transactional webhooks.

Brevo signs nothing; a webhook is authenticated as Brevo offers it: a bearer
token (the webhook's `auth: {type: bearer, token: …}`, sent as `Authorization:
Bearer <token>`) or basic auth in its URL (`https://user:<token>@…`, sent as
`Authorization: Basic`; the password is the token, the user anything). The token
is LIFECYCLE_BREVO_WEBHOOK_TOKEN. With no timestamp to check, a request sent again
is taken again, and records nothing twice. The body is one event, or a JSON array
of them for a batched webhook.

What each event does (the message is named by the `lifecycle-id` in the
`X-Mailin-custom` value the email carried, which Brevo sends back as it was):

- `hard_bounce` and `invalid_email`: a hard bounce; `soft_bounce`: a soft one;
- `blocked` (Brevo did not send it, for a reason of its own): a soft bounce, so an
  address Brevo keeps blocking is suppressed at `bounces.soft_limit`;
- `spam`: a complaint;
- `unsubscribed`: an unsubscribe;
- anything else (request, delivered, opened, click, deferred…) is ignored.
"""

from __future__ import annotations

import json

from ..project import Project, Secrets
from .sendingservice import (
    METADATA_KEY,
    Delivery,
    Event,
    Malformed,
    Refused,
    Unsubscribe,
    basic_auth,
    bounce,
    complaint,
    ignored,
    json_body,
    same,
    text,
    tokens,
)

TOKEN = "LIFECYCLE_BREVO_WEBHOOK_TOKEN"
BOUNCES = {"hard_bounce": True, "invalid_email": True, "soft_bounce": False, "blocked": False}


class Brevo:
    name = "brevo"

    def missing(self, project: Project, secrets: Secrets) -> str | None:
        return None if secrets.brevo_webhook_token else TOKEN

    def take(self, delivery: Delivery) -> list[Event]:
        expected = delivery.secrets.brevo_webhook_token
        assert expected is not None  # `missing` said so
        scheme, _, given = delivery.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            credentials = basic_auth(delivery.headers)
            given = credentials[1] if credentials else ""
        elif scheme.lower() != "bearer":
            given = ""
        if not given or not same(given.strip(), expected):
            raise Refused("no or a wrong token")
        data = json_body(delivery.body)
        events = data if isinstance(data, list) else [data]
        if not all(isinstance(e, dict) for e in events):
            raise Malformed("the body is not an event nor a JSON array of events")
        return [_event(e) for e in events]


def _event(event: dict[str, object]) -> Event:
    kind = text(event, "event")
    found = tokens([_token(text(event, "X-Mailin-custom"))])
    recipient = text(event, "email")
    report_id = text(event, "message-id")
    if kind in BOUNCES:
        reason = text(event, "reason")
        blocked = "blocked by Brevo: " if kind == "blocked" else ""
        return bounce(
            found,
            hard=BOUNCES[kind],
            diagnostic=f"{blocked}{reason}".strip() or f"Brevo: {kind}",
            recipient=recipient,
            report_id=report_id,
        )
    if kind == "spam":
        return complaint(found, recipient=recipient, report_id=report_id)
    if kind in ("unsubscribed", "unsubscribe"):
        return Unsubscribe(found, recipient.lower() or None)
    return ignored(f"a Brevo {kind[:40]} event", found)


def _token(custom: str) -> str:
    """The token in an `X-Mailin-custom` value: our JSON, or the value itself."""
    try:
        data = json.loads(custom)
    except ValueError:
        return custom
    return text(data, METADATA_KEY) if isinstance(data, dict) else custom
