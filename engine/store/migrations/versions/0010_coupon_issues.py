"""coupons without a row per message: a pass's coupon is one coupon_issue row (its
value frozen for the messages of one campaign step and pass), each message's code is
derived from the message with the key in coupon_secret; `coupon` keeps the codes
made one by one (referrals) and those redeemed

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupon_issue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("created_at", engine.store.types.UTCDateTime(), nullable=False),
        sa.Column("minted_at", engine.store.types.UTCDateTime(), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("percent_off", engine.store.types.Money(), nullable=True),
        sa.Column("amount_off", engine.store.types.Money(), nullable=True),
        sa.Column("min_order", engine.store.types.Money(), nullable=True),
        sa.Column("expires_after", sa.Integer(), nullable=False),
        sa.Column("ladder", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign", "step", "created_at", name="uq_coupon_issue"),
    )
    with op.batch_alter_table("coupon_issue", schema=None) as batch_op:
        batch_op.create_index("ix_coupon_issue_minted", ["minted_at"], unique=False)
    op.create_table(
        "coupon_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", engine.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("coupon_secret")
    with op.batch_alter_table("coupon_issue", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_issue_minted")
    op.drop_table("coupon_issue")
