"""The campaign report on hand-built messages, events, orders and credits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from engine.project.loader import Project, load_project
from engine.report.reports import build_report, period, to_json
from engine.report.retention import ReportError
from engine.store.db import session_scope
from engine.store.models import (
    Credit,
    Customer,
    EventKind,
    Message,
    MessageEvent,
    MessageStatus,
    Order,
    OrderItem,
    OrderStatus,
    Product,
)

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
START = datetime(2026, 11, 1, tzinfo=UTC)
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
EVIL_NAME = "<script>alert(1)</script>"
EVIL_AGENT = '<img src=x onerror="alert(2)">Mozilla/5.0 (X11)'


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Shop:
    """Writes customers, messages, events and orders with few words."""

    def __init__(self, session: Any):
        self.session = session
        self.ids = count(1)

    def customer(self, key: str, name: str = "") -> int:
        row = Customer(
            external_id=key,
            email=f"{key}@example.com",
            name=name,
            created_at=START,
            updated_at=START,
        )
        self.session.add(row)
        self.session.flush()
        return row.id

    def message(
        self,
        campaign: str,
        customer: int,
        status: MessageStatus,
        created: str,
        sent: str | None = None,
        **extra: Any,
    ) -> int:
        n = next(self.ids)
        row = Message(
            dedupe_key=f"{campaign}:{customer}:{n}",
            campaign=campaign,
            customer_id=customer,
            occurrence=str(n),
            status=status,
            created_at=at(created),
            send_after=at(created),
            sent_at=at(sent) if sent else None,
            **extra,
        )
        self.session.add(row)
        self.session.flush()
        return row.id

    def event(
        self,
        message: int,
        customer: int,
        kind: EventKind,
        when: str,
        *,
        machine: bool = False,
        agent: str | None = IPHONE,
    ) -> None:
        self.session.add(
            MessageEvent(
                message_id=message,
                customer_id=customer,
                kind=kind,
                at=at(when),
                machine=machine,
                user_agent=agent,
            )
        )

    def order(
        self, key: str, customer: int, when: str, total: str, *, cancelled: bool = False
    ) -> int:
        row = Order(
            external_id=key,
            customer_id=customer,
            placed_at=at(when),
            total=Decimal(total),
            status=OrderStatus.CANCELLED if cancelled else OrderStatus.PLACED,
        )
        self.session.add(row)
        self.session.flush()
        return row.id


def build_shop(engine: Engine) -> None:
    """The history every figure in this file is worked out from (period: 1–22 Nov 2026)."""
    S, OPEN, C = MessageStatus, EventKind.OPEN, EventKind.CLICK
    with session_scope(engine) as session:
        shop = Shop(session)
        c1, c2, c3 = shop.customer("c1", "Rahima"), shop.customer("c2"), shop.customer("c3")
        c4, c5 = shop.customer("c4"), shop.customer("c5", EVIL_NAME)
        # welcome, sent in the period: m1, m2, m3 and m11 (sent in it, planned before it)
        m1 = shop.message("welcome", c1, S.SENT, "2026-11-10 09:50", "2026-11-10 10:00")
        shop.event(m1, c1, OPEN, "2026-11-10 10:00:01", machine=True, agent="Mozilla/5.0")
        shop.event(m1, c1, OPEN, "2026-11-10 12:00")  # human open
        m2 = shop.message("welcome", c2, S.SENT, "2026-11-11 09:50", "2026-11-11 10:00")
        shop.event(m2, c2, OPEN, "2026-11-11 10:00:02", machine=True, agent="Mozilla/5.0")
        m3 = shop.message("welcome", c3, S.SENT, "2026-11-12 08:50", "2026-11-12 08:55")
        shop.event(m3, c3, C, "2026-11-12 09:00")  # a human click, and its human open
        shop.event(m3, c3, OPEN, "2026-11-12 09:00")
        shop.event(m3, c3, C, "2026-11-12 09:05", agent=EVIL_AGENT)
        shop.event(m3, c3, C, "2026-11-12 09:06", machine=True, agent="Barracuda")
        shop.event(m3, c3, EventKind.UNSUBSCRIBE, "2026-11-12 09:10")
        shop.message("welcome", c4, S.SENT, "2026-10-30 10:00", "2026-11-02 10:00")  # m11
        # welcome, not sent
        shop.message(
            "welcome",
            c4,
            S.FAILED,
            "2026-11-13 10:00",
            smtp_code=550,
            last_error="550 5.1.1 <b>no such user</b>",
        )
        shop.message("welcome", c5, S.QUEUED, "2026-11-20 10:00")
        shop.message("welcome", c5, S.RETRY, "2026-11-20 11:00", last_error="421 try later")
        shop.message("welcome", c5, S.EXPIRED, "2026-11-05 10:00")
        shop.message("welcome", c5, S.IN_DOUBT, "2026-11-06 10:00")
        shop.message("welcome", c5, S.SUPPRESSED, "2026-11-07 10:00")
        # before the period: neither the message nor its open counts
        m10 = shop.message("welcome", c2, S.SENT, "2026-10-20 10:00", "2026-10-20 10:00")
        shop.event(m10, c2, OPEN, "2026-10-20 12:00")
        # thank_you: a human open of c3 the same morning
        m12 = shop.message("thank_you", c3, S.SENT, "2026-11-12 07:55", "2026-11-12 08:00")
        shop.event(m12, c3, OPEN, "2026-11-12 08:30")
        # orders: c1's open at 10 Nov 12:00 reaches to 17 Nov 12:00 inclusive
        shop.order("o-before", c1, "2026-11-10 11:00", "90")  # before the open
        o1 = shop.order("o1", c1, "2026-11-17 12:00", "500")  # exactly 7 days: counts
        shop.order("o2", c1, "2026-11-17 12:00:01", "70")  # one second late
        shop.order("o-cancelled", c1, "2026-11-12 10:00", "60", cancelled=True)
        shop.order("o-machine", c2, "2026-11-12 10:00", "80")  # c2 only opened by machine
        shop.order("o5", c3, "2026-11-13 10:00", "250.50")  # after 3 engagements: once
        # the refund: credit for the order item the message is about, and one it is not
        product = Product(sku="BOOK", name="Book", price=Decimal("10"), updated_at=START)
        session.add(product)
        session.flush()
        items = []
        for _ in range(2):
            item = OrderItem(
                order_id=o1, product_id=product.id, quantity=1, unit_price=Decimal("10")
            )
            session.add(item)
            session.flush()
            items.append(item.id)
        shop.message(
            "price_drop_refund",
            c1,
            S.SENT,
            "2026-11-18 10:00",
            "2026-11-18 10:05",
            order_item_id=items[0],
            kind="transactional",
        )
        for n, (item_id, amount) in enumerate(zip(items, ["0.16", "3.00"], strict=True)):
            session.add(
                Credit(
                    dedupe_key=f"refund:{n}",
                    customer_id=c1,
                    order_item_id=item_id,
                    amount=Decimal(amount),
                    reason="price drop",
                    created_at=at("2026-11-18 10:00"),
                )
            )
        # a campaign that is no longer in the project still shows
        shop.message("old_promo", c2, S.SENT, "2026-11-03 10:00", "2026-11-03 10:00")


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


def test_welcome_counts_statuses_opens_clicks_and_orders(store: Engine, project: Project) -> None:
    build_shop(store)
    report = build_report(store, project, START, NOW, "month", NOW)
    welcome = report["campaigns"]["welcome"]
    # m1, m2, m3, m11 sent; m10 was sent before the period
    assert welcome["sent"] == welcome["delivered"] == 4
    assert (welcome["queued"], welcome["retrying"], welcome["failed"]) == (1, 1, 1)
    assert (welcome["expired"], welcome["in_doubt"], welcome["suppressed"]) == (1, 1, 1)
    assert welcome["messages"] == 10
    # human opens: m1 (open) and m3 (click and open); machine opens: m1 and m2
    assert welcome["unique_human_opens"] == 2
    assert welcome["machine_opens"] == 2
    assert welcome["human_open_rate"] == Decimal("50.00")  # 2 / 4
    assert welcome["reference_open_rate"] == Decimal("42.00")  # a greeting email
    # clicks: two human clicks on m3; the scanner's click is not one
    assert (welcome["unique_clicks"], welcome["total_clicks"]) == (1, 2)
    assert welcome["click_rate"] == Decimal("25.00")
    assert welcome["unsubscribes"] == 1
    # o1 (exactly 7 days after c1's open) and o5 (once, after three of c3's events);
    # not o2 (a second late), o-before, o-cancelled, nor c2's order after machine opens
    assert welcome["attributed_orders"] == 2
    assert welcome["attributed_revenue"] == Decimal("750.50")
    assert welcome["store_credit"] is None  # not a refund campaign


def test_refund_credit_rates_and_totals(store: Engine, project: Project) -> None:
    build_shop(store)
    report = build_report(store, project, START, NOW, "month", NOW)
    campaigns = report["campaigns"]
    # only the credit of the order item the refund message is about
    assert campaigns["price_drop_refund"]["store_credit"] == Decimal("0.16")
    assert campaigns["price_drop_refund"]["human_open_rate"] == Decimal("0.00")
    # nothing sent: no data, not 0 % and not a division by zero
    assert campaigns["holiday_preannounce"]["sent"] == 0
    assert campaigns["holiday_preannounce"]["human_open_rate"] is None
    assert campaigns["holiday_preannounce"]["reference_open_rate"] == Decimal("15.68")
    # o5 followed c3's thank-you open too: counted for both campaigns ...
    assert campaigns["thank_you"]["attributed_orders"] == 1
    assert campaigns["old_promo"]["sent"] == 1 and campaigns["old_promo"]["trigger"] is None
    # ... and once in the total
    total = report["totals"]
    assert total["attributed_orders"] == 2
    assert total["attributed_revenue"] == Decimal("750.50")
    assert total["sent"] == 4 + 1 + 1 + 1
    assert total["unique_human_opens"] == 3  # m1, m3, m12
    assert total["human_open_rate"] == Decimal(300) / 7  # 3 / 7, unrounded
    assert total["store_credit"] == Decimal("0.16")
    assert report["benchmarks"]["email_overall"] == Decimal("22.33")


def test_activity_by_day_in_the_shop_timezone(store: Engine, project: Project) -> None:
    build_shop(store)
    activity = build_report(store, project, START, NOW, "month", NOW)["activity"]
    assert activity["grain"] == "day"
    days = {p["label"]: p for p in activity["points"]}
    assert len(days) == 22  # 1 Nov (Dhaka midnight is 18:00 UTC the day before) to 22 Nov
    # m1 went at 16:00 in Dhaka on 10 Nov, and a person opened it
    assert (days["2026-11-10"]["sent"], days["2026-11-10"]["unique_human_opens"]) == (1, 1)
    assert days["2026-11-10"]["human_open_rate"] == Decimal("100.00")
    assert days["2026-11-11"]["human_open_rate"] == Decimal("0.00")
    assert days["2026-11-15"]["human_open_rate"] is None
    assert sum(p["sent"] for p in activity["points"]) == 7


def test_queue_and_recent_errors(store: Engine, project: Project) -> None:
    build_shop(store)
    queue = build_report(store, project, START, NOW, "month", NOW)["queue"]
    assert queue["waiting"]["welcome"]["queued"] == 1
    assert queue["waiting"]["welcome"]["retrying"] == 1
    assert queue["waiting"]["welcome"]["in_doubt"] == 1
    assert queue["waiting"]["welcome"]["oldest_send_after"] == at("2026-11-20 10:00")
    errors = [e["last_error"] for e in queue["recent_errors"]]
    assert errors == ["421 try later", "550 5.1.1 <b>no such user</b>"]
    assert queue["recent_errors"][0]["customer_name"] == EVIL_NAME
    assert any(e["user_agent"] == EVIL_AGENT for e in queue["recent_events"])


def test_json_has_decimals_as_strings(store: Engine, project: Project) -> None:
    build_shop(store)
    data = to_json(build_report(store, project, START, NOW, "year", NOW))
    assert data["campaigns"]["welcome"]["human_open_rate"] == "50.00"
    assert data["campaigns"]["price_drop_refund"]["store_credit"] == "0.16"
    assert data["campaigns"]["holiday_preannounce"]["human_open_rate"] is None
    assert data["period"]["start"] == "2026-11-01T00:00:00+00:00"
    assert [b["label"] for b in data["retention"]["buckets"]] == ["2026"]


def test_period_reads_dates_in_the_shop_timezone() -> None:
    start, end = period(date(2026, 11, 1), date(2026, 11, 30), NOW, "Asia/Dhaka")
    assert start == datetime(2026, 10, 31, 18, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, 18, tzinfo=UTC)
    assert period(None, None, NOW, "Asia/Dhaka") == (NOW - timedelta(days=30), NOW)
    with pytest.raises(ReportError, match="--from 2026-12-01 must be on or before --to 2026-11-01"):
        period(date(2026, 12, 1), date(2026, 11, 1), NOW, "Asia/Dhaka")


def test_an_unknown_bucket_size_is_refused(sqlite_store: Engine, project: Project) -> None:
    with pytest.raises(
        ReportError, match="bucket size must be one of day, month, year, got: 'week'"
    ):
        build_report(sqlite_store, project, START, NOW, "week", NOW)


def test_sections_leave_out_what_a_page_does_not_show(
    sqlite_store: Engine, project: Project
) -> None:
    build_shop(sqlite_store)
    full = build_report(sqlite_store, project, START, NOW, "month", NOW)
    part = build_report(sqlite_store, project, START, NOW, "month", NOW, sections={"queue"})
    assert set(part) == {"period", "benchmarks", "queue"}
    assert part["queue"] == full["queue"]
    with pytest.raises(ReportError, match="unknown report sections: charts"):
        build_report(sqlite_store, project, START, NOW, "month", NOW, sections={"charts"})


# ---------------------------------------------------------------- flows

FLOW = """\
name: greeting_flow
description: A greeting, then a nudge two days later
trigger: {type: first_order}
steps:
  - id: greet
    template: welcome
    subject: "Welcome"
  - id: nudge
    after: 2d
    template: thank_you
    subject: "Still there?"
