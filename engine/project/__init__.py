"""The shop's project: config.yaml, campaign and segment files, validated once, at load.

`yamlfile` reads YAML safely and remembers where every key was written; `values` holds
the validated types of what a marketer types (durations, times of day, locales,
timezones, money, percentages); `config`, `campaigns` and `rewards` hold the frozen
models of the files (`rewards`: coupons, referrals, tiers.yaml); `loader` builds one
`Project` and reports every problem with file, line and key path: `problems` words the
values a model refuses, `references` finds the names and files that point nowhere.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `campaigns`: `AfterPurchase`, `BackInStock`, `Broadcast`, `Campaign`,
  `CheckoutAbandoned`, `CreditUnused`, `DateTrigger`, `Exit`, `FirstOrder`, `FlowStep`,
  `HolidayTrigger`, `Inactive`, `MAX_WAIT`, `NthOrder`, `OrderDelivered`, `OrderPlaced`, `OrderReturned`, `OrderShipped`, `PriceDrop`,
  `ProductAdded`, `ReferralRewardTrigger`, `Schedule`, `Step`, `TierChanged`
- `config`: `BounceImap`, `BounceListen`, `Bounces`, `Holidays`, `Segment`, `SendWindow`, `Sending`, `Smtp`
- `loader`: `Project`, `Secrets`, `config_path`, `load_partial`, `load_project`
- `rewards`: `CouponSpec`, `ReferralRewardSpec`, `Referrals`, `Tier`, `Tiers`
- `templatesources`: `MAX_TEMPLATE_CHARS`, `TemplateSources`
- `values`: `EMAIL`, `LocalText`, `parse_amount`, `parse_duration`, `parse_email`,
  `parse_locale`, `parse_slug`, `parse_timezone`, `pick_text`
- `yamlfile`: `KeyPath`, `describe`, `dotted`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .campaigns import (
        MAX_WAIT,
        AfterPurchase,
        BackInStock,
        Broadcast,
        Campaign,
        CheckoutAbandoned,
        CreditUnused,
        DateTrigger,
        Exit,
        FirstOrder,
        FlowStep,
        HolidayTrigger,
        Inactive,
        NthOrder,
        OrderDelivered,
        OrderPlaced,
        OrderReturned,
        OrderShipped,
        PriceDrop,
        ProductAdded,
        ReferralRewardTrigger,
        Schedule,
        Step,
        TierChanged,
    )
    from .config import (
        BounceImap,
        BounceListen,
        Bounces,
        Holidays,
        Segment,
        Sending,
        SendWindow,
        Smtp,
    )
    from .loader import Project, Secrets, config_path, load_partial, load_project
    from .rewards import CouponSpec, ReferralRewardSpec, Referrals, Tier, Tiers
    from .templatesources import MAX_TEMPLATE_CHARS, TemplateSources
    from .values import (
        EMAIL,
        LocalText,
        parse_amount,
        parse_duration,
        parse_email,
        parse_locale,
        parse_slug,
        parse_timezone,
        pick_text,
    )
    from .yamlfile import KeyPath, describe, dotted

__all__ = [
    "EMAIL",
    "MAX_TEMPLATE_CHARS",
    "MAX_WAIT",
    "AfterPurchase",
    "BackInStock",
    "BounceImap",
    "BounceListen",
    "Bounces",
    "Broadcast",
    "Campaign",
    "CheckoutAbandoned",
    "CouponSpec",
    "CreditUnused",
    "DateTrigger",
    "Exit",
    "FirstOrder",
    "FlowStep",
    "HolidayTrigger",
    "Holidays",
    "Inactive",
    "KeyPath",
    "LocalText",
    "NthOrder",
    "OrderDelivered",
    "OrderPlaced",
    "OrderReturned",
    "OrderShipped",
    "PriceDrop",
    "ProductAdded",
    "Project",
    "ReferralRewardSpec",
    "ReferralRewardTrigger",
    "Referrals",
    "Schedule",
    "Secrets",
    "Segment",
    "SendWindow",
    "Sending",
    "Smtp",
    "Step",
    "TemplateSources",
    "Tier",
    "TierChanged",
    "Tiers",
    "config_path",
    "describe",
    "dotted",
    "load_partial",
    "load_project",
    "parse_amount",
    "parse_duration",
    "parse_email",
    "parse_locale",
    "parse_slug",
    "parse_timezone",
    "pick_text",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "AfterPurchase": ".campaigns",
    "BackInStock": ".campaigns",
    "Broadcast": ".campaigns",
    "Campaign": ".campaigns",
    "CouponSpec": ".rewards",
    "CheckoutAbandoned": ".campaigns",
    "CreditUnused": ".campaigns",
    "DateTrigger": ".campaigns",
    "EMAIL": ".values",
    "Exit": ".campaigns",
    "FirstOrder": ".campaigns",
    "FlowStep": ".campaigns",
    "HolidayTrigger": ".campaigns",
    "Holidays": ".config",
    "Bounces": ".config",
    "BounceImap": ".config",
    "BounceListen": ".config",
    "Inactive": ".campaigns",
    "KeyPath": ".yamlfile",
    "LocalText": ".values",
    "MAX_TEMPLATE_CHARS": ".templatesources",
    "MAX_WAIT": ".campaigns",
    "NthOrder": ".campaigns",
    "OrderDelivered": ".campaigns",
    "OrderReturned": ".campaigns",
    "OrderShipped": ".campaigns",
    "OrderPlaced": ".campaigns",
    "PriceDrop": ".campaigns",
    "ProductAdded": ".campaigns",
    "Project": ".loader",
    "ReferralRewardSpec": ".rewards",
    "ReferralRewardTrigger": ".campaigns",
    "Referrals": ".rewards",
    "Schedule": ".campaigns",
    "Secrets": ".loader",
    "Segment": ".config",
    "SendWindow": ".config",
    "Sending": ".config",
    "Smtp": ".config",
    "Step": ".campaigns",
    "TierChanged": ".campaigns",
    "Tier": ".rewards",
    "Tiers": ".rewards",
    "TemplateSources": ".templatesources",
    "config_path": ".loader",
    "describe": ".yamlfile",
    "dotted": ".yamlfile",
    "load_partial": ".loader",
    "load_project": ".loader",
    "parse_amount": ".values",
    "parse_duration": ".values",
    "parse_email": ".values",
    "parse_locale": ".values",
    "parse_slug": ".values",
    "parse_timezone": ".values",
    "pick_text": ".values",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
