"""orders.recorded_at: when the engine learnt of an order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Orders stored before this revision keep NULL: when they were recorded is unknown.
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("recorded_at", engine.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_orders_recorded_at"), ["recorded_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_recorded_at"))
        batch_op.drop_column("recorded_at")
