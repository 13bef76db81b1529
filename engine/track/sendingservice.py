"""What a sending service's webhook module is, and the checks they share.

A shop that relays its email through a sending service (Amazon SES, SendGrid,
Mailgun, Postmark, Brevo) hears of bounces, complaints and unsubscribes from the
service's webhooks. Each service has a module of one shape, a `Service`:
`missing` says what it lacks to be on, and `take` checks that a `Delivery` (one
request) is the service's own, then turns its body into the engine's events: a
feedback `Report` (a bounce, a complaint, or one to ignore) or an `Unsubscribe`,
each naming its message by the token the email carried (`engine.deliver`'s
`servicetags`). `take` raises `Refused` for a request that is not the service's
(401), `Malformed` for a body that is not what the service sends (400) and
`Unavailable` when the engine's side is broken (503). `servicehooks` answers and
applies them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..errors import EngineError
from ..feedback import Report
from ..project import Project, Secrets

MAX_AGE = timedelta(minutes=5)  # a signature's timestamp this far from now is refused
METADATA_KEY = "lifecycle-id"  # the key the token is echoed under (`servicetags`)
MAX_TOKEN = 40
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class Refused(EngineError, PermissionError):
    """The request is not the service's own: no, a forged or a stale signature (401)."""


class Malformed(EngineError, ValueError):
    """The body is not what the service sends (400)."""


class Unavailable(EngineError, RuntimeError):
    """The engine cannot check the request now, e.g. its certificate is unreadable (503)."""


@dataclass(frozen=True)
class Unsubscribe:
    """The recipient unsubscribed at the service (its link, or its list-unsubscribe)."""

    tokens: tuple[str, ...]
    recipient: str | None = None


Event = Report | Unsubscribe


@dataclass(frozen=True)
class Delivery:
    """One request to a service's webhook, as read: headers, the whole body, and the
    project, secrets and time it is checked with."""

    headers: Mapping[str, str]
    body: bytes
    project: Project
    secrets: Secrets
    now: datetime


class Service(Protocol):
    name: str

    def missing(self, project: Project, secrets: Secrets) -> str | None:
        """What to set for this webhook to be on, or None when it is."""

    def take(self, delivery: Delivery) -> list[Event]:
        """The delivery's events; Refused, Malformed or Unavailable if there are none to take."""


# ---------------------------------------------------------------- checks


def same(given: str, expected: str) -> bool:
    """`given == expected`, in constant time (bytes: `compare_digest` refuses non-ASCII text)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def check_age(timestamp: object, now: datetime) -> None:
    """Refused unless `timestamp` (Unix seconds) is within MAX_AGE of `now`."""
    try:
        signed = datetime.fromtimestamp(float(str(timestamp)), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise Refused(f"the signature's timestamp is not a time: {str(timestamp)[:40]!r}") from exc
    if abs(now - signed) > MAX_AGE:
        raise Refused(f"the signature is from {signed:%Y-%m-%d %H:%M:%S} UTC, over 5 minutes away")


def basic_auth(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The user and password of an `Authorization: Basic …` header, or None."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def json_body(body: bytes) -> Any:
    """The body as JSON; Malformed when it is not."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"the body is not JSON: {exc}"[:200]) from exc


def json_object(body: bytes) -> dict[str, Any]:
    data = json_body(body)
    if not isinstance(data, dict):
        raise Malformed(f"the body is not a JSON object but a {type(data).__name__}")
    return data


# ---------------------------------------------------------------- reading events


def field(data: object, *path: str) -> Any:
    """`data[path[0]][path[1]]…`, or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def text(data: object, *path: str) -> str:
    """The text at `path` (a number as text), or "" when there is none."""
    value = field(data, *path)
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, str | int | float) else ""


def tokens(values: Iterable[object]) -> tuple[str, ...]:
    """The candidate tokens among `values`, lower case, each once (checked when applied)."""
    found: list[str] = []
    for value in values:
        if isinstance(value, list):
            found.extend(tokens(value))
        elif isinstance(value, str) and 0 < len(value.strip()) <= MAX_TOKEN:
            found.append(value.strip().lower())
    return tuple(dict.fromkeys(found))


def status_in(*texts: str) -> str | None:
    """The first enhanced status code (RFC 3463, `5.1.1`) in `texts`."""
    for value in texts:
        match = _STATUS.search(value)
        if match:
            return match.group(0)
    return None


def bounce(
    found: tuple[str, ...],
    *,
    hard: bool,
    diagnostic: str,
    status: str | None = None,
    recipient: str = "",
    report_id: str = "",
) -> Report:
    """A bounce report; the status is read from the diagnostic when not given."""
    diagnostic = " ".join(diagnostic.split())[:500]
    return Report(
        "bounce",
        found,
        hard=hard,
        status=status or status_in(diagnostic),
        diagnostic=diagnostic,
        recipient=recipient.lower() or None,
        report_id=report_id[:200],
    )


def complaint(
    found: tuple[str, ...],
    *,
    feedback_type: str = "abuse",
    recipient: str = "",
    report_id: str = "",
) -> Report:
    return Report(
        "complaint",
        found,
        recipient=recipient.lower() or None,
        feedback_type=feedback_type[:40] or "abuse",
        report_id=report_id[:200],
    )


def ignored(reason: str, found: tuple[str, ...] = ()) -> Report:
    return Report("ignore", found, reason=reason[:300])
