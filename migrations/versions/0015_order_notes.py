"""staff's internal notes on orders, which the customer never sees

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 17:40:00

An event's note is shown in the customer's order history; staff had nowhere to keep a remark
for each other ("customer phoned, wants delivery after the 10th"). order_notes holds those:
the back office's order page lists and adds them, and no shopper-facing page, email or API
answer reads the table.
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "order_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"],
                                name=op.f("fk_order_notes_actor_id_users"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"],
                                name=op.f("fk_order_notes_order_id_orders"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_notes")),
    )
    with op.batch_alter_table("order_notes") as batch:
        batch.create_index(batch.f("ix_order_notes_order_id"), ["order_id"], unique=False)


def downgrade():
    # The table takes its index with it (MySQL refuses to drop an index a foreign key uses).
    op.drop_table("order_notes")
