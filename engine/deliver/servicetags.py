"""The header lines that name an email to the sending service relaying it.

Every email carries `X-Lifecycle-ID: <bounce token>` (the token of its VERP address,
`Signer.bounce_token`). A shop that relays through a sending service sets
`sending.service`, and its emails also carry the metadata header that service
echoes back in its webhooks, with the same token under the key `lifecycle-id`:

| service  | header                                                   | echoed in the webhook as            |
|----------|----------------------------------------------------------|-------------------------------------|
| ses      | `X-SES-MESSAGE-TAGS: lifecycle-id=<token>`               | `mail.tags` (with a configuration set's event publishing); with "include original headers" on, `mail.headers` holds `X-Lifecycle-ID` |
| sendgrid | `X-SMTPAPI: {"unique_args": {"lifecycle-id": "<token>"}}` | each event's `lifecycle-id`         |
| mailgun  | `X-Mailgun-Variables: {"lifecycle-id": "<token>"}`       | `event-data.user-variables`         |
| postmark | `X-PM-Metadata-lifecycle-id: <token>`                    | `Metadata`                          |
| brevo    | `X-Mailin-custom: {"lifecycle-id": "<token>"}`           | `X-Mailin-custom`, as sent          |

The webhooks (`engine.track`) read the token back and check its signature.
"""

from __future__ import annotations

import re

SERVICES = ("none", "ses", "sendgrid", "mailgun", "postmark", "brevo")
METADATA_KEY = "lifecycle-id"
HEADER = "X-Lifecycle-ID"
# What `Signer.bounce_token` makes: digits, a dash, lower-case base32.
_TOKEN = re.compile(r"[0-9]{1,19}-[a-z2-7]{1,32}")


def service_headers(service: str | None, token: str) -> list[str]:
    """The header lines (no line breaks) that name the email of `token` to `service`.

    Raises ValueError for a service it does not know or a token that is not one.
    """
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"not a bounce token: {token!r}")
    lines = [f"{HEADER}: {token}"]
    key = METADATA_KEY
    if service in (None, "none"):
        return lines
    if service == "ses":
        lines.append(f"X-SES-MESSAGE-TAGS: {key}={token}")
    elif service == "sendgrid":
        lines.append(f'X-SMTPAPI: {{"unique_args": {{"{key}": "{token}"}}}}')
    elif service == "mailgun":
        lines.append(f'X-Mailgun-Variables: {{"{key}": "{token}"}}')
    elif service == "postmark":
        lines.append(f"X-PM-Metadata-{key}: {token}")
    elif service == "brevo":
        lines.append(f'X-Mailin-custom: {{"{key}": "{token}"}}')
    else:
        raise ValueError(f"unknown sending service {service!r}; expected one of {SERVICES}")
    return lines
