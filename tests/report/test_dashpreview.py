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
