"""Typed, frozen models of config.yaml and segment files.

Each model rejects unknown keys; the values a marketer types are validated by the
types of `values`, whose errors say what was expected and what was found.
"""

from __future__ import annotations

import base64
from datetime import date, time, timedelta
from datetime import date as Date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, IPvAnyNetwork, model_validator

from .rewards import Referrals
from .values import (
    Amount,
    CountryCode,
    CurrencyCode,
    Email,
    Frozen,
    LocaleName,
    LocalText,
    Percent,
    Port,
    Slug,
    TimeOfDay,
    TimeZoneName,
    WebAddress,
    amount_from,
    duration_from,
    number,
    whole,
)

# ---------------------------------------------------------------- config.yaml


class Shop(Frozen):
    name: str = Field(min_length=1)
    address: str = Field(min_length=5, description="postal address shown in every footer")
    url: WebAddress
    story: LocalText = ""
    country: CountryCode = "BD"
    currency: CurrencyCode = "BDT"
    timezone: TimeZoneName = "Asia/Dhaka"
    locale: LocaleName = "bn_BD"
    support_email: Email | None = None


class Sender(Frozen):
    name: str = Field(min_length=1)
    email: Email


class Smtp(Frozen):
    host: str = "127.0.0.1"
    port: Port = 8025
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    timeout: Annotated[timedelta, duration_from("1s", "10m")] = timedelta(seconds=30)
    local_hostname: str = "localhost"
    # A relay whose certificate a private certificate authority signed: that authority's
    # PEM file (relative to config.yaml); None: the system's authorities.
    ca_file: str | None = None


class SendWindow(Frozen):
    start: TimeOfDay = time(9, 0)
    end: TimeOfDay = time(20, 0)

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.start == self.end:
            raise ValueError("start and end must differ (an empty window sends nothing)")
        return self


class FrequencyCap(Frozen):
    max: Annotated[int, whole(1, 1000)]
    per: Annotated[timedelta, duration_from("1h", "365d")]


class Dkim(Frozen):
    domain: str = Field(min_length=3)
    selector: str = Field(min_length=1)
    key_file: str = Field(min_length=1, description="PEM private key, relative to config.yaml")


class Canary(Frozen):
    """A big marketing send goes to a share first; the rest waits for its figures."""

    enabled: bool = True
    # Sends to more recipients than this get a canary.
    min_recipients: Annotated[int, whole(1, 10_000_000)] = 2000
    share: Percent = Decimal("5")  # of the send, as the canary
    watch: Annotated[timedelta, duration_from("1m", "7d")] = timedelta(hours=1)
    # The most of the canary's sent emails that may bounce hard, complain or unsubscribe.
    max_hard_bounces: Percent = Decimal("2")
    max_complaints: Percent = Decimal("0.1")
    max_unsubscribes: Percent = Decimal("1")

    @model_validator(mode="after")
    def _share(self) -> Canary:
        if not Decimal("0.1") <= self.share <= Decimal("50"):
            raise ValueError("share must be from 0.1% to 50%")
        return self


class Ramp(Frozen):
    """A new sending domain's daily ramp of marketing emails (see engine.deliver.ramp)."""

    start: date
    first_day: Annotated[int, whole(1, 1_000_000)] = 200
    growth: Annotated[float, number(1.01, 10)] = 2.0


class Sending(Frozen):
    sender: Sender = Field(alias="from")
    reply_to: Email | None = None
    unsubscribe_mailto: Email | None = None
    smtp: Smtp = Smtp()
    connections: Annotated[int, whole(1, 64)] = 4
    rate_per_second: Annotated[float, number(0.01, 10_000)] = 50
    recycle_after: Annotated[int, whole(1, 100_000)] = 200
    batch_size: Annotated[int, whole(1, 10_000)] = 100
    # Short leases are safe (a sender never sends a row whose lease it lost), only wasteful.
    lease: Annotated[timedelta, duration_from("1s", "1d")] = timedelta(minutes=5)
    max_attempts: Annotated[int, whole(1, 100)] = 8
    max_age: Annotated[timedelta, duration_from("1m", "30d")] = timedelta(hours=72)
    window: SendWindow = SendWindow()
    frequency_cap: FrequencyCap | None = None
    dkim: Dkim | None = None
    # The sending service the relay is (`smtp` points at it), whose webhooks report
    # bounces, complaints and unsubscribes: each email carries its metadata header.
    service: Literal["none", "ses", "sendgrid", "mailgun", "postmark", "brevo"] = "none"
    # VERP: each email's envelope sender is `local+<signed token>@domain` of this
    # address, so a bounce names its message even when it drops every header.
    bounce_address: Email | None = None
    canary: Canary = Canary()
    ramp: Ramp | None = None


class Tracking(Frozen):
    base_url: WebAddress = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: Port = 8000
    machine_open_window: Annotated[timedelta, duration_from("0s", "10m")] = timedelta(seconds=5)
    # Reverse proxies (addresses or networks) whose X-Forwarded-For is believed.
    trusted_proxies: list[IPvAnyNetwork] = Field(default=[], max_length=100)


class ExtraHoliday(Frozen):
    """A sale or occasion of the shop's own. Without a date here, its date is set in
    the database when announced (`lifecycle holiday set`, or the events API)."""

    id: Slug
    name: LocalText
    date: Date | None = None


class Holidays(Frozen):
    country: CountryCode = "BD"
    # A confirmed date replaces the estimate for that year, e.g. after moon sighting.
    confirmed: dict[Slug, list[date]] = Field(default={})
    extra: list[ExtraHoliday] = Field(default=[])

    @model_validator(mode="before")
    @classmethod
    def _one_date_is_a_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("confirmed"), dict):
            confirmed = {k: v if isinstance(v, list) else [v] for k, v in data["confirmed"].items()}
            data = {**data, "confirmed": confirmed}
        return data


