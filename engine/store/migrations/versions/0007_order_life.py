"""the order life of cash on delivery: payment method, amount payable, shipping, tracking,
refusal and return

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Orders stored before this revision keep NULL: how they were paid and shipped is unknown.
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_method", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("payable", engine.store.types.Money(), nullable=True))
        batch_op.add_column(
            sa.Column("shipped_at", engine.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("tracking_url", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("returned_at", engine.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_orders_shipped_at"), ["shipped_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_returned_at"), ["returned_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_returned_at"))
        batch_op.drop_index(batch_op.f("ix_orders_shipped_at"))
        batch_op.drop_column("returned_at")
        batch_op.drop_column("tracking_url")
        batch_op.drop_column("shipped_at")
        batch_op.drop_column("payable")
        batch_op.drop_column("payment_method")
