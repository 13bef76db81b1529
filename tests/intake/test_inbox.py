"""The webhook inbox on SQLite and PostgreSQL: kept once, applied in order, problems kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake.inbox import Received, apply_pending, keep_deliveries
from engine.store.models import Order, OrderStatus, WebhookDelivery

FIXTURES = Path(__file__).parents[1] / "fixtures" / "connectors" / "woocommerce"
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def woocommerce(delivery: str, topic: str, name: str) -> Received:
    body = (FIXTURES / name).read_text(encoding="utf-8")
    return Received("woocommerce", delivery, topic, body, NOW)


def rows(engine: Engine) -> list[tuple[str, str, str | None]]:
    with Session(engine) as session:
        found = session.execute(
            select(
                WebhookDelivery.delivery_id, WebhookDelivery.status, WebhookDelivery.problems
            ).order_by(col(WebhookDelivery.id))
        ).all()
    return [tuple(row) for row in found]  # type: ignore[misc]


def test_deliveries_are_kept_once_and_applied_in_the_order_they_came(store: Engine) -> None:
    placed = woocommerce("d-1", "order.created", "order_cod_processing.json")
    completed = woocommerce("d-2", "order.updated", "order_cod_completed.json")
    assert keep_deliveries(store, [placed, completed]) == [True, True]
    assert keep_deliveries(store, [placed]) == [False]  # sent again: kept before
    assert rows(store) == [("d-1", "pending", None), ("d-2", "pending", None)]
    assert apply_pending(store, now=NOW) == 2
    assert apply_pending(store, now=NOW) == 0
    assert rows(store) == [("d-1", "applied", None), ("d-2", "applied", None)]
    with Session(store) as session:
        order = session.execute(select(Order)).scalar_one()
    # the completion came second and found the order the first one recorded
    assert (order.external_id, order.status) == ("1287", OrderStatus.DELIVERED)


def test_a_delivery_that_cannot_be_applied_is_a_problem_and_the_next_goes_on(
    store: Engine,
) -> None:
    odd = Received("nowhere", "x-1", "order.created", "{}", NOW)
    broken = Received("woocommerce", "x-2", "order.created", json.dumps([1, 2]), NOW)
    product = woocommerce("x-3", "product.created", "product_created.json")
    keep_deliveries(store, [odd, broken, product])
    assert apply_pending(store, now=NOW) == 3
    assert rows(store) == [
        ("x-1", "problem", "no connector reads deliveries from 'nowhere'"),
        ("x-2", "problem", "the body is not a JSON object"),
        ("x-3", "applied", None),
    ]


def test_the_queue_and_its_page_show_what_waits_and_what_could_not_be_used(
    store: Engine,
) -> None:
    from engine.project.loader import load_project
    from engine.report.queue import queue
    from tests.report.test_dashboard import REPO, Clock, log_in, make_client

    anonymous = json.loads((FIXTURES / "order_cod_processing.json").read_text(encoding="utf-8"))
    anonymous["billing"]["email"] = ""
    keep_deliveries(
        store, [Received("woocommerce", "p-1", "order.created", json.dumps(anonymous), NOW)]
    )
    apply_pending(store, now=NOW)
    keep_deliveries(store, [woocommerce("p-2", "product.created", "product_created.json")])
    with Session(store) as session:
        webhooks = queue(session, NOW)["webhooks"]
    assert webhooks["pending"] == 1
    assert webhooks["recent_problems"] == [
        {
            "source": "woocommerce",
            "topic": "order.created",
            "delivery_id": "p-1",
            "received_at": NOW,
            "problems": "order 1287 has no billing email: not recorded",
        }
    ]
    with make_client(store, load_project(REPO / "config.yaml"), Clock(NOW)) as client:
        log_in(client)
        page = client.get("/dashboard/queue").text
    assert "1 delivery waiting to be applied" in page
    assert "order 1287 has no billing email: not recorded" in page
