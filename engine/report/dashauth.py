"""Who may see the dashboard: the login form, its sessions and the throttle on wrong passwords.

`Sessions` serves `/login` and `/logout` and guards every other page with `private`:
a request without a valid session is sent to the login form.

- The login form checks LIFECYCLE_DASHBOARD_PASSWORD in constant time and sets a session
  cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) naming a session the server keeps,
  signed with HMAC-SHA256 under a key derived from LIFECYCLE_SECRET and the password.
  Logging out ends the session on the server: the cookie is refused from then on, wherever
  it was copied to. Sessions live in the process, so a restart logs everyone out.
- A wrong password costs `failure_delay` seconds; after `max_failures` wrong ones from one
  address within `lockout`, that address gets 429 until the window passes. The address is
  the connection's peer; `X-Forwarded-For` is believed only when that peer is one of
  `tracking.trusted_proxies` (then the nearest address in it that is not a trusted proxy
  is the client's).
- POSTs must come from this origin (Origin or Referer header) and logout carries a CSRF
  token bound to the session.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import secrets as random_tokens
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..project import Project, Secrets

COOKIE = "lifecycle_dashboard"
SESSION_HOURS = 12
MAX_TRACKED = 10_000  # addresses with recent wrong passwords kept in memory
MAX_SESSIONS = 1_000  # open sessions kept; beyond that the oldest end
Handler = Callable[[Request], Awaitable[Response]]


class Board(Protocol):
    """What the dashboard's parts use of it: its collaborators and its page renderer."""

    secrets: Secrets
    get_project: Callable[[], Project]
    clock: Callable[[], datetime]

    def page(
        self, request: Request, template: str, status: int = 200, **values: Any
    ) -> Response: ...


class Sessions:
    """The login form, the sessions it opens and the guard on every other page."""

    def __init__(self, board: Board, failure_delay: float, max_failures: int, lockout: timedelta):
        self.board = board
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.lockout = lockout.total_seconds()
        self.password = (board.secrets.dashboard_password or "").encode()
        secret = (board.secrets.secret or "").encode() or os.urandom(32)
        self.key = hashlib.sha256(
            b"lifecycle-dashboard\x00" + secret + b"\x00" + self.password
        ).digest()
        self.failures: dict[str, list[float]] = {}
        self.open: dict[str, int] = {}  # open session id -> when it expires (epoch seconds)

    # -- sessions

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def _session(self, request: Request) -> str | None:
        """The valid session cookie of the request, or None."""
        value = request.cookies.get(COOKIE, "")
        expires, session_id, signature = [*value.split("."), "", ""][:3]
        if not expires.isdigit() or not hmac.compare_digest(
            self._sign(f"session:{expires}:{session_id}"), signature
        ):
            return None
        if int(expires) <= self.board.clock().timestamp() or session_id not in self.open:
            return None
        return value

    def _open_session(self) -> tuple[str, int]:
        """A new session: its cookie value and when it expires."""
        now = int(self.board.clock().timestamp())
        if len(self.open) >= MAX_SESSIONS:
            live = sorted((e, s) for s, e in self.open.items() if e > now)
            self.open = {s: e for e, s in live[-(MAX_SESSIONS - 1) :]}
        session_id = random_tokens.token_urlsafe(16)
        expires = now + SESSION_HOURS * 3600
        self.open[session_id] = expires
        return f"{expires}.{session_id}.{self._sign(f'session:{expires}:{session_id}')}", expires

    def csrf(self, session: str) -> str:
        return self._sign(f"csrf:{session}")

    def private(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            session = self._session(request)
            if session is None:
                return RedirectResponse(f"{base(request)}/login", status_code=303)
            request.state.session = session
            return await handler(request)

        return guarded

    def _same_origin(self, request: Request) -> bool:
        """True when the Origin (or Referer) names this host; behind a TLS proxy the
        scheme may differ, the host may not."""
        claimed = request.headers.get("origin") or request.headers.get("referer") or ""
        host = urlsplit(claimed).netloc
        return bool(host) and hmac.compare_digest(host.lower(), request.url.netloc.lower())

    # -- login

    async def login_page(self, request: Request) -> Response:
        if self._session(request) is not None:
            return RedirectResponse(f"{base(request)}/", status_code=303)
        return self.board.page(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return self.board.page(
                request, "login.html", 403, error="This form must be sent from this page."
            )
        proxies = self.board.get_project().config.tracking.trusted_proxies
        client = client_address(request, proxies)
        now = time.monotonic()
        if len(self.failures) > MAX_TRACKED:
            self.failures = {k: v for k, v in self.failures.items() if now - v[-1] < self.lockout}
        recent = [t for t in self.failures.get(client, []) if now - t < self.lockout]
        self.failures[client] = recent
        if len(recent) >= self.max_failures:
            wait = int(self.lockout - (now - recent[0])) + 1
            message = f"Too many wrong passwords. Try again in {wait // 60 + 1} minutes."
            response = self.board.page(request, "login.html", 429, error=message)
            response.headers["Retry-After"] = str(wait)
            return response
        form = await request.form()
        given = str(form.get("password", "")).encode()
        if not hmac.compare_digest(
            hashlib.sha256(given).digest(), hashlib.sha256(self.password).digest()
        ):
            recent.append(now)
            await asyncio.sleep(self.failure_delay)
            return self.board.page(request, "login.html", 401, error="Wrong password.")
        self.failures.pop(client, None)
        cookie, _ = self._open_session()
        response = RedirectResponse(f"{base(request)}/", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_HOURS * 3600,
            path=f"{base(request)}/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("csrf", ""))
        if not self._same_origin(request) or not hmac.compare_digest(
            token, self.csrf(request.state.session)
        ):
            return Response("Forbidden: this form must be sent from the dashboard.", 403)
        self.open.pop(request.state.session.split(".")[1], None)
        response = RedirectResponse(f"{base(request)}/login", status_code=303)
        response.delete_cookie(COOKIE, path=f"{base(request)}/")
        return response


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: Request, trusted_proxies: Sequence[Network]) -> str:
    """The address a request comes from: its peer, unless the peer is a trusted proxy;
    then the nearest `X-Forwarded-For` entry that is not a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, trusted_proxies):
            return hop[:64]
    return peer


def _trusted(address: str, trusted_proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted_proxies)


def base(request: Request) -> str:
    """The path the dashboard is mounted at, without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")
