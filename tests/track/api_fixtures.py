"""The shop API's test server: the shipped project served over real HTTP on loopback,
with an API key, its clock at NOW, on SQLite and PostgreSQL (`fresh_store`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from engine.project.loader import Project, Secrets, load_project
from engine.track.app import create_app
from tests import store_fixtures
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store

KEY = "shop-api-key-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def base(fresh_store: Engine, project: Project) -> Iterator[str]:
    """The app's address; its API key is KEY and its clock NOW."""
    secrets = Secrets(secret="s" * 32, api_key=KEY)
    app = create_app(fresh_store, lambda: project, secrets, clock=lambda: NOW)
    with serving(app) as url:
        yield url
