"""Getting shop data in: the Python API, the CSV import and the events API.

`shop` validates and writes customers, products, prices, orders and holidays one at a
time; `importer` does the same in bulk from CSV files; `events` parses the shop's events
(`POST /api/events`, served by the tracking app; their shapes in `eventshapes`) and
`eventapply` applies them. All three name the field
and the value in every error and leave committing to the caller. `coupons` decides and
records a coupon code presented with an order (by either, or the checkout's API), the
coupon of an email being derived from its message (`couponissue`, `couponcodes`); `referrals`
a referral code an order carries (and answers the checkout about one). `wallet` is each
customer's store credit: balance, entries, redemptions. `orderlife` moves an order
along its life (confirmed, shipped, delivered; refused, returned, cancelled). `woocommerce` and `shopify` turn a
platform's webhook delivery into the shop's events (`connector`: what they share), which
`inbox` keeps as it comes and applies in order; `wcimport` backfills a WooCommerce shop
the same way from its REST API (`wcrest`).

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`, `engine.project`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `couponcodes`: `CODE_LENGTH`, `CodeKey`, `code_key`, `new_code`, `random_characters`
- `couponissue`: `MessageCoupon`, `covers`, `ladder_json`, `message_coupons`, `not_stored`
- `coupons`: `CouponView`, `Outcome`, `Presentation`, `Redemption`, `active_coupons`,
  `check_coupon`, `find_coupon`, `normalise_code`, `redeem_coupon`
- `eventapply`: `Applied`, `apply_events`
- `events`: `EventsRejected`, `MAX_BODY_BYTES`, `parse_events`
- `importer`: `BadRow`, `CsvFormatError`, `ImportRejected`, `ImportResult`, `KINDS`,
  `Progress`, `import_csv`
- `referrals`: `ReferralCheck`, `ReferralRefusal`, `check_referral_code`,
  `record_order_referral`
- `shop`: `add_holiday`, `set_consent`
- `shop` itself, the module (`shop.<function>(...)`)
- `connector`: `Delivery`, `signature_matches`
- `inbox`: `Received`, `apply_pending`, `keep_deliveries`
- `shopify`: `SHOPIFY_TOPICS`
- `woocommerce`: `WOOCOMMERCE_TOPICS`
- `wcimport`: `STATE_FILE_NAME`, `ImportStateError`, `ImportTally`, `PageDone`,
  `WooCommerceImport`, `import_woocommerce`
- `wcrest`: `ShopApiError`, `ShopKeyRefused`, `ShopUrlRefused`, `WooCommerceApi`
- `wallet`: `CreditRefused`, `Statement`, `balance_sql`, `balances`, `credits_left`, `redeem`,
  `soonest_expiries`, `statement`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from . import shop
    from .connector import Delivery, signature_matches
    from .couponcodes import CODE_LENGTH, CodeKey, code_key, new_code, random_characters
    from .couponissue import MessageCoupon, covers, ladder_json, message_coupons, not_stored
    from .coupons import (
        CouponView,
        Outcome,
        Presentation,
        Redemption,
        active_coupons,
        check_coupon,
        find_coupon,
        normalise_code,
        redeem_coupon,
    )
    from .eventapply import Applied, apply_events
    from .events import MAX_BODY_BYTES, EventsRejected, parse_events
    from .importer import (
        KINDS,
        BadRow,
        CsvFormatError,
        ImportRejected,
        ImportResult,
        Progress,
        import_csv,
    )
    from .inbox import Received, apply_pending, keep_deliveries
    from .referrals import (
        ReferralCheck,
        ReferralRefusal,
        check_referral_code,
        record_order_referral,
    )
    from .shop import add_holiday, set_consent
    from .shopify import SHOPIFY_TOPICS
    from .wallet import (
        CreditRefused,
        Statement,
        balance_sql,
        balances,
        credits_left,
        redeem,
        soonest_expiries,
        statement,
    )
    from .wcimport import (
        STATE_FILE_NAME,
        ImportStateError,
        ImportTally,
        PageDone,
        WooCommerceImport,
        import_woocommerce,
    )
    from .wcrest import ShopApiError, ShopKeyRefused, ShopUrlRefused, WooCommerceApi
    from .woocommerce import WOOCOMMERCE_TOPICS

__all__ = [
    "CODE_LENGTH",
    "KINDS",
    "MAX_BODY_BYTES",
    "SHOPIFY_TOPICS",
    "STATE_FILE_NAME",
    "WOOCOMMERCE_TOPICS",
    "Applied",
    "BadRow",
    "CodeKey",
    "CouponView",
    "CreditRefused",
    "CsvFormatError",
    "Delivery",
    "EventsRejected",
    "ImportRejected",
    "ImportResult",
    "ImportStateError",
    "ImportTally",
    "MessageCoupon",
    "Outcome",
    "PageDone",
    "Presentation",
    "Progress",
    "Received",
    "Redemption",
    "ReferralCheck",
    "ReferralRefusal",
    "ShopApiError",
    "ShopKeyRefused",
    "ShopUrlRefused",
    "Statement",
    "WooCommerceApi",
    "WooCommerceImport",
    "active_coupons",
    "add_holiday",
    "apply_events",
    "apply_pending",
    "balance_sql",
    "balances",
    "check_coupon",
    "check_referral_code",
    "code_key",
    "covers",
    "credits_left",
    "find_coupon",
    "import_csv",
    "import_woocommerce",
    "keep_deliveries",
    "ladder_json",
    "message_coupons",
    "new_code",
    "normalise_code",
    "not_stored",
    "parse_events",
    "random_characters",
    "record_order_referral",
    "redeem",
    "redeem_coupon",
    "set_consent",
    "shop",
    "signature_matches",
    "soonest_expiries",
    "statement",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "Applied": ".eventapply",
    "BadRow": ".importer",
    "CODE_LENGTH": ".couponcodes",
    "CodeKey": ".couponcodes",
    "code_key": ".couponcodes",
    "new_code": ".couponcodes",
    "random_characters": ".couponcodes",
    "MessageCoupon": ".couponissue",
    "covers": ".couponissue",
    "ladder_json": ".couponissue",
    "message_coupons": ".couponissue",
    "not_stored": ".couponissue",
    "CouponView": ".coupons",
    "CreditRefused": ".wallet",
    "CsvFormatError": ".importer",
    "EventsRejected": ".events",
    "ImportRejected": ".importer",
    "ImportResult": ".importer",
    "KINDS": ".importer",
    "MAX_BODY_BYTES": ".events",
    "Outcome": ".coupons",
    "Presentation": ".coupons",
    "Progress": ".importer",
    "Redemption": ".coupons",
    "ReferralCheck": ".referrals",
    "ReferralRefusal": ".referrals",
    "Statement": ".wallet",
    "active_coupons": ".coupons",
    "add_holiday": ".shop",
    "apply_events": ".eventapply",
    "balance_sql": ".wallet",
    "balances": ".wallet",
    "check_coupon": ".coupons",
    "check_referral_code": ".referrals",
    "record_order_referral": ".referrals",
    "credits_left": ".wallet",
    "find_coupon": ".coupons",
    "import_csv": ".importer",
    "normalise_code": ".coupons",
    "parse_events": ".events",
    "redeem": ".wallet",
    "redeem_coupon": ".coupons",
    "set_consent": ".shop",
    "shop": ".shop",
    "soonest_expiries": ".wallet",
    "statement": ".wallet",
    "Delivery": ".connector",
    "Received": ".inbox",
    "apply_pending": ".inbox",
    "keep_deliveries": ".inbox",
    "SHOPIFY_TOPICS": ".shopify",
    "WOOCOMMERCE_TOPICS": ".woocommerce",
    "signature_matches": ".connector",
    "STATE_FILE_NAME": ".wcimport",
    "ImportStateError": ".wcimport",
    "ImportTally": ".wcimport",
    "PageDone": ".wcimport",
    "WooCommerceImport": ".wcimport",
    "import_woocommerce": ".wcimport",
    "ShopApiError": ".wcrest",
    "ShopKeyRefused": ".wcrest",
    "ShopUrlRefused": ".wcrest",
    "WooCommerceApi": ".wcrest",
}
_MODULES = {"shop"}

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
