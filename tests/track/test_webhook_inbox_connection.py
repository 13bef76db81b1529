"""The inbox keeps its writer connection open between groups, and replaces it when it breaks.

PostgreSQL only: the server ends the writer's session (as a restart or an idle timeout
would); the next delivery is still kept, on a new connection, and answered 200. Over
real HTTP against the running app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from engine.project.loader import Project, Secrets
from engine.track.app import create_app
from tests import store_fixtures
from tests.track.api_fixtures import NOW, project  # noqa: F401
from tests.track.test_webhooks_woocommerce import SECRET, deliver, payload, settled
from tests.tracking_server import serving

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store


@pytest.fixture
def served(fresh_store: Engine, project: Project) -> Iterator[tuple[str, Engine]]:  # noqa: F811
    if fresh_store.dialect.name != "postgresql":
        pytest.skip("the writer connection's session is ended on the PostgreSQL server")
    secrets = Secrets(secret="s" * 32, api_key="k" * 32, woocommerce_secret=SECRET)
    app = create_app(fresh_store, lambda: project, secrets, clock=lambda: NOW)
    with serving(app) as url:
        yield url + "/webhooks/woocommerce", fresh_store


def _end_other_sessions(engine: Engine) -> int:
    """End every other session of this database on the server; how many were ended."""
    with engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        ).scalar_one()
    return int(ended)


def test_a_broken_writer_connection_is_replaced_and_nothing_is_refused(
    served: tuple[str, Engine],
) -> None:
    url, engine = served
    first = payload("customer_created.json")
    kept = deliver(url, "customer_created.json", first, **{"X-WC-Webhook-Delivery-ID": "d-1"})
    assert kept.json()["kept"]
    assert _end_other_sessions(engine) >= 1  # the writer's among them
    body = json.dumps(first | {"first_name": "Farzana"}).encode()
    answers = [
        deliver(url, "customer_created.json", body, **{"X-WC-Webhook-Delivery-ID": f"d-{n}"})
        for n in (2, 3)
    ]
    assert [(a.status_code, a.json().get("kept")) for a in answers] == [(200, True), (200, True)]
    assert settled(engine, "woocommerce", "d-2")[0] == "applied"
    assert settled(engine, "woocommerce", "d-3")[0] == "applied"
