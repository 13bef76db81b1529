"""the send log without foreign keys: message.customer_id, order_id and order_item_id
are written only from the customer and order rows themselves (customers and orders
are never deleted), and checking them took a quarter of a big planning pass on
PostgreSQL (each check locks the customer row it reads)

On SQLite the message table is copied once (its foreign keys are part of its
CREATE TABLE); `engine.store.db.upgrade` turns SQLite's foreign-key checks off for
the copy and checks every reference before committing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

REFERENCES = (("customer_id", "customer"), ("order_id", "orders"), ("order_item_id", "order_item"))
# SQLite's foreign keys have no names: these name them for the copy.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _name(column: str, table: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        return f"fk_message_{column}_{table}"
    return f"message_{column}_fkey"  # PostgreSQL's own names


def upgrade() -> None:
    with op.batch_alter_table("message", naming_convention=NAMING) as batch_op:
        for column, table in REFERENCES:
            batch_op.drop_constraint(_name(column, table), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("message", naming_convention=NAMING) as batch_op:
        for column, table in REFERENCES:
            batch_op.create_foreign_key(_name(column, table), table, [column], ["id"])