"""


def with_flow(project_dir: Path) -> Project:
    """The shipped project with `greeting_flow`, a campaign of two steps."""
    (project_dir / "campaigns" / "greeting_flow.yaml").write_text(FLOW)
    return load_project(project_dir / "config.yaml")


def build_flow(engine: Engine) -> None:
    """Messages of greeting_flow's steps, and of a step since taken out of the file."""
    S, OPEN, C = MessageStatus, EventKind.OPEN, EventKind.CLICK
    with session_scope(engine) as session:
        shop = Shop(session)
        c1, c2, c3 = shop.customer("f1"), shop.customer("f2"), shop.customer("f3")
        greet = partial(shop.message, "greeting_flow", step="greet")
        g1 = greet(c1, S.SENT, "2026-11-10 09:50", "2026-11-10 10:00")
        shop.event(g1, c1, OPEN, "2026-11-10 12:00")
        shop.event(g1, c1, OPEN, "2026-11-10 13:00")  # the same message again: once
        g2 = greet(c2, S.SENT, "2026-11-11 09:50", "2026-11-11 10:00")
        shop.event(g2, c2, C, "2026-11-11 11:00")  # a click is an open too
        g3 = greet(c3, S.SENT, "2026-11-12 09:50", "2026-11-12 10:00")
        shop.event(g3, c3, OPEN, "2026-11-12 10:00:01", machine=True, agent="Mozilla/5.0")
        shop.event(g3, c3, OPEN, "2026-11-23 10:00")  # after `now`: not yet
        greet(c1, S.QUEUED, "2026-11-20 10:00")  # not sent: not counted
        shop.message("greeting_flow", c1, S.SENT, "2026-11-12 09:50", "2026-11-12 10:00",
                     step="nudge")  # fmt: skip
        old = shop.message("greeting_flow", c2, S.SENT, "2026-11-13 09:50", "2026-11-13 10:00",
                           step="story")  # fmt: skip
        shop.event(old, c2, C, "2026-11-13 11:00")
        shop.message("thank_you", c3, S.SENT, "2026-11-13 09:50", "2026-11-13 10:00")


