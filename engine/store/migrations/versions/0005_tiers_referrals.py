"""tiers and referrals: a customer's tier and referral code, tier changes, referrals, rewards

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN and indexes: every table refers to customer, so SQLite's
    # copy-and-move batch mode would trip over the foreign keys.
    op.add_column("customer", sa.Column("tier", sa.String(length=32), nullable=True))
    op.add_column(
        "customer", sa.Column("tier_since", engine.store.types.UTCDateTime(), nullable=True)
    )
    op.add_column("customer", sa.Column("referral_code", sa.String(length=16), nullable=True))
    op.create_index("ix_customer_tier", "customer", ["tier"], unique=False)
    op.create_index("ix_customer_referral_code", "customer", ["referral_code"], unique=True)

    op.create_table(
        "tier_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("from_tier", sa.String(length=32), nullable=True),
        sa.Column("to_tier", sa.String(length=32), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("at", engine.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tier_change", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tier_change_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tier_change_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "referral",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("referrer_id", sa.Integer(), nullable=True),
        sa.Column("referred_id", sa.Integer(), nullable=False),
        sa.Column("order_ref", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("at", engine.store.types.UTCDateTime(), nullable=False),
        sa.Column("counted_at", engine.store.types.UTCDateTime(), nullable=True),
        sa.Column("reversed_at", engine.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.ForeignKeyConstraint(["referred_id"], ["customer.id"]),
        sa.ForeignKeyConstraint(["referrer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_ref"),
    )
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.create_index(
            "ix_referral_referrer_status", ["referrer_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_referral_referred_id"), ["referred_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_referral_order_id"), ["order_id"], unique=False)

    op.create_table(
        "referral_reward",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("credit_id", sa.Integer(), nullable=True),
        sa.Column("coupon_id", sa.Integer(), nullable=True),
        sa.Column("at", engine.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["coupon_id"], ["coupon.id"]),
        sa.ForeignKeyConstraint(["credit_id"], ["credit.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "threshold", name="uq_referral_reward"),
    )
    with op.batch_alter_table("referral_reward", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_reward_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_referral_reward_customer_id"), ["customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("referral_reward", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_reward_customer_id"))
        batch_op.drop_index(batch_op.f("ix_referral_reward_at"))
    op.drop_table("referral_reward")

    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_order_id"))
        batch_op.drop_index(batch_op.f("ix_referral_referred_id"))
        batch_op.drop_index("ix_referral_referrer_status")
    op.drop_table("referral")

    with op.batch_alter_table("tier_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tier_change_customer_id"))
        batch_op.drop_index(batch_op.f("ix_tier_change_at"))
    op.drop_table("tier_change")

    op.drop_index("ix_customer_referral_code", table_name="customer")
    op.drop_index("ix_customer_tier", table_name="customer")
    for name in ("referral_code", "tier_since", "tier"):
        op.drop_column("customer", name)
