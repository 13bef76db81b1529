"""The store: every table, its column types, the database and its migrations.

`models` holds the sqlmodel tables (customers, products, price history, orders,
messages, message events, suppressions, credits, checkpoints); `types` keeps money exact
(`Money`) and times aware UTC (`UTCDateTime`) on every dialect; `db` is the only module
that talks to SQLAlchemy's engine and Alembic (`migrations/`) directly and turns driver
errors into `StoreError`; `locks` is the daemon's instance lock (a file lock on SQLite,
an advisory lock on PostgreSQL).

May import: `engine.errors`, `engine.children`, `engine.exports`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `db`: `BUSY_TIMEOUT_MS`, `current_revision`, `has_schema`, `hold_write_locks`, `ignoring_insert`,
  `is_postgres`, `make_engine`, `session_scope`, `upgrade`
- `locks`: `PlannerLock`, `planner_lock`
- `models`: `Blast`, `BlastState`, `BroadcastTime`, `Checkout`, `Checkpoint`, `ConsentChange`, `Coupon`,
  `CouponIssue`, `CouponSecret`, `CouponUse`, `Credit`, `Customer`, `CustomerTag`, `EventKind`, `FlowExit`, `FlowStepSeen`, `Message`,
  `MessageEvent`, `MessageKind`, `MessageStatus`, `Order`, `OrderItem`, `OrderStatus`,
  `CASH_ON_DELIVERY`, `ENDED_ORDER`, `ORDER_PROGRESS`, `is_purchase`, `PriceChange`, `Product`, `ProductWanted`, `ReceivedEvent`, `Referral`, `ReferralReward`,
  `ReferralStatus`, `Restock`, `SendRate`, `ShopHoliday`, `SmtpSlot`, `Suppression`, `SurveyAnswer`, `TierChange`,
  `WebhookDelivery`
- `types`: `CENT`, `Money`, `UTCDateTime`, `to_money`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .db import (
        BUSY_TIMEOUT_MS,
        current_revision,
        has_schema,
        hold_write_locks,
        ignoring_insert,
        is_postgres,
        make_engine,
        session_scope,
        upgrade,
    )
    from .locks import PlannerLock, planner_lock
    from .models import (
        CASH_ON_DELIVERY,
        ENDED_ORDER,
        ORDER_PROGRESS,
        Blast,
        BlastState,
        BroadcastTime,
        Checkout,
        Checkpoint,
        ConsentChange,
        Coupon,
        CouponIssue,
        CouponSecret,
        CouponUse,
        Credit,
        Customer,
        CustomerTag,
        EventKind,
        FlowExit,
        FlowStepSeen,
        Message,
        MessageEvent,
        MessageKind,
        MessageStatus,
        Order,
        OrderItem,
        OrderStatus,
        PriceChange,
        Product,
        ProductWanted,
        ReceivedEvent,
        Referral,
        ReferralReward,
        ReferralStatus,
        Restock,
        SendRate,
        ShopHoliday,
        SmtpSlot,
        Suppression,
        SurveyAnswer,
        TierChange,
        WebhookDelivery,
        is_purchase,
    )
    from .types import CENT, Money, UTCDateTime, to_money

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CASH_ON_DELIVERY",
    "CENT",
    "ENDED_ORDER",
    "ORDER_PROGRESS",
    "Blast",
    "BlastState",
    "BroadcastTime",
    "Checkout",
    "Checkpoint",
    "ConsentChange",
    "Coupon",
    "CouponIssue",
    "CouponSecret",
    "CouponUse",
    "Credit",
    "Customer",
    "CustomerTag",
    "EventKind",
    "FlowExit",
    "FlowStepSeen",
    "Message",
    "MessageEvent",
    "MessageKind",
    "MessageStatus",
    "Money",
    "Order",
    "OrderItem",
    "OrderStatus",
    "PlannerLock",
    "PriceChange",
    "Product",
    "ProductWanted",
    "ReceivedEvent",
    "Referral",
    "ReferralReward",
    "ReferralStatus",
    "Restock",
    "SendRate",
    "ShopHoliday",
    "SmtpSlot",
    "Suppression",
    "SurveyAnswer",
    "TierChange",
    "UTCDateTime",
    "WebhookDelivery",
    "current_revision",
    "has_schema",
    "hold_write_locks",
    "ignoring_insert",
    "is_postgres",
    "is_purchase",
    "make_engine",
    "planner_lock",
    "session_scope",
    "to_money",
    "upgrade",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "BUSY_TIMEOUT_MS": ".db",
    "Blast": ".models",
    "BlastState": ".models",
    "BroadcastTime": ".models",
    "CENT": ".types",
    "Checkout": ".models",
    "Checkpoint": ".models",
    "ConsentChange": ".models",
    "Coupon": ".models",
    "CouponIssue": ".models",
    "CouponSecret": ".models",
    "CouponUse": ".models",
    "Credit": ".models",
    "Customer": ".models",
    "CustomerTag": ".models",
    "EventKind": ".models",
    "FlowExit": ".models",
    "FlowStepSeen": ".models",
    "Message": ".models",
    "MessageEvent": ".models",
    "MessageKind": ".models",
    "MessageStatus": ".models",
    "Money": ".types",
    "Order": ".models",
    "OrderItem": ".models",
    "OrderStatus": ".models",
    "CASH_ON_DELIVERY": ".models",
    "ENDED_ORDER": ".models",
    "ORDER_PROGRESS": ".models",
    "is_purchase": ".models",
    "PlannerLock": ".locks",
    "PriceChange": ".models",
    "Product": ".models",
    "ProductWanted": ".models",
    "ReceivedEvent": ".models",
    "WebhookDelivery": ".models",
    "Referral": ".models",
    "ReferralReward": ".models",
    "ReferralStatus": ".models",
    "Restock": ".models",
    "SendRate": ".models",
    "SmtpSlot": ".models",
    "ShopHoliday": ".models",
    "Suppression": ".models",
    "SurveyAnswer": ".models",
    "TierChange": ".models",
    "UTCDateTime": ".types",
    "current_revision": ".db",
    "has_schema": ".db",
    "hold_write_locks": ".db",
    "ignoring_insert": ".db",
    "is_postgres": ".db",
    "make_engine": ".db",
    "planner_lock": ".locks",
    "session_scope": ".db",
    "to_money": ".types",
    "upgrade": ".db",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
