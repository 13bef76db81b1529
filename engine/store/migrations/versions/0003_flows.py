"""flows: steps and exits, restocks, wanted products, checkouts, broadcasts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import engine.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broadcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("local_at", sa.String(length=16), nullable=False),
        sa.Column("created_at", engine.store.types.UTCDateTime(), nullable=False),
        sa.Column("cancelled_at", engine.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign", "local_at", name="uq_broadcast"),
    )
    op.create_table(
        "flow_step",
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", engine.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("campaign", "step"),
    )
    op.create_table(
        "flow_exit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("occurrence", sa.String(length=120), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("at", engine.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign", "customer_id", "occurrence", name="uq_flow_exit"),
    )
    with op.batch_alter_table("flow_exit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flow_exit_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "product_wanted",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("at", engine.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "product_id", name="uq_product_wanted"),
    )
    with op.batch_alter_table("product_wanted", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_product_wanted_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_product_wanted_product_id"), ["product_id"], unique=False
        )

    op.create_table(
        "restock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("at", engine.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("restock", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_restock_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_restock_product_id"), ["product_id"], unique=False)

    op.create_table(
        "checkout",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cart_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("started_at", engine.store.types.UTCDateTime(), nullable=False),
        sa.Column("amount", engine.store.types.Money(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", engine.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkout_cart_id"), ["cart_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_checkout_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_checkout_started_at"), ["started_at"], unique=False)

    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_birthday"), ["birthday"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_timezone"), ["timezone"], unique=False)

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.String(length=64), nullable=True))

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cart_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_orders_cart_id"), ["cart_id"], unique=False)

    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("created_at", engine.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_product_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_product_created_at"))
        batch_op.drop_column("created_at")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_cart_id"))
        batch_op.drop_column("cart_id")

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("step")

    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_timezone"))
        batch_op.drop_index(batch_op.f("ix_customer_created_at"))
        batch_op.drop_index(batch_op.f("ix_customer_birthday"))

    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkout_started_at"))
        batch_op.drop_index(batch_op.f("ix_checkout_customer_id"))
        batch_op.drop_index(batch_op.f("ix_checkout_cart_id"))

    op.drop_table("checkout")
    with op.batch_alter_table("restock", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_restock_product_id"))
        batch_op.drop_index(batch_op.f("ix_restock_at"))

    op.drop_table("restock")
    with op.batch_alter_table("product_wanted", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_product_wanted_product_id"))
        batch_op.drop_index(batch_op.f("ix_product_wanted_customer_id"))

    op.drop_table("product_wanted")
    with op.batch_alter_table("flow_exit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_exit_customer_id"))

    op.drop_table("flow_exit")
    op.drop_table("flow_step")
    op.drop_table("broadcast")
