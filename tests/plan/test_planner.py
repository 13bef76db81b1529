"""The planner against real databases: each campaign at its boundaries."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake.shop import (
    Line,
    add_holiday,
    mark_delivered,
    record_order,
    set_price,
    upsert_customer,
    upsert_product,
)
from engine.plan.planner import plan
from engine.project.loader import Project, load_project
from engine.store.db import session_scope
from engine.store.models import Credit, Customer, Message, MessageKind, MessageStatus, Suppression

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka, 01:00 in New York
H = timedelta(hours=1)
D = timedelta(days=1)


@dataclass
class Shop:
    engine: Engine
    dir: Path
    loaded: Project | None = None

    @property
    def project(self) -> Project:
        if self.loaded is None:
            self.loaded = load_project(self.dir / "config.yaml")
        return self.loaded

    def enable(self, *names: str) -> None:
        self.edit("config.yaml", lambda c: c.update(campaigns=list(names)))

    def edit(self, file: str, change: Any) -> None:
        path = self.dir / file
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        self.loaded = None

    def customer(self, name: str, *, consent: bool = True, tz: str | None = None) -> None:
        with session_scope(self.engine) as s:
            upsert_customer(s, external_id=name, email=f"{name}@example.com", now=NOW - 400 * D,
                            marketing_consent=consent, timezone=tz)  # fmt: skip

    def order(
        self,
        name: str,
        customer: str,
        placed: datetime,
        delivered: datetime | None = None,
        *,
        sku: str = "JUTE-BAG-01",
        quantity: int = 1,
        recorded: datetime | None = None,
    ) -> None:
        with session_scope(self.engine) as s:
            record_order(s, external_id=name, customer_id=customer, items=[Line(sku, quantity)],
                         placed_at=placed, delivered_at=delivered, now=recorded)  # fmt: skip

    def price(self, sku: str, price: str, at: datetime) -> None:
        with session_scope(self.engine) as s:
            set_price(s, sku, price, now=at)

    def messages(self, campaign: str | None = None) -> list[Message]:
        with Session(self.engine) as s:
            query = select(Message).order_by(col(Message.id))
            if campaign:
                query = query.where(col(Message.campaign) == campaign)
            return list(s.exec(query).scalars())  # type: ignore[call-overload]

    def credits(self) -> list[Credit]:
        with Session(self.engine) as s:
            query = select(Credit).order_by(col(Credit.id))
            return list(s.exec(query).scalars())  # type: ignore[call-overload]

    def plan(self, at: datetime, **kw: Any) -> dict[str, Any]:
        return plan(self.engine, self.project, at, **kw).as_dict()["campaigns"]  # type: ignore[no-any-return]

    def owner(self, message: Message) -> str:
        with Session(self.engine) as s:
            return s.get(Customer, message.customer_id).external_id  # type: ignore[union-attr]


def _shop(engine: Engine, project_dir: Path) -> Shop:
    shop = Shop(engine, project_dir)
    with session_scope(engine) as s:
        upsert_product(s, sku="JUTE-BAG-01", name="Jute bag", price="350", now=NOW - 500 * D)
        upsert_product(s, sku="TEA-500G", name="Tea", price="420", now=NOW - 500 * D)
    return shop


@pytest.fixture
def shop(store: Engine, project_dir: Path) -> Shop:
    """The shipped project on SQLite and on PostgreSQL."""
    return _shop(store, project_dir)


@pytest.fixture
def lite(sqlite_store: Engine, project_dir: Path) -> Shop:
    """The shipped project on SQLite, for rules that are not dialect-specific."""
    return _shop(sqlite_store, project_dir)


# ---------------------------------------------------------------- welcome


def test_welcome_exactly_once_with_first_order(shop: Shop) -> None:
    shop.enable("welcome")
    shop.customer("ana")
    shop.order("o1", "ana", NOW - 30 * 60 * timedelta(seconds=1))  # 05:30 UTC
    shop.order("o2", "ana", NOW - 20 * 60 * timedelta(seconds=1))
    assert shop.plan(NOW)["welcome"]["queued"] == 1
    assert shop.plan(NOW)["welcome"]["queued"] == 0
    assert shop.plan(NOW + H)["welcome"]["queued"] == 0
    [welcome] = shop.messages("welcome")
    assert (welcome.dedupe_key, welcome.occurrence) == (
        f"welcome:{welcome.customer_id}:first",
        "first",
    )
    assert (welcome.status, welcome.kind) == (MessageStatus.QUEUED, MessageKind.MARKETING)
    assert welcome.created_at == NOW
    due = NOW - 20 * timedelta(minutes=1)  # first order + 10 minutes
    assert welcome.send_after == NOW  # due 11:40 in Dhaka, planned at 12:00: goes at once
    assert welcome.expires_at == due + 3 * D
    with Session(shop.engine) as s:
        first = s.exec(select(Message.order_id)).scalar_one()  # type: ignore[call-overload]
    assert first == welcome.order_id and first is not None


@pytest.mark.parametrize(
    ("placed", "queued"),
    [
        pytest.param(NOW - 9 * timedelta(minutes=1), 0, id="not-due-yet"),
        pytest.param(NOW - 10 * timedelta(minutes=1), 1, id="due-now"),
        pytest.param(NOW - 3 * D + 11 * timedelta(minutes=1), 1, id="just-before-expiry"),
        pytest.param(NOW - 3 * D - 10 * timedelta(minutes=1), 0, id="expired"),
        pytest.param(NOW - 200 * D, 0, id="old-customer-on-new-install"),
    ],
)
def test_welcome_due_and_lookback(lite: Shop, placed: datetime, queued: int) -> None:
    lite.enable("welcome")
    lite.customer("ana")
    lite.order("o1", "ana", placed)
    assert lite.plan(NOW)["welcome"]["queued"] == queued


def test_overlapping_passes_queue_one_welcome(shop: Shop) -> None:
    shop.enable("welcome", "thank_you", "price_drop_refund")
    for i in range(20):
        shop.customer(f"c{i}")
        shop.order(f"o{i}", f"c{i}", NOW - H)
    shop.price("JUTE-BAG-01", "340", NOW - 30 * timedelta(minutes=1))
    barrier = threading.Barrier(3)
    reports: list[dict[str, Any]] = []

    def run() -> None:
        barrier.wait()
        reports.append(shop.plan(NOW))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(reports) == 3
    assert all("error" not in r for report in reports for r in report.values())
    assert sum(r["welcome"]["queued"] for r in reports) == 20
    assert len(shop.messages("welcome")) == 20
    assert len(shop.messages("price_drop_refund")) == 20
    assert len(shop.credits()) == 20
    assert sum(c.amount for c in shop.credits()) == Decimal("200.00")


# ---------------------------------------------------------------- thank-you


def test_thank_you_for_every_delivered_order(shop: Shop) -> None:
    shop.enable("thank_you")
    shop.edit("config.yaml", lambda c: c["sending"].update(frequency_cap=None))
    shop.customer("ana")
    shop.order("o1", "ana", NOW - 5 * D, NOW - 4 * D)
    shop.order("o2", "ana", NOW - 2 * D, NOW - 3 * H)
    shop.order("o3", "ana", NOW - 2 * D, NOW - H)  # delivered 1h ago: due in 1h
    shop.order("o4", "ana", NOW - D)  # not delivered
    assert shop.plan(NOW)["thank_you"]["queued"] == 2
    assert [m.occurrence for m in shop.messages("thank_you")] == [
        f"order-{m.order_id}" for m in shop.messages("thank_you")
    ]
    assert shop.plan(NOW + H)["thank_you"]["queued"] == 1
    assert shop.plan(NOW + 2 * H)["thank_you"]["queued"] == 0
    with session_scope(shop.engine) as s:
        mark_delivered(s, "o4", NOW + 2 * H)
    assert shop.plan(NOW + 4 * H)["thank_you"]["queued"] == 1
    assert len(shop.messages("thank_you")) == 4


def test_quiet_after_welcome(lite: Shop) -> None:
    """Order-placed thank-you: the first order gets the welcome only; later ones a thank-you."""
    lite.enable("welcome", "thank_you")
    lite.edit("campaigns/thank_you.yaml", lambda c: c.update(
        trigger={"type": "order_placed", "delay": "5m", "quiet_after_welcome": "1h"}))  # fmt: skip
    lite.customer("ana")
    lite.order("o1", "ana", NOW - 30 * timedelta(minutes=1))
    report = lite.plan(NOW)
    assert (report["welcome"]["queued"], report["thank_you"]["queued"]) == (1, 0)
    lite.order("o2", "ana", NOW + H)
    report = lite.plan(NOW + 2 * H)
    assert (report["welcome"]["queued"], report["thank_you"]["queued"]) == (0, 1)
    [thanks] = lite.messages("thank_you")
    assert (
        thanks.occurrence.startswith("order-")
        and thanks.order_id != lite.messages("welcome")[0].order_id
    )


def test_quiet_after_welcome_is_not_waited_out_by_a_slow_welcome(lite: Shop) -> None:
    """The welcome is due later than the thank-you: the thank-you still holds back."""
    lite.enable("welcome", "thank_you")
    lite.edit("campaigns/welcome.yaml", lambda c: c["trigger"].update(delay="30m"))
    lite.edit("campaigns/thank_you.yaml", lambda c: c.update(
        trigger={"type": "order_placed", "quiet_after_welcome": "1h"}))  # fmt: skip
    lite.customer("ana")
    lite.order("o1", "ana", NOW - 5 * timedelta(minutes=1))
    assert lite.plan(NOW)["thank_you"]["queued"] == 0
    assert lite.plan(NOW + H)["welcome"]["queued"] == 1
    assert lite.plan(NOW + H)["thank_you"]["queued"] == 0


def test_delivered_thank_you_long_after_welcome_still_goes(lite: Shop) -> None:
    lite.enable("welcome", "thank_you")
    lite.customer("ana")
    lite.order("o1", "ana", NOW - 2 * D, NOW - 3 * H)
    lite.plan(NOW - 2 * D + H)
    report = lite.plan(NOW)
    assert len(lite.messages("welcome")) == 1
    assert report["thank_you"]["queued"] == 1


# ---------------------------------------------------------------- filters


def test_consent_suppression_and_cap(shop: Shop) -> None:
    shop.enable("welcome", "price_drop_refund")
    shop.customer("ok")
    shop.customer("no_consent", consent=False)
    shop.customer("suppressed")
    shop.customer("busy")
    with session_scope(shop.engine) as s:
        s.add(Suppression(email="suppressed@example.com", reason="bounce", created_at=NOW - D))
        busy = s.exec(select(Customer).where(col(Customer.external_id) == "busy")).scalar_one()  # type: ignore[call-overload]
        for i, status in enumerate([MessageStatus.SENT, MessageStatus.QUEUED, MessageStatus.SENT,
                                    MessageStatus.FAILED]):  # fmt: skip
            s.add(Message(dedupe_key=f"old:{i}", campaign="old", customer_id=busy.id,
                          occurrence=str(i), status=status, created_at=NOW - 2 * D,
                          send_after=NOW - 2 * D))  # fmt: skip
        # A transactional notice neither counts towards the cap nor is held back by it.
        s.add(Message(dedupe_key="old:t", campaign="old", customer_id=busy.id, occurrence="t",
                      kind=MessageKind.TRANSACTIONAL, status=MessageStatus.SENT,
                      created_at=NOW - D, send_after=NOW - D))  # fmt: skip
    for name in ("ok", "no_consent", "suppressed", "busy"):
        shop.order(f"o-{name}", name, NOW - H)
    shop.price("JUTE-BAG-01", "300", NOW - 30 * timedelta(minutes=1))
    report = shop.plan(NOW)
    assert report["welcome"] == {
        "queued": 1, "skipped_consent": 1, "skipped_suppressed": 1, "skipped_cap": 1,
        "expired": 0, "expired_messages": [],
        "exited": 0, "coupons": 0, "steps": {"email": {"queued": 1, "skipped_consent": 1, "skipped_suppressed": 1, "skipped_cap": 1, "skipped_passed": 0, "exited": {}, "coupons": 0}},
    }  # fmt: skip
    assert [shop.owner(m) for m in shop.messages("welcome")] == ["ok"]
    # The refund is transactional: no consent needed, the cap does not apply; a
    # suppressed address is credited but not emailed.
    assert report["price_drop_refund"] == {
        "queued": 3, "skipped_consent": 0, "skipped_suppressed": 1, "skipped_cap": 0,
        "expired": 0, "expired_messages": [],
        "exited": 0, "coupons": 0, "steps": {"email": {"queued": 3, "skipped_consent": 0, "skipped_suppressed": 1, "skipped_cap": 0, "skipped_passed": 0, "exited": {}, "coupons": 0}},
    }  # fmt: skip
    assert sorted(shop.owner(m) for m in shop.messages("price_drop_refund")) == [
        "busy", "no_consent", "ok"
    ]  # fmt: skip
    assert len(shop.credits()) == 4
    # A cap window that has passed frees the customer again.
    assert shop.plan(NOW + 5 * D + H)["welcome"]["queued"] == 0  # the welcome has expired by then


def test_cap_window_rolls(lite: Shop) -> None:
    lite.enable("thank_you")
    lite.customer("ana")
    for i in range(4):
        lite.order(f"o{i}", "ana", NOW - 4 * D + i * D, NOW - 4 * D + i * D + H)
    lite.plan(NOW - 3 * D)
    lite.plan(NOW - 2 * D)
    lite.plan(NOW - D)
    report = lite.plan(NOW)
    assert report["thank_you"]["skipped_cap"] == 1 and len(lite.messages()) == 3
    lite.edit("config.yaml", lambda c: c["sending"].update(frequency_cap={"max": 3, "per": "3d"}))
    assert lite.plan(NOW)["thank_you"]["queued"] == 0  # between full passes: only what is new
    assert lite.plan(NOW, rescan=True)["thank_you"]["queued"] == 1


def test_several_emails_for_one_customer_in_one_pass_stay_under_the_cap(shop: Shop) -> None:
    """Three orders delivered at once, two marketing emails already this week, a cap
    of 3 a week: one thank-you now, the other two held back by the cap."""
    shop.enable("thank_you")
    shop.customer("ana")
    shop.customer("bob")
    with session_scope(shop.engine) as s:
        ana = s.exec(select(Customer).where(col(Customer.external_id) == "ana")).scalar_one()  # type: ignore[call-overload]
        for i in range(2):
            s.add(Message(dedupe_key=f"old:{i}", campaign="old", customer_id=ana.id,
                          occurrence=str(i), status=MessageStatus.SENT, created_at=NOW - D,
                          send_after=NOW - D))  # fmt: skip
    for i in range(3):
        shop.order(f"a{i}", "ana", NOW - 2 * D, NOW - 3 * H - i * timedelta(minutes=1))
        shop.order(f"b{i}", "bob", NOW - 2 * D, NOW - 3 * H - i * timedelta(minutes=1))
    report = shop.plan(NOW)
    assert (report["thank_you"]["queued"], report["thank_you"]["skipped_cap"]) == (4, 2)
    owners = sorted(shop.owner(m) for m in shop.messages("thank_you"))
    assert owners == ["ana", "bob", "bob", "bob"]
    # All three are due already, so they would go at once: the first order's goes.
    [anas] = [m for m in shop.messages("thank_you") if shop.owner(m) == "ana"]
    assert anas.occurrence == "order-1"
    again = shop.plan(NOW + H, rescan=True)["thank_you"]
    assert (again["queued"], again["skipped_cap"]) == (0, 2)


def test_skipped_customer_is_looked_at_again_by_the_next_full_pass(lite: Shop) -> None:
    lite.enable("welcome")
    lite.customer("ana", consent=False)
    lite.order("o1", "ana", NOW - H)
    assert lite.plan(NOW)["welcome"]["skipped_consent"] == 1
    with session_scope(lite.engine) as s:
        upsert_customer(
            s, external_id="ana", email="ana@example.com", now=NOW, marketing_consent=True
        )
    minute = timedelta(minutes=1)
    assert lite.plan(NOW + minute)["welcome"] == {
        "queued": 0, "skipped_consent": 0, "skipped_suppressed": 0, "skipped_cap": 0,
        "expired": 0, "expired_messages": [],
        "exited": 0, "coupons": 0, "steps": {"email": {"queued": 0, "skipped_consent": 0, "skipped_suppressed": 0, "skipped_cap": 0, "skipped_passed": 0, "exited": {}, "coupons": 0}},
    }  # fmt: skip
    assert lite.plan(NOW + 14 * minute)["welcome"]["queued"] == 0
    assert lite.plan(NOW + 15 * minute)["welcome"]["queued"] == 1


def test_rescanning_passes_queue_nothing_twice(shop: Shop) -> None:
    shop.enable("welcome", "thank_you", "price_drop_refund")
    shop.customer("ana")
    shop.order("o1", "ana", NOW - 5 * H, NOW - 3 * H)
    shop.order("o2", "ana", NOW - H)
    shop.price("JUTE-BAG-01", "300", NOW - 30 * timedelta(minutes=1))
    first = shop.plan(NOW, rescan=True)
    assert [first[c]["queued"] for c in ("welcome", "thank_you", "price_drop_refund")] == [1, 1, 1]
    again = shop.plan(NOW, rescan=True)
    assert [again[c]["queued"] for c in ("welcome", "thank_you", "price_drop_refund")] == [0, 0, 0]
    assert len(shop.messages()) == 3 and len(shop.credits()) == 1


def test_bad_timezone_falls_back_to_the_shops(lite: Shop, caplog: pytest.LogCaptureFixture) -> None:
    lite.enable("welcome")
    lite.customer("ana")
    lite.customer("ny", tz="America/New_York")
    with session_scope(lite.engine) as s:
        s.execute(
            update(Customer)
            .where(col(Customer.external_id) == "ana")
            .values(timezone="Mars/Olympus")
        )
    late = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)  # 22:00 in Dhaka, 11:00 in New York
    lite.order("o1", "ana", late)
    lite.order("o2", "ny", late)
    with caplog.at_level(logging.WARNING, logger="engine.plan.planner"):
        report = lite.plan(late + 10 * timedelta(minutes=1))  # when both welcomes fall due
    assert report["welcome"]["queued"] == 2
    assert "Mars/Olympus" in caplog.text
    sends = {lite.owner(m): m.send_after for m in lite.messages("welcome")}
    assert sends["ana"] == datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 09:00 next morning, Dhaka
    assert sends["ny"] == late + 10 * timedelta(minutes=1)  # 11:10 in New York: in the window


def test_one_failing_campaign_does_not_stop_the_others(
    lite: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    lite.enable("welcome", "thank_you")
    lite.edit("segments/everyone.yaml", lambda s: s.update(rules={"orders": {"at_least": 1}}))
    lite.edit("campaigns/welcome.yaml", lambda c: c.update(segment="new_customers"))
    lite.edit("segments/new_customers.yaml", lambda s: s.update(rules={"colour": "blue"}))
    lite.customer("ana")
    lite.order("o1", "ana", NOW - 2 * D, NOW - 3 * H)
    with caplog.at_level(logging.ERROR, logger="engine.plan.planner"):
        report = lite.plan(NOW)
    assert "unknown rule 'colour'" in report["welcome"]["error"]
    assert "welcome" in caplog.text
    assert report["thank_you"]["queued"] == 1


def test_dry_run_reports_and_writes_nothing(lite: Shop) -> None:
    lite.enable("welcome", "price_drop_refund")
    lite.customer("ana")
    lite.order("o1", "ana", NOW - H)
    lite.price("JUTE-BAG-01", "349", NOW - 30 * timedelta(minutes=1))
    report = lite.plan(NOW, dry_run=True)
    assert report["welcome"]["queued"] == 1 and report["price_drop_refund"]["queued"] == 1
    assert lite.messages() == [] and lite.credits() == []


# ---------------------------------------------------------------- holidays


def holiday_shop(shop: Shop, day: date) -> None:
    """flash_sale on `day`; two regulars, in Dhaka and New York."""
    shop.enable("holiday_preannounce")
    shop.edit("campaigns/holiday_preannounce.yaml", lambda c: c["trigger"].update(
        holidays=["flash_sale", "black_friday"]))  # fmt: skip
    shop.customer("dhaka", tz="Asia/Dhaka")
    shop.customer("newyork", tz="America/New_York")
    shop.customer("once")  # one order only: not a regular
    for who in ("dhaka", "newyork"):
        for i in range(3):
            shop.order(f"{who}{i}", who, NOW - 60 * D + i * D)
    shop.order("once0", "once", NOW - 60 * D)
    with session_scope(shop.engine) as s:
        add_holiday(s, holiday_id="flash_sale", day=day, name="Flash sale", now=NOW - 90 * D)


def queued_for(shop: Shop) -> dict[str, Message]:
    return {shop.owner(m): m for m in shop.messages("holiday_preannounce")}


@pytest.mark.parametrize(
    ("day", "dhaka_due", "newyork_due"),
    [
        # 10:00 local three days before: New York is still on EDT (UTC−4) on 31 October...
        pytest.param(date(2026, 11, 3), datetime(2026, 10, 31, 4, 0, tzinfo=UTC),
                     datetime(2026, 10, 31, 14, 0, tzinfo=UTC), id="before-dst-ends"),
        # ... and on EST (UTC−5) from 1 November, 01:00; Dhaka has no DST.
        pytest.param(date(2026, 11, 4), datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
                     datetime(2026, 11, 1, 15, 0, tzinfo=UTC), id="after-dst-ends"),
        pytest.param(date(2027, 3, 16), datetime(2027, 3, 13, 4, 0, tzinfo=UTC),
                     datetime(2027, 3, 13, 15, 0, tzinfo=UTC), id="before-dst-starts"),
        pytest.param(date(2027, 3, 17), datetime(2027, 3, 14, 4, 0, tzinfo=UTC),
                     datetime(2027, 3, 14, 14, 0, tzinfo=UTC), id="after-dst-starts"),
    ],
)  # fmt: skip
def test_holiday_at_ten_local_across_dst(
    shop: Shop, day: date, dhaka_due: datetime, newyork_due: datetime
) -> None:
    holiday_shop(shop, day)
    second = timedelta(seconds=1)
    assert shop.plan(dhaka_due - second)["holiday_preannounce"]["queued"] == 0
    assert shop.plan(dhaka_due)["holiday_preannounce"]["queued"] == 1
    assert shop.plan(newyork_due - second)["holiday_preannounce"]["queued"] == 0
    assert shop.plan(newyork_due)["holiday_preannounce"]["queued"] == 1
    for later in (H, D, 2 * D - second):
        assert shop.plan(newyork_due + later)["holiday_preannounce"]["queued"] == 0
    sent = queued_for(shop)
    assert set(sent) == {"dhaka", "newyork"}
    for who, due in (("dhaka", dhaka_due), ("newyork", newyork_due)):
        m = sent[who]
        assert (m.holiday, m.holiday_date, m.occurrence) == (
            "flash_sale",
            day,
            f"flash_sale-{day.year}",
        )
        assert m.send_after == due and m.expires_at == due + 2 * D
        assert m.context == {
            "holiday_name": {"en": "Nakshi Ghor flash sale", "bn": "নকশি ঘরের ফ্ল্যাশ সেল"}
        }


def test_holiday_not_queued_after_expiry_and_again_next_year(lite: Shop) -> None:
    holiday_shop(lite, date(2026, 12, 5))
    lite.edit("campaigns/holiday_preannounce.yaml", lambda c: c.update(segment="everyone"))
    due = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # in Dhaka (and for "once", on the shop's clock)
    assert lite.plan(due + 2 * D)["holiday_preannounce"]["queued"] == 1  # expires_after: 2d
    assert list(queued_for(lite)) == ["newyork"]
    with session_scope(lite.engine) as s:
        add_holiday(s, holiday_id="flash_sale", day=date(2027, 12, 5), name="Flash sale", now=NOW)
    next_year = datetime(2027, 12, 2, 4, 0, tzinfo=UTC)
    assert lite.plan(next_year)["holiday_preannounce"]["queued"] == 2
    assert lite.plan(next_year + H)["holiday_preannounce"]["queued"] == 0
    assert sorted(m.occurrence for m in lite.messages()) == [
        "flash_sale-2026", "flash_sale-2027", "flash_sale-2027"
    ]  # fmt: skip


def test_holiday_without_days_before_queues_until_the_day_ends(lite: Shop) -> None:
    holiday_shop(lite, date(2026, 12, 5))
    lite.edit("campaigns/holiday_preannounce.yaml", lambda c: c["trigger"].update(
        days_before=0, at="21:00", expires_after=None))  # fmt: skip
    due = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # 21:00 in Dhaka, outside the window
    assert lite.plan(due)["holiday_preannounce"]["queued"] == 1
    [m] = lite.messages()
    assert m.expires_at == datetime(2026, 12, 5, 18, 0, tzinfo=UTC)  # midnight in Dhaka
    assert m.send_after == datetime(2026, 12, 6, 3, 0, tzinfo=UTC)  # after it expires: never sent


def test_moved_holiday_moves_queued_messages(shop: Shop) -> None:
    holiday_shop(shop, date(2026, 12, 5))
    shop.plan(datetime(2026, 12, 2, 4, 0, tzinfo=UTC))  # Dhaka's is queued
    with session_scope(shop.engine) as s:
        add_holiday(s, holiday_id="flash_sale", day=date(2026, 12, 7), name="Flash sale", now=NOW)
    report = shop.plan(datetime(2026, 12, 2, 5, 0, tzinfo=UTC))
    assert report["holiday_preannounce"]["queued"] == 0
    [m] = shop.messages()
    assert m.holiday_date == date(2026, 12, 7)
    assert m.send_after == datetime(2026, 12, 4, 4, 0, tzinfo=UTC)
    assert m.expires_at == datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


def test_confirmed_date_moves_queued_eid_messages(lite: Shop) -> None:
    lite.enable("holiday_preannounce")
    lite.customer("dhaka", tz="Asia/Dhaka")
    for i in range(3):
        lite.order(f"o{i}", "dhaka", datetime(2027, 2, 1, tzinfo=UTC) + i * D)
    estimate = datetime(2027, 3, 7, 4, 0, tzinfo=UTC)  # the package says Eid is 10 March
    assert lite.plan(estimate)["holiday_preannounce"]["queued"] == 1
    lite.edit(
        "config.yaml", lambda c: c["holidays"].update(confirmed={"eid_ul_fitr": "2027-03-11"})
    )
    assert lite.plan(estimate + H)["holiday_preannounce"]["queued"] == 0
    [m] = lite.messages()
    assert (m.occurrence, m.holiday_date) == ("eid_ul_fitr-2027", date(2027, 3, 11))
    assert m.send_after == estimate + D
    assert m.context == {"holiday_name": {"en": "Eid al-Fitr", "bn": "ঈদুল ফিতর"}}


# ---------------------------------------------------------------- refunds


def refund_shop(shop: Shop) -> None:
    shop.enable("price_drop_refund")
    shop.customer("ana", consent=False)


@pytest.mark.parametrize(
    ("paid", "new", "quantity", "amount"),
    [
        pytest.param("350.00", "336.00", 2, "28.00", id="the-example"),
        pytest.param("350.00", "349.99", 1, "0.01", id="one-paisa"),
        pytest.param("350.00", "349.99", 3, "0.03", id="three-paisa"),
        pytest.param("199.99", "133.33", 7, "466.62", id="seven"),
        pytest.param("350.00", "0.01", 1, "349.99", id="nearly-free"),
    ],
)
def test_refund_amount_to_the_paisa(
    shop: Shop, paid: str, new: str, quantity: int, amount: str
) -> None:
    refund_shop(shop)
    shop.price("JUTE-BAG-01", paid, NOW - 10 * D)
    shop.order("o1", "ana", NOW - 3 * D, quantity=quantity)
    shop.price("JUTE-BAG-01", new, NOW - D)
    assert shop.plan(NOW)["price_drop_refund"]["queued"] == 1
    [credit] = shop.credits()
    [m] = shop.messages()
    assert credit.amount == Decimal(amount)
    assert m.kind == MessageKind.TRANSACTIONAL  # goes without marketing consent
    assert m.context == {"credit_id": credit.id, "old_price": paid, "new_price": new,
                         "quantity": quantity, "amount": amount}  # fmt: skip
    assert m.occurrence == f"item-{m.order_item_id}-{int(Decimal(new) * 100)}"
    assert credit.order_item_id == m.order_item_id and m.order_id is not None
    assert shop.plan(NOW + H)["price_drop_refund"]["queued"] == 0
    assert len(shop.credits()) == 1


def test_deeper_drop_credits_only_the_extra(shop: Shop) -> None:
    refund_shop(shop)
    shop.order("o1", "ana", NOW - 5 * D, quantity=2)
    shop.price("JUTE-BAG-01", "336", NOW - 4 * D)
    shop.plan(NOW - 4 * D + H)
    shop.price("JUTE-BAG-01", "340", NOW - 3 * D)  # back up a little: nothing
    shop.plan(NOW - 3 * D + H)
    shop.price("JUTE-BAG-01", "330", NOW - 2 * D)
    shop.plan(NOW - 2 * D + H)
    shop.plan(NOW)
    assert [c.amount for c in shop.credits()] == [Decimal("28.00"), Decimal("12.00")]
    second = shop.messages()[1].context
    assert second is not None
    assert (second["old_price"], second["new_price"], second["amount"]) == (
        "336.00",
        "330.00",
        "12.00",
    )


@pytest.mark.parametrize(
    ("events", "credited"),
    [
        pytest.param([("drop", 2), ("deliver", 3)], "14.00", id="drop-before-delivery"),
        pytest.param([("deliver", 2), ("drop", 3)], None, id="drop-after-delivery"),
        pytest.param([("rise", 2)], None, id="price-rise"),
        pytest.param([("rise", 1), ("drop_to_paid", 2)], None, id="rise-then-back"),
        pytest.param([("cancel", 1), ("drop", 2)], None, id="cancelled-order"),
    ],
)
def test_which_orders_are_owed(
    lite: Shop, events: list[tuple[str, int]], credited: str | None
) -> None:
    refund_shop(lite)
    placed = NOW - 5 * D
    if ("cancel", 1) in events:
        with session_scope(lite.engine) as s:
            record_order(s, external_id="o1", customer_id="ana", items=[Line("JUTE-BAG-01", 1)],
                         placed_at=placed, cancelled=True)  # fmt: skip
    else:
        lite.order("o1", "ana", placed)
    for kind, day in events:
        at = placed + day * H
        if kind == "drop":
            lite.price("JUTE-BAG-01", "336", at)
        elif kind == "rise":
            lite.price("JUTE-BAG-01", "400", at)
        elif kind == "drop_to_paid":
            lite.price("JUTE-BAG-01", "350", at)
        elif kind == "deliver":
            with session_scope(lite.engine) as s:
                mark_delivered(s, "o1", at)
    lite.plan(NOW)
    assert [str(c.amount) for c in lite.credits()] == ([credited] if credited else [])


def test_refund_minimum(lite: Shop) -> None:
    refund_shop(lite)
    lite.edit("config.yaml", lambda c: c["refunds"].update(minimum="0.05"))
    lite.order("o1", "ana", NOW - 5 * D, quantity=2)
    lite.price("JUTE-BAG-01", "349.99", NOW - 4 * D)
    assert lite.plan(NOW - 3 * D)["price_drop_refund"]["queued"] == 0  # 0.02 owed: below it
    lite.price("JUTE-BAG-01", "349.97", NOW - 2 * D)
    assert lite.plan(NOW)["price_drop_refund"]["queued"] == 1
    [credit] = lite.credits()
    assert credit.amount == Decimal("0.06")


def test_refund_statements_stay_correlated(lite: Shop) -> None:
    """The lowest-price subquery names only price_change, even nested in EXISTS.

    (When it listed order_item and orders too, every notice scanned every order
    item of the product: minutes at a million customers.)
    """
    from sqlalchemy import event

    refund_shop(lite)
    lite.order("o1", "ana", NOW - 2 * D, quantity=2)
    lite.price("JUTE-BAG-01", "340", NOW - D)
    statements: list[str] = []
    event.listen(lite.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: statements.append(statement))  # fmt: skip
    assert lite.plan(NOW)["price_drop_refund"]["queued"] == 1
    lowest = [s for s in statements if "lowest_change" in s]
    assert len(lowest) >= 2
    assert not any("FROM price_change AS lowest_change," in s for s in lowest)


# ---------------------------------------------------------------- expired unsent

M = timedelta(minutes=1)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def test_an_order_recorded_after_its_welcome_expired_is_recorded_expired_with_why(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    shop.enable("welcome")
    shop.plan(NOW)  # the campaign's first pass
    shop.customer("late")
    placed, recorded = NOW - 8 * D, NOW + 20 * M  # reported a week after the order
    shop.order("o-late", "late", placed, recorded=recorded)
    with caplog.at_level(logging.WARNING, logger="engine.plan.planner"):
        report = shop.plan(NOW + H)["welcome"]
    due, expired = placed + 10 * M, placed + 10 * M + 3 * D  # delay 10m, expires_after 3d
    why = (
        f"expired unsent: due {_iso(due)}, expired {_iso(expired)} (expires_after 3d); "
        f"the order was recorded at {_iso(recorded)}, after the email had expired"
    )
    assert (report["queued"], report["expired"]) == (0, 1)
    assert report["expired_messages"] == [
        {
            "customer": "late",
            "occurrence": "first",
            "order": "o-late",
            "due": _iso(due),
            "expires_at": _iso(expired),
            "why": why,
        }
    ]
    [message] = shop.messages("welcome")
    assert (message.status, message.last_error) == (MessageStatus.EXPIRED, why)
    assert (message.send_after, message.expires_at) == (due, expired)
    [line] = [r.getMessage() for r in caplog.records if "expired unsent" in r.getMessage()]
    assert line.startswith("campaign welcome: 1 message(s) expired unsent")
    assert f"customer late (first, order o-late): {why}" in line
    # Said once: later passes, full ones too, find it recorded.
    assert shop.plan(NOW + 2 * H, rescan=True)["welcome"]["expired"] == 0
    assert len(shop.messages("welcome")) == 1


def test_a_backlog_imported_after_the_first_run_is_not_recorded_expired(shop: Shop) -> None:
    shop.enable("welcome")
    shop.plan(NOW)  # the campaign's first pass, on an empty shop
    shop.customer("old")
    shop.customer("recent")
    shop.order("o-old", "old", NOW - 40 * D, recorded=NOW + 20 * M)
    shop.order("o-recent", "recent", NOW - 20 * D, recorded=NOW + 20 * M)
    report = shop.plan(NOW + H)["welcome"]
    assert [m["order"] for m in report["expired_messages"]] == ["o-recent"]
    assert [m.status for m in shop.messages("welcome")] == [MessageStatus.EXPIRED]


def test_a_thank_you_for_an_order_reported_late_is_recorded_expired(shop: Shop) -> None:
    shop.enable("thank_you")
    shop.plan(NOW)
    shop.customer("ana")
    # Delivered 9 days ago; thank_you is due 2h after delivery and expires 5d later.
    shop.order("o-old", "ana", NOW - 10 * D, NOW - 9 * D, recorded=NOW + M)
    report = shop.plan(NOW + 2 * M)["thank_you"]
    assert (report["queued"], report["expired"]) == (0, 1)
    [item] = report["expired_messages"]
    assert (item["customer"], item["order"]) == ("ana", "o-old")
    assert item["occurrence"].startswith("order-")


def test_a_new_install_records_no_history_as_expired_on_its_first_and_second_pass(
    shop: Shop,
) -> None:
    shop.enable("welcome", "thank_you")
    imported = NOW - 2 * H  # a month of history, imported before the daemon first ran
    for day in range(30):
        name = f"c{day}"
        shop.customer(name)
        placed = NOW - day * D - 3 * H
        shop.order(f"o{day}", name, placed, placed + D if day else None, recorded=imported)
    shop.customer("old")
    shop.order("o-unknown", "old", NOW - 20 * D)  # recorded before recorded_at was kept
    passes = [shop.plan(NOW), shop.plan(NOW + 16 * M), shop.plan(NOW + 32 * M, rescan=True)]
    for report in passes:
        for name in ("welcome", "thank_you"):
            assert (report[name]["expired"], report[name]["expired_messages"]) == (0, [])
    assert [m for m in shop.messages() if m.status == MessageStatus.EXPIRED] == []
    assert passes[0]["welcome"]["queued"] == 3  # the first orders still within 3d 10m


def test_an_order_recorded_in_time_is_queued_not_expired(shop: Shop) -> None:
    shop.enable("welcome")
    shop.plan(NOW)
    shop.customer("ana")
    shop.order("o1", "ana", NOW - 2 * D, recorded=NOW + M)  # within 3d of its due time
    assert shop.plan(NOW + 2 * M)["welcome"]["expired"] == 0
    report = shop.plan(NOW + 16 * M)["welcome"]  # the next full pass looks back 3d 10m
    assert (report["queued"], report["expired"]) == (1, 0)
    [message] = shop.messages("welcome")
    assert (message.status, message.last_error) == (MessageStatus.QUEUED, None)


def test_a_later_order_recorded_late_does_not_expire_a_welcome(lite: Shop) -> None:
    lite.enable("welcome")
    lite.customer("ana")
    lite.order("o1", "ana", NOW - 40 * D, recorded=NOW - 40 * D)
    lite.plan(NOW)
    lite.order("o2", "ana", NOW - 8 * D, recorded=NOW + M)  # not her first order
    assert lite.plan(NOW + 2 * M)["welcome"]["expired"] == 0
    lite.customer("bo", consent=False)  # never welcomed, so nothing expired unsent
    lite.order("o3", "bo", NOW - 8 * D, recorded=NOW + 3 * M)
    assert lite.plan(NOW + 4 * M)["welcome"]["expired"] == 0
    assert lite.messages("welcome") == []


def test_an_order_recorded_just_before_its_expiry_is_recorded_expired_by_the_full_pass(
    lite: Shop,
) -> None:
    lite.enable("welcome")
    lite.plan(NOW)
    lite.customer("ana")
    placed = NOW - 3 * D - 5 * M  # the welcome expires at NOW + 5m
    lite.order("o1", "ana", placed, recorded=NOW + M)
    # A pass between full ones looks only at what fell due since the previous pass.
    assert lite.plan(NOW + 2 * M)["welcome"]["queued"] == 0
    report = lite.plan(NOW + 6 * M)["welcome"]  # expired before a full pass saw it
    assert (report["queued"], report["expired"]) == (0, 1)
    assert report["expired_messages"][0]["why"].endswith(
        f"recorded at {_iso(NOW + M)}, and the email expired before the next full planning pass"
    )


def test_a_big_pass_brings_the_send_logs_statistics_up_to_date(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a pass that queued `BIG_PASS` emails or more, PostgreSQL analyzes the send
    log at once (SQLite has nothing to do); a smaller pass leaves it to autovacuum."""
    from engine.plan import planner

    def analyzed() -> bool:
        if shop.engine.dialect.name != "postgresql":
            return False
        with shop.engine.connect() as conn:
            return bool(
                conn.exec_driver_sql(
                    "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE relname = 'message' AND schemaname = current_schema()"
                ).scalar()
            )

    shop.enable("thank_you")
    shop.customer("ana")
    shop.order("o1", "ana", NOW - 2 * D, NOW - D)
    shop.order("o2", "ana", NOW - 2 * D + H, NOW - D + H)
    monkeypatch.setattr(planner, "BIG_PASS", 3)
    assert shop.plan(NOW)["thank_you"]["queued"] == 2
    assert not analyzed()
    shop.customer("bo")
    shop.order("o3", "bo", NOW - 2 * D, NOW - D + 2 * H)
    monkeypatch.setattr(planner, "BIG_PASS", 1)
    assert shop.plan(NOW, rescan=True)["thank_you"]["queued"] == 1
    assert analyzed() == (shop.engine.dialect.name == "postgresql")
