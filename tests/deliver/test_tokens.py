"""Signed tokens: what one of ours says comes back; anything else is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from engine.deliver.tokens import MAX_TOKEN_LENGTH, Claim, InvalidToken, Purpose, Signer

SECRET = "tracking-secret-0123456789abcdef"


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(
    ("purpose", "message_id", "url"),
    [
        pytest.param(Purpose.OPEN, 1, None, id="open"),
        pytest.param(Purpose.UNSUBSCRIBE, 987654321, None, id="unsubscribe"),
        pytest.param(Purpose.CLICK, 42, "https://nakshighor.example/sale?utm=x&a=1", id="click"),
        pytest.param(
            Purpose.CLICK, 7, "https://shop.example:8443/a:b/c#frag", id="url-with-colons"
        ),
        pytest.param(Purpose.CLICK, 7, "https://নকশি.example/শাড়ি?q=জামদানি", id="bengali-url"),
        pytest.param(Purpose.OPEN, 0, None, id="id-zero"),
    ],
)
def test_round_trip(signer: Signer, purpose: Purpose, message_id: int, url: str | None) -> None:
    token = signer.make(purpose, message_id, url)
    assert token.isascii() and "/" not in token and "+" not in token  # safe in a URL path
    assert signer.verify(token, purpose) == Claim(purpose, message_id, url)


def test_the_shortcuts(signer: Signer) -> None:
    assert signer.verify(signer.open_token(5), Purpose.OPEN).message_id == 5
    assert signer.verify(signer.unsubscribe_token(5), Purpose.UNSUBSCRIBE).message_id == 5
    assert signer.verify(signer.click_token(5, "https://x.example"), Purpose.CLICK).url == (
        "https://x.example"
    )


def forge(signer: Signer, payload: str) -> str:
    """A token with this payload and the signature of a genuine one."""
    genuine = signer.click_token(42, "https://nakshighor.example/sale")
    return f"{b64(payload.encode())}.{genuine.split('.')[1]}"


@pytest.mark.parametrize(
    ("payload", "purpose"),
    [
        pytest.param(
            "c:43:https://nakshighor.example/sale", Purpose.CLICK, id="altered-message-id"
        ),
        pytest.param("c:42:https://evil.example/sale", Purpose.CLICK, id="altered-url"),
        pytest.param("c:42:https://nakshighor.example/sale/", Purpose.CLICK, id="longer-url"),
        pytest.param("u:42", Purpose.UNSUBSCRIBE, id="altered-purpose"),
    ],
)
def test_an_altered_token_is_refused(signer: Signer, payload: str, purpose: Purpose) -> None:
    with pytest.raises(InvalidToken, match="bad signature"):
        signer.verify(forge(signer, payload), purpose)


def test_a_forged_signature_is_refused(signer: Signer) -> None:
    body = b64(b"o:42")
    for signature in ("", "A" * 43, b64(b"\x00" * 32), signer.open_token(43).split(".")[1]):
        with pytest.raises(InvalidToken):
            signer.verify(f"{body}.{signature}", Purpose.OPEN)


def test_a_flipped_bit_anywhere_is_refused(signer: Signer) -> None:
    token = signer.click_token(42, "https://nakshighor.example/sale")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        if char == ".":
            continue
        other = alphabet[(alphabet.index(char) + 1) % 64]
        with pytest.raises(InvalidToken):
            signer.verify(token[:i] + other + token[i + 1 :], Purpose.CLICK)


def test_a_truncated_token_is_refused(signer: Signer) -> None:
    token = signer.click_token(42, "https://nakshighor.example/sale")
    for end in range(len(token)):
        with pytest.raises(InvalidToken):
            signer.verify(token[:end], Purpose.CLICK)


def test_stray_characters_in_a_genuine_token_are_refused(signer: Signer) -> None:
    """base64 decoders skip characters outside the alphabet; the token must not."""
    body, signature = signer.open_token(42).split(".")
    for altered in (f"{body}!.{signature}", f"{body}=.{signature}", f" {body}.{signature}"):
        with pytest.raises(InvalidToken):
            signer.verify(altered, Purpose.OPEN)


@pytest.mark.parametrize(
    ("made_for", "checked_as"),
    [
        pytest.param(Purpose.OPEN, Purpose.UNSUBSCRIBE, id="open-as-unsubscribe"),
        pytest.param(Purpose.UNSUBSCRIBE, Purpose.OPEN, id="unsubscribe-as-open"),
        pytest.param(Purpose.OPEN, Purpose.CLICK, id="open-as-click"),
        pytest.param(Purpose.CLICK, Purpose.OPEN, id="click-as-open"),
    ],
)
def test_a_token_for_another_purpose_is_refused(
    signer: Signer, made_for: Purpose, checked_as: Purpose
) -> None:
    token = signer.make(made_for, 42, "https://x.example" if made_for is Purpose.CLICK else None)
    with pytest.raises(InvalidToken, match="another purpose"):
        signer.verify(token, checked_as)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="dot"),
        pytest.param("..", id="two-dots"),
        pytest.param("abc", id="no-dot"),
        pytest.param("a.b.c", id="three-parts"),
        pytest.param("%%%.%%%", id="not-base64"),
        pytest.param("নকশি.ঘর", id="bengali"),
        pytest.param("b64\x00.sig", id="nul"),
        pytest.param("\ud800.\ud800", id="lone-surrogates"),
        pytest.param("A.B", id="short"),
        pytest.param("x" * 50 + "." + "é" * 43, id="non-ascii-signature"),
        pytest.param(None, id="none"),
        pytest.param(42, id="number"),
        pytest.param(b"bytes.token", id="bytes"),
    ],
)
def test_garbage_is_refused(signer: Signer, token: object) -> None:
    with pytest.raises(InvalidToken):
        signer.verify(token, Purpose.OPEN)  # type: ignore[arg-type]


def test_a_signed_payload_that_is_not_ours_is_refused(signer: Signer) -> None:
    """Even with a valid signature, only the shapes `make` writes are accepted."""
    key = signer._key  # the same key, as if an old version had signed something else
    for payload in (b"o:", b"o:-1", b"o:12a", "o:١٢".encode(), b"c:5", b"c:5:", b"\xff\xfe"):
        token = f"{b64(payload)}.{b64(hmac.new(key, payload, hashlib.sha256).digest())}"
        purpose = Purpose.CLICK if payload.startswith(b"c") else Purpose.OPEN
        with pytest.raises(InvalidToken):
            signer.verify(token, purpose)


def test_huge_input_is_refused_quickly(signer: Signer) -> None:
    huge = "A" * 10_000_000 + "." + "B" * 43
    started = time.perf_counter()
    with pytest.raises(InvalidToken, match="malformed"):
        signer.verify(huge, Purpose.OPEN)
    assert time.perf_counter() - started < 0.05


def test_the_longest_url_that_fits_round_trips_and_a_longer_one_is_refused(signer: Signer) -> None:
    base = "https://nakshighor.example/"
    fits = base + "a" * 2900
    assert len(signer.click_token(1, fits)) <= MAX_TOKEN_LENGTH
    assert signer.verify(signer.click_token(1, fits), Purpose.CLICK).url == fits
    with pytest.raises(InvalidToken, match="too long to sign"):
        signer.click_token(1, base + "a" * 4000)


def test_a_token_from_another_secret_is_refused(signer: Signer) -> None:
    other = Signer("another-secret-0123456789")
    for token, purpose in (
        (other.open_token(1), Purpose.OPEN),
        (other.click_token(1, "https://x.example"), Purpose.CLICK),
    ):
        with pytest.raises(InvalidToken, match="bad signature"):
            signer.verify(token, purpose)


def test_tokens_are_stable_for_one_secret() -> None:
    """A link in an email sent yesterday still works after a restart."""
    assert Signer(SECRET).open_token(9) == Signer(SECRET).open_token(9)
    assert Signer(SECRET).open_token(9) != Signer(SECRET + "x").open_token(9)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        pytest.param("", "at least 16 characters", id="empty"),
        pytest.param("short", "at least 16 characters", id="short"),
    ],
)
def test_a_weak_secret_is_refused(secret: str, message: str) -> None:
    with pytest.raises(InvalidToken, match=message):
        Signer(secret)


@pytest.mark.parametrize(
    ("purpose", "message_id", "url", "message"),
    [
        pytest.param(Purpose.OPEN, -1, None, "must be a whole number, got: -1", id="negative"),
        pytest.param(Purpose.OPEN, True, None, "got: True", id="bool"),
        pytest.param(Purpose.OPEN, "7", None, "got: '7'", id="text"),
        pytest.param(Purpose.CLICK, 7, None, "a click token needs a URL", id="click-without-url"),
        pytest.param(Purpose.CLICK, 7, "", "a click token needs a URL", id="click-empty-url"),
    ],
)
def test_making_a_token_checks_its_input(
    signer: Signer, purpose: Purpose, message_id: object, url: str | None, message: str
) -> None:
    with pytest.raises(InvalidToken, match=message):
        signer.make(purpose, message_id, url)  # type: ignore[arg-type]


def test_the_payload_is_what_the_docs_say(signer: Signer) -> None:
    body, signature = signer.click_token(42, "https://x.example/a").split(".")
    assert unb64(body) == b"c:42:https://x.example/a"
    assert len(unb64(signature)) == 32  # HMAC-SHA256


# ---------------------------------------------------------------- bounce (VERP) tokens


def test_a_bounce_token_names_its_message_in_any_letter_case() -> None:
    signer = Signer("bounce-token-secret-0123456789")
    token = signer.bounce_token(4711)
    assert token.startswith("4711-") and token == token.lower()
    assert all(c.isascii() and (c.isdigit() or c.islower() or c == "-") for c in token)
    assert signer.verify_bounce(token) == 4711
    assert signer.verify_bounce(token.upper()) == 4711


@pytest.mark.parametrize(
    "token",
    [
        "",
        "4711",
        "4711-",
        "4712-aaaaaaaaaaaaaaaa",
        "x-aaaaaaaaaaaaaaaa",
        "4711-" + "a" * 60,
        "٤٧١١-aaaa",
    ],
)
def test_a_forged_or_malformed_bounce_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        Signer("bounce-token-secret-0123456789").verify_bounce(token)


def test_a_bounce_token_is_not_another_messages_or_another_shops() -> None:
    signer = Signer("bounce-token-secret-0123456789")
    number, tag = signer.bounce_token(4711).split("-")
    with pytest.raises(InvalidToken):
        signer.verify_bounce(f"4712-{tag}")
    with pytest.raises(InvalidToken):
        Signer("another-secret-0123456789abc").verify_bounce(f"{number}-{tag}")
