"""rewards: coupons per message, coupon uses, a credit wallet, survey answers per message

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupon_use",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("coupon_id", sa.Integer(), nullable=True),
        sa.Column("order_ref", sa.String(length=64), nullable=False),
        sa.Column("redeemed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("at", engine.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["coupon_id"],
            ["coupon.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code", "order_ref", name="uq_coupon_use"),
    )
    with op.batch_alter_table("coupon_use", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coupon_use_code"), ["code"], unique=False)
        batch_op.create_index(batch_op.f("ix_coupon_use_coupon_id"), ["coupon_id"], unique=False)

    with op.batch_alter_table("coupon", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("campaign", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("min_order", engine.store.types.Money(), nullable=True))
        batch_op.add_column(sa.Column("used_order", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_coupon_campaign_created", ["campaign", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_coupon_expires_at"), ["expires_at"], unique=False)
        batch_op.create_unique_constraint("uq_coupon_message_id", ["message_id"])
        batch_op.create_foreign_key("fk_coupon_message_id", "message", ["message_id"], ["id"])

    with op.batch_alter_table("credit", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", engine.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("order_ref", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_credit_customer_expires", ["customer_id", "expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_credit_source_id"), ["source_id"], unique=False)
        batch_op.create_foreign_key("fk_credit_source_id", "credit", ["source_id"], ["id"])

    with op.batch_alter_table("survey_answer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("comment", sa.String(length=2000), nullable=True))
        batch_op.add_column(
            sa.Column("changed_at", engine.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("forwarded_at", engine.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.create_unique_constraint("uq_survey_answer_message_id", ["message_id"])
        batch_op.create_foreign_key(
            "fk_survey_answer_message_id", "message", ["message_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("survey_answer", schema=None) as batch_op:
        batch_op.drop_constraint("fk_survey_answer_message_id", type_="foreignkey")
        batch_op.drop_constraint("uq_survey_answer_message_id", type_="unique")
        for name in ("forwarded_at", "changed_at", "comment", "message_id"):
            batch_op.drop_column(name)

    with op.batch_alter_table("credit", schema=None) as batch_op:
        batch_op.drop_constraint("fk_credit_source_id", type_="foreignkey")
        batch_op.drop_index("ix_credit_source_id")
        batch_op.drop_index("ix_credit_customer_expires")
        for name in ("order_ref", "source_id", "expires_at"):
            batch_op.drop_column(name)

    with op.batch_alter_table("coupon", schema=None) as batch_op:
        batch_op.drop_constraint("fk_coupon_message_id", type_="foreignkey")
        batch_op.drop_constraint("uq_coupon_message_id", type_="unique")
        batch_op.drop_index("ix_coupon_expires_at")
        batch_op.drop_index("ix_coupon_campaign_created")
        for name in ("used_order", "min_order", "campaign", "message_id"):
            batch_op.drop_column(name)

    with op.batch_alter_table("coupon_use", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_use_coupon_id")
        batch_op.drop_index("ix_coupon_use_code")
    op.drop_table("coupon_use")
