"""Coupon codes: drawn at random one by one, or derived from a message with a key.

A code looks like `WELCOME-7KQ2-M9XD-P4TR`: an optional prefix (letters and
digits), then 12 characters from an alphabet of 32 without look-alikes (no 0/O,
no 1/I) in groups of four, that is 60 bits.

- `new_code` draws the 60 bits from `secrets`: the coupons stored one row each
  (a referral reward).
- A campaign's email carries the code `CodeKey.code` derives from its message
  id: the id under a keyed permutation of the 60-bit numbers, a balanced
  Feistel network of `ROUNDS` rounds on two 30-bit halves whose round function
  is keyed BLAKE2b (a pseudorandom function; by Luby and Rackoff, four rounds
  of one already make a strong pseudorandom permutation). The key is 32 bytes
  from `secrets`, made once per database (the `coupon_secret` row, `code_key`).
  So two messages never share a code, a message has its code from the moment
  it is queued with nothing written for it, and without the key a code tells
  nothing about its message or any other: guessing one of a million live codes
  takes about 10^12 tries, as with drawn codes. `CodeKey.message_id` turns a
  code back into the message id it would belong to; the caller checks that
  that message exists, carries a coupon, and that the prefix is its own.

The format-preserving ciphers of NIST SP 800-38G (FF1, FF3-1) would do the same
with AES, which the standard library does not have; this is the textbook
construction they are built on, over the standard library's keyed BLAKE2b.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..store import CouponSecret, ignoring_insert

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
# Every byte maps to one of the 32 characters with equal chance (256 = 8 × 32).
_TO_ALPHABET = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(256))
_VALUE = {character: value for value, character in enumerate(ALPHABET)}
CODE_LENGTH = 12
GROUP = 4
BITS = 5 * CODE_LENGTH  # 60
HALF = BITS // 2
_HALF_MASK = (1 << HALF) - 1
ROUNDS = 8
KEY_BYTES = 32

_SECRET: Any = CouponSecret.__table__  # type: ignore[attr-defined]


def random_characters(length: int) -> str:
    """`length` characters of `ALPHABET` from `secrets`, each equally likely."""
    return secrets.token_bytes(length).translate(_TO_ALPHABET).decode("ascii")


def new_code(prefix: str = "") -> str:
    """A fresh unguessable code, like `WELCOME-7KQ2-M9XD-P4TR` (or without the prefix)."""
    return new_codes(1, prefix)[0]


def new_codes(count: int, prefix: str = "") -> list[str]:
    """`count` fresh codes like `new_code`'s, from one call to `secrets` for them all."""
    body = random_characters(CODE_LENGTH * count)
    return [
        _grouped(prefix, body[at : at + CODE_LENGTH]) for at in range(0, len(body), CODE_LENGTH)
    ]


def _grouped(prefix: str, body: str) -> str:
    groups = [body[at : at + GROUP] for at in range(0, CODE_LENGTH, GROUP)]
    return "-".join([prefix, *groups] if prefix else groups)


def split_code(code: str) -> tuple[str, str] | None:
    """(prefix, the 12 characters) of a code in the shape codes have, else None."""
    parts = code.split("-")
    if len(parts) == GROUP:
        prefix, groups = parts[0], parts[1:]
    elif len(parts) == GROUP - 1:
        prefix, groups = "", parts
    else:
        return None
    body = "".join(groups)
    if any(len(g) != GROUP for g in groups) or not all(c in _VALUE for c in body):
        return None
    return prefix, body


class CodeKey:
    """Derives a message's code from its id, and the id back from a code."""

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise ValueError(f"a coupon key is {KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def code(self, message_id: int, prefix: str = "") -> str:
        """The code of the message `message_id`, after `prefix` if one is given."""
        if not 0 < message_id < 1 << BITS:
            raise ValueError(f"a message id from 1 to 2^{BITS} - 1, got {message_id}")
        number = self._permute(message_id)
        body = "".join(ALPHABET[(number >> shift) & 31] for shift in range(BITS - 5, -1, -5))
        return _grouped(prefix, body)

    def message_id(self, code: str) -> tuple[str, int] | None:
        """(prefix, the message id) the code would belong to; None when it is not
        shaped like a code (the id may belong to no message: the caller checks)."""
        parts = split_code(code)
        if parts is None:
            return None
        prefix, body = parts
        number = 0
        for character in body:
            number = number << 5 | _VALUE[character]
        return prefix, self._unpermute(number)

    def _round(self, index: int, half: int) -> int:
        data = half.to_bytes(4, "big") + bytes((index,))
        digest = hashlib.blake2b(data, key=self._key, digest_size=4).digest()
        return int.from_bytes(digest, "big") & _HALF_MASK

    def _permute(self, number: int) -> int:
        left, right = number >> HALF, number & _HALF_MASK
        for index in range(ROUNDS):
            left, right = right, left ^ self._round(index, right)
        return left << HALF | right

    def _unpermute(self, number: int) -> int:
        left, right = number >> HALF, number & _HALF_MASK
        for index in reversed(range(ROUNDS)):
            left, right = right ^ self._round(index, left), left
        return left << HALF | right


def code_key(bind: Any, now: datetime | None = None) -> CodeKey | None:
    """The database's coupon key; made (from `secrets`) when `now` is given and there is
    none yet (None then only when none was asked to be made). `bind`: a Connection or
    Session, in the caller's transaction."""
    stored = bind.execute(select(_SECRET.c.secret).where(_SECRET.c.id == 1)).scalar()
    if stored is None and now is not None:
        fresh = secrets.token_hex(KEY_BYTES)
        bind.execute(
            ignoring_insert(bind, _SECRET, "id").values(id=1, secret=fresh, created_at=now)
        )
        stored = bind.execute(select(_SECRET.c.secret).where(_SECRET.c.id == 1)).scalar()
    return None if stored is None else CodeKey(bytes.fromhex(stored))
