"""Typed, frozen models of the rewards: a coupon, the referral program, the loyalty tiers.

`CouponSpec` is the coupon a campaign or a step carries; `Referrals` is config.yaml's
`referrals:` (the friend's first-order discount and the referrer's rewards by count);
`Tiers` is tiers.yaml (the loyalty program: ordered tiers, each with a rule in the
segment vocabulary, compiled by `engine.plan.segments`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from .values import (
    Amount,
    Frozen,
    LocalText,
    Percent,
    Slug,
    _shown,
    amount_from,
    duration_from,
    whole,
)

PREFIX = re.compile(r"^[A-Z0-9]{1,12}$")
# The most tiers a program may have, and referral rewards a program may pay.
MAX_TIERS = 10
MAX_REFERRAL_REWARDS = 20


class CouponSpec(Frozen):
    """The coupon each message of a campaign or step carries: its own code, used once."""

    percent: Percent | None = None
    amount: Annotated[Amount, amount_from("0.01")] | None = None
    min_order: Annotated[Amount, amount_from("0.01")] | None = None
    expires_after: Annotated[timedelta, duration_from("1d", "365d")] = timedelta(days=30)
    prefix: str = ""

    @field_validator("prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> str:
        text = str(value).strip().upper() if value is not None else ""
        if text and not PREFIX.match(text):
            raise ValueError(
                f"expected 1 to 12 letters or digits like WELCOME, got {_shown(value)}"
            )
        return text

    @model_validator(mode="after")
    def _one_value(self) -> CouponSpec:
        if self.percent is not None and self.amount is not None:
            raise ValueError("a coupon is either percent or amount, not both")
        return self

    @property
    def sized(self) -> bool:
        return self.percent is not None or self.amount is not None


# ---------------------------------------------------------------- referrals


class ReferralRewardSpec(Frozen):
    """What a referrer earns on reaching `at` counted referrals, paid once."""

    at: Annotated[int, whole(1, 10_000)]
    credit: Annotated[Amount, amount_from("0.01")] | None = None
    coupon: CouponSpec | None = None
    # A tier the referrer holds from then on (at least), by its id in tiers.yaml.
    tier: Slug | None = None

    @model_validator(mode="after")
    def _one_reward(self) -> ReferralRewardSpec:
        given = [k for k in ("credit", "coupon", "tier") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a referral reward is one of credit, coupon or tier, got {given or 'none'}"
            )
        if self.coupon is not None and not self.coupon.sized:
            raise ValueError("a reward coupon needs percent or amount")
        return self


class Referrals(Frozen):
    """The referral program. Without `rewards`, referrals are only counted."""

    # The new customer's discount on a first order that carries a referral code.
    friend_coupon: CouponSpec | None = None
    rewards: list[ReferralRewardSpec] = Field(default=[], max_length=MAX_REFERRAL_REWARDS)
    # The referral link; {code} is replaced by the referrer's code.
    link: str = "{shop_url}/?ref={code}"
    # A referred order counts this long after it was delivered (a return window); 0: at once.
    count_after: Annotated[timedelta, duration_from("0s", "90d")] = timedelta(0)

    @field_validator("rewards")
    @classmethod
    def _distinct(cls, rewards: list[ReferralRewardSpec]) -> list[ReferralRewardSpec]:
        seen: set[int] = set()
        for reward in rewards:
            if reward.at in seen:
                raise ValueError(f"two rewards at {reward.at} referrals")
            seen.add(reward.at)
        return sorted(rewards, key=lambda r: r.at)

    @field_validator("link")
    @classmethod
    def _has_code(cls, link: str) -> str:
        if "{code}" not in link or not re.match(r"^(https?://|\{shop_url\})\S+$", link):
            raise ValueError(
                f"expected a web address with {{code}} in it, like "
                f'"{{shop_url}}/?ref={{code}}", got {_shown(link)}'
            )
        return link

    def link_of(self, code: str, shop_url: str) -> str:
        """The referral link of `code`: `link` with the shop's URL and the code in place."""
        return self.link.replace("{shop_url}", shop_url.rstrip("/")).replace("{code}", code)

    def reward_at(self, count: int) -> ReferralRewardSpec | None:
        """The reward paid on reaching `count` counted referrals, if any."""
        return next((reward for reward in self.rewards if reward.at == count), None)

    def next_reward(self, count: int) -> ReferralRewardSpec | None:
        """The first reward still ahead of `count` counted referrals, if any."""
        return next((reward for reward in self.rewards if reward.at > count), None)

    @model_validator(mode="after")
    def _friend_coupon_sized(self) -> Referrals:
        if self.friend_coupon is not None and not self.friend_coupon.sized:
            raise ValueError("friend_coupon needs percent or amount")
        return self


# ---------------------------------------------------------------- tiers


class Tier(Frozen):
    id: Slug
    name: LocalText
    # A rule in the segment vocabulary (checked by `lifecycle check`, compiled by the planner).
    rule: dict[str, Any]
    perks: LocalText = ""
    # A standing discount on every order while in the tier ("5 % for regulars").
    discount: Percent | None = None


class Tiers(Frozen):
    """tiers.yaml: the loyalty program, tiers listed from the lowest to the highest.

    A customer is in the highest tier whose rule they meet (or none).
    """

    program: LocalText
    tiers: list[Tier] = Field(min_length=1, max_length=MAX_TIERS)

    @field_validator("tiers")
    @classmethod
    def _distinct(cls, tiers: list[Tier]) -> list[Tier]:
        seen: set[str] = set()
        for tier in tiers:
            if tier.id in seen:
                raise ValueError(f"two tiers named {tier.id!r}")
            seen.add(tier.id)
        return tiers

    def rank(self, tier_id: str | None) -> int:
        """0 for no tier, 1 for the lowest, …; -1 for an id no longer in the file."""
        if tier_id is None:
            return 0
        ids = [t.id for t in self.tiers]
        return ids.index(tier_id) + 1 if tier_id in ids else -1

    def get(self, tier_id: str | None) -> Tier | None:
        return next((t for t in self.tiers if t.id == tier_id), None)
