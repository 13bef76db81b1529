"""Header lines and body parts of an email, built byte by byte.

`unstructured` and `mailbox` fold a header at 78 columns (RFC 5322 2.1.1)
and write anything not plain ASCII as RFC 2047 encoded words; `base64_body`
is a body part in base64 with CRLF line endings. `unsafe_reason` and
`valid_address` say why a value must not reach a header, before it does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from ..project import EMAIL

LINE = 78  # preferred header line length (RFC 5322 2.1.1)
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_WORDS = re.compile(r"\S+\s*|\s+")


def unsafe_reason(what: str, value: str) -> str | None:
    """Why `value` must not reach a header (a CR, LF or NUL), or None."""
    if "\r" in value or "\n" in value:
        return f"{what} contains a line break"
    if "\x00" in value:
        return f"{what} contains a NUL character"
    return None


def encoded_words(text: str, used: int, *, at_spaces: bool = False) -> list[str]:
    """`text` as RFC 2047 base64 encoded words, one per line, the first after `used` columns.

    Words break on character boundaries, never inside a UTF-8 sequence. With
    `at_spaces` (display names) they break after a space where they can: RFC 2047
    readers drop the folding whitespace between encoded words, and Python's own
    phrase parser keeps it, so breaking between words reads right in both.
    """
    words: list[str] = []
    budget = (LINE - used - 12) // 4 * 3
    if len(text.encode("utf-8")) <= budget:  # one word: no piece can overflow
        return [_encoded_word(text)]
    pieces = _WORDS.findall(text) if at_spaces else text
    chunk = ""
    size = 0  # UTF-8 bytes of chunk
    for piece in pieces:
        length = len(piece.encode("utf-8"))
        if chunk and size + length > budget:
            words.append(chunk)
            chunk = ""
            size = 0
            budget = (LINE - 1 - 12) // 4 * 3
        while length > budget:  # one word longer than a line
            head = _fit(piece, budget)
            words.append(head)
            piece = piece[len(head) :]
            length = len(piece.encode("utf-8"))
            budget = (LINE - 1 - 12) // 4 * 3
        chunk += piece
        size += length
    if chunk or not words:
        words.append(chunk)
    return [_encoded_word(w) for w in words]


def _encoded_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _fit(text: str, budget: int) -> str:
    """The longest prefix of `text` whose UTF-8 fits in `budget` bytes (at least one char)."""
    size = 0
    for i, char in enumerate(text):
        size += len(char.encode("utf-8"))
        if size > budget:
            return text[: max(i, 1)]
    return text


def _fold_ascii(text: str, used: int) -> list[str] | None:
    """Plain ASCII split at spaces into lines of at most 78 columns, or None if it can't be."""
    lines: list[str] = []
    current = ""
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        width = used if not lines else 0
        if current and width + len(current) + len(piece) > LINE:
            lines.append(current)
            current = piece
        else:
            current += piece
    lines.append(current)
    if any(len(line) > 998 - used for line in lines) or any(not line.strip() for line in lines[1:]):
        return None
    return lines


def unstructured(name: str, value: str) -> str:
    """`Name: value` folded, with encoded words when `value` is not plain ASCII."""
    prefix = f"{name}: "
    lines = None
    if _PRINTABLE_ASCII.match(value) and "=?" not in value and value == value.strip():
        lines = _fold_ascii(value, len(prefix))
    if lines is None:
        lines = encoded_words(value, len(prefix))
        return prefix + "\r\n ".join(lines)
    return prefix + "\r\n".join(lines)


def mailbox(name: str, display: str, address: str) -> str:
    """`Name: "Display" <address>`, the display name quoted or encoded as needed."""
    prefix = f"{name}: "
    if not display:
        return f"{prefix}<{address}>"
    quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    plain = _PRINTABLE_ASCII.match(display) and "=?" not in display
    if plain and len(prefix) + len(quoted) + len(address) + 3 <= LINE:
        return f"{prefix}{quoted} <{address}>"
    words = encoded_words(display, len(prefix), at_spaces=True)
    last = len(words[-1]) + (len(prefix) if len(words) == 1 else 1)
    tail = f" <{address}>" if last + len(address) + 3 <= LINE else f"\r\n <{address}>"
    return prefix + "\r\n ".join(words) + tail


def base64_body(text: str) -> bytes:
    """`text` as UTF-8 in base64, 76 characters a line, each line ending in CRLF.

    The same bytes as `base64.encodebytes` with CRLF, from one encoder call
    instead of one per 57-byte line.
    """
    if not text:
        return b""
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False)
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    lines.append(b"")
    return b"\r\n".join(lines)


_NOT_FEEDBACK = re.compile(r"[^A-Za-z0-9._-]+")


def feedback_part(text: str) -> str:
    """`text` as one field of a Feedback-ID header: letters, digits, `.`, `_` and `-`
    (any other run becomes one `-`), at most 40 characters; may be empty."""
    return _NOT_FEEDBACK.sub("-", text).strip("-")[:40]


def message_id_for(dedupe_key: str, domain: str) -> str:
    """A Message-ID that is the same every time the same email is built."""
    return f"<{hashlib.sha256(dedupe_key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


def valid_address(address: str) -> str | None:
    """Why `address` cannot be a recipient, or None."""
    reason = unsafe_reason("recipient address", address)
    if reason:
        return reason
    if not address.isascii():
        return f"recipient address {address!r} is not ASCII (SMTPUTF8 is not supported)"
    if not EMAIL.match(address):
        return f"recipient address {address!r} is not a valid email address"
    return None
