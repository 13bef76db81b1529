"""`referral` and `reward` in an email: read for a batch, waiting for a code not minted yet,
and the shipped referral_reward email in English and Bengali for each kind of reward."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.intake import shop
from engine.project.loader import Project, load_project
from engine.render.context import ContextError, ContextWait, load_contexts
from engine.render.referrals import uses_referral
from engine.render.renderer import Renderer
from engine.render.tierview import TierView
from engine.store.models import (
    Coupon,
    Credit,
    Customer,
    Message,
    Referral,
    ReferralReward,
    ReferralStatus,
)

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
CODE = "RAHIM2345K"


def links(message_id: int) -> dict[str, str]:
    return {"unsubscribe_url": f"U{message_id}", "pixel_url": f"P{message_id}",
            "survey_url": f"S{message_id}"}  # fmt: skip


@dataclass
class Shop:
    rahima: int  # Bengali, code RAHIM2345K, two referrals counted (one reversed)
    sam: int  # English, no code yet
    credit: int  # Rahima's reward at 1
    coupon: int  # at 5
    tier: int  # at 10


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def session(store: Engine) -> Iterator[Session]:
    with Session(store, expire_on_commit=False) as session:
        yield session
        session.rollback()


def fill(session: Session) -> Shop:
    rahima = shop.upsert_customer(
        session, external_id="c1", email="rahima@example.com", name="রহিমা খাতুন",
        locale="bn_BD", now=NOW - timedelta(days=90),
    )  # fmt: skip
    sam = shop.upsert_customer(
        session, external_id="c2", email="sam@example.com", name="Sam Smith", locale="en",
        now=NOW - timedelta(days=90),
    )  # fmt: skip
    assert rahima.id and sam.id
    session.execute(
        update(Customer).where(col(Customer.id) == rahima.id).values(referral_code=CODE)
    )
    for i, status in enumerate(
        (ReferralStatus.COUNTED, ReferralStatus.COUNTED, ReferralStatus.REVERSED)
    ):
        friend = shop.upsert_customer(
            session, external_id=f"f{i}", email=f"f{i}@example.com", now=NOW - timedelta(days=9)
        )
        session.add(Referral(code=CODE, referrer_id=rahima.id, referred_id=friend.id,
                             order_ref=f"O-{i}", status=status, at=NOW))  # fmt: skip
    credit = Credit(dedupe_key=f"referral-reward:{rahima.id}:1", customer_id=rahima.id,
                    amount=Decimal("100.55"), reason="referral reward", created_at=NOW,
                    expires_at=NOW + timedelta(days=90))  # fmt: skip
    coupon = Coupon(code="GIFT-M9XD-P4TR-7KQ2", customer_id=rahima.id, campaign="referral",
                    amount_off=Decimal("500.00"), min_order=Decimal("1000.00"), created_at=NOW,
                    expires_at=NOW + timedelta(days=60))  # fmt: skip
    session.add_all([credit, coupon])
    session.flush()
    rewards = [
        ReferralReward(customer_id=rahima.id, threshold=1, credit_id=credit.id, at=NOW),
        ReferralReward(customer_id=rahima.id, threshold=5, coupon_id=coupon.id, at=NOW),
        ReferralReward(customer_id=rahima.id, threshold=10, at=NOW),
    ]
    session.add_all(rewards)
    session.flush()
    ids = [r.id for r in rewards]
    assert all(ids)
    return Shop(rahima.id, sam.id, *ids)  # type: ignore[arg-type]


_serial = iter(range(1, 1_000_000))


def queue(session: Session, campaign: str, customer_id: int, **values: Any) -> Message:
    n = next(_serial)
    message = Message(dedupe_key=f"{campaign}:{customer_id}:{n}", campaign=campaign,
                      customer_id=customer_id, occurrence=str(n), created_at=NOW, send_after=NOW,
                      **values)  # fmt: skip
    session.add(message)
    session.flush()
    return message


def told(session: Session, customer_id: int, reward_id: int, threshold: int) -> Message:
    context = {"reward_id": reward_id, "threshold": threshold}
    return queue(session, "referral_reward", customer_id, context=context)


def contexts(session: Session, project: Project, *messages: Message) -> list[Any]:
    return load_contexts(session, project, list(messages), links, now=NOW)


# ---------------------------------------------------------------- the contexts


def test_a_reward_email_tells_the_credit_the_coupon_or_the_tier(
    session: Session, project: Project
) -> None:
    data = fill(session)
    credit, coupon, tier = contexts(
        session, project,
        told(session, data.rahima, data.credit, 1),
        told(session, data.rahima, data.coupon, 5),
        told(session, data.rahima, data.tier, 10),
    )  # fmt: skip
    assert credit["reward"] == {
        "at": 1,
        "kind": "credit",
        "credit": {"amount": Decimal("100.55"), "expires_at": NOW + timedelta(days=90)},
        "coupon": None,
        "tier": None,
    }
    assert coupon["reward"]["kind"] == "coupon"
    assert coupon["reward"]["coupon"] == {
        "code": "GIFT-M9XD-P4TR-7KQ2",
        "percent": None,
        "amount": Decimal("500.00"),
        "min_order": Decimal("1000.00"),
        "expires_at": NOW + timedelta(days=60),
    }
    assert tier["reward"]["kind"] == "tier"
    assert tier["reward"]["tier"] == TierView(
        id="diamond",
        name="হীরা",
        perks="প্রতিটি অর্ডারে ১০% ছাড়, বিনা খরচে ডেলিভারি, আর নতুন সংগ্রহ সবার আগে।",
        discount=Decimal("10"),
        program="নকশি ক্লাব",
    )
    referral = credit["referral"]
    assert referral == {
        "code": CODE,
        "link": f"https://nakshighor.example/?ref={CODE}",
        "count": 2,  # the reversed one does not count
        "friend": {"percent": Decimal("10"), "amount": None, "min_order": Decimal("500")},
        "next_reward": {
            "at": 5,
            "remaining": 3,
            "kind": "coupon",
            "credit": None,
            "coupon": {"percent": None, "amount": Decimal("500"), "min_order": Decimal("1000")},
            "tier": None,
        },
    }
    assert coupon["referral"] == referral == tier["referral"]


def test_an_email_that_shows_referral_waits_for_a_code_not_minted_yet(
    session: Session, project: Project
) -> None:
    data = fill(session)
    hers = queue(session, "welcome_series", data.rahima, step="care_tips")
    his = queue(session, "welcome_series", data.sam, step="care_tips")
    hers_ctx, his_ctx = contexts(session, project, hers, his)
    assert hers_ctx["referral"]["link"] == f"https://nakshighor.example/?ref={CODE}"
    assert isinstance(his_ctx, ContextWait) and his_ctx.retry
    assert "referral code is not minted yet" in str(his_ctx)
    session.execute(
        update(Customer).where(col(Customer.id) == data.sam).values(referral_code="SAM2345678")
    )
    [again] = contexts(session, project, his)
    assert again["referral"]["code"] == "SAM2345678" and again["referral"]["count"] == 0


def test_an_email_that_does_not_name_referral_has_none_and_never_waits(
    session: Session, project: Project
) -> None:
    data = fill(session)  # Sam has no code
    [ctx] = contexts(session, project, queue(session, "birthday", data.sam,
                                             context={"date_field": "birthday",
                                                      "date": "2026-11-25", "years": 30}))  # fmt: skip
    assert isinstance(ctx, dict), ctx
    assert (ctx["referral"], ctx["reward"]) == (None, None)


def test_a_reward_row_missing_or_a_tier_no_longer_given_is_a_context_error(
    session: Session, project: Project, project_dir: Path
) -> None:
    data = fill(session)
    [gone] = contexts(session, project, told(session, data.rahima, 999, 3))
    assert isinstance(gone, ContextError) and not gone.retry
    assert str(gone).endswith("reward 999 does not exist")
    changed = project_dir / "config.yaml"
    changed.write_text(changed.read_text().replace("- {at: 10, tier: diamond}", ""))
    later = load_project(changed)
    [tier] = contexts(session, later, told(session, data.rahima, data.tier, 10))
    assert isinstance(tier, ContextError)
    assert "gives no tier of tiers.yaml at that count" in str(tier)


def test_a_batch_of_referral_emails_costs_two_queries_more(
    session: Session, project: Project, store: Engine
) -> None:
    data = fill(session)
    messages = [told(session, data.rahima, data.credit, 1) for _ in range(30)]
    messages += [queue(session, "welcome_series", data.rahima, step="care_tips") for _ in range(30)]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store, "before_cursor_execute", count)
    try:
        found = contexts(session, project, *messages)
    finally:
        event.remove(store, "before_cursor_execute", count)
    assert all(isinstance(c, dict) for c in found)
    referral_reads = [s for s in statements if "referral" in s.lower() and "FROM customer" not in s]
    assert len(referral_reads) == 2, referral_reads  # the counts, the rewards


# ---------------------------------------------------------------- which emails show it


def write(project_dir: Path, name: str, text: str) -> None:
    (project_dir / "templates" / "emails" / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("html", "subject", "shows"),
    [
        pytest.param("{{ referral.link }}", "Hi", True, id="in-the-template"),
        pytest.param('{% include "_share.html" %}', "Hi", True, id="in-an-included-file"),
        pytest.param("Ask about our referral program.", "Hi", False, id="in-the-words-only"),
        pytest.param("{{ referral_code }}", "Hi", False, id="another-name"),
        pytest.param("Hello", "{{ referral.count }} friends", True, id="in-the-subject"),
    ],
)
def test_an_email_shows_referral_when_a_tag_of_its_files_or_subject_names_it(
    project_dir: Path, html: str, subject: str, shows: bool
) -> None:
    write(project_dir, "_share.html", "Share: {{ referral.link }}")
    write(project_dir, "share.html", '{% extends "_base.html" %}{% block content %}' + html
          + "{% endblock %}")  # fmt: skip
    write(project_dir, "share.txt", "Hello {{ unsubscribe_url }}")
    campaign = project_dir / "campaigns" / "thank_you.yaml"
    text = campaign.read_text().replace("template: thank_you", "template: share")
    campaign.write_text(text.replace('en: "Thank you for your order {{ order.number }}"',
                                     f'en: "{subject}"'))  # fmt: skip
    project = load_project(project_dir / "config.yaml")
    thanks = project.campaigns["thank_you"]
    assert uses_referral(project, thanks, thanks.flow[0]) is shows


def test_the_shipped_emails_that_show_referral(project: Project) -> None:
    shown = {
        f"{name}:{step.label}"
        for name, campaign in project.campaigns.items()
        for step in campaign.flow
        if uses_referral(project, campaign, step)
    }
    assert shown == {"referral_reward:email", "welcome_series:care_tips"}


# ---------------------------------------------------------------- the shipped email


@pytest.mark.parametrize("locale", ["en", "bn_BD"])
def test_the_referral_reward_email_reads_well_for_each_kind(
    session: Session, project: Project, locale: str
) -> None:
    data = fill(session)
    session.execute(update(Customer).values(locale=locale))
    campaign = project.campaigns["referral_reward"]
    renderer = Renderer.for_project(project)
    step = campaign.flow[0]
    found = contexts(
        session, project,
        told(session, data.rahima, data.credit, 1),
        told(session, data.rahima, data.coupon, 5),
        told(session, data.rahima, data.tier, 10),
    )  # fmt: skip
    texts = []
    for ctx in found:
        assert isinstance(ctx, dict), ctx
        subject = step.subject if isinstance(step.subject, str) else step.subject[locale[:2]]
        email = renderer.render_email(step.template, locale, ctx, subject=subject)
        assert CODE in email.text and f"?ref={CODE}" in email.html
        texts.append(email.text)
    credit, coupon, tier = texts
    if locale == "en":
        assert "We have added ৳100.55 to your account as store credit" in credit
        assert "GIFT-M9XD-P4TR-7KQ2" in coupon and "৳500.00 off an order of ৳1,000.00" in coupon
        assert "You are now a Diamond member of Nakshi Club, for good." in tier
        assert "3 more friends and a gift of ৳500.00 off is yours." in credit
    else:
        assert "১০০.৫৫৳ স্টোর ক্রেডিট" in credit
        assert "GIFT-M9XD-P4TR-7KQ2" in coupon
        assert "নকশি ক্লাব-এর হীরা সদস্য" in tier
