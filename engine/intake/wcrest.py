"""WooCommerce's REST API v3, read over HTTP: one page of customers, products or orders.

`WooCommerceApi.page` gets `GET {url}/wp-json/wc/v3/<kind>?page=N&per_page=100` in order
of id (orders of every status, products published), with the totals of WooCommerce's
`X-WP-Total` and `X-WP-TotalPages` headers. It authenticates with a REST API key by
HTTP Basic, as WooCommerce takes it over HTTPS: plain http is refused but for this
machine, since the key would travel in clear, and so are redirects, which would carry
the key on. A page is bounded (`timeout` seconds, `MAX_PAGE_BYTES`); a 429, a 5xx or a
broken connection is tried again (`TRIES` in all, after `BACKOFF_SECONDS`, doubled each
time, or the shop's Retry-After up to `RETRY_AFTER_CAP`).

Raises `ShopUrlRefused` (the address), `ShopKeyRefused` (a 401 or 403), `ShopApiError`
(the shop unreachable or failing past the retries, a page too large or not a JSON list);
no urllib exception goes past this module.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import EngineError

log = logging.getLogger(__name__)

FILTERS = {"products": {"status": "publish"}, "orders": {"status": "any"}}
PER_PAGE = 100  # the most WordPress lists in one page
MAX_PAGE_BYTES = 20 * 1024 * 1024
TIMEOUT = 30.0
TRIES = 3
BACKOFF_SECONDS = 1.0
RETRY_AFTER_CAP = 60.0
_CHUNK = 64 * 1024


class ShopUrlRefused(EngineError, ValueError):
    """--url is not a shop's address, or would send the key in clear."""


class ShopKeyRefused(EngineError, PermissionError):
    """The shop answered 401 or 403: the key is wrong, revoked, or may not read."""


class ShopApiError(EngineError, RuntimeError):
    """A page could not be read: the shop unreachable or failing past the retries, or its
    answer too large or not a JSON list of resources."""


@dataclass(frozen=True)
class Page:
    """One page of a resource list, and the totals the shop's headers gave (None: absent)."""

    items: list[Any]
    total: int | None = None
    total_pages: int | None = None