class Refunds(Frozen):
    minimum: Annotated[Amount, amount_from("0.01")] = Decimal("0.01")
    # A refund's store credit expires this long after it is credited; None: never.
    credit_expires_after: Annotated[timedelta, duration_from("1d", "3650d")] | None = None


class BounceImap(Frozen):
    """A mailbox the bounces arrive in, read over IMAP with implicit TLS; the password
    comes from LIFECYCLE_BOUNCE_PASSWORD."""

    host: str = Field(min_length=1)
    port: Port = 993
    username: str = Field(min_length=1)
    folder: str = Field(default="INBOX", min_length=1, max_length=200)
    # A private certificate authority's PEM file (relative to config.yaml); None: the system's.
    ca_file: str | None = None
    timeout: Annotated[timedelta, duration_from("1s", "5m")] = timedelta(seconds=30)


class BounceListen(Frozen):
    """The daemon's own SMTP listener for the bounce domain (its MX points here)."""

    host: str = Field(default="0.0.0.0", min_length=1)
    port: Port = 25


class Bounces(Frozen):
    """Where bounce and complaint reports arrive, and what a soft bounce costs."""

    # A local Maildir (relative to config.yaml) the reports are delivered to.
    maildir: str | None = None
    imap: BounceImap | None = None
    # Reports sent straight to the daemon over SMTP (with or without a mailbox).
    listen: BounceListen | None = None
    # Reports handled are moved to this folder of the mailbox; those that name no
    # message of ours (or cannot be read) to the second.
    processed_folder: str = Field(default="Processed", min_length=1, max_length=100)
    unmatched_folder: str = Field(default="Unmatched", min_length=1, max_length=100)
    # An address is suppressed after this many soft bounces within the window.
    soft_limit: Annotated[int, whole(1, 100)] = 3
    soft_window: Annotated[timedelta, duration_from("1d", "365d")] = timedelta(days=30)
    # The daemon reads the mailbox this often (when one is configured).
    every: Annotated[timedelta, duration_from("1m", "1d")] = timedelta(minutes=5)
    # The most reports one run reads; the rest wait for the next run.
    max_per_run: Annotated[int, whole(1, 100_000)] = 5_000

    @model_validator(mode="after")
    def _one_mailbox(self) -> Bounces:
        if self.maildir and self.imap:
            raise ValueError("give either maildir or imap, not both")
        if self.processed_folder == self.unmatched_folder:
            raise ValueError("processed_folder and unmatched_folder must differ")
        return self


class SesWebhook(Frozen):
    """Amazon SES notifications, delivered by Amazon SNS to `POST /webhooks/ses`."""

    # The SNS topic the SES identity publishes its bounces and complaints to.
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
    # The PEM certificate SNS signs with (at the messages' SigningCertURL), relative to
    # config.yaml; the file may hold several, the next one before SNS changes over.
    certificate: str = Field(min_length=1)


class SendgridWebhook(Frozen):
    """SendGrid's Signed Event Webhook, to `POST /webhooks/sendgrid`."""

    # The verification key SendGrid shows for the signed webhook: base64 DER, ECDSA P-256.
    public_key: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _p256_key(self) -> SendgridWebhook:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            der = base64.b64decode("".join(self.public_key.split()), validate=True)
            key = load_der_public_key(der)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"public_key is not a base64 DER public key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("public_key must be an ECDSA P-256 key (SendGrid's verification key)")
        return self


class PostmarkWebhook(Frozen):
    """Postmark's webhooks to `POST /webhooks/postmark`, with HTTP basic auth; the
    password comes from LIFECYCLE_POSTMARK_WEBHOOK_PASSWORD."""

    username: str = Field(min_length=1, max_length=200, pattern=r"^[^:\s]+$")


class Webhooks(Frozen):
    """The sending services whose webhooks the tracking server takes. Mailgun's and
    Brevo's need only their secret in the environment (see `Secrets`)."""

    ses: SesWebhook | None = None
    sendgrid: SendgridWebhook | None = None
    postmark: PostmarkWebhook | None = None


class Reports(Frozen):
    attribution_days: Annotated[int, whole(1, 365)] = 7
    # The retention's activity window in days; None: a calendar year back.
    activity_days: Annotated[int, whole(1, 3660)] | None = None


class Paths(Frozen):
    campaigns: str = "campaigns"
    segments: str = "segments"
    templates: str = "templates/emails"
    # The loyalty program; without this file the shop has no tiers.
    tiers: str = "tiers.yaml"


class Config(Frozen):
    shop: Shop
    sending: Sending
    database: str = "sqlite:///lifecycle.db"
    tick_seconds: Annotated[int, whole(1, 3600)] = 60
    campaigns: list[Slug] = Field(default=[], description="the campaigns that run")
    tracking: Tracking = Tracking()
    holidays: Holidays = Holidays()
    refunds: Refunds = Refunds()
    referrals: Referrals = Referrals()
    reports: Reports = Reports()
    bounces: Bounces = Bounces()

    @model_validator(mode="after")
    def _bounces_need_an_address(self) -> Config:
        bounces = self.bounces
        if (bounces.maildir or bounces.imap or bounces.listen) and not self.sending.bounce_address:
            raise ValueError(
                "bounces: a bounce mailbox or listener needs sending.bounce_address "
                "(the address the reports come back to)"
            )
        return self

    webhooks: Webhooks = Webhooks()
    paths: Paths = Paths()


# ---------------------------------------------------------------- segments


class Segment(Frozen):
    name: Slug
    description: str = ""
    # Checked and compiled by engine.plan.segments; kept as written here.
    rules: dict[str, Any] | None = None
