"""Dashboard login over real HTTP: throttling by the real client address, logout for good."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.routing import Mount

from engine.project.loader import Project, Secrets, load_project
from engine.report.dashboard import dashboard_app
from tests.tracking_server import serving

PASSWORD = "correct horse battery staple"
SECRETS = Secrets(secret="s" * 32, dashboard_password=PASSWORD)


def project_with(project_dir: Path, proxies: str | None) -> Project:
    config = project_dir / "config.yaml"
    if proxies is not None:
        text = config.read_text().replace(
            "tracking:\n", f"tracking:\n  trusted_proxies: {proxies}\n", 1
        )
        config.write_text(text)
    return load_project(config)


@pytest.fixture
def proxies() -> str | None:
    """tracking.trusted_proxies as written in config.yaml; None leaves it out."""
    return None


@pytest.fixture
def board(db: Engine, project_dir: Path, proxies: str | None) -> Iterator[httpx.Client]:
    """The dashboard served on loopback, as a browser with this origin talks to it."""
    project = project_with(project_dir, proxies)
    app = dashboard_app(
        db, lambda: project, SECRETS, clock=lambda: datetime.now(UTC), failure_delay=0
    )
    with serving(Starlette(routes=[Mount("/dashboard", app=app)])) as base:
        origin = {"origin": base}
        with httpx.Client(base_url=base, headers=origin, timeout=10) as client:
            yield client


def log_in(client: httpx.Client, password: str, forwarded: str | None = None) -> httpx.Response:
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    return client.post("/dashboard/login", data={"password": password}, headers=headers)


def test_a_rotating_forwarded_for_does_not_escape_the_lockout(board):
    """Nobody is a trusted proxy: the header is ignored and the peer is locked out."""
    answers = [log_in(board, "guess", forwarded=f"198.51.100.{n}").status_code for n in range(5)]
    assert answers == [401] * 5
    assert log_in(board, PASSWORD, forwarded="198.51.100.99").status_code == 429
    assert log_in(board, PASSWORD).status_code == 429


@pytest.mark.parametrize("proxies", ["[127.0.0.1]"])
def test_behind_a_trusted_proxy_each_forwarded_client_is_throttled_on_its_own(board):
    # What the client wrote in the header itself comes first; the proxy appends the peer.
    for n in range(5):
        forged = f"192.0.2.{n}, 203.0.113.5"
        assert log_in(board, "guess", forwarded=forged).status_code == 401
    assert log_in(board, PASSWORD, forwarded="10.9.9.9, 203.0.113.5").status_code == 429
    assert log_in(board, PASSWORD, forwarded="203.0.113.6").status_code == 303


def test_a_session_cookie_stops_working_after_logout(board):
    assert log_in(board, PASSWORD).status_code == 303
    captured = board.cookies.get("lifecycle_dashboard")
    page = board.get("/dashboard/")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    out = board.post("/dashboard/logout", data={"csrf": csrf.group(1)})
    assert out.status_code == 303 and out.headers["location"].endswith("/dashboard/login")
    with httpx.Client(base_url=str(board.base_url), timeout=10) as thief:
        thief.cookies.set("lifecycle_dashboard", captured, path="/dashboard/")
        replay = thief.get("/dashboard/")
    assert replay.status_code == 303
    assert replay.headers["location"].endswith("/dashboard/login")
