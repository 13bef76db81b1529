"""big marketing sends and their canary (the blast table), and the shop's sending rate
and SMTP connections shared by its daemons (the send_rate row, the smtp_slot leases)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("created_at", engine.store.types.UTCDateTime(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("first_message_id", sa.Integer(), nullable=False),
        sa.Column("canary_every", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("canary_done_at", engine.store.types.UTCDateTime(), nullable=True),
        sa.Column("decided_at", engine.store.types.UTCDateTime(), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign", "created_at", name="uq_blast_campaign_created"),
    )
    with op.batch_alter_table("blast", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blast_state"), ["state"], unique=False)
    rate = op.create_table(
        "send_rate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("free_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(rate, [{"id": 1, "free_at": 0}])
    op.create_table(
        "smtp_slot",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("until", engine.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("slot"),
    )


def downgrade() -> None:
    op.drop_table("smtp_slot")
    op.drop_table("send_rate")
    with op.batch_alter_table("blast", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blast_state"))
    op.drop_table("blast")
