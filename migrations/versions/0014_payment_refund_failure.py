"""payments remember a refund that failed after it was made, until staff settle it

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 15:40:00

Stripe can fail a refund days after accepting it (the customer's card was closed): the order
stays refunded, and the payment carries what failed so the back office shows "Refund failed:
action needed" until staff have paid the customer back another way.
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("refund_failure", sa.String(length=500), nullable=True))
        batch.create_index("ix_payments_refund_failure", ["refund_failure"], unique=False)


def downgrade():
    with op.batch_alter_table("payments") as batch:
        batch.drop_index("ix_payments_refund_failure")
        batch.drop_column("refund_failure")
