"""What one report from the mail system says: a bounce, a complaint, or nothing for us.

`read_report` takes the raw bytes of one email that arrived at the bounce address
and returns a `Report`:

- a **complaint**: an RFC 5965 feedback report (`multipart/report;
  report-type=feedback-report`, as Yahoo's and Outlook.com's feedback loops send);
- a **bounce**: an RFC 3464 delivery status notification whose recipient's action
  is `failed`, or one of the plain-text bounces that Exim, Yahoo and others still
  send (a failure code or a well-known failure phrase in the text). It is *hard*
  when the address itself is bad (RFC 3463 X.1.x, or X.2.1 "mailbox disabled"),
  *soft* otherwise (a full mailbox, a policy or content refusal, a timeout);
- **ignore**: a delay warning (`Action: delayed`: the message may still arrive), an
  auto-reply (RFC 3834 `Auto-Submitted`, `X-Autoreply`, "Automatic reply:") or a
  person's reply;
- **unreadable**: a delivery report without a status, or a message too big or broken
  to parse; logged and counted, never acted on.

The message a report is about is named by the VERP address it was sent to
(`bounce+<token>@…`): first in the report's own envelope headers
(`Delivered-To`, `X-Original-To`, `Envelope-To`, `To`), which survive a bounce that
drops every header of the original, then anywhere in the report (the original's
`Return-Path`, a quoted copy). Checking the token's signature is the caller's
(`engine.feedback.apply`).
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from typing import Literal

MAX_REPORT_BYTES = 2_000_000  # a report is read whole up to this size; a bigger one is not
MAX_TEXT = 200_000  # characters of text searched for a bounce's code and phrases

Kind = Literal["bounce", "complaint", "ignore", "unreadable"]

ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"(?<![\d.])([45]\d\d)(?:[ -]|$)", re.MULTILINE)
_ADDRESS = re.compile(r"[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")
_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery (sub)?system", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered mail|delivery status notification|delivery (has )?failed|"
    r"mail delivery failed|failure notice|returned mail|non-?delivery|could not be delivered",
    re.I,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|autoreply|out of (the )?office|abwesenheit|"
    r"vacation|away from)",
    re.I,
)
# Phrases of a bad address, in the words the big mail systems use.
_UNKNOWN = re.compile(
    r"user unknown|unknown user|no such user|no such mailbox|does not exist|doesn't exist|"
    r"doesn't have an? [\w.]+ account|recipient not found|recipientnotfound|"
    r"address rejected|invalid recipient|mailbox unavailable|not a valid mailbox|"
    r"account (has been )?disabled|mailbox (is )?disabled|no mailbox here|unrouteable address",
    re.I,
)
_FULL = re.compile(
    r"mailbox (is )?full|over ?quota|quota exceeded|insufficient (system )?storage", re.I
)
_PERMANENT = re.compile(r"permanent(ly)? (error|fatal|failure)|this is a permanent error", re.I)


@dataclass(frozen=True)
class Report:
    kind: Kind
    tokens: tuple[str, ...] = ()  # VERP tokens found, the envelope's first
    hard: bool = False
    status: str | None = None  # the enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the server's words (Diagnostic-Code or the text's reply line)
    recipient: str | None = None  # the address that failed or complained
    feedback_type: str | None = None  # a complaint's Feedback-Type
    reason: str = ""  # why ignored or unreadable
    report_id: str = ""  # the report's own Message-ID


class VerpPattern:
    """Finds `local+<token>@domain` addresses of one bounce address, in any letter case."""

    def __init__(self, bounce_address: str):
        local, _, domain = bounce_address.partition("@")
        self._pattern = re.compile(
            re.escape(local) + r"\+([0-9a-z]{1,20}-[0-9a-z]{1,40})@" + re.escape(domain) + r"\b",
            re.IGNORECASE,
        )

    def find(self, text: str) -> list[str]:
        return [m.group(1).lower() for m in self._pattern.finditer(text)]


def read_report(data: bytes, verp: VerpPattern) -> Report:
    """What the report in `data` says (never raises for a bad report)."""
    if len(data) > MAX_REPORT_BYTES:
        return Report("unreadable", reason=f"larger than {MAX_REPORT_BYTES:,} bytes")
    try:
        # The standard library's classic parser: a tenth of the cost of its `default`
        # policy, which decodes every header (only the subject needs it here).
        message = email.message_from_bytes(data)
        report_id = str(message.get("Message-ID", "") or "").strip()[:200]
        tokens = _tokens(message, data, verp)
        found = _classify(message)
    except Exception as exc:  # any parse failure is one unreadable report
        return Report("unreadable", reason=f"cannot be parsed: {type(exc).__name__}: {exc}"[:300])
    return Report(
        found.kind,
        tokens,
        found.hard,
        found.status,
        found.diagnostic[:500],
        found.recipient,
        found.feedback_type,
        found.reason,
        report_id,
    )


def _tokens(message: Message, data: bytes, verp: VerpPattern) -> tuple[str, ...]:
    """The VERP tokens of the report, those of its envelope headers first."""
    found: list[str] = []
    for name in ENVELOPE_HEADERS:
        for value in message.get_all(name, []) or []:
            found.extend(verp.find(str(value)))
    found.extend(verp.find(data[:MAX_REPORT_BYTES].decode("utf-8", "replace")))
    return tuple(dict.fromkeys(found))


def _classify(message: Message) -> Report:
    content_type = message.get_content_type()
    report_type = str(message.get_param("report-type", "", header="content-type") or "").lower()
    if content_type == "multipart/report" and report_type == "feedback-report":
        return _complaint(message)
    if content_type == "multipart/report" and report_type == "delivery-status":
        return _delivery_status(message)
    text = _text_of(message)
    subject = _decoded(message.get("Subject", ""))
    sender = str(message.get("From", "") or "")
    looks_like_bounce = bool(_BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(subject))
    if not looks_like_bounce and _auto_reply(message, subject):
        return Report("ignore", reason="an auto-reply")
    return _text_bounce(text, looks_like_bounce)


def _complaint(message: Message) -> Report:
    fields = _report_fields(message, "message/feedback-report")
    first = fields[0] if fields else {}
    feedback = first.get("feedback-type", "abuse").lower() or "abuse"
    recipient = first.get("original-rcpt-to") or _original_header(message, "To")
    return Report(
        "complaint", feedback_type=feedback[:40], recipient=_bare_address(recipient or "")
    )


def _delivery_status(message: Message) -> Report:
    blocks = _report_fields(message, "message/delivery-status")
    recipients = [b for b in blocks[1:] if "action" in b or "status" in b] if blocks else []
    if not recipients:
        recipients = [b for b in blocks if "status" in b]
    if not recipients:
        return Report("unreadable", reason="a delivery report with no recipient status")
    failed = [r for r in recipients if r.get("action", "").lower() == "failed"]
    if not failed:
        actions = sorted({r.get("action", "?").lower() for r in recipients})
        return Report(
            "ignore", reason=f"a delivery report that is not a failure ({', '.join(actions)})"
        )
    block = failed[0]
    status = _status(block.get("status", ""))
    diagnostic = _after_type(block.get("diagnostic-code", ""))
    if status is None:
        status = _status(diagnostic)
    if status is None:
        return Report("unreadable", reason="a failed delivery report without a status code")
    recipient = _after_type(block.get("final-recipient", "") or block.get("original-recipient", ""))
    return Report(
        "bounce",
        hard=_hard(status, diagnostic),
        status=status,
        diagnostic=diagnostic or block.get("status", ""),
        recipient=_bare_address(recipient),
    )


def _text_bounce(text: str, looks_like_bounce: bool) -> Report:
    """A bounce written as text (Exim, Yahoo, a relay that lost the DSN), or not one."""
    status_match = _STATUS.search(text)
    code_match = _REPLY_CODE.search(text)
    unknown = _UNKNOWN.search(text)
    full = _FULL.search(text)
    failure_words = bool(unknown or full or _PERMANENT.search(text))
    if not (looks_like_bounce or (failure_words and (status_match or code_match))):
        return Report("ignore", reason="not a bounce: no failure code or phrase")
    if not (status_match or code_match or failure_words):
        return Report("unreadable", reason="a bounce that says no code and no reason")
    status = status_match.group(0) if status_match else None
    if status is not None and status.startswith("2."):
        return Report("ignore", reason=f"a success notice ({status})")
    if status is not None and status.startswith("4.") and not _PERMANENT.search(text):
        return Report("ignore", reason=f"a delay warning ({status})")
    line = _line_around(text, status_match or code_match or unknown or full)
    hard = _hard(status, line) if status is not None else bool(unknown) and not full
    return Report(
        "bounce", hard=hard, status=status, diagnostic=line, recipient=_failed_address(text)
    )


def _hard(status: str, diagnostic: str) -> bool:
    """A bad address: permanent (5.x.x) and about the mailbox (X.1.x, or X.2.1 disabled);
    or a permanent refusal whose words say the user does not exist."""
    klass, subject, detail = status.split(".")
    if klass != "5":
        return False
    if subject == "1" or (subject, detail) == ("2", "1"):
        return True
    return subject != "2" and bool(_UNKNOWN.search(diagnostic)) and not _FULL.search(diagnostic)


def _auto_reply(message: Message, subject: str) -> bool:
    auto = str(message.get("Auto-Submitted", "") or "").strip().lower()
    if auto and auto != "no":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    if str(message.get("Precedence", "") or "").strip().lower() in ("auto_reply", "auto-reply"):
        return True
    return bool(_AUTO_SUBJECT.search(subject))


def _report_fields(message: Message, content_type: str) -> list[dict[str, str]]:
    """The field blocks of the report's machine-readable part, lower-case names."""
    for part in message.walk():
        if part.get_content_type() != content_type:
            continue
        payload = part.get_payload()
        blocks: list[dict[str, str]] = []
        if isinstance(payload, list):  # the email package parses each block as headers
            for block in payload:
                if isinstance(block, Message):
                    blocks.append({k.lower(): str(v).strip() for k, v in block.items()})
        else:
            blocks = _parse_blocks(str(part.get_payload(decode=False) or ""))
        return [b for b in blocks if b]
    return []


