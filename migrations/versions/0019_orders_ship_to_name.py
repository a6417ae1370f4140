"""orders.ship_to_name: staff find an order by the customer's name

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 23:00:00

The shipping address is a JSON column, which the back office's search cannot look into: the
name it holds is now also a column of its own (written by the checkout), filled here for the
orders placed before.
"""
import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("ship_to_name", sa.String(120), nullable=False,
                                   server_default=""))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE orders SET ship_to_name = "
                   "COALESCE(substr(json_extract(shipping_address, '$.name'), 1, 120), '')")
    else:
        op.execute("UPDATE orders SET ship_to_name = COALESCE(LEFT(JSON_UNQUOTE("
                   "JSON_EXTRACT(shipping_address, '$.name')), 120), '')")
    op.create_index("ix_orders_ship_to_name", "orders", ["ship_to_name"])


def downgrade():
    op.drop_index("ix_orders_ship_to_name", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("ship_to_name")
