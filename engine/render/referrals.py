"""`referral` and `reward` in a template: the customer's referral code, and a reward paid.

`referral` is {"code", "link", "count", "friend", "next_reward"}: the customer's
own code and link (config.yaml's `referrals.link` with the shop's URL and the
code), how many referrals counted for them (delivered, not reversed), the
friend's first-order discount (`friend_coupon`: {"percent", "amount",
"min_order"}, or None) and the next reward ahead ({"at", "remaining", "kind",
"credit", "coupon", "tier"}, or None when none is left).

It is read only for the emails that use it: every `referral_reward` email, and
those whose template files (in any language, with the files they extend,
include or import by name), subject or preheader name `referral` inside a Jinja
tag (`uses_referral`); every other email has `referral` None and costs nothing
more. A customer's code is minted by the planner before its campaigns
(`engine.plan.referrals`); an email that uses it before then waits (the
context's `ContextWait`).

`reward` (in a `referral_reward` email) is {"at", "kind", "credit", "coupon",
"tier"}: the count it was paid at, `credit` | `coupon` | `tier`, and the one of
these it is: the credit {"amount", "expires_at"}, the coupon {"code", "percent",
"amount", "min_order", "expires_at"}, or the tier (`render.tierview`). Both are
read for a whole batch in one query per table (`load_referrals`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from ..project import (
    Campaign,
    CouponSpec,
    FlowStep,
    LocalText,
    Project,
    ReferralRewardSpec,
    ReferralRewardTrigger,
)
from ..store import Coupon, Credit, Message, Referral, ReferralReward, ReferralStatus
from .contextload import CHUNK
from .tierview import tier_view

# A Jinja tag or expression, and the name `referral` in one (not `referral_code`).
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_NAME = re.compile(r"\breferral\b")
_NAMED_FILE = re.compile(r"""\{%-?\s*(?:extends|include|import|from)\s+["']([^"']+)["']""")


@dataclass
class ReferralBatch:
    """The referral rows of one batch: counted referrals by referrer, rewards by id, and
    the (campaign, step id) pairs whose emails show `referral`."""

    counts: dict[int, int] = field(default_factory=dict)
    rewards: dict[int, Any] = field(default_factory=dict)
    shown: set[tuple[str, str | None]] = field(default_factory=set)

    def shows(self, campaign: Campaign, step: FlowStep) -> bool:
        return (campaign.name, step.id) in self.shown


def uses_referral(project: Project, campaign: Campaign, step: FlowStep) -> bool:
    """Whether an email of this step shows `referral` (always for a referral_reward one)."""
    if isinstance(campaign.trigger, ReferralRewardTrigger):
        return True
    texts = [_texts(step.subject), _texts(step.preheader)]
    if any(_names_referral(text) for group in texts for text in group):
        return True
    wanted = _template_files(project, step.template)
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        source = _source(project, name)
        if source is None:
            continue
        if _names_referral(source):
            return True
        wanted.extend(_NAMED_FILE.findall(source))
    return False


def _texts(text: LocalText) -> list[str]:
    return [text] if isinstance(text, str) else list(text.values())


def _names_referral(source: str) -> bool:
    return any(_NAME.search(tag.group()) for tag in _TAG.finditer(source))


def _template_files(project: Project, template: str) -> list[str]:
    """The files of a template in every language: `thank_you.html`, `thank_you.bn.txt`, …"""
    sources = project.templates
    if sources is not None:
        names: Iterable[str] = sources.files
    else:
        folder = project.templates_dir
        names = [p.name for p in folder.glob(f"{template}.*")] if folder.is_dir() else []
    return [
        name
        for name in names
        if name.startswith(f"{template}.") and name.endswith((".html", ".txt"))
    ]


def _source(project: Project, name: str) -> str | None:
    """A template file's text as the project holds it (else from the folder), or None."""
    if project.templates is not None:
        return project.templates.files.get(name)
    folder = project.templates_dir.resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def load_referrals(
    session: Session, project: Project, messages: Sequence[Message]
) -> ReferralBatch:
    """What the batch's emails show of referrals: for those that show `referral`, their
    customers' counted referrals; for referral_reward emails, their reward rows."""
    batch = ReferralBatch()
    looked: set[tuple[str, str | None]] = set()
    referrers: set[int] = set()
    reward_ids: set[int] = set()
    for message in messages:
        campaign = project.campaigns.get(message.campaign)
        step = campaign.flow_step(message.step) if campaign is not None else None
        if campaign is None or step is None:
            continue  # the context says why
        key = (campaign.name, step.id)
        if key not in looked:
            looked.add(key)
            if uses_referral(project, campaign, step):
                batch.shown.add(key)
        if key in batch.shown:
            referrers.add(message.customer_id)
        if isinstance(campaign.trigger, ReferralRewardTrigger):
            reward_id = reward_of(message)
            if reward_id is not None:
                reward_ids.add(reward_id)
    _load_counts(session, batch, sorted(referrers))
    _load_rewards(session, batch, sorted(reward_ids))
    return batch


def reward_of(message: Message) -> int | None:
    """The reward id the planner wrote on a referral_reward message, if it is a whole number."""
    value = message.context.get("reward_id") if isinstance(message.context, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _load_counts(session: Session, batch: ReferralBatch, referrers: list[int]) -> None:
    for start in range(0, len(referrers), CHUNK):
        rows = session.execute(
            select(col(Referral.referrer_id), func.count())
            .where(
                col(Referral.referrer_id).in_(referrers[start : start + CHUNK]),
                col(Referral.status) == ReferralStatus.COUNTED,
            )
            .group_by(col(Referral.referrer_id))
        )
        batch.counts.update({referrer: int(n) for referrer, n in rows})


def _load_rewards(session: Session, batch: ReferralBatch, ids: list[int]) -> None:
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(
                col(ReferralReward.id),
                col(ReferralReward.customer_id),
                col(ReferralReward.threshold),
                col(ReferralReward.credit_id),
                col(ReferralReward.coupon_id),
                col(Credit.amount).label("credit_amount"),
                col(Credit.expires_at).label("credit_expires_at"),
                col(Coupon.code),
                col(Coupon.percent_off),
                col(Coupon.amount_off),
                col(Coupon.min_order),
                col(Coupon.expires_at).label("coupon_expires_at"),
            )
            .outerjoin(Credit, col(Credit.id) == col(ReferralReward.credit_id))
            .outerjoin(Coupon, col(Coupon.id) == col(ReferralReward.coupon_id))
            .where(col(ReferralReward.id).in_(ids[start : start + CHUNK]))
        )
        batch.rewards.update({row.id: row for row in rows})


def referral_context(project: Project, code: str, count: int, locale: str) -> dict[str, Any]:
    """`referral` for a customer whose code is `code`, with `count` referrals counted."""
    program = project.config.referrals
    ahead = program.next_reward(count)
    next_reward = None
    if ahead is not None:
        next_reward = {"remaining": ahead.at - count, **_reward_spec(project, ahead, locale)}
    return {
        "code": code,
        "link": program.link_of(code, project.config.shop.url),
        "count": count,
        "friend": _discount(program.friend_coupon),
        "next_reward": next_reward,
    }


def _reward_spec(project: Project, spec: ReferralRewardSpec, locale: str) -> dict[str, Any]:
    """A reward as config.yaml gives it: {"at", "kind", "credit", "coupon", "tier"}."""
    kind = "credit" if spec.credit is not None else "coupon" if spec.coupon else "tier"
    return {
        "at": spec.at,
        "kind": kind,
        "credit": spec.credit,
        "coupon": _discount(spec.coupon),
        "tier": tier_view(project.tiers, spec.tier, locale),
    }


def _discount(spec: CouponSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {"percent": spec.percent, "amount": spec.amount, "min_order": spec.min_order}


class RewardMissing(LookupError):
    """The reward an email tells of is not there, or no longer makes sense."""


def reward_context(project: Project, row: Any, locale: str) -> dict[str, Any]:
    """`reward` for a stored reward row; RewardMissing for a tier reward config.yaml no
    longer gives (or a tier tiers.yaml no longer has)."""
    reward: dict[str, Any] = {
        "at": row.threshold,
        "kind": "tier",
        "credit": None,
        "coupon": None,
        "tier": None,
    }
    if row.credit_id is not None:
        reward["kind"] = "credit"
        reward["credit"] = {"amount": row.credit_amount, "expires_at": row.credit_expires_at}
    elif row.coupon_id is not None:
        reward["kind"] = "coupon"
        reward["coupon"] = {
            "code": row.code,
            "percent": row.percent_off,
            "amount": row.amount_off,
            "min_order": row.min_order,
            "expires_at": row.coupon_expires_at,
        }
    else:
        spec = project.config.referrals.reward_at(row.threshold)
        tier = tier_view(project.tiers, spec.tier if spec else None, locale)
        if tier is None:
            raise RewardMissing(
                f"reward {row.id} at {row.threshold} referrals has neither credit nor coupon, "
                "and config.yaml's referrals.rewards gives no tier of tiers.yaml at that count"
            )
        reward["tier"] = tier
    return reward


# Made-up values for `lifecycle check` (`samplecontext`).
SAMPLE_CODE = "7KQ2M9XDP4"


def sample_referral(project: Project, campaign: Campaign, locale: str, now: Any) -> dict[str, Any]:
    """`referral` and (for a referral_reward campaign) `reward` with made-up values: the
    reward is the first of config.yaml's `referrals.rewards` (a 100 credit without any)."""
    rewards = project.config.referrals.rewards
    spec = rewards[0] if rewards else ReferralRewardSpec(at=1, credit=Decimal("100"))
    parts: dict[str, Any] = {}
    if isinstance(campaign.trigger, ReferralRewardTrigger):
        parts["reward"] = _sample_reward(project, spec, locale, now)
    count = spec.at if "reward" in parts else max(spec.at - 1, 0)
    parts["referral"] = referral_context(project, SAMPLE_CODE, count, locale)
    return parts


def _sample_reward(
    project: Project, spec: ReferralRewardSpec, locale: str, now: Any
) -> dict[str, Any]:
    shown = _reward_spec(project, spec, locale)
    if spec.credit is not None:
        lasts = project.config.refunds.credit_expires_after
        shown["credit"] = {"amount": spec.credit, "expires_at": now + lasts if lasts else None}
    elif spec.coupon is not None:
        code = f"{spec.coupon.prefix}-M9XD-P4TR-7KQ2" if spec.coupon.prefix else "M9XD-P4TR-7KQ2"
        shown["coupon"] = {
            **(shown["coupon"] or {}),
            "code": code,
            "expires_at": now + spec.coupon.expires_after,
        }
    return shown