def _parse_blocks(text: str) -> list[dict[str, str]]:
    """Header-like blocks separated by blank lines (a report part the parser left as text)."""
    blocks = []
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep and name.strip():
                last = name.strip().lower()
                fields[last] = value.strip()
        blocks.append(fields)
    return blocks


def _text_of(message: Message) -> str:
    """The report's readable text: its text parts, and the headers of an attached original."""
    pieces: list[str] = []
    size = 0
    for part in message.walk():
        kind = part.get_content_type()
        if kind.startswith("multipart/") or kind == "message/rfc822":
            if kind == "message/rfc822":
                original = part.get_payload()
                inner = original[0] if isinstance(original, list) and original else None
                if isinstance(inner, Message):
                    pieces.append("".join(f"{k}: {v}\n" for k, v in inner.items()))
            continue
        if kind.startswith("text/") or kind in ("message/delivery-status", "text/rfc822-headers"):
            pieces.append(_part_text(part))
        size += len(pieces[-1]) if pieces else 0
        if size > MAX_TEXT:
            break
    return "\n".join(pieces)[:MAX_TEXT]


def _part_text(part: Message) -> str:
    """A text part's content as text, in its charset (undecodable bytes replaced)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return payload.decode("utf-8", "replace")


def _decoded(value: object) -> str:
    """A header's text with its RFC 2047 encoded words decoded (as is if it cannot be)."""
    text = str(value or "")
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, ValueError, UnicodeDecodeError):
        return text


def _original_header(message: Message, name: str) -> str | None:
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get(name):
                return str(inner.get(name))
        if part.get_content_type() == "text/rfc822-headers":
            headers = email.message_from_string(str(part.get_payload(decode=False) or ""))
            if headers.get(name):
                return str(headers.get(name))
    return None


def _status(text: str) -> str | None:
    match = _STATUS.search(text)
    return match.group(0) if match else None


def _after_type(value: str) -> str:
    """`rfc822; a@b.example` → `a@b.example`; `smtp; 550 …` → `550 …`."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def _bare_address(text: str) -> str | None:
    match = _ADDRESS.search(text)
    return match.group(0).lower() if match else None


def _failed_address(text: str) -> str | None:
    """The address a text bounce names as failed: the first one that is not a daemon's."""
    for match in _ADDRESS.finditer(text):
        address = match.group(0).lower()
        if not re.match(r"(mailer-daemon|postmaster|bounce)[@+]", address):
            return address
    return None


def _line_around(text: str, match: re.Match[str] | None) -> str:
    if match is None:
        return ""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return " ".join(text[start : end if end >= 0 else len(text)].split())[:500]
