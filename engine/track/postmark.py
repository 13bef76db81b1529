"""Postmark's webhooks.

Postmark signs nothing: its webhook URL carries HTTP basic auth credentials
(`https://user:password@…/webhooks/postmark`), which it sends as an
`Authorization: Basic` header. The user is `webhooks.postmark.username`, the
password LIFECYCLE_POSTMARK_WEBHOOK_PASSWORD. With no timestamp to check, a request
sent again is taken again, and records nothing twice.

What each record does (the message is named by its `Metadata`'s `lifecycle-id`, from
the email's `X-PM-Metadata-lifecycle-id` header):

- `Bounce`: by Postmark's `Type`: HardBounce and BadEmailAddress are hard bounces;
  SoftBounce, DnsError, Blocked, DMARCPolicy and Unknown soft ones; SpamComplaint a
  complaint; the rest (Transient, a delay; AutoResponder, ChallengeVerification,
  AddressChange, Subscribe, ManuallyDeactivated…) is ignored;
- `SpamComplaint`: a complaint;
- `SubscriptionChange` that suppresses sending: the recipient unsubscribing (reason
  ManualSuppression, origin Recipient) is an unsubscribe; a SpamComplaint a
  complaint (the same as the SpamComplaint record, recorded once); a HardBounce is
  ignored, the Bounce record says it; a reactivation or the shop's own change is ignored;
- anything else (Delivery, Open, Click) is ignored.
"""

from __future__ import annotations

from ..project import Project, Secrets
from .sendingservice import (
    METADATA_KEY,
    Delivery,
    Event,
    Refused,
    Unsubscribe,
    basic_auth,
    bounce,
    complaint,
    field,
    ignored,
    json_object,
    same,
    text,
    tokens,
)

PASSWORD = "LIFECYCLE_POSTMARK_WEBHOOK_PASSWORD"
HARD = ("HardBounce", "BadEmailAddress")
SOFT = ("SoftBounce", "DnsError", "Blocked", "DMARCPolicy", "Unknown")


class Postmark:
    name = "postmark"

    def missing(self, project: Project, secrets: Secrets) -> str | None:
        if project.config.webhooks.postmark is None:
            return "webhooks.postmark.username in config.yaml"
        return None if secrets.postmark_webhook_password else PASSWORD

    def take(self, delivery: Delivery) -> list[Event]:
        config = delivery.project.config.webhooks.postmark
        password = delivery.secrets.postmark_webhook_password
        assert config is not None and password is not None  # `missing` said so
        given = basic_auth(delivery.headers)
        if given is None:
            raise Refused("no basic auth")
        user_ok, password_ok = same(given[0], config.username), same(given[1], password)
        if not (user_ok and password_ok):
            raise Refused("a wrong user or password")
        return [_record(json_object(delivery.body))]


def _record(record: dict[str, object]) -> Event:
    kind = text(record, "RecordType")
    found = tokens([field(record, "Metadata", METADATA_KEY)])
    recipient = text(record, "Email") or text(record, "Recipient")
    report_id = text(record, "ID")
    if kind == "Bounce":
        return _bounce(record, found)
    if kind == "SpamComplaint":
        return complaint(found, recipient=recipient, report_id=report_id)
    if kind == "SubscriptionChange":
        return _change(record, found)
    return ignored(f"a Postmark {kind[:40]} record", found)


def _bounce(record: dict[str, object], found: tuple[str, ...]) -> Event:
    kind = text(record, "Type")
    if kind == "SpamComplaint":
        return complaint(found, recipient=text(record, "Email"), report_id=text(record, "ID"))
    if kind not in HARD and kind not in SOFT:
        return ignored(f"a Postmark {kind[:40]} bounce", found)
    details = text(record, "Details") or text(record, "Description")
    return bounce(
        found,
        hard=kind in HARD,
        diagnostic=details or f"Postmark: {kind}",
        recipient=text(record, "Email"),
        report_id=text(record, "ID"),
    )


def _change(record: dict[str, object], found: tuple[str, ...]) -> Event:
    reason = text(record, "SuppressionReason")
    if field(record, "SuppressSending") is not True:
        return ignored("a Postmark reactivation", found)
    if reason == "SpamComplaint":
        return complaint(found, recipient=text(record, "Recipient"))
    if reason == "ManualSuppression" and text(record, "Origin") == "Recipient":
        return Unsubscribe(found, text(record, "Recipient").lower() or None)
    return ignored(f"a Postmark suppression ({reason[:40]}, {text(record, 'Origin')[:40]})", found)
