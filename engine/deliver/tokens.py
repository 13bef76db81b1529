"""Signed tokens for the pixel, click, unsubscribe and survey links, and for the
envelope sender that bounces come back to.

A token is `base64url(payload).base64url(HMAC-SHA256(secret, payload))`, where
the payload names its purpose and the message id (and, for clicks, the exact
URL to redirect to). A forged, altered, truncated or foreign-purpose token
raises `InvalidToken`; comparison is constant-time.

The bounce token goes in the local part of the envelope sender (VERP,
`bounce+<token>@bounces.example.com`), where mail systems may change its case,
so it is `<message id>-<tag>` in lower-case letters and digits only: the tag is
the first 80 bits of the message id's HMAC in base32 (26 characters).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from ..errors import EngineError

MAX_TOKEN_LENGTH = 4096


class InvalidToken(EngineError, ValueError):
    """The token was not made by this engine with this secret, or is malformed."""


class Purpose(StrEnum):
    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"
    SURVEY = "s"


BOUNCE_TAG = 16  # base32 characters of the bounce token's tag: 80 bits
MAX_BOUNCE_TOKEN = 40


@dataclass(frozen=True)
class Claim:
    """What a valid token says: which message, and for a click, where to."""

    purpose: Purpose
    message_id: int
    url: str | None = None


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """base64url without padding (`base64.urlsafe_b64encode` in one encoder call)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Makes and checks tokens with one secret."""

    def __init__(self, secret: str):
        if not secret or len(secret) < 16:
            raise InvalidToken("the tracking secret must be at least 16 characters")
        self._key = hashlib.sha256(b"lifecycle-tokens\x00" + secret.encode()).digest()
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)  # copied, never updated

    def _sign(self, payload: bytes) -> str:
        mac = self._keyed.copy()  # cheaper than keying a new HMAC for every token
        mac.update(payload)
        return _b64(mac.digest())

    def make(self, purpose: Purpose, message_id: int, url: str | None = None) -> str:
        """A token for `message_id` (and, for a click, `url`); InvalidToken if it cannot be one.

        A URL too long for a token that `verify` accepts is refused here, rather
        than making a link that would never work.
        """
        if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 0:
            raise InvalidToken(f"a message id must be a whole number, got: {message_id!r}")
        payload = f"{purpose.value}:{message_id}"
        if purpose is Purpose.CLICK:
            if not url:
                raise InvalidToken("a click token needs a URL")
            payload += f":{url}"
        data = payload.encode("utf-8")
        token = f"{_b64(data)}.{self._sign(data)}"
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(
                f"the link is too long to sign ({len(url or '')} characters): {(url or '')[:60]}…"
            )
        return token

    def open_token(self, message_id: int) -> str:
        return self.make(Purpose.OPEN, message_id)

    def click_token(self, message_id: int, url: str) -> str:
        return self.make(Purpose.CLICK, message_id, url)

    def unsubscribe_token(self, message_id: int) -> str:
        return self.make(Purpose.UNSUBSCRIBE, message_id)

    def survey_token(self, message_id: int) -> str:
        return self.make(Purpose.SURVEY, message_id)

    def bounce_token(self, message_id: int) -> str:
        """`<message id>-<tag>`, lower case: the VERP local part's token for a message."""
        if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 0:
            raise InvalidToken(f"a message id must be a whole number, got: {message_id!r}")
        return f"{message_id}-{self._bounce_tag(message_id)}"

    def verify_bounce(self, token: str) -> int:
        """The message id a bounce token names (any letter case), or InvalidToken."""
        if not isinstance(token, str) or len(token) > MAX_BOUNCE_TOKEN:
            raise InvalidToken("malformed bounce token")
        number, _, tag = token.lower().partition("-")
        if not (number.isascii() and number.isdigit() and len(number) <= 19):
            raise InvalidToken("malformed bounce token")
        if not hmac.compare_digest(self._bounce_tag(int(number)).encode(), tag.encode("utf-8")):
            raise InvalidToken("bad signature")
        return int(number)

    def digest(self, text: str) -> str:
        """A keyed digest of `text` (64 hex digits): an id no one without the secret can
        work out from `text`, the same every time."""
        mac = self._keyed.copy()
        mac.update(b"id:" + text.encode("utf-8"))  # no token's payload starts so
        return mac.hexdigest()

    def _bounce_tag(self, message_id: int) -> str:
        mac = self._keyed.copy()
        mac.update(f"verp:{message_id}".encode("ascii"))  # no link token's payload starts so
        return base64.b32encode(mac.digest()).decode("ascii")[:BOUNCE_TAG].lower()

    def verify(self, token: str, purpose: Purpose) -> Claim:
        """Return the token's claim, or raise InvalidToken."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise InvalidToken("malformed token")
        body, signature = token.split(".")
        try:
            data = _unb64(body)
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken("malformed token") from exc
        if _b64(data) != body:  # the decoder skips stray characters: only our own spelling counts
            raise InvalidToken("malformed token")
        # Bytes, not str: compare_digest refuses non-ASCII text with a TypeError.
        if not hmac.compare_digest(self._sign(data).encode(), signature.encode("utf-8", "replace")):
            raise InvalidToken("bad signature")
        kind, _, rest = data.decode("utf-8", "replace").partition(":")
        if kind != purpose.value:
            raise InvalidToken("token made for another purpose")
        number, _, url = rest.partition(":")
        if not (number.isascii() and number.isdigit()):
            raise InvalidToken("malformed token")
        if purpose is Purpose.CLICK and not url:
            raise InvalidToken("click token without a URL")
        return Claim(purpose, int(number), url or None)
