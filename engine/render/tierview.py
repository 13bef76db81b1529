"""`customer.tier` in a template: the loyalty tier as the customer reads it.

`{{ customer.tier }}` prints the tier's name in the customer's language;
`customer.tier.perks`, `.discount` (a Decimal percent, or None), `.program` (the
program's name, "Nakshi Club") and `.id` are there too. A customer without a tier
has `customer.tier` None, so `{% if customer.tier %}` tells them apart. A tier id
no longer in tiers.yaml shows as no tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..project import Tiers, pick_text


@dataclass(frozen=True, slots=True)
class TierView:
    id: str
    name: str
    perks: str
    discount: Decimal | None
    program: str

    def __str__(self) -> str:
        return self.name


def tier_view(tiers: Tiers | None, tier_id: str | None, locale: str) -> TierView | None:
    """The tier `tier_id` of `tiers` in `locale`'s words; None for none (or unknown)."""
    if tiers is None or tier_id is None:
        return None
    tier = tiers.get(tier_id)
    if tier is None:
        return None
    return TierView(
        id=tier.id,
        name=pick_text(tier.name, locale),
        perks=pick_text(tier.perks, locale).strip(),
        discount=tier.discount,
        program=pick_text(tiers.program, locale),
    )