def test_each_step_of_a_flow_has_its_sends_opens_and_clicks(
    store: Engine, project_dir: Path
) -> None:
    build_flow(store)
    project = with_flow(project_dir)
    report = to_json(build_report(store, project, START, NOW, "month", NOW))
    steps = report["campaigns"]["greeting_flow"]["steps"]
    assert steps == {
        "greet": {"number": 1, "sent": 3, "unique_human_opens": 2, "unique_clicks": 1,
                  "human_open_rate": "66.66666666666666666666666667",
                  "click_rate": "33.33333333333333333333333333"},
        "nudge": {"number": 2, "sent": 1, "unique_human_opens": 0, "unique_clicks": 0,
                  "human_open_rate": "0.00", "click_rate": "0.00"},
        "story": {"number": None, "sent": 1, "unique_human_opens": 1, "unique_clicks": 1,
                  "human_open_rate": "100.00", "click_rate": "100.00"},
    }  # fmt: skip
    assert list(steps) == ["greet", "nudge", "story"]  # the file's order, then the removed
    assert report["campaigns"]["greeting_flow"]["sent"] == 5
    assert report["campaigns"]["thank_you"]["sent"] == 1
    assert report["campaigns"]["thank_you"]["steps"] == {}  # a campaign without steps
    assert "steps" not in report["totals"]
