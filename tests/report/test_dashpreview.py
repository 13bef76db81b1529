"""The dashboard's preview renders the last good templates, not files edited since."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from engine.project.loader import Project, load_project
from engine.store.db import make_engine, upgrade
from tests.report.test_dashboard import Clock, log_in, make_client
from tests.report.test_reports import NOW, build_shop


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    build_shop(engine)
    yield engine
    engine.dispose()


def test_preview_uses_the_last_good_template(project_dir: Path, shop: Engine) -> None:
    project: Project = load_project(project_dir / "config.yaml")  # accepted: the last good one
    page = project_dir / "templates" / "emails" / "thank_you.html"
    good = page.read_text()
    page.write_text(good.replace("{% block content %}", "{% block content %}{% if %}BROKEN", 1))
    with make_client(shop, project, Clock(NOW)) as client:
        log_in(client)
        frame = client.get("/dashboard/preview/email?campaign=thank_you&customer=c1")
        shown = client.get("/dashboard/preview?campaign=thank_you&customer=c1")
    assert frame.status_code == 200, frame.text
    assert shown.status_code == 200, shown.text
    assert "BROKEN" not in frame.text and "Your order" in frame.text


def test_a_preview_keeps_no_tracker_url_wherever_a_template_puts_it() -> None:
    from engine.deliver.tokens import Signer
    from engine.report.dashpreview import UNSUBSCRIBE_SHOWN, Untracked

    base, signer = "https://t.example/track", Signer("s" * 32)
    click = f"{base}/c/{signer.click_token(0, 'https://shop.example/?a=1&b=2')}"
    pixel = f"{base}/o/{signer.open_token(0)}.gif"
    leave = f"{base}/u/{signer.unsubscribe_token(0)}"
    email = (
        f'<td style="background: url({pixel})"><img alt="" src="{pixel}" width="1">'
        f'<a href="{click}">Shop</a> <a href="{leave}">Unsubscribe</a></td>'
    )
    untracked = Untracked(base + "/", signer)
    shown = untracked.html(email)
    assert base not in shown and "<img" not in shown
    assert '<a href="https://shop.example/?a=1&amp;b=2">Shop</a>' in shown
    assert '<a href="#unsubscribe">' in shown
    assert untracked.text(f"Shop: {click}\nStop: {leave}\n") == (
        f"Shop: https://shop.example/?a=1&b=2\nStop: {UNSUBSCRIBE_SHOWN}\n"
    )
