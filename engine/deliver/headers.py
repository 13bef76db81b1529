"""Header lines and body parts of an email, built byte by byte.

`unstructured` and `mailbox` fold a header at 78 columns (RFC 5322 2.1.1)
and write anything not plain ASCII as RFC 2047 encoded words; `base64_body`
is a body part in base64 with CRLF line endings. `unsafe_reason` and
`valid_address` say why a value must not reach a header, before it does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import string
import unicodedata
from typing import NamedTuple

from ..project import EMAIL

LINE = 78  # preferred header line length (RFC 5322 2.1.1)
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")


def unsafe_reason(what: str, value: str) -> str | None:
    """Why `value` must not reach a header (a CR, LF or NUL), or None."""
    if "\r" in value or "\n" in value:
        return f"{what} contains a line break"
    if "\x00" in value:
        return f"{what} contains a NUL character"
    return None


def encoded_words(text: str, used: int, *, at_spaces: bool = False) -> list[str]:
    """`text` as RFC 2047 encoded words, one per line, the first after `used` columns.

    A word holds whole letters: it never ends inside a UTF-8 sequence, before a
    vowel sign or other mark, after a virama (inside a Bengali conjunct) or beside
    a joiner. Every base64 word but the last holds a multiple of 3 bytes, so none
    is padded with `=`: GMime (mu, notmuch, Evolution, Geary) decodes a run of
    base64 words as one stream and stops at the first padding. Where no such word
    fits a line (ASCII characters, not a multiple of 3 of them, then a long run of
    Bengali), that word is written in Q encoding, which ends the run. With `at_spaces`
    (display names) words end beside a space where they can: RFC 2047 readers drop
    the folding whitespace between encoded words, and a parser that keeps it
    (Python's, before gh-128110) then shows two spaces, not a space inside a name.
    """
    room = LINE - used - _FRAME  # encoded characters the first word may hold
    if _b64_size(len(text.encode("utf-8"))) <= room:  # one word: nothing to split
        return [_b64_word(text)]
    words: list[str] = []
    start = 0
    while start < len(text):
        end = _b64_end(text, start, room // 4 * 3, at_spaces)
        if end is not None:
            words.append(_b64_word(text[start:end]))
        else:
            end = _q_end(text, start, room, at_spaces)
            words.append(_q_word(text[start:end]))
        start, room = end, LINE - 1 - _FRAME
    return words


_FRAME = len("=?utf-8?b??=")  # an encoded word's characters besides its text
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner
_VIRAMA = 9  # the canonical combining class of a virama (the Bengali hasanta)
_Q_PLAIN = frozenset(string.ascii_letters + string.digits + "!*+-/")


def _b64_end(text: str, start: int, most: int, at_spaces: bool) -> int | None:
    """Where a base64 word of at most `most` bytes from `start` ends, or None: the last
    place a word may end (`_may_end`) with a multiple of 3 bytes before it, unless it
    ends `text`; with `at_spaces`, the last such place beside a space, if any."""
    head = text[start : start + most].encode("utf-8")[:most].decode("utf-8", "ignore")
    end = start + len(head)
    if end == len(text):
        return end
    size = len(head.encode("utf-8"))
    found = None
    while end > start:
        if size % 3 == 0 and _may_end(text, end):
            if not at_spaces or " " in (text[end - 1], text[end]):
                return end
            if found is None:
                found = end
        end -= 1
        size -= _character(text[end]).size
    return found


def _q_end(text: str, start: int, room: int, at_spaces: bool) -> int:
    """Where a Q word of at most `room` characters from `start` ends: the last place a
    word may end (with `at_spaces`, beside a space, if any); a letter longer than
    `room` is cut between its characters."""
    size = 0
    end = start
    last = spaced = None
    while end < len(text):
        size += _character(text[end]).q_size
        if size > room:
            break
        end += 1
        if _may_end(text, end):
            last = end
            if end < len(text) and " " in (text[end - 1], text[end]):
                spaced = end
    if last is None:
        return max(end, start + 1)
    return spaced if at_spaces and spaced is not None and last != len(text) else last


def _may_end(text: str, end: int) -> bool:
    """Whether a word may end before `text[end]` without cutting a letter."""
    if end == len(text):
        return True
    return not (_character(text[end - 1]).joins_next or _character(text[end]).joins_previous)


class _Character(NamedTuple):
    size: int  # UTF-8 bytes
    q_size: int  # characters in Q encoding
    joins_previous: bool  # no word may end before it: a mark (a vowel sign, a nukta), a joiner
    joins_next: bool  # nor after it: a virama (inside a conjunct), a joiner


@functools.lru_cache(maxsize=4096)
def _character(char: str) -> _Character:
    size = len(char.encode("utf-8"))
    joiner = char in _JOINERS
    return _Character(
        size,
        1 if char in _Q_PLAIN or char == " " else 3 * size,
        joiner or unicodedata.category(char)[0] == "M",
        joiner or unicodedata.combining(char) == _VIRAMA,
    )


def _b64_size(size: int) -> int:
    return (size + 2) // 3 * 4


def _b64_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _q_word(text: str) -> str:
    """`text` in RFC 2047 Q encoding: a space as `_`, anything but letters, digits
    and `!*+-/` as `=XX` (safe in a display name too)."""
    encoded = "".join(
        char if char in _Q_PLAIN else "_" if char == " " else _hex(char) for char in text
    )
    return f"=?utf-8?q?{encoded}?="


def _hex(char: str) -> str:
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


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