class _Retry(Exception):
    """A failure another try may mend, after `wait` seconds (None: the backoff)."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as its 3xx answer: following it would send the key on."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WooCommerceApi:
    """The shop's REST API v3 at `url`, read with a key's consumer key and secret."""

    def __init__(
        self, url: str, key: str, secret: str, *, timeout: float = TIMEOUT, tries: int = TRIES
    ):
        self.url = shop_url(url)
        self.timeout = timeout
        self.tries = tries
        self._auth = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
        self._opener = urllib.request.build_opener(_NoRedirects)

    def page(self, kind: str, number: int) -> Page:
        """Page `number` (from 1) of `kind`; raises ShopKeyRefused or ShopApiError."""
        query = {"page": number, "per_page": PER_PAGE, "orderby": "id", "order": "asc"}
        query |= FILTERS.get(kind, {})
        address = f"{self.url}/wp-json/wc/v3/{kind}?{urllib.parse.urlencode(query)}"
        where = f"page {number} of {kind} from {address}"
        for attempt in range(1, self.tries + 1):
            try:
                return _page(kind, where, *self._get(address, where))
            except _Retry as retry:
                if attempt == self.tries:
                    raise ShopApiError(f"{where}: {retry} ({self.tries} tries)") from None
                wait = BACKOFF_SECONDS * 2 ** (attempt - 1) if retry.wait is None else retry.wait
                log.warning("%s: %s; trying again in %.1f s", where, retry, wait)
                time.sleep(wait)
        raise AssertionError("tries must be 1 or more")

    def _get(self, address: str, where: str) -> tuple[bytes, Message]:
        """The body and headers of a 200 answer; raises _Retry for what may mend."""
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        request = urllib.request.Request(address, headers=headers)
        deadline = time.monotonic() + self.timeout
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return self._read(answer, deadline, where), answer.headers
        except urllib.error.HTTPError as exc:
            with exc:
                code, message = _error_body(exc)
            if exc.code == 400 and code.endswith("invalid_page_number"):
                return b"[]", exc.headers  # past the last page: WordPress's answer
            raise _refusal(exc, code, message, where) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                raise ShopApiError(f"{where}: TLS failed: {exc.reason}") from None
            raise _Retry(f"cannot connect: {exc.reason}") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retry(f"{type(exc).__name__} {exc}".strip()) from None

    def _read(self, answer: Any, deadline: float, where: str) -> bytes:
        """The body, in chunks: ShopApiError beyond MAX_PAGE_BYTES, _Retry past the deadline."""
        declared = answer.headers.get("Content-Length") or ""
        if declared.isdigit() and int(declared) > MAX_PAGE_BYTES:
            raise ShopApiError(f"{where}: {declared} bytes, more than a page may be ({_size()})")
        body = bytearray()
        while chunk := answer.read1(_CHUNK):
            body += chunk
            if len(body) > MAX_PAGE_BYTES:
                raise ShopApiError(f"{where}: more than a page may be ({_size()})")
            if time.monotonic() > deadline:
                raise _Retry(f"the page took more than {self.timeout:g} s")
        return bytes(body)


def shop_url(url: str) -> str:
    """The shop's address without a trailing slash; raises ShopUrlRefused for one that is
    not http(s), carries a user, query or fragment, or is plain http to another machine."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        raise ShopUrlRefused("--url must not carry a user or password: give --key and --secret")
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError:
        raise ShopUrlRefused(f"--url has a bad port: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ShopUrlRefused(
            f"--url must be the shop's address, like https://shop.example, got {url!r}"
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ShopUrlRefused(
            f"--url {url!r} is plain http, which would send the key in clear: use https:// "
            "(plain http is only for this machine: localhost, 127.0.0.0/8, ::1)"
        )
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(exc: urllib.error.HTTPError, code: str, message: str, where: str) -> Exception:
    """What an error answer means: a refused key, a retry, or a failed page."""
    said = f" {code}: {message}" if message else ""
    if exc.code in (401, 403):
        return ShopKeyRefused(
            f"WooCommerce refused the key: {exc.code}{said} ({where}); check --key and "
            "--secret, and that the key has Read permission"
        )
    if exc.code == 429 or exc.code >= 500:
        return _Retry(f"HTTP {exc.code}{said}", _retry_after(exc.headers.get("Retry-After")))
    if 300 <= exc.code < 400:
        moved = exc.headers.get("Location") or "?"
        return ShopApiError(f"{where}: redirected ({exc.code}) to {moved}: give that as --url")
    hint = ": is --url the shop's address, with pretty permalinks on?" if exc.code == 404 else ""
    return ShopApiError(f"{where}: HTTP {exc.code}{said}{hint}")


def _error_body(exc: urllib.error.HTTPError) -> tuple[str, str]:
    """The `code` and `message` of a WordPress error answer ("" when it has none)."""
    try:
        error = json.loads(exc.read(_CHUNK))
    except (OSError, ValueError, http.client.HTTPException):
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:300]


def _retry_after(value: str | None) -> float | None:
    """Retry-After (seconds or an HTTP date) as seconds to wait, at most RETRY_AFTER_CAP."""
    value = (value or "").strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return min(max((at - datetime.now(UTC)).total_seconds(), 0.0), RETRY_AFTER_CAP)


def _page(kind: str, where: str, body: bytes, headers: Message) -> Page:
    """A 200 answer as a page; raises ShopApiError when it is not a JSON list."""
    try:
        items = json.loads(body.decode("utf-8-sig"))  # some WordPress plugins send a BOM
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ShopApiError(f"{where} is not JSON ({exc}): is --url the shop's address?") from None
    if not isinstance(items, list):
        raise ShopApiError(f"{where} is not a list of {kind} but a JSON {type(items).__name__}")
    return Page(items, _count(headers, "X-WP-Total"), _count(headers, "X-WP-TotalPages"))


def _size() -> str:
    """MAX_PAGE_BYTES in words."""
    megabytes = MAX_PAGE_BYTES / 1024 / 1024
    return f"{megabytes:g} MB" if megabytes >= 1 else f"{MAX_PAGE_BYTES} bytes"


def _count(headers: Message, name: str) -> int | None:
    value = (headers.get(name) or "").strip()
    return int(value) if value.isdigit() else None
